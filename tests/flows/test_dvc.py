"""Lineage with the real DVC CLI on a real (temporary) git + DVC repo, on the micro world."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import MICRO_BIRTH, MICRO_WORLD
from tests.flows.test_sleep_cycle import BASELINES, DREAMING, LOOSE_LIMITS, MEMORY, OPEN_GATES, SEEDING

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(*cmd, cwd):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def repo(tmp_path):
    for folder in ("lmsleep", "tasks", "flows"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    birth = {k: getattr(MICRO_BIRTH, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                                   "num_heads", "tokens_per_step", "micro_tokens", "steps", "warmup_steps", "bf16", "compile",
                                                   "tokenizer_docs")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)}, "birth": birth, "baselines": BASELINES,
        "seeding": SEEDING, "memory": MEMORY, "dreaming": DREAMING, "consolidation": "knowledge_seeding", "dream": True,
        "bench": {"days": 2, "base_probes": 10, "readers": 4}, "validate": LOOSE_LIMITS, "gates": OPEN_GATES,
        "registry": {"model_name": "micro", "tracking_uri": "sqlite:///mlflow/mlflow.db",
                     "artifact_location": "mlflow/artifacts", "experiment": "dvc-nights"}}))
    (tmp_path / ".gitignore").write_text("mlflow/\n__pycache__/\n")
    run("git", "init", "-q", cwd=tmp_path)
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "empty", cwd=tmp_path)
    run("dvc", "init", "-q", cwd=tmp_path)
    return tmp_path


def test_dvc_repro_runs_a_night_then_does_nothing(repo):
    out = run("dvc", "repro", cwd=repo)
    for stage in ("birth", "arrive", "capture", "curriculum", "validate", "seed", "dream", "evaluate", "register"):
        assert f"Running stage '{stage}'" in out
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    assert metrics["night"] == 0 and metrics["promoted"] is True
    assert json.loads((repo / "models" / "brain" / "memory.json").read_text())["nights"] == 1
    assert not (repo / "mlruns").exists(), "artifacts go to registry.artifact_location"
    again = run("dvc", "repro", cwd=repo)
    assert "Running stage" not in again
    assert "up to date" in run("dvc", "status", cwd=repo)
    shown = run("dvc", "metrics", "show", "--json", cwd=repo)
    assert "recall" in shown and "paraphrase" in shown
    plots = run("dvc", "plots", "show", "--json", cwd=repo)
    assert "nights.json" in plots


def test_a_night_from_prefect_leaves_dvc_status_clean(repo, harness, monkeypatch):
    run("dvc", "repro", cwd=repo)  # night 0 by DVC
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    from flows.sleep_cycle import NightParameters, sleep_cycle

    summary = sleep_cycle(NightParameters())  # night 1 by Prefect, recorded in dvc.lock
    assert summary["night"] == 1
    assert "up to date" in run("dvc", "status", cwd=repo)
    assert "Running stage" not in run("dvc", "repro", cwd=repo)
