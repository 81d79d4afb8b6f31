"""The dream stage's trials fanned out as Prefect task runs: through a real DaskTaskRunner on a
local cluster of two worker processes, and through the default thread pool, with the same
outcomes as trials run in the stage's own process."""

import os
from pathlib import Path

import pytest

from lmsleep.trials import tau_rows, tau_score, try_dream
from tasks.common import Trials

ROOT = Path(__file__).resolve().parents[2]
TAU = [{"episode_id": "ep-1", "question": "Where does Ada Vell work?", "answer": "Morrow Labs"}]
DREAMS = [{"episode_id": "ep-1", "form": "qa", "student": "Q: Where does Ada Vell work?\nA:",
           "teacher": "Ada Vell works for Morrow Labs.\n\nQ: Where does Ada Vell work?\nA:", "completion": " Morrow Labs\n"},
          {"episode_id": "ep-1", "form": "restatement", "student": "",
           "teacher": "Ada Vell works for Morrow Labs.\n\nIn other words:", "completion": " Ada Vell is at Morrow Labs.\n"},
          {"episode_id": "ep-1", "form": "qa", "student": "Q: Where does Ada Vell live?\nA:",
           "teacher": "Ada Vell lives in Kestrel.\n\nQ: Where does Ada Vell live?\nA:", "completion": " Kestrel\n"},
          {"episode_id": "ep-1", "form": "restatement", "student": "",
           "teacher": "Ada Vell lives in Kestrel.\n\nIn other words:", "completion": " Kestrel is home to Ada Vell.\n"}]


@pytest.fixture
def seeded(micro_dir, tmp_path):
    """A brain with tonight's expert (a night of real seeding steps), saved like `models/seeded`."""
    from lmsleep.brain import load_brain, read_state, save_brain
    from lmsleep.memory import MemoryConfig, memory_of
    from lmsleep.seeding import SeedingConfig
    from lmsleep.sleep import Sleeper

    model, tokenizer, _ = load_brain(tmp_path / "none", str(micro_dir))
    sleeper = Sleeper(model, tokenizer, SeedingConfig(epochs=1, batch_size=4, lti=False, lmbda=0.0),
                      MemoryConfig(rank=2))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([{"id": "ep-1", "text": "Ada Vell lives in Kestrel."}], lessons, progress=lambda *_: None)
    save_brain(model, read_state(tmp_path / "brain", str(micro_dir)), tmp_path / "brain")
    slot = memory_of(model).active_slots(1)[-1]
    params = memory_of(model).train_only(1, slot)
    before = tau_score(model, tokenizer, tau_rows(TAU))
    here = [try_dream(model, tokenizer, params, d, tau_rows(TAU), before, 2, 0.05) for d in DREAMS]
    jobs = [{"brain": str(tmp_path / "brain"), "base_model": str(micro_dir), "slot": slot, "dream": d,
             "tau": tau_rows(TAU), "before": before, "steps": 2, "lr": 0.05} for d in DREAMS]
    return jobs, here


def same(outcomes, here):
    for got, want in zip(outcomes, here, strict=True):
        assert got["reward"] == want["reward"]
        assert got["after"]["loss"] == pytest.approx(want["after"]["loss"], rel=1e-5)


def test_trials_fan_out_over_a_dask_cluster_of_two_workers(seeded, harness, monkeypatch):
    from flows.dream_trials import task_runner, trials_fan_out

    monkeypatch.setenv("PYTHONPATH", f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # for the workers
    jobs, here = seeded
    config = Trials(runner="dask", workers=2)
    assert type(task_runner(config)).__name__ == "DaskTaskRunner"
    outcomes = trials_fan_out(config)(jobs)
    same(outcomes, here)
    workers = {o["worker"] for o in outcomes}
    # In the cluster's worker processes, not here (which of the two takes which is Dask's call).
    assert workers and os.getpid() not in workers, workers


def test_trials_fan_out_over_the_default_thread_pool(seeded, harness):
    from flows.dream_trials import trials_fan_out

    jobs, here = seeded
    outcomes = trials_fan_out(Trials())(jobs)
    same(outcomes, here)
    assert {o["worker"] for o in outcomes} == {os.getpid()}


def test_a_task_runner_named_wrong_is_refused():
    with pytest.raises(ValueError, match="trials.runner must be thread, dask or ray"):
        Trials(runner="slurm")
