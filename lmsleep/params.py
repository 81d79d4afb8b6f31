"""params.yaml, typed: every knob in one file, read into the configs of the modules that use them."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from lmsleep.baselines import BaselineConfig
from lmsleep.birth import BirthConfig
from lmsleep.world import WorldConfig


@dataclass
class BenchConfig:
    """`make bench`: days of the stream, methods side by side."""

    days: int = 5
    methods: list[str] = field(default_factory=lambda: [
        "none", "sft_text", "context_distillation", "sequential_merge"])
    base_probes: int = 200  # base people sampled for retention
    readers: int = 100  # strangers for reading retention


@dataclass
class Params:
    world: WorldConfig
    birth: BirthConfig
    baselines: BaselineConfig
    bench: BenchConfig
    base_model: str = "models/base"


def _build(cls, raw: dict | None, where: str):
    raw = raw or {}
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"params.yaml: unknown key(s) {unknown} under '{where}'; known: {sorted(known)}")
    return cls(**raw)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read params.yaml; a missing file gives the defaults, an unknown key is an error."""
    import yaml

    path = Path(path)
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    raw = raw or {}
    return Params(
        world=_build(WorldConfig, raw.get("world"), "world"),
        birth=_build(BirthConfig, raw.get("birth"), "birth"),
        baselines=_build(BaselineConfig, raw.get("baselines"), "baselines"),
        bench=_build(BenchConfig, raw.get("bench"), "bench"),
        base_model=raw.get("base_model", "models/base"),
    )
