"""Rebuild a past night from its commit, compare it with what it recorded, come back to today.

    python -m flows.replay <git rev>             (what `make replay REV=<git rev>` runs)

A night (run by `make run` or `dvc repro`) is recorded in dvc.lock; commit dvc.lock and
reports/ after it (README, Lineage). This:
1. checks out that commit's dvc.lock and params.yaml (and sets today's reports/ aside);
2. restores the night's data and the brain it started from (`models/prior`, the `wake` stage's
   output) out of DVC's cache: `dvc checkout --force`;
3. runs every stage from the curriculum on again: `dvc repro --force --downstream curriculum`;
4. compares the rebuilt `reports/metrics.json` with the one the night recorded, and says which
   stages' outputs differ by a byte (`dvc status`);
5. restores today's dvc.lock, params.yaml, reports/ and data, whatever happened.
The live brain and the registry are never touched (tasks/register.py sees a past night).
Refused while a night is unfinished (its brain would be overwritten), with uncommitted changes
to dvc.lock or params.yaml, and for nights recorded before the `wake` stage existed
(their dvc.lock holds no brain to start from). The code is today's: a night rebuilds byte for
byte when the code that trains it is unchanged, on the same kind of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RECORD = ("dvc.lock", "params.yaml")
REBUILT = ("curriculum", "seed", "dream")  # the stages whose outputs are the night's lessons and brains


def _run(*cmd: str, quiet: bool = False) -> str:
    tool = Path(sys.executable).with_name(cmd[0])  # the venv's dvc; its stages call `python`: the venv's first
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(tool) if tool.exists() else cmd[0], *cmd[1:]], capture_output=quiet, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed" + (f":\n{done.stderr or done.stdout}" if quiet else ""))
    return done.stdout if quiet else ""


def _refuse_unless_safe(rev: str) -> dict:
    """The night's recorded metrics; refuses (RuntimeError) where a replay would lose something."""
    from tasks.common import load_pipeline
    from tasks.register import pending

    import mlflow

    pipe = load_pipeline()
    mlflow.set_tracking_uri(pipe.registry.uri())  # read only: is a later night registered (`pending`)
    if pending(pipe) is not None or any(Path("models").glob("*.next")):
        raise RuntimeError("a night is unfinished here: run it to the end first (make run), then replay")
    if _run("git", "status", "--porcelain", "--untracked-files=no", "--", *RECORD, quiet=True).strip():
        raise RuntimeError(f"uncommitted changes to {' or '.join(RECORD)}: commit them first (a replay restores "
                           "today's record from git)")
    if "\n  wake:" not in _run("git", "show", f"{rev}:dvc.lock", quiet=True):
        raise RuntimeError(f"{rev}'s dvc.lock has no wake stage: it was recorded before the brain each night "
                           "starts from was kept, and cannot be rebuilt")
    return json.loads(_run("git", "show", f"{rev}:reports/metrics.json", quiet=True))


def replay(rev: str) -> dict:
    """{night, recorded, rebuilt, differ: metrics that differ, changed: stages whose outputs differ}."""
    recorded = _refuse_unless_safe(rev)
    today = Path(tempfile.mkdtemp(prefix="lmsleep-replay-")) / "reports"
    shutil.copytree("reports", today)  # tracked or not (evaluation.json is DVC's, uncached): all come back
    try:
        _run("git", "checkout", rev, "--", *RECORD)
        _run("dvc", "checkout", "--force")
        _run("dvc", "repro", "--force", "--downstream", "curriculum")
        rebuilt = json.loads(Path("reports/metrics.json").read_text())
        status = json.loads(_run("dvc", "status", "--json", quiet=True) or "{}")
    finally:
        _run("git", "checkout", "HEAD", "--", *RECORD)
        shutil.rmtree("reports")
        shutil.copytree(today, "reports")
        shutil.rmtree(today.parent)
        _run("dvc", "checkout", "--force")
    differ = sorted(k for k in recorded.keys() | rebuilt.keys() if recorded.get(k) != rebuilt.get(k))
    return {"night": recorded["night"], "recorded": recorded, "rebuilt": rebuilt, "differ": differ,
            "changed": [s for s in REBUILT if s in status]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the git commit whose dvc.lock recorded the night")
    out = replay(ap.parse_args(argv).rev)
    print(f"\nnight {out['night']} rebuilt from its record:")
    for k in out["differ"]:
        print(f"  {k}: recorded {out['recorded'].get(k)!r}, rebuilt {out['rebuilt'].get(k)!r}")
    print("  metrics: " + ("identical" if not out["differ"] else f"{len(out['differ'])} differ"))
    print("  outputs: " + ("curriculum, seeded and night's brains identical, byte for byte" if not out["changed"]
                           else f"differ in {', '.join(out['changed'])}"))
    sys.exit(0 if not out["differ"] else 1)


if __name__ == "__main__":
    main()
