import pytest

from lmsleep.bench_rehearsal import STAGES, tally


def test_tally_sorts_each_probe_by_its_fact_and_by_what_the_rehearsal_did():
    right = {"knowledge_seeding": [True, True, False, True],
             "seeded": [False, True, True, False],
             "rehearsed": [True, False, False, True]}
    of_tau = [True, False, False, False]  # probe 0 asks a tau fact: seeding never taught it
    t = tally(right, of_tau)
    assert t["right"] == {"knowledge_seeding": 3, "seeded": 2, "rehearsed": 2}
    assert t["right_on_tau_facts"] == {"knowledge_seeding": 1, "seeded": 0, "rehearsed": 1}
    assert (t["other_lost_in_rehearsal"], t["other_gained_in_rehearsal"]) == (2, 1)  # probes 1, 2 lost; 3 gained
    assert (t["other_knowledge_seeding_only"], t["other_rehearsed_only"]) == (1, 0)  # probe 1


@pytest.mark.slow
def test_one_day_three_ways_on_a_born_micro_model(born_micro_dir):
    """End to end on a real (micro) model: Knowledge Seeding alone, the sleep night's seeding, and
    the same after its dreaming night, whose rehearsal ran; the counts are consistent."""
    from lmsleep.bench_rehearsal import three_ways
    from lmsleep.checks import ValidationLimits
    from lmsleep.params import load_params
    from tests.conftest import MICRO_WORLD

    params = load_params(raw={
        "base_model": str(born_micro_dir),
        "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)},
        "baselines": {"self_questions": 2}, "curriculum": {"window": "paragraph"},
        "seeding": {"epochs": 1, "batch_size": 8, "lti": False, "lmbda": 0.0, "max_new_tokens": 8},
        "memory": {"periods": [1, 2], "slots": [2, 4], "top_k": [2, 2], "rank": 4},
        "dreaming": {"dreams": 1, "max_new_tokens": 8, "trial_steps": 1, "rehearse_epochs": 1, "teach_tau": True,
                     "tau_by_answer": False, "dreamer_epochs": 1}})  # by question: a micro teacher answers alike
    out = three_ways(params, "sleep", seed=0, day_index=0, limits=ValidationLimits(), drop_ungrounded=False)
    assert out["tau_checks"] > 0 and set(out["seconds"]) == set(STAGES)
    assert out["rehearsal_rows"] > 0  # tau taught: the rehearsal ran
    for family in ("probes", "paraphrases"):
        t = out[family]
        assert t["asked"] > 0 and 0 <= t["tau_facts"] <= t["asked"]
        assert all(0 <= t["right_on_tau_facts"][s] <= t["right"][s] <= t["asked"] for s in STAGES)
        other = {s: t["right"][s] - t["right_on_tau_facts"][s] for s in STAGES}
        assert other["rehearsed"] == other["seeded"] - t["other_lost_in_rehearsal"] + t["other_gained_in_rehearsal"]
    with pytest.raises(SystemExit, match="does not dream"):
        three_ways(params, "knowledge_seeding", seed=0, day_index=0, limits=ValidationLimits())
