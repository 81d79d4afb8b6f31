"""The brain: the read-only base model plus the memory that nights write.

    models/brain/
      memory.json              base model path, nights slept, which episodes each night consolidated
      memory.safetensors       Knowledge Seeding's memory levels: expert banks, routers, which slots
                               are active (lmsleep/memory.py), with
      sleeper.json             the questions each night's teacher asked itself, and their level (replay)
      adapter_model.safetensors, adapter_config.json   or, for a baseline night, a PEFT LoRA adapter

Loading a brain = base model + memory. A brain that never slept is the base model alone.
No pickle anywhere: safetensors for weights, JSON for state.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from lmsleep.schedule import MEMORY_FILE, MEMORY_META, MemoryConfig  # torch-free


def fingerprint(base_model: str | Path) -> str:
    """Identity of a base model by content, not path (the project may move): its config and
    every byte of its weights. Computed once per process and file state (a 7B model's 14 GB
    take a while to hash, and every stage asks)."""
    base = Path(base_model)
    files = [base / "config.json", *sorted(base.glob("*.safetensors"))]
    return _fingerprint(str(base), tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files))


@lru_cache(maxsize=8)
def _fingerprint(base: str, files: tuple) -> str:
    h = hashlib.sha256()
    for name, _, _ in files:
        h.update(name.encode() + b"\0")
        with open(Path(base) / name, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    return h.hexdigest()[:16]


def _size_fingerprint(base: Path) -> str:
    """The first fingerprint (config + weight file sizes), still accepted in brains grown with it."""
    h = hashlib.sha256((base / "config.json").read_bytes())
    for f in sorted(base.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return h.hexdigest()[:16]


@dataclass
class MemoryState:
    base_model: str
    base_fingerprint: str = ""
    nights: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per night: {night, episodes, method}

    def slept_on(self) -> set[str]:
        return {eid for night in self.history for eid in night["episodes"]}


# -- the brain directory as a unit: written whole beside the live one, then switched in -----------
def staging(path: str | Path) -> Path:
    """Where the next brain is written whole before it is switched in (`commit`)."""
    return Path(f"{path}.next")


def complete(path: str | Path) -> bool:
    """Whether a brain directory was written whole (`save_brain` writes memory.json last)."""
    return (Path(path) / "memory.json").exists()


def commit(path: str | Path) -> None:
    """Switch the complete brain in `staging(path)` in for `path`, by renames: a crash at any
    point leaves either the old brain or the new one, never a mix (`recover` finishes or undoes
    a switch cut in the middle). The old brain is deleted last."""
    import shutil

    path, new, old = Path(path), staging(path), Path(f"{path}.old")
    if not complete(new):
        raise FileNotFoundError(f"{new} holds no complete brain (memory.json is written last)")
    if old.exists():
        shutil.rmtree(old)
    if path.exists():
        os.replace(path, old)
    os.replace(new, path)
    if old.exists():
        shutil.rmtree(old)


def copy(src: str | Path, dst: str | Path, ignore: tuple[str, ...] = ()) -> None:
    """A brain directory copied whole into `dst` (new), `memory.json` last: its presence says
    "complete", so a copy cut short is never taken for a brain."""
    import shutil

    src, dst = Path(src), Path(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("memory.json", *ignore))
    shutil.copy2(src / "memory.json", dst / "memory.json")


def recover(path: str | Path) -> None:
    """After a crash inside `commit`: no brain at `path` but the old one set aside -> finish the
    switch where the new one is complete, else put the old one back."""
    path, new, old = Path(path), staging(path), Path(f"{path}.old")
    if path.exists() or not old.exists():
        return
    os.replace(new if complete(new) else old, path)


def read_state(path: Path, base_model: str) -> MemoryState:
    recover(path)
    if not (Path(base_model) / "config.json").exists():
        raise FileNotFoundError(f"no Hugging Face model at base_model={base_model!r}")
    file = Path(path) / "memory.json"
    if not file.exists():
        return MemoryState(base_model=str(base_model), base_fingerprint=fingerprint(base_model))
    state = MemoryState(**json.loads(file.read_text()))
    if state.base_fingerprint != fingerprint(base_model) and state.base_fingerprint == _size_fingerprint(Path(base_model)):
        state.base_fingerprint = fingerprint(base_model)  # grown before weights were hashed: same model
    if state.base_fingerprint != fingerprint(base_model):
        raise ValueError(f"{file} was grown on the base model at {state.base_model!r}, and {base_model!r} "
                         "is a different model: point base_model back at it, or start a new brain directory")
    return state


def grown_memory(path: str | Path):
    """The `MemoryConfig` a brain's memory grew with (the safetensors header's metadata, no
    tensor read, no torch), or None for a brain without one."""
    from safetensors import safe_open

    file = Path(path) / MEMORY_FILE
    if not file.exists():
        return None
    with safe_open(str(file), "numpy") as f:
        return MemoryConfig(**json.loads(f.metadata()[MEMORY_META])["config"])


def check_memory(grown, wanted) -> None:
    """A brain's memory keeps the shape it grew with (`grown`): a changed params.yaml `memory:`
    (`wanted`) must not pass silently."""
    mine, asked = asdict(grown), asdict(wanted)
    changed = {k: (mine[k], asked[k]) for k in mine if mine[k] != asked[k]}
    if changed:
        raise ValueError(f"params.yaml memory: differs from the brain's ({', '.join(f'{k}: brain {a}, params {b}' for k, (a, b) in changed.items())}); "
                         "a brain keeps its memory's shape: restore those values or start a new brain directory")


def load_brain(path: Path, base_model: str):
    """(model, tokenizer, state): the base model with the memory of every night so far."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    state = read_state(path, base_model)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    if (Path(path) / MEMORY_FILE).exists():
        from lmsleep.memory import Memory

        Memory.load(model, path)
    elif (Path(path) / "adapter_config.json").exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, path, is_trainable=True)
    return model, tokenizer, state


def save_brain(model, state: MemoryState, path: Path) -> None:
    """Write the memory (expert banks, or a baseline's adapter) and its state; the base model is
    never copied."""
    from peft import PeftModel

    from lmsleep.memory import memory_of

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "memory.json").unlink(missing_ok=True)  # written last: its presence says "complete"
    if memory_of(model) is not None:
        memory_of(model).save(path)
    elif isinstance(model, PeftModel):
        save_adapter(model, path)
    else:
        raise TypeError("the brain's memory is memory levels or a PEFT adapter; got a plain model (merge-style "
                        "methods have no separate memory to save)")
    write_state(state, path)


def save_adapter(model, path: str | Path) -> None:
    """A PEFT adapter saved so the same training writes the same bytes: PEFT keeps
    `target_modules` as a set and writes it in the order of Python's string hashing, which
    changes from process to process; sorted, a night rebuilt from its dvc.lock matches it."""
    model.save_pretrained(str(path))
    for config in Path(path).rglob("adapter_config.json"):
        raw = json.loads(config.read_text())
        raw = {k: sorted(v) if k in ("target_modules", "modules_to_save") and isinstance(v, list) else v
               for k, v in raw.items()}
        config.write_text(json.dumps(raw, indent=2, sort_keys=True))


def write_state(state: MemoryState, path: str | Path) -> None:
    """`memory.json`, atomically; alone, it is a brain that never slept (the base model)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "memory.json.tmp"
    tmp.write_text(json.dumps(asdict(state), indent=2))
    os.replace(tmp, path / "memory.json")
