"""register: log tonight's brain as an MLflow model, and move `champion` only if the gates pass.

    python -m tasks.register

1. The brain is logged as a pyfunc (`tasks/brain_model.py`: base + memory, answers questions)
   and registered as a new version of `registry.model_name`, aliased `challenger`.
2. The gates (params.yaml `gates:`), judged on held-out question forms: tonight's facts learned
   (paraphrases, or the checks of probe-less episodes), held-out retention dropped no more than
   allowed, reading still above its floor, and no worse than the current champion on the
   probes both should know (earlier nights and the base population). A figure that could not
   be measured (null) passes its gate as "not measured", and says so.
3. Pass: `champion` moves to this version. Fail: it stays; the version is tagged with why.
   Rollback is moving the alias back: `MlflowClient().set_registered_model_alias(name, "champion", v)`.
4. The night commits: its brain (`models/night`) becomes the live brain (`models/brain`), what
   the next night starts from, whether or not it was promoted (the brain moves forward; the
   registry decides what is served). Here as the stage's last step; the flow does it itself,
   after `dvc commit` has recorded the night (`register(..., commit=False)`).
A past night rebuilt (`make replay`, or `dvc repro` after a code change: the live brain is not
where the night starts, or the registry holds a later night) is measured and published, and
touches neither the registry nor the live brain.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tasks.common import Gates, Pipeline, crash_point, load_pipeline
from tasks.lock import night_lock

MODEL_CODE = Path(__file__).with_name("brain_model.py")


def _gate(ok, label: str, detail: str) -> tuple[bool, str]:
    """(passed, reason); `ok` None means the figure could not be measured: it passes, saying so."""
    if ok is None:
        return True, f"not measured: {label}"
    return ok, f"{label} {detail}"


def _fmt(v) -> str:
    return "null" if v is None else f"{v:.3f}"


def decide(metrics: dict, gates: Gates, champion_score: float | None, challenger_score: float | None):
    """(promote, reasons): every gate is checked and explained, pass or fail."""
    learned_name = "paraphrase" if metrics.get("paraphrase") is not None else "checks"
    learned = metrics.get(learned_name)
    before, after = metrics.get("retention_heldout_before"), metrics.get("retention_heldout")
    reading = metrics.get("reading")
    checks = [
        _gate(None if learned is None else learned >= gates.min_learned,
              f"learned ({learned_name})", f"{_fmt(learned)} vs floor {gates.min_learned:.3f}"),
        _gate(None if before is None or after is None else before - after <= gates.max_retention_drop,
              "held-out retention", f"{_fmt(before)} -> {_fmt(after)}, allowed drop {gates.max_retention_drop:.3f}"),
        _gate(None if reading is None else reading >= gates.min_reading,
              "reading", f"{_fmt(reading)} vs floor {gates.min_reading:.3f}"),
    ]
    if champion_score is not None and challenger_score is not None:
        checks.append((challenger_score >= champion_score,
                       f"shared probes {challenger_score:.3f} vs champion {champion_score:.3f}"))
    else:
        checks.append((True, "no champion yet" if champion_score is None else "not measured: shared probes"))
    reasons = [("pass: " if ok else "FAIL: ") + why for ok, why in checks]
    return all(ok for ok, _ in checks), reasons


def shared_score(model_uri: str, probes: list[dict]) -> float | None:
    import mlflow
    import pandas as pd

    from lmsleep.evaluation import exact_match

    if not probes:
        return None
    answers = mlflow.pyfunc.load_model(model_uri).predict(pd.DataFrame({"question": [p["question"] for p in probes]}))
    return sum(exact_match(a, p["answer"]) for a, p in zip(answers, probes)) / len(probes)


def publish(pipe: Pipeline, night: dict) -> None:
    """`reports/metrics.json` (this night, for `dvc metrics diff`) and `reports/nights.json`
    (every night, for `dvc plots`)."""
    from tasks.common import write_json

    write_json(pipe.paths.reports / "metrics.json", night)
    history_file = pipe.paths.reports / "nights.json"
    history = [m for m in (json.loads(history_file.read_text()) if history_file.exists() else [])
               if m["night"] != night["night"]]
    write_json(history_file, sorted(history + [night], key=lambda m: m["night"]))


REQUIREMENTS = ("torch", "transformers", "peft", "safetensors", "pandas", "mlflow")
EXAMPLE_QUESTIONS = ["Where was Ana Lo born?", "Which company does Ana Lo work for?"]


def log_brain(pipe: Pipeline, metrics: dict):
    """The brain as an MLflow model: the memory (the brain directory) as its artifact and the
    base model by reference (its path; memory.json holds the fingerprint of its bytes, checked
    on every load), never a copy: a user's 7B base
    would otherwise be copied into every night's version. Signature, input example, pinned
    requirements; the night's metrics are linked to the logged model."""
    from importlib.metadata import version

    import mlflow
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    base = Path(pipe.params.base_model).resolve()
    example = pd.DataFrame({"question": EXAMPLE_QUESTIONS})
    info = mlflow.pyfunc.log_model(
        name="brain", python_model=str(MODEL_CODE), artifacts={"memory": str(pipe.paths.night)},
        model_config={"base_model": str(base)},  # loading checks the brain's fingerprint of it (read_state)
        code_paths=[str(Path(__file__).resolve().parents[1] / "lmsleep")],
        signature=ModelSignature(inputs=Schema([ColSpec("string", "question"),  # context: open-book questions
                                                ColSpec("string", "context", required=False)]),
                                 outputs=Schema([ColSpec("string")])),
        input_example=example,
        pip_requirements=[f"{p}=={version(p)}" for p in REQUIREMENTS])
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    mlflow.log_metrics(numbers, model_id=info.model_id)
    return info


def version_of_night(name: str, night: int):
    """The registered version of `night` (tagged at creation), or None."""
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{name}' and tags.night = '{night}'")
    return min(found, key=lambda v: int(v.version)) if found else None


def decided(version) -> bool:
    """Whether a registered version's gates were judged (its `promoted` tag, written first)."""
    return version is not None and "promoted" in version.tags


def _decision(version) -> tuple[bool, list[str]]:
    return version.tags["promoted"] == "true", version.tags["reasons"].split("; ")


def last_registered(name: str) -> int:
    """The latest night the registry holds a version of (-1: none)."""
    from mlflow import MlflowClient

    return max((int(v.tags.get("night", -1)) for v in MlflowClient().search_model_versions(f"name = '{name}'")),
               default=-1)


class LiveBrainBehind(RuntimeError):
    pass


def pending(pipe: Pipeline) -> int | None:
    """The night dreamt but not committed (`models/night` one night ahead of the live brain: a
    night cut after `dream`), or None: a rerun finishes that night (evaluate, register) instead
    of starting the next. A live brain that is missing or old (a new machine, a deleted
    directory: the registry or the night's brain is past it) is refused, never guessed."""
    from lmsleep.brain import complete, read_state, recover

    recover(pipe.paths.night)  # a switch of models/night cut in the middle is finished first
    base, name = pipe.params.base_model, pipe.registry.model_name
    live = read_state(pipe.paths.brain, base).nights
    ahead = read_state(pipe.paths.night, base).nights if complete(pipe.paths.night) else 0
    last = last_registered(name)
    if ahead == live + 1 and last <= live:
        return live
    if ahead > live + 1 or last >= live:
        raise LiveBrainBehind(
            f"the live brain {pipe.paths.brain} holds {live} nights, but {pipe.paths.night} holds {ahead} and the "
            f"registry '{name}' holds later nights than it: the live brain is missing or old. If {pipe.paths.night} "
            f"is the last committed night (`dvc pull` on a new machine), copy it to {pipe.paths.brain}; otherwise "
            f"restore {pipe.paths.brain} from where it was kept")
    return None


def commit_night(pipe: Pipeline) -> bool:
    """The night commits: its brain becomes the live one, copied whole beside it and switched
    in by renames (`models/night` stays: it is the dream stage's output in dvc.lock). Only one
    night forward: never a replay of a past night, never twice."""
    import shutil

    from lmsleep.brain import commit, copy, read_state, staging
    from tasks.dream import OUTPUTS

    base = pipe.params.base_model
    if read_state(pipe.paths.night, base).nights != read_state(pipe.paths.brain, base).nights + 1:
        return False
    staged = staging(pipe.paths.brain)
    if staged.exists():
        shutil.rmtree(staged)
    copy(pipe.paths.night, staged, ignore=(OUTPUTS,))  # the dream stage's own record stays with it
    crash_point("register:staged")
    commit(pipe.paths.brain)
    return True


def register(pipe: Pipeline, metrics: dict | None = None, commit: bool = True) -> dict:
    """Once per night: a rerun after a crash finds the night's version (tagged `night` when it is
    created) and goes on from there; `champion` moves only after the decision, the live brain
    last (`commit_night`; the flow passes `commit=False` and commits after `dvc commit`, so a
    night is in dvc.lock before it goes live). A past night rebuilt returns `replay: True`."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lmsleep.brain import read_state
    from tasks.evaluate import kept_probes

    metrics = metrics or json.loads((pipe.paths.reports / "evaluation.json").read_text())
    name = pipe.registry.model_name
    client = MlflowClient()
    existing = version_of_night(name, metrics["night"])
    # A past night rebuilt (`dvc repro`, flows/replay.py): the live brain is not where this
    # night starts, or the registry has moved past it. Measured and published; the registry and
    # the live brain are untouched.
    live = read_state(pipe.paths.brain, pipe.params.base_model).nights
    if live != metrics["night"] or last_registered(name) > metrics["night"]:
        if decided(existing):
            promote, reasons = _decision(existing)
        else:
            promote, reasons = None, [f"replay: the registry holds no decision on night {metrics['night']}"]
        version = str(existing.version) if existing else None
        publish(pipe, {**metrics, "promoted": promote, "reasons": reasons, "version": version})
        return {"version": version, "promoted": promote, "reasons": reasons, "replay": True}
    if decided(existing):  # decided before a crash: finish what followed the decision
        promote, reasons = _decision(existing)
        version = str(existing.version)
        client.set_registered_model_alias(name, "challenger", version)
        if promote:
            client.set_registered_model_alias(name, "champion", version)
        publish(pipe, {**metrics, "promoted": promote, "reasons": reasons, "version": version})
        if commit:
            commit_night(pipe)
        champion = client.get_registered_model(name).aliases.get("champion")
        return {"version": version, "promoted": promote, "reasons": reasons, "champion": champion}
    if existing is None:
        info = log_brain(pipe, metrics)
        # Registered with its night's tag in one call: a crash after it finds this version again.
        version = str(mlflow.register_model(info.model_uri, name, tags={"night": str(metrics["night"])}).version)
    else:
        version = str(existing.version)
    crash_point("register:versioned")
    client.set_registered_model_alias(name, "challenger", version)
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    state = read_state(pipe.paths.night, pipe.params.base_model)
    probes = [p for family in kept_probes(pipe, state, metrics["night"]).values() for p in family]
    champion_score = shared_score(f"models:/{name}@champion", probes) if champion else None
    challenger_score = shared_score(f"models:/{name}/{version}", probes) if champion else None
    promote, reasons = decide(metrics, pipe.gates, champion_score, challenger_score)
    client.set_model_version_tag(name, version, "reasons", "; ".join(reasons))
    client.set_model_version_tag(name, version, "promoted", str(promote).lower())  # "decided"
    if promote:  # after the decision is recorded: champion never points at an undecided version
        client.set_registered_model_alias(name, "champion", version)
    publish(pipe, {**metrics, "promoted": promote, "reasons": reasons, "version": version})
    crash_point("register:decided")
    if commit:
        commit_night(pipe)  # last: the live brain moves only once the night is decided
    return {"version": version, "promoted": promote, "reasons": reasons,
            "champion": version if promote else (champion.version if champion else None)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    pipe = load_pipeline(args.params)
    pipe.registry.activate()
    with night_lock(what="the register stage"):
        print(json.dumps(register(pipe), indent=2))


if __name__ == "__main__":
    main()
