"""The brain directory as a unit: written whole beside the live one, switched in by renames."""

import os

import pytest

from lmsleep.brain import check_memory, commit, grown_memory, recover, staging


def brain(path, tag):
    path.mkdir(parents=True)
    (path / "memory.safetensors").write_text(tag)
    (path / "memory.json").write_text(tag)


def test_commit_switches_the_whole_directory(tmp_path):
    live = tmp_path / "brain"
    brain(live, "old")
    brain(staging(live), "new")
    commit(live)
    assert (live / "memory.safetensors").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brain"]


def test_an_incomplete_staged_brain_is_never_switched_in(tmp_path):
    live = tmp_path / "brain"
    brain(live, "old")
    staging(live).mkdir()
    (staging(live) / "memory.safetensors").write_text("half")  # memory.json is written last
    with pytest.raises(FileNotFoundError, match="no complete brain"):
        commit(live)
    assert (live / "memory.json").read_text() == "old"


@pytest.mark.parametrize("staged_complete, expected", [(True, "new"), (False, "old")])
def test_recover_finishes_or_undoes_a_switch_cut_in_the_middle(tmp_path, staged_complete, expected):
    live = tmp_path / "brain"
    brain(live, "old")
    brain(staging(live), "new")
    if not staged_complete:
        (staging(live) / "memory.json").unlink()
    os.replace(live, tmp_path / "brain.old")  # the first rename of `commit`, then a crash
    recover(live)
    assert (live / "memory.safetensors").read_text() == expected


def test_the_fingerprint_reads_the_weight_bytes_not_their_size(tmp_path):
    from lmsleep.brain import fingerprint

    from lmsleep.brain import _fingerprint

    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    os.utime(weights, ns=(1, 1))
    before = fingerprint(tmp_path)
    weights.write_bytes(b"\x00" * 63 + b"\x01")  # same size, same mtime, one byte changed
    os.utime(weights, ns=(1, 1))
    _fingerprint.cache_clear()  # the in-process memo is keyed on name, size and mtime: all equal here
    assert fingerprint(tmp_path) != before


def test_an_adapter_is_saved_as_the_same_bytes_in_every_process(tmp_path, micro_dir):
    """PEFT writes `target_modules` in string-hash order, which PYTHONHASHSEED changes per process:
    a night rebuilt from its dvc.lock must write the adapter it recorded, byte for byte."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, torch\nfrom transformers import AutoModelForCausalLM\nfrom peft import LoraConfig, get_peft_model\n"
            "from lmsleep.brain import save_adapter\ntorch.manual_seed(0)\n"
            "model = AutoModelForCausalLM.from_pretrained(sys.argv[1])\n"
            "save_adapter(get_peft_model(model, LoraConfig(r=2, target_modules='all-linear')), sys.argv[2])")
    root = str(Path(__file__).resolve().parents[2])
    for seed in ("1", "2", "3"):
        subprocess.run([sys.executable, "-c", code, str(micro_dir), str(tmp_path / seed)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": root})
    saved = [(tmp_path / seed / "adapter_config.json").read_bytes() for seed in ("1", "2", "3")]
    assert saved[0] == saved[1] == saved[2]
    modules = json.loads(saved[0])["target_modules"]
    assert len(modules) > 2 and modules == sorted(modules)


def test_a_brain_keeps_the_shape_its_memory_grew_with(micro, tmp_path):
    from lmsleep.memory import Memory, MemoryConfig

    model, _ = micro
    assert grown_memory(tmp_path) is None  # a brain that never slept (or a baseline's adapter)
    Memory.attach(model, MemoryConfig(rank=4, keyed=True)).save(tmp_path)
    grown = grown_memory(tmp_path)  # read from the file's header, as wake does before any night's work
    assert grown == MemoryConfig(rank=4, keyed=True)
    check_memory(grown, MemoryConfig(rank=4, keyed=True))
    with pytest.raises(ValueError, match=r"rank: brain 4, params 8, keyed: brain True, params False"):
        check_memory(grown, MemoryConfig(rank=8))
