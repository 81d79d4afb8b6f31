"""One night as a Prefect flow: capture -> wake -> curriculum -> validate -> seed -> dream -> evaluate -> register.

    python -m flows.sleep_cycle                  (what `make run` does: an ephemeral Prefect server)
    prefect deployment run 'sleep-cycle/on-demand'   (through `make ui`, see flows/deploy.py)

Every stage is a function in `tasks/` (the same one `dvc repro` runs). This file only says
which runs after which, what may be retried, and what gets reported:
- one MLflow parent run per night, a child run per stage (params, metrics, artifacts), tagged
  with the git commit and the hash of dvc.lock;
- one night at a time: the whole night holds the checkout's night lock (tasks/lock.py; a
  second night, from any door, is refused naming the holder), and the deployments carry a
  concurrency limit of 1; the `seed` and `dream` stages are tagged `gpu` for a tag limit where
  GPUs are shared;
- a markdown report and a table of the night's metrics as Prefect artifacts, and the dream
  stage's trials as a table (`dream-trials`; in its MLflow run too, `dream_trials.json`).
A failing data suite stops the night before training, with the GX summary as the error.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from pydantic import BaseModel, Field

from tasks.common import Pipeline, load_pipeline
from tasks.lock import night_lock


class NightParameters(BaseModel):
    """The Custom run form of the Prefect UI; every other knob is read from `params_file` at run time."""

    params_file: str = Field("params.yaml", description="params.yaml to read every other knob from")
    world_day: bool = Field(True, description="embedded default: post the world's next day to the inbox first")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default: registry.tracking_uri")
    model_name: str | None = Field(None, description="registered model name; default: registry.model_name")


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _dvc_commit() -> str:
    """Record tonight's outputs in dvc.lock, so `dvc status` is clean and `dvc repro` replays it."""
    if not (Path("dvc.yaml").exists() and Path(".dvc").is_dir()):
        return "no DVC repo here"
    dvc = Path(sys.executable).with_name("dvc")
    # dvc.yaml: the night's stages only (bench/dvc.yaml's outputs exist only in its experiments).
    done = subprocess.run([str(dvc), "commit", "--force", "--quiet", "dvc.yaml"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"dvc commit failed: {done.stderr.strip() or done.stdout.strip()}")
    return "committed"


def _dvc_lock_hash() -> str:
    lock = Path("dvc.lock")
    return hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.exists() else "none"


def _stage(name: str, fn, pipe: Pipeline, log_params: dict | None = None, tags: list[str] | None = None,
           retries: int = 0, artifacts: tuple[Path, ...] = ()):
    """A Prefect task for a stage, inside its own MLflow child run; `artifacts` are logged even
    when the stage fails (a failed validation's GX result is the thing to read)."""

    @task(name=name, tags=tags or [], retries=retries, retry_delay_seconds=5)
    def run_stage():
        import mlflow

        with mlflow.start_run(run_name=name, nested=True):
            if log_params:
                mlflow.log_params(log_params)
            t0 = time.time()
            try:
                out = fn(pipe)
            finally:
                for path in artifacts:
                    if Path(path).exists():
                        mlflow.log_artifact(str(path))
            mlflow.log_metric("seconds", time.time() - t0)
            numbers = out if isinstance(out, dict) else getattr(out, "__dict__", {})
            for k, v in numbers.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    mlflow.log_metric(k, v)
            return out

    return run_stage()


@flow(name="sleep-cycle")
def sleep_cycle(night: NightParameters = NightParameters()) -> dict:
    from prefect.artifacts import create_markdown_artifact

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    logger = get_run_logger()
    stage = ["start"]  # the stage running now, for the failure report
    try:
        pipe = load_pipeline(night.params_file)
        if night.tracking_uri:
            pipe.registry.tracking_uri = night.tracking_uri
        if night.model_name:
            pipe.registry.model_name = night.model_name
        with night_lock(what="a night (the sleep-cycle flow)"):
            from flows.replay import AWAY

            if AWAY.exists():  # today's record is set aside: a night now would be recorded over a past one
                raise RuntimeError(f"a replay was cut short ({AWAY}/ holds today's reports): "
                                   "python -m flows.replay --restore, then run the night")
            pipe.registry.activate()
            return _night(night, pipe, stage, logger)
    except Exception as e:
        create_markdown_artifact(key="night-failed", markdown=_failure(stage[0], e),
                                 description=f"the night failed in {stage[0]}")
        raise


def _recorded(dreamt: dict, pipe: Pipeline) -> dict:
    """Each of tonight's trials recorded, in the dream stage's MLflow run (`dream_trials.json`)
    and as the Prefect table artifact `dream-trials`: what was tried, and what it did to tau."""
    import mlflow
    from prefect.artifacts import create_table_artifact

    from lmsleep import jsonl
    from tasks.dream import trial_table

    dreams = pipe.paths.dreams / "dreams.jsonl"
    rows = trial_table(jsonl.read(dreams)) if dreams.exists() else []
    if rows:
        mlflow.log_table({k: [r[k] for r in rows] for k in rows[0]}, artifact_file="dream_trials.json")
        create_table_artifact(key="dream-trials", table=rows,
                              description=f"night {dreamt['night']}: {sum(r['reward'] for r in rows)} of "
                                          f"{len(rows)} dreams tried helped")
    return dreamt


def _night(night: NightParameters, pipe: Pipeline, stage: list, logger) -> dict:
    """The night's stages in order (or, after a crash, the rest of an unfinished night);
    `stage[0]` names the one running, for the failure report."""
    import mlflow
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from tasks import arrive, capture, curriculum, dream, evaluate, register, seed, validate, wake

    times: dict[str, float] = {}
    with mlflow.start_run(run_name="night") as parent:
        mlflow.set_tags({"git_commit": _git_commit(), "dvc_lock": _dvc_lock_hash()})
        def timed(name, *a, **k):
            stage[0] = name
            t0 = time.time()
            out = _stage(name, *a, **k)
            times[name] = round(time.time() - t0, 2)
            return out

        unfinished = register.pending(pipe)
        if unfinished is not None:  # dreamt, never committed: this run finishes that night
            from lmsleep.brain import read_state

            if not seed.holds(read_state(pipe.paths.night, pipe.params.base_model),
                              json.loads(pipe.paths.tonight.read_text())):
                raise RuntimeError(f"night {unfinished} was trained but never committed, and "
                                   f"{pipe.paths.tonight} is not its curriculum: it cannot be measured again")
            logger.warning(f"night {unfinished} was trained but never committed (a crash?): finishing it")
            mlflow.set_tag("resumed_night", unfinished)
        else:
            if night.world_day:
                timed("arrive", lambda p: {"file": str(arrive.arrive(p) or "")}, pipe)
            report = timed("capture", lambda p: capture.capture(p.paths.data), pipe, retries=2)
            logger.info(f"captured {report.good} episodes, quarantined {report.quarantined}"
                        + (f", refused {report.refused} (not regular files)" if report.refused else ""))
            if not curriculum.new_episodes(pipe):
                logger.info("nothing new to sleep on: the night ends before it begins")
                return {"night": None, "slept": False, "times": times}
            timed("wake", wake.wake, pipe)
            try:
                tonight = timed("curriculum", curriculum.curriculum, pipe, log_params=pipe.params.curriculum_for().__dict__,
                                artifacts=(pipe.paths.curriculum, pipe.paths.tonight))
            except curriculum.NothingToSleepOn as e:  # e.g. every new episode too long for the model
                logger.warning(f"nothing to sleep on: {e}")
                return {"night": None, "slept": False, "times": times}
            logger.info(f"night {tonight['night']}: {len(tonight['episodes'])} episodes, {tonight['lessons']} lessons")

            timed("validate", lambda p: {"passed": validate.validate_tonight(p).success}, pipe,
                  artifacts=(pipe.paths.reports / "validation.json",))
            p = pipe.params
            seeded = timed("seed", seed.seed, pipe, tags=["gpu"], log_params={
                "consolidation": p.consolidation, **{f"seeding.{k}": v for k, v in p.seeding.__dict__.items()},
                **{f"memory.{k}": v for k, v in p.memory.__dict__.items()}})
            mlflow.log_dict(seeded, "seed.json")  # each consolidation's rows, steps, loss, seconds; memory counts
            from flows.dream_trials import trials_fan_out

            dreamt = timed("dream", lambda q: _recorded(dream.dream(q, trials_fan_out(q.trials)), q), pipe,
                           tags=["gpu"],
                           log_params={"dream": p.dream, **{f"dreaming.{k}": v for k, v in p.dreaming.__dict__.items()}},
                           artifacts=(pipe.paths.reports / "dreams.json", pipe.paths.dreams / "dreams.jsonl"))
            mlflow.log_dict(dreamt, "dream.json")
        metrics = timed("evaluate", evaluate.evaluate, pipe, artifacts=(pipe.paths.reports / "evaluation.json",))
        decision = timed("register", lambda p: register.register(p, metrics, commit=False), pipe,
                         log_params=pipe.gates.__dict__, artifacts=(pipe.paths.reports / "metrics.json",))
        if decision.get("replay"):  # `pending` refuses a live brain behind the registry: this is a bug
            raise RuntimeError(f"register took night {metrics['night']} for a past night: the live brain was not "
                               "committed; see the log")
        mlflow.log_artifact(night.params_file)  # the params this night actually read
        if Path(night.params_file).resolve() == Path("params.yaml").resolve() and not (night.tracking_uri
                                                                                     or night.model_name):
            logger.info(f"lineage: {_dvc_commit()}")
        else:  # dvc.yaml's stages read params.yaml: recording this night there would stamp the wrong params
            logger.warning(f"lineage: not recorded in dvc.lock (this night read {night.params_file} and the run "
                           "form's registry settings, dvc.yaml reads params.yaml); they are logged with the MLflow run")
        # The night commits last, once it is decided and in dvc.lock: a kill before this line
        # leaves it pending, and the next run finishes it (records it again, then switches it in).
        stage[0] = "register"
        decision["committed"] = register.commit_night(pipe)
        mlflow.set_tag("dvc_lock_after", _dvc_lock_hash())
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and v is not None})
        mlflow.log_dict({"times": times, "decision": decision}, "night.json")
        run_id = parent.info.run_id
    summary = {**metrics, "promoted": decision["promoted"], "reasons": decision["reasons"],
               "version": decision["version"], "model": pipe.registry.model_name, "times": times,
               "mlflow_run": run_id}
    rows = [{"metric": k, "value": v} for k, v in metrics.items() if k not in ("night", "episodes")]
    create_table_artifact(key="night-metrics", table=rows, description=f"night {metrics['night']}")
    create_markdown_artifact(key="night-report", markdown=_markdown(summary))
    return summary


# What to do when a stage fails (the night-failed artifact); the traceback is in the run's logs.
WHAT_TO_DO = {
    "start": "params.yaml (or the run form's params_file) could not be read, the registry not reached, or "
             "another night is running here (NightInProgress: wait for it): the error says which.",
    "arrive": "the embedded world could not post its next day: check `world:` in params.yaml.",
    "capture": "an inbox file could not be read or written: check data/inbox/ and the disk; bad records "
               "themselves never fail a night (they go to data/quarantine/).",
    "wake": "the live brain (models/brain) could not be read or copied to models/prior: check the base model path "
            "and that the brain matches it, that params.yaml memory: is the one the brain grew with, and the disk.",
    "curriculum": "the teacher (models/prior) could not read tonight's episodes: check the base model path "
                  "and that the brain matches it.",
    "validate": "tonight's data failed its suite: reports/validation.json (and the MLflow run's artifacts) "
                "show which expectation; fix the episodes, or the bounds under `validate:` in params.yaml. "
                "Nothing was trained.",
    "seed": "training failed: see the log; tonight's episodes stay new, so the next run tries this night again.",
    "dream": "dreaming failed: see the log (data/dreams/set_aside.jsonl lists dreams the data suite refused); the "
             "live brain is untouched and the next run dreams this night again from the seeded brain.",
    "evaluate": "the measuring stick failed on the night's brain (models/night): see the log, then run the night "
                "again; the live brain is untouched.",
    "register": "the MLflow registry could not be written: check `registry.tracking_uri` and the store; the live "
                "brain moves only once the night is decided, so the next run finishes this night.",
}


def _failure(stage: str, error: BaseException) -> str:
    detail = getattr(error, "summary", None) or str(error)
    return "\n".join([f"# The night failed in `{stage}`", "", f"**Error**: `{type(error).__name__}`: {detail}", "",
                      f"**What to do**: {WHAT_TO_DO.get(stage, 'see the log.')}", "",
                      "The full traceback is in this flow run's logs."])


def _markdown(s: dict) -> str:
    verdict = "promoted to **champion**" if s["promoted"] else "kept as **challenger** (champion unchanged)"
    lines = [f"# Night {s['night']}", "", f"Version {s['version']} {verdict}.", "", "| gate | |", "|---|---|"]
    lines += [f"| {r.split(': ', 1)[0]} | {r.split(': ', 1)[1]} |" for r in s["reasons"]]
    lines += ["", "| stage | seconds |", "|---|---|"] + [f"| {k} | {v} |" for k, v in s["times"].items()]
    return "\n".join(lines)


def report(s: dict) -> str:
    """The short report `make run` prints."""
    if not s.get("slept", True):
        return "nothing new to sleep on: no captured episode is new to the brain (and the world's stream is over)"
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    lines = [f"night {s['night']}: {s['episodes']} episodes; model version {s['version']} "
             + ("promoted to champion" if s["promoted"] else "kept as challenger (champion unchanged)"), "",
             f"  {'closed-book, tonight':30s}{'after':>8s}{'ceiling':>9s}   (ceiling: open-book, before the night)"]
    for label, k in (("recall (trained forms)", "recall"), ("paraphrase (held-out forms)", "paraphrase"),
                     ("implication (two hops)", "implication")):
        lines.append(f"  {label:30s}{f(s.get(k)):>8s}{f(s.get(k + '_ceiling')):>9s}")
    lines += [f"  {'checks (probe-less episodes)':30s}{f(s.get('checks')):>8s}",
              f"  {'update: the new value':30s}{f(s.get('update')):>8s}{f(s.get('update_ceiling')):>9s}",
              f"  {'update: the old value still':30s}{f(s.get('update_stale')):>8s}{f(s.get('update_stale_ceiling')):>9s}", "",
              f"  {'kept':30s}{'before':>8s}{'after':>9s}"]
    for label, k in (("retention (trained forms)", "retention"), ("retention (held-out forms)", "retention_heldout"),
                     ("reading strangers (open)", "reading")):
        lines.append(f"  {label:30s}{f(s.get(k + '_before')):>8s}{f(s.get(k)):>9s}")
    lines.append("")
    lines += [f"  {r}" for r in s["reasons"]]
    lines += ["", "  seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in s["times"].items()),
              f"  MLflow run {s['mlflow_run']}; serve models:/{s['model']}@champion"]
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(sleep_cycle()))
