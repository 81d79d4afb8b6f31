"""What every stage shares: where things live, the pipeline's params, JSONL in and out."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

from lmsleep import jsonl
from lmsleep.checks import ValidationLimits
from lmsleep.params import Params, build_section, load_params, read_yaml


@dataclass
class Gates:
    """When `champion` may move to tonight's model (params.yaml `gates:`)."""

    # Judged on held-out forms: a night must have learned facts, not strings.
    min_learned: float = 0.3  # closed-book on tonight's paraphrases (or, without probes, on the checks)
    max_retention_drop: float = 0.1  # held-out retention (earlier days, base population) vs before the night
    min_reading: float = 0.8  # open-book accuracy on never-seen people after the night


@dataclass
class Registry:
    """Where nights are tracked and models registered (params.yaml `registry:`)."""

    model_name: str = "lmsleep"
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_location: str = "mlflow/artifacts"
    experiment: str = "lmsleep-nights"

    def uri(self) -> str:
        """The tracking URI with a relative SQLite path made absolute (MLflow caches one store per
        URI string, so a relative one would follow the first working directory it met)."""
        prefix = "sqlite:///"
        if self.tracking_uri.startswith(prefix) and not self.tracking_uri.startswith(prefix + "/"):
            path = Path(self.tracking_uri[len(prefix):]).resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return prefix + str(path)
        return self.tracking_uri

    def activate(self) -> None:
        """Point MLflow at this store and experiment (created with its artifact location, so
        nothing lands in ./mlruns)."""
        import mlflow

        mlflow.set_tracking_uri(self.uri())
        if mlflow.get_experiment_by_name(self.experiment) is None:
            mlflow.create_experiment(self.experiment,
                                     artifact_location=Path(self.artifact_location).resolve().as_uri())
        mlflow.set_experiment(self.experiment)


@dataclass
class Trials:
    """Where the dream stage's trials run (params.yaml `trials:`): each is a Prefect task run of
    `tasks.dream.trial`, mapped over the kept dreams on this task runner."""

    runner: str = "thread"  # thread: a local pool; dask: prefect-dask; ray: prefect-ray
    workers: int = 2  # local processes (dask) or threads (thread)
    address: str | None = None  # an existing Dask scheduler or Ray cluster to join instead

    def __post_init__(self):
        if self.runner not in ("thread", "dask", "ray"):
            raise ValueError(f"params.yaml trials.runner must be thread, dask or ray, got {self.runner!r}")


@dataclass
class Paths:
    data: Path = Path("data")
    # The brain, night by night: `brain` is the live one (every committed night; what the next
    # night starts from); `wake` copies it to `prior`, what tonight's stages read and DVC caches
    # with the night; `seed` writes `seeded`, `dream` writes `night` (tonight's candidate, what
    # evaluate and register read); register switches `night` in as `brain` once decided.
    brain: Path = Path("models/brain")
    prior: Path = Path("models/prior")
    seeded: Path = Path("models/seeded")
    night: Path = Path("models/night")
    reports: Path = Path("reports")

    def __post_init__(self):
        for name in ("data", "brain", "prior", "seeded", "night", "reports"):
            setattr(self, name, Path(getattr(self, name)))

    @property
    def tau(self) -> Path:
        """The teacher's own Q/A set aside to judge dreams: taught by neither seed nor dream."""
        return self.data / "curriculum" / "tau.jsonl"

    @property
    def dreams(self) -> Path:
        return self.data / "dreams"

    @property
    def curriculum(self) -> Path:
        return self.data / "curriculum" / "curriculum.jsonl"

    @property
    def tonight(self) -> Path:
        return self.data / "curriculum" / "tonight.json"


@dataclass
class Pipeline:
    params: Params
    gates: Gates = field(default_factory=Gates)
    registry: Registry = field(default_factory=Registry)
    paths: Paths = field(default_factory=Paths)
    limits: ValidationLimits = field(default_factory=ValidationLimits)
    trials: Trials = field(default_factory=Trials)


def load_pipeline(path: str | Path = "params.yaml") -> Pipeline:
    raw = read_yaml(path)
    pipe = Pipeline(load_params(path, raw), build_section(Gates, raw.get("gates"), "gates"),
                    build_section(Registry, raw.get("registry"), "registry"),
                    build_section(Paths, raw.get("paths"), "paths"),
                    build_section(ValidationLimits, raw.get("validate"), "validate"),
                    build_section(Trials, raw.get("trials"), "trials"))
    if pipe.params.dream and not pipe.params.dreaming.seeding:
        raise ValueError("params.yaml dreaming.seeding: false is the bench's dreams_only ablation; the pipeline's seed "
                         "stage always seeds the lessons: set it back to true (or dream: false)")
    return pipe


def stage_cli(stage, doc: str, argv: list[str] | None = None) -> dict:
    """`python -m tasks.<stage>`, what dvc.yaml runs: `--params`, the night lock, the stage."""
    import argparse

    from tasks.lock import night_lock

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    with night_lock(what=f"the {stage.__name__} stage"):
        return stage(load_pipeline(args.params))


def crash_point(name: str) -> None:
    """Fault injection for the crash tests: with LMSLEEP_CRASH_AT=<name> this process dies here
    by SIGKILL (no cleanup, no exception handler runs), as it would in a power cut."""
    if os.environ.get("LMSLEEP_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def dreams_tonight(pipe: Pipeline) -> bool:
    """Whether tonight dreams: Knowledge Seeding's memory to dream into, and `dream: true`."""
    return pipe.params.dream and pipe.params.consolidation == "knowledge_seeding"


def read_tonight(pipe: Pipeline) -> tuple[dict, list[dict]]:
    """The curriculum stage's `tonight.json` and tonight's episodes, in capture order."""
    tonight = json.loads(pipe.paths.tonight.read_text())
    ids = set(tonight["episodes"])
    return tonight, [ep for ep in jsonl.read(pipe.paths.data / "episodes") if ep["id"] in ids]
