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
