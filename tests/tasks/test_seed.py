import pytest

from lmsleep.memory import Memory, MemoryConfig
from lmsleep.brain import MemoryState
from tasks.seed import _check_method, holds


def test_a_brain_keeps_its_method(micro):
    model, _ = micro
    _check_method("context_distillation", model)  # a brain that never slept takes either
    Memory.attach(model, MemoryConfig())
    with pytest.raises(ValueError, match="holds knowledge_seeding and params.yaml asks for context_distillation"):
        _check_method("context_distillation", model)
    with pytest.raises(ValueError, match="not knowledge_seeding or one of"):
        _check_method("distill_harder", model)


def test_a_night_is_held_only_from_the_curriculum_it_was_trained_on():
    state = MemoryState(base_model="m", nights=1, history=[{"night": 0, "episodes": ["a"], "curriculum": "h1"}])
    assert holds(state, {"night": 0, "episodes": ["a"], "curriculum": "h1"})
    assert not holds(state, {"night": 0, "episodes": ["a"], "curriculum": "h2"})  # written again, other lessons
    assert not holds(state, {"night": 0, "episodes": ["b"], "curriculum": "h1"})
    assert not holds(state, {"night": 1, "episodes": ["a"], "curriculum": "h1"})
    legacy = MemoryState(base_model="m", nights=1, history=[{"night": 0, "episodes": ["a"]}])
    assert holds(legacy, {"night": 0, "episodes": ["a"], "curriculum": "h1"})  # grown before the hash
