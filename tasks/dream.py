"""dream: the seeded brain practises tonight's episodes in its own words.

    python -m tasks.dream

Reads the brain `seed` wrote (`models/seeded`), tonight's lessons and `tau.jsonl` (the teacher's
own Q/A the curriculum stage set aside: untaught until the trials are over, then rehearsed with
`dreaming.teach_tau`; empty by default). What dreams are judged on is tau and, with birth's
knowledge of the world, `dreaming.tau_compose`'s checks of tonight's implications, never
taught (params.yaml's judge: nothing set aside). With
Knowledge Seeding and `dream: true` (lmsleep/dreaming.py, params.yaml `dreaming:`):
1. the model writes dreams about each episode (restatements, question/answer pairs,
   implications); the `dreams` data suite (tasks/validate.py) sets aside the ones out of
   bounds, with the failed expectations, before any is used;
2. gradient selection, one trial per kept dream on a copy of tonight's expert, scored on tau;
3. ReST-EM: the dreamer adapter (`<brain>/dreamer/`) learns from the dreams that helped, and
   they are rehearsed into tonight's expert with the lessons and replay.
Writes `data/dreams/` (every dream with its score and trial, and the set-aside ones; versioned
by DVC) and `reports/dreams.json`. Otherwise (a baseline, or `dream: false`) the night's brain
is the seeded one as it is.

The night's brain is written whole into `models/night.next`, then switched in as `models/night`
(`lmsleep.brain.commit`): what `evaluate` measures and `register` logs, and switches in as the
live brain once the night is decided. A rerun after a crash does not dream a night the night's
brain already holds, and switches in a complete staged brain that holds it.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

from lmsleep import jsonl
from lmsleep.brain import commit, complete, copy, load_brain, read_state, save_brain, staging
from lmsleep.schedule import MEMORY_FILE
from tasks.common import Pipeline, crash_point, dreams_tonight, read_tonight, stage_cli, write_json
from tasks.seed import DREAMER, holds


# The model trials run on, per process: the dream stage's own (a thread runner's trials run
# beside it, no second copy), or, in a Dask/Ray worker, the brain loaded from disk once, keyed
# by its memory file's state so a long-lived worker never tries tonight's dreams on last night's.
_trial_models: dict = {}
_trial_lock = threading.Lock()


def _brain_key(brain: str, base_model: str) -> tuple:
    memory = Path(brain) / MEMORY_FILE
    return brain, base_model, memory.stat().st_mtime_ns, memory.stat().st_size


def trial(brain: str, base_model: str, slot: int, dream: dict, tau: list[dict], before: dict, steps: int,
          lr: float, bf16: bool = False) -> dict:
    """One dream's trial (`lmsleep.trials.try_dream`) wherever a task runner puts it, on the
    brain at `brain` (the seeded one, as the dream stage has it); its expert in `slot` is tried
    on and put back. Trials in one process take turns (they share that expert); a Dask or Ray
    runner spreads them over processes and machines."""
    import os

    from lmsleep.memory import memory_of
    from lmsleep.trials import try_dream

    with _trial_lock:
        key = _brain_key(brain, base_model)
        if key not in _trial_models:
            model, tokenizer, _ = load_brain(Path(brain), base_model)
            _trial_models.clear()  # one brain per process
            _trial_models[key] = (model, tokenizer)
        model, tokenizer = _trial_models[key]
        memory = memory_of(model)
        if slot not in memory.active_slots(1):
            raise RuntimeError(f"the brain at {brain} has no active level-1 expert in slot {slot}: the trials must "
                               "run on the brain the dream stage holds")
        params = memory.train_only(1, slot)
        return try_dream(model, tokenizer, params, dream, tau, before, steps, lr, bf16) | {"worker": os.getpid()}


def _resumed(pipe: Pipeline, tonight: dict) -> dict | None:
    """The night's brain holds tonight already, or a complete staged one does (switched in now).
    (`dvc repro` removes `models/night` before it runs this stage: a replay dreams anew.)"""
    base, staged = pipe.params.base_model, staging(pipe.paths.night)
    if holds(read_state(pipe.paths.night, base), tonight):
        _restore_outputs(pipe)
        return {"night": tonight["night"], "resumed": "the night's brain already holds this night"}
    if complete(staged) and holds(read_state(staged, base), tonight):
        commit(pipe.paths.night)
        _restore_outputs(pipe)
        return {"night": tonight["night"], "resumed": "switched in the brain dreamed before a crash"}
    if staged.exists():
        shutil.rmtree(staged)  # half-written, or another night's: it was never switched in
    return None


OUTPUTS = "dreams"  # inside the brain: the night's dream outputs, restored if a rerun finds them gone


def _write_outputs(pipe: Pipeline, staged: Path, dreams: list[dict], set_aside: list[dict], report: dict) -> None:
    """`data/dreams/`, `reports/dreams.json`, and the same inside the staged brain (a resumed
    night finds them there after `dvc repro` cleared the stage's outputs)."""
    for folder in (pipe.paths.dreams, staged / OUTPUTS):
        jsonl.write(folder / "dreams.jsonl", dreams)
        jsonl.write(folder / "set_aside.jsonl", set_aside)
    # The brain keeps the report without its clock: a night rebuilt from its dvc.lock is the same bytes.
    write_json(staged / OUTPUTS / "dreams.json", {k: v for k, v in report.items() if k != "seconds"})
    write_json(pipe.paths.reports / "dreams.json", report)


def _restore_outputs(pipe: Pipeline) -> None:
    kept = pipe.paths.night / OUTPUTS
    if not kept.is_dir():
        return
    for name in ("dreams.jsonl", "set_aside.jsonl"):
        if not (pipe.paths.dreams / name).exists():
            pipe.paths.dreams.mkdir(parents=True, exist_ok=True)
            shutil.copy2(kept / name, pipe.paths.dreams / name)
    if not (pipe.paths.reports / "dreams.json").exists():
        pipe.paths.reports.mkdir(parents=True, exist_ok=True)
        shutil.copy2(kept / "dreams.json", pipe.paths.reports / "dreams.json")


def dream(pipe: Pipeline, fan_out=None) -> dict:
    """`fan_out(jobs) -> outcomes` runs the trials (`trial(**job)` each) elsewhere: the flow maps
    them as Prefect task runs; without it they run here, one after another."""
    tonight, episodes = read_tonight(pipe)
    resumed = _resumed(pipe, tonight)
    if resumed:
        return resumed
    seeded = pipe.paths.seeded
    if not (complete(seeded) and holds(read_state(seeded, pipe.params.base_model), tonight)):
        raise RuntimeError(f"{seeded} does not hold night {tonight['night']}: run the seed stage first")
    staged = staging(pipe.paths.night)
    out: dict = {"night": tonight["night"], "dreamed": dreams_tonight(pipe)}
    if not out["dreamed"]:
        copy(seeded, staged, ignore=(OUTPUTS,))
        _write_outputs(pipe, staged, [], [], out)  # the stage's outputs exist every night
    else:
        out |= _dream(pipe, tonight, episodes, staged, fan_out)
    crash_point("dream:staged")
    commit(pipe.paths.night)
    return out


def _dream(pipe: Pipeline, tonight: dict, episodes: list[dict], staged: Path, fan_out) -> dict:
    from lmsleep.dreaming import Dreamer
    from lmsleep.memory import memory_of
    from lmsleep.sleep import Past, Sleeper
    from tasks.seed import mlflow_loss_callback
    from tasks.validate import base_knowledge, validate_dreams

    seeded, p = pipe.paths.seeded, pipe.params
    model, tokenizer, state = load_brain(seeded, p.base_model)
    lessons, tau = jsonl.read(pipe.paths.curriculum), jsonl.read(pipe.paths.tau)
    staged.mkdir(parents=True)
    if (seeded / DREAMER).is_dir():  # the dreamer learns in the new brain; the seeded one stays as it was
        shutil.copytree(seeded / DREAMER, staged / DREAMER)
    sleeper = Sleeper(model, tokenizer, p.seeding, memory=memory_of(model), past=Past.read(seeded))
    set_aside: list[dict] = []
    knowledge = base_knowledge(p)

    def check(dreams):
        good, bad, _ = validate_dreams(dreams, episodes, pipe.limits, knowledge)
        set_aside.extend(bad)
        return good

    brain, base = str(seeded.resolve()), str(Path(p.base_model).resolve())

    def run_trials(jobs):  # the seeded brain on disk is the model as it is now: workers load it
        return fan_out([{"brain": brain, "base_model": base, **j} for j in jobs])

    with _trial_lock:
        _trial_models.clear()
        _trial_models[_brain_key(brain, base)] = (model, tokenizer)  # this process's trials use it

    callback = mlflow_loss_callback()
    try:
        report = Dreamer(model, tokenizer, p.dreaming, sleeper, staged / DREAMER).night(
            episodes, lessons, tau, check=check, callbacks=[callback] if callback else None,
            run_trials=run_trials if fan_out else None, knowledge=knowledge)
    finally:
        _trial_models.clear()
    dreams = _with_outcomes(report.pop("all_dreams"), report.pop("kept_dreams"))
    report |= {"dreamed": True}  # its `set_aside` counts the dreams the suite set aside
    _write_outputs(pipe, staged, dreams, set_aside, report)
    sleeper.past.write(staged)
    save_brain(model, state, staged)
    return {k: report[k] for k in ("sampled", "set_aside", "dreams", "kept", "helped", "success")}


def trial_table(dreams: list[dict], width: int = 80) -> list[dict]:
    """One row per trial (each kept dream of `data/dreams/dreams.jsonl`): the dream, its gradient
    score, tau answered exactly before and after it, and its reward. The flow records it as a
    Prefect table artifact and an MLflow table."""
    def short(text: str) -> str:
        text = " ".join(text.split())
        return text if len(text) <= width else text[:width - 3] + "..."

    return [{"episode": d["episode_id"], "form": d["form"], "dream": short(d["sample"]),
             "score": None if d.get("score") is None else round(d["score"], 4),
             "tau_before": round(d["trial"]["before"]["exact"], 4), "tau_after": round(d["trial"]["after"]["exact"], 4),
             "reward": d["trial"]["reward"]} for d in dreams if "trial" in d]


def _with_outcomes(dreams: list[dict], kept: list[dict]) -> list[dict]:
    """Every dream, with its gradient score and trial where it was kept."""
    def key(d):
        return d["episode_id"], d["form"], d["completion"]

    def without_worker(d):  # which process ran the trial (its pid) stays out: the same night, the same data
        return d | {"trial": {k: v for k, v in d["trial"].items() if k != "worker"}} if "trial" in d else d

    outcome = {key(d): without_worker(d) for d in kept}
    return [outcome[key(d)] | {"kept": True} if key(d) in outcome else d | {"kept": False} for d in dreams]


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(stage_cli(dream, __doc__, argv)))

if __name__ == "__main__":
    main()
