"""The brain between nights: `wake` sets the live brain down as the night's prior; `register`
switches the night's brain in only forward (a replay of a past night never goes live), and a
night dreamt but not committed is the one a rerun finishes."""

import json

import pytest

from lmsleep.brain import MemoryState, read_state, write_state
from tasks.common import Paths, Pipeline
from tasks.register import LiveBrainBehind, commit_night, pending
from tasks.wake import wake


def pipeline(tmp_path, base) -> Pipeline:
    from types import SimpleNamespace

    # A baseline's night: these brains' memory.safetensors are stand-in bytes, not a memory to check.
    return Pipeline(SimpleNamespace(base_model=str(base), consolidation="sft_text"), paths=Paths(data=tmp_path / "data", brain=tmp_path / "brain",
                                                               prior=tmp_path / "prior", seeded=tmp_path / "seeded",
                                                               night=tmp_path / "night", reports=tmp_path / "reports"))


def brain(path, base, nights: int, extra: str = "") -> None:
    state = read_state(path, str(base))
    state.nights, state.history = nights, [{"night": n, "episodes": [f"e{n}"], "method": "m"} for n in range(nights)]
    write_state(state, path)
    if extra:
        (path / "memory.safetensors").write_text(extra)  # stands for the memory: copied whole, byte for byte


def test_wake_sets_down_an_empty_brain_first_then_the_live_one(tmp_path, micro_dir):
    pipe = pipeline(tmp_path, micro_dir)
    assert wake(pipe) == {"nights": 0}
    assert json.loads((pipe.paths.prior / "memory.json").read_text())["nights"] == 0
    assert not pipe.paths.brain.exists(), "wake never writes the live brain"

    brain(pipe.paths.brain, micro_dir, 2, extra="weights of two nights")
    (tmp_path / "prior.next").mkdir()  # a copy a crash cut short
    (tmp_path / "prior.next" / "junk").write_text("half")
    assert wake(pipe) == {"nights": 2}
    assert (pipe.paths.prior / "memory.safetensors").read_text() == "weights of two nights"
    assert read_state(pipe.paths.prior, str(micro_dir)).history == read_state(pipe.paths.brain, str(micro_dir)).history
    assert not (tmp_path / "prior.next").exists() and not (pipe.paths.prior / "junk").exists()


def test_wake_refuses_a_brain_whose_memory_params_yaml_reshapes(tmp_path, micro):
    from types import SimpleNamespace

    from lmsleep.memory import Memory, MemoryConfig

    model, _ = micro
    pipe = pipeline(tmp_path, model.name_or_path)
    Memory.attach(model, MemoryConfig(rank=4)).save(pipe.paths.brain)
    brain(pipe.paths.brain, model.name_or_path, 1)
    pipe.params = SimpleNamespace(base_model=model.name_or_path, consolidation="knowledge_seeding",
                                  memory=MemoryConfig(rank=64))
    with pytest.raises(ValueError, match="rank: brain 4, params 64"):  # before the curriculum's minutes
        wake(pipe)
    assert not pipe.paths.prior.exists()
    pipe.params.memory = MemoryConfig(rank=4)
    assert wake(pipe) == {"nights": 1}


@pytest.fixture
def registry(tmp_path):
    import mlflow

    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(before)


def test_the_night_goes_live_only_forward_and_a_rerun_finishes_it(tmp_path, micro_dir, registry):
    pipe = pipeline(tmp_path, micro_dir)
    assert pending(pipe) is None  # nothing dreamt
    brain(pipe.paths.brain, micro_dir, 1, extra="night 0")
    brain(pipe.paths.night, micro_dir, 2, extra="night 1")
    assert pending(pipe) == 1, "dreamt, not committed: the rerun finishes night 1"
    assert commit_night(pipe) is True
    assert (pipe.paths.brain / "memory.safetensors").read_text() == "night 1"
    assert (pipe.paths.night / "memory.safetensors").read_text() == "night 1", "the dream stage's output stays"
    assert pending(pipe) is None and commit_night(pipe) is False  # done: nothing to switch twice

    brain(pipe.paths.night, micro_dir, 1, extra="night 0, rebuilt")  # a replay of a past night
    assert pending(pipe) is None and commit_night(pipe) is False
    assert (pipe.paths.brain / "memory.safetensors").read_text() == "night 1", "a replay never goes live"
    assert MemoryState(**json.loads((pipe.paths.brain / "memory.json").read_text())).nights == 2


def test_a_missing_or_old_live_brain_is_refused_not_guessed(tmp_path, micro_dir, registry):
    pipe = pipeline(tmp_path, micro_dir)
    registry.create_registered_model(pipe.registry.model_name)
    registry.create_model_version(pipe.registry.model_name, source=str(tmp_path), tags={"night": "0"})
    with pytest.raises(LiveBrainBehind, match="missing or old"):  # night 0 registered, no live brain here
        pending(pipe)
    brain(pipe.paths.night, micro_dir, 3)  # e.g. `dvc pull` on a new machine: three nights, no live brain
    with pytest.raises(LiveBrainBehind, match="holds 0 nights, but .* holds 3"):
        pending(pipe)
    brain(pipe.paths.brain, micro_dir, 2)
    assert pending(pipe) == 2  # one night ahead, nothing later registered: a night to finish
    registry.create_model_version(pipe.registry.model_name, source=str(tmp_path), tags={"night": "4"})
    with pytest.raises(LiveBrainBehind):  # an old checkout beside a newer registry
        pending(pipe)


def test_wake_refuses_while_a_night_waits_to_commit(tmp_path, micro_dir):
    pipe = pipeline(tmp_path, micro_dir)
    brain(pipe.paths.brain, micro_dir, 1)
    brain(pipe.paths.night, micro_dir, 2)
    with pytest.raises(RuntimeError, match="finish it with `make run`"):
        wake(pipe)
