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


def run(*cmd, cwd, stdout_only=False):
    import tempfile

    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    # Output to files, not pipes: `dvc queue start` leaves a worker daemon that can inherit a
    # pipe's end, and reading a pipe to its end then waited for the daemon (a test hung 10 min).
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=err, text=True).returncode
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    assert code == 0, f"{' '.join(cmd)} failed:\n{stdout}\n{stderr}"
    return stdout if stdout_only else stdout + stderr


@pytest.fixture
def repo(tmp_path):
    # bench/ too: its stage (bench/dvc.yaml) must not disturb a night's commit, status or replay
    for folder in ("lmsleep", "tasks", "flows", "bench"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    birth = {k: getattr(MICRO_BIRTH, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                                   "num_heads", "tokens_per_step", "micro_tokens", "steps", "warmup_steps", "bf16", "compile",
                                                   "tokenizer_docs")}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)}, "birth": birth, "baselines": BASELINES, "curriculum": {},
        "seeding": SEEDING, "memory": MEMORY, "dreaming": DREAMING, "consolidation": "knowledge_seeding", "dream": True,
        "bench": {"days": 2, "base_probes": 10, "readers": 4}, "validate": LOOSE_LIMITS, "gates": OPEN_GATES,
        "registry": {"model_name": "micro", "tracking_uri": "sqlite:///mlflow/mlflow.db",
                     "artifact_location": "mlflow/artifacts", "experiment": "dvc-nights"}}))
    (tmp_path / ".gitignore").write_text("mlflow/\n__pycache__/\n")
    run("git", "init", "-q", cwd=tmp_path)
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "empty", cwd=tmp_path)
    run("dvc", "init", "-q", cwd=tmp_path)
    return tmp_path


def git_commit(repo, message: str) -> str:
    run("git", "add", "dvc.yaml", "params.yaml", "dvc.lock", "reports/metrics.json", "reports/nights.json", cwd=repo)
    run("git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", message, cwd=repo)
    return run("git", "rev-parse", "HEAD", cwd=repo).strip()


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def test_nights_by_dvc_and_prefect_are_recorded_and_a_past_one_rebuilds_from_its_dvc_lock(repo, harness, monkeypatch):
    from mlflow import MlflowClient

    # Night 0 by `dvc repro`: every stage runs, then a second repro does nothing.
    out = run("dvc", "repro", cwd=repo)
    for stage in ("birth", "arrive", "capture", "wake", "curriculum", "validate", "seed", "dream", "evaluate",
                  "register"):
        assert f"Running stage '{stage}'" in out
    metrics = {0: read(repo / "reports" / "metrics.json")}
    assert metrics[0]["night"] == 0 and metrics[0]["promoted"] is True
    assert read(repo / "models" / "brain" / "memory.json")["nights"] == 1  # committed by register
    assert not (repo / "mlruns").exists(), "artifacts go to registry.artifact_location"
    assert "Running stage" not in run("dvc", "repro", cwd=repo)
    assert "up to date" in run("dvc", "status", "dvc.yaml", cwd=repo)
    assert "recall" in run("dvc", "metrics", "show", "--json", cwd=repo)
    assert "nights.json" in run("dvc", "plots", "show", "--json", cwd=repo)
    revs = {0: git_commit(repo, "night 0")}

    # Night 1 by Prefect (a process of its own, as `make run` is: a night's bytes depend on its
    # process's torch threads, which other tests in this one change), recorded in dvc.lock.
    from prefect.settings import PREFECT_API_URL

    subprocess.run([sys.executable, "-c", "from flows.sleep_cycle import NightParameters, sleep_cycle\n"
                    "assert sleep_cycle(NightParameters())['night'] == 1"], cwd=repo, check=True,
                   env={**os.environ, "PYTHONPATH": str(repo), "PREFECT_API_URL": PREFECT_API_URL.value()})
    metrics[1] = read(repo / "reports" / "metrics.json")
    assert metrics[1]["night"] == 1
    monkeypatch.chdir(repo)
    monkeypatch.syspath_prepend(str(repo))
    assert "up to date" in run("dvc", "status", "dvc.yaml", cwd=repo)
    assert "Running stage" not in run("dvc", "repro", cwd=repo)
    revs[1] = git_commit(repo, "night 1")

    live = (repo / "models" / "brain" / "memory.json").read_text()
    client = MlflowClient(f"sqlite:///{repo / 'mlflow' / 'mlflow.db'}")
    champion = client.get_registered_model("micro").aliases["champion"]
    from flows.replay import replay

    # A past night, rebuilt from its dvc.lock (README, Lineage): the brain it started from is
    # restored from DVC's cache, and every stage from the curriculum on runs again. Night 1 only
    # (the second replay took 84 s of the suite): the one recorded by Prefect, not by `dvc repro`, and
    # the one whose brain is not the born model's, so both the record and the restore are tested.
    for night in (1,):
        out = replay(revs[night])
        assert out["night"] == night and out["rebuilt"]["night"] == night
        assert out["differ"] == [], f"night {night} rebuilt differently: {out['differ']}"
        assert out["recorded"] == metrics[night]
        assert out["changed"] == [], f"night {night}: the same lessons, the same brains, byte for byte"
        # A replay touches neither the live brain nor the registry, and leaves today as it was.
        assert (repo / "models" / "brain" / "memory.json").read_text() == live
        assert client.get_registered_model("micro").aliases["champion"] == champion
        assert len(client.search_model_versions("name = 'micro'")) == 2
        assert read(repo / "reports" / "metrics.json") == metrics[1]
        run("git", "diff", "--quiet", "HEAD", "--", "dvc.lock", "params.yaml", cwd=repo)  # today's record is back
        assert "up to date" in run("dvc", "status", "dvc.yaml", cwd=repo)
        assert not (repo / ".lmsleep-replay").exists()

    from flows.replay import ReplayRefused

    params = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(params.replace("readers: 4", "readers: 5"))
    with pytest.raises(ReplayRefused, match="uncommitted changes"):  # it would be lost
        replay(revs[0])
    (repo / "params.yaml").write_text(params)
    with pytest.raises(ReplayRefused, match="has no curriculum, dreaming.tau_share"):  # before those sections
        old = yaml.safe_load(params)
        del old["curriculum"], old["dreaming"]["tau_share"]
        (repo / "params.yaml").write_text(yaml.safe_dump(old))
        git_commit(repo, "a record from before the curriculum: section")
        replay("HEAD")
    assert not (repo / ".lmsleep-replay").exists()  # refused before today's reports were set aside
    (repo / "params.yaml").write_text(params)
    with pytest.raises(ReplayRefused, match="no wake stage"):  # a night recorded before the brain was kept
        lock = (repo / "dvc.lock").read_text()
        (repo / "dvc.lock").write_text(lock.replace("\n  wake:", "\n  woke:"))
        git_commit(repo, "an old record")
        replay("HEAD")
