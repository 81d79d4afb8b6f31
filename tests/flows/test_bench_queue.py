"""The full bench table as queued DVC experiments: `make bench-queue` (bench/dvc.yaml) with the
real `dvc exp run --queue`, `dvc queue start -j 2` and `dvc exp show` on a temporary git + DVC
repo, two methods on the micro world."""

import json
import shutil
import time

import yaml

from tests.conftest import MICRO_WORLD
from tests.flows.test_dvc import ROOT, run
from tests.flows.test_sleep_cycle import DREAMING, MEMORY, SEEDING
from tests.unit.test_entry_scripts import BASELINES


def test_queued_bench_experiments_run_side_by_side_and_show_their_tables(tmp_path, micro_dir):
    repo = tmp_path / "repo"
    for folder in ("lmsleep", "tasks", "flows", "bench"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")  # the project's venv: the Makefile's tools
    shutil.copytree(micro_dir, repo / "models" / "base")  # as born by `make birth` (not in DVC yet)
    (repo / "reports").mkdir()
    (repo / "reports" / "birth.json").write_text("{}")
    (repo / "params.yaml").write_text(yaml.safe_dump({
        "base_model": "models/base", "birth": {"threads": 2},
        "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)},
        "baselines": BASELINES, "curriculum": {}, "seeding": SEEDING, "memory": MEMORY, "dreaming": DREAMING,
        "bench": {"days": 1, "seeds": [0], "methods": ["none"], "base_probes": 8, "readers": 4, "workers": 1,
                  "threads": 2}}))
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")  # reports/bench/ must stay committable
    run("git", "init", "-q", cwd=repo)
    run("git", "config", "user.email", "t@t", cwd=repo)  # DVC commits each experiment
    run("git", "config", "user.name", "t", cwd=repo)
    run("dvc", "init", "-q", cwd=repo)
    run("git", "add", ".", cwd=repo)
    run("git", "commit", "-q", "-m", "code", cwd=repo)

    # -o: the venv is the project's, installed already
    run("make", "-o", ".venv/.installed", "bench-queue", "QUEUE=none sft_text", "QUEUED=t", cwd=repo)
    try:
        deadline = time.time() + 600
        while True:
            status = run("dvc", "queue", "status", cwd=repo)
            if "Queued" not in status and "Running" not in status:
                break
            assert time.time() < deadline, status
            time.sleep(5)
    finally:
        run("dvc", "queue", "stop", "--kill", cwd=repo)  # the workers we started, whatever happened
    logs = "\n".join(run("dvc", "queue", "logs", f"bench-{m}-t", cwd=repo)[-3000:] for m in ("none", "sft_text"))
    assert status.count("Success") == 2, f"{status}\n{logs}"

    shown = json.loads(run("dvc", "exp", "show", "--json", cwd=repo, stdout_only=True))
    tables = {}
    for commit in shown:
        for exp in commit.get("experiments") or []:
            for rev in exp["revs"]:
                data = rev["data"]
                if rev.get("name", "").startswith("bench-"):
                    tables[rev["name"]] = (data["params"]["params.yaml"]["data"]["bench"]["methods"],
                                           data["metrics"]["reports/bench/bench_summary.json"]["data"])
    assert set(tables) == {"bench-none-t", "bench-sft_text-t"}, shown
    for name, (methods, summary) in tables.items():
        assert methods == [name.removeprefix("bench-").removesuffix("-t")]
        # one method per experiment: flat columns, the same in every experiment's row
        assert 0.0 <= summary["recall"] <= 1.0 and 0.0 <= summary["reading"] <= 1.0 and summary["seconds_per_night"] >= 0
    assert tables["bench-none-t"][1].keys() == tables["bench-sft_text-t"][1].keys()
    assert not (repo / "reports" / "bench").exists(), "experiments run in their own copies, not the workspace"
