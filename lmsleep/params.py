"""params.yaml, typed: every knob in one file, read into the configs of the modules that use them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from lmsleep.baselines import CURRICULUM_KNOBS, METHODS, BaselineConfig
from lmsleep.birth import BirthConfig
from lmsleep.dreaming import DreamingConfig
from lmsleep.schedule import MemoryConfig
from lmsleep.seeding import SeedingConfig
from lmsleep.world import WorldConfig


@dataclass
class BenchConfig:
    """`make bench`: days of the stream, methods side by side, over seeds."""

    days: int = 10
    # The default fits 30 minutes on 2 cores (10 days x 3 seeds); Knowledge Seeding and sleep take
    # minutes a night each, so their tables run as queued DVC experiments (`make bench-queue`).
    methods: list[str] = field(default_factory=lambda: [
        "none", "sft_text", "context_distillation", "sequential_merge"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # baselines.seed of each run
    base_probes: int = 200  # base people sampled for retention
    readers: int = 100  # strangers for reading retention
    workers: int = 2  # (method, seed) runs in parallel processes, threads split between them
    threads: int = 2  # torch threads in all; each worker gets threads // workers (and the bytes depend on it)
    # Ablations, each a method name: overrides of `seeding:`, `memory:`, `dreaming:` (one that
    # overrides `dreaming:` is a `sleep` variant: it dreams) and `baselines:` (the curriculum).
    variants: dict[str, dict] = field(default_factory=dict)


@dataclass
class Params:
    world: WorldConfig
    birth: BirthConfig
    baselines: BaselineConfig
    bench: BenchConfig
    seeding: SeedingConfig = field(default_factory=SeedingConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    dreaming: DreamingConfig = field(default_factory=DreamingConfig)
    base_model: str = "models/base"
    # What the pipeline's `seed` stage runs: knowledge_seeding, or a baseline (context_distillation, sft_text).
    consolidation: str = "knowledge_seeding"
    # Whether the pipeline's `dream` stage dreams after Knowledge Seeding (`dreaming:`); false, or
    # a baseline consolidation: tonight's brain (models/night) is the seeded one as it is.
    dream: bool = True
    # Knowledge Seeding's curriculum: overrides of `baselines:`'s curriculum knobs (CURRICULUM_KNOBS)
    # for the nights that consolidate by Knowledge Seeding. The keyed memory learns what a lesson
    # names and teaches, nothing else, so its night asks about every fact (docs/knowledge-seeding.md,
    # "What the lessons cover"); the baselines keep `baselines:` as they were measured.
    curriculum: dict = field(default_factory=dict)

    def curriculum_for(self, consolidation: str | None = None) -> BaselineConfig:
        """The teacher's curriculum knobs for a night that consolidates by `consolidation` (default:
        params.yaml's): `baselines:` for a baseline, `baselines:` + `curriculum:` for Knowledge Seeding."""
        if (consolidation or self.consolidation) in METHODS or not self.curriculum:
            return self.baselines
        unknown = sorted(set(self.curriculum) - set(CURRICULUM_KNOBS))
        if unknown:
            raise ValueError(f"params.yaml: curriculum: may set the curriculum's knobs {list(CURRICULUM_KNOBS)}, "
                             f"not {unknown}")
        try:
            return build_section(BaselineConfig, {**asdict(self.baselines), **self.curriculum}, "curriculum")
        except ValueError as e:  # BaselineConfig names its own section: say where the value came from
            raise ValueError(f"params.yaml curriculum: {e}") from e


def build_section(cls, raw: dict | None, where: str):
    """`cls(**raw)` for the params.yaml section `where`; an unknown key is an error naming it."""
    raw = raw or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"params.yaml: unknown key(s) {unknown} under '{where}'; known: {sorted(known)}")
    return cls(**raw)


def read_yaml(path: str | Path) -> dict:
    """params.yaml as a dict; a missing or empty file is {} (every default)."""
    import yaml

    path = Path(path)
    return (yaml.safe_load(path.read_text()) if path.exists() else None) or {}


def load_born(path: str | Path = "params.yaml") -> Params:
    """params.yaml for an entry script that starts from the model it names (`base_model`): a clear
    error before any work where there is none, or no such file (here a missing file is a typo in
    `--params`, not a wish for every default)."""
    if not Path(path).is_file():
        raise SystemExit(f"no params file at {str(path)!r}")
    params = load_params(path)
    if not (Path(params.base_model) / "config.json").exists():
        raise SystemExit(f"no model at {params.base_model!r}: run `make birth` (or set base_model in params.yaml)")
    return params


def validation_limits(path: str | Path = "params.yaml"):
    """params.yaml's `validate:` bounds (lmsleep.checks.ValidationLimits), which the bench holds its
    dreams to as the pipeline's GX suites do."""
    from lmsleep.checks import ValidationLimits

    return build_section(ValidationLimits, read_yaml(path).get("validate"), "validate")


def load_params(path: str | Path = "params.yaml", raw: dict | None = None) -> Params:
    """Read params.yaml (or an already-read `raw`); an unknown key is an error."""
    raw = read_yaml(path) if raw is None else raw
    params = Params(
        world=build_section(WorldConfig, raw.get("world"), "world"),
        birth=build_section(BirthConfig, raw.get("birth"), "birth"),
        baselines=build_section(BaselineConfig, raw.get("baselines"), "baselines"),
        bench=build_section(BenchConfig, raw.get("bench"), "bench"),
        seeding=build_section(SeedingConfig, raw.get("seeding"), "seeding"),
        memory=build_section(MemoryConfig, raw.get("memory"), "memory"),
        dreaming=build_section(DreamingConfig, raw.get("dreaming"), "dreaming"),
        base_model=raw.get("base_model", "models/base"),
        consolidation=raw.get("consolidation", "knowledge_seeding"),
        dream=bool(raw.get("dream", True)),
        curriculum=raw.get("curriculum") or {},
    )
    if not isinstance(params.curriculum, dict):
        raise ValueError(f"params.yaml: curriculum: must map the curriculum's knobs to values, got {params.curriculum!r}")
    params.curriculum_for("knowledge_seeding")  # a typo under curriculum: fails here, not at night
    return params
