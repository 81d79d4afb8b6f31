import pytest

from lmsleep.bench_seeding import memory_after
from lmsleep.memory import MemoryConfig
from lmsleep.schedule import simulate


@pytest.mark.parametrize("upward", ["distil", "move"])
def test_a_hundred_nights_of_real_memory_operations_stay_bounded(micro, upward):
    """The benchmark's 100 nights (expand, reset, move, merge on a real model) end where the
    schedule says, and never hold more experts than the levels have slots."""
    model, _ = micro
    config = MemoryConfig(periods=[1, 4], slots=[4, 8], rank=4, upward=upward)
    out = memory_after(100, model, config)
    assert out["per_level"] == simulate(100, config)[-1]["used"]
    assert out["most_active_experts"] <= sum(config.slots)
    # the memory's parameters are allocated once: what is active is a part of them
    assert 0 < out["active_parameters"] <= out["memory"]


@pytest.mark.slow
def test_a_default_night_is_timed_by_stage(born_micro_dir):
    """`bench-seeding --parts night`: the curriculum and the seed stage of params.yaml's night on
    day 0, each consolidation with its steps, and the closed-book exam after it."""
    from lmsleep.bench_seeding import default_night
    from lmsleep.params import load_params
    from tests.conftest import MICRO_WORLD

    params = load_params(raw={
        "base_model": str(born_micro_dir), "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)},
        "baselines": {"self_questions": 2}, "curriculum": {"window": "paragraph"},
        "seeding": {"epochs": 1, "batch_size": 8, "lti_group": 2, "max_new_tokens": 8},
        "memory": {"periods": [1, 2], "slots": [2, 4], "top_k": [2, 2], "rank": 4}})
    night = default_night(params, drop_ungrounded=False)  # a micro teacher's answers are seldom in the text
    assert night["lessons"] > 0 and set(night["seconds"]) == {"curriculum", "seed"}
    assert night["total"] == pytest.approx(sum(night["seconds"].values()))
    (step,) = night["consolidations"]  # night 1: level 0 into a new level-1 expert, nothing goes up yet
    assert (step["kind"], step["sender"], step["receiver"]) == ("consolidate", 0, 1)
    assert step["new_rows"] == night["lessons"] and step["replay_rows"] > 0 and step["steps"] >= 1
    assert set(night["closed_book_after"]) == {"recall", "paraphrase", "implication"}
