import pytest

from lmsleep.memory import Memory, MemoryConfig
from tasks.seed import _check_memory, _check_method


def test_a_brain_keeps_the_shape_of_its_memory(micro):
    model, _ = micro
    memory = Memory.attach(model, MemoryConfig(rank=4))
    _check_memory(memory, MemoryConfig(rank=4))
    with pytest.raises(ValueError, match=r"rank: brain 4, params 8"):
        _check_memory(memory, MemoryConfig(rank=8))


def test_a_brain_keeps_its_method(micro):
    model, _ = micro
    _check_method("context_distillation", model)  # a brain that never slept takes either
    Memory.attach(model, MemoryConfig())
    with pytest.raises(ValueError, match="holds knowledge_seeding and params.yaml asks for context_distillation"):
        _check_method("context_distillation", model)
    with pytest.raises(ValueError, match="not knowledge_seeding or one of"):
        _check_method("distill_harder", model)
