"""Rebuild a past night from its commit, compare it with what it recorded, come back to today.

    python -m flows.replay <git rev>             (what `make replay REV=<git rev>` runs)
    python -m flows.replay --restore             (today back, after a replay that was cut short)

A night (run by `make run` or `dvc repro`) is recorded in dvc.lock; commit dvc.lock,
params.yaml and reports/ after it (README, Lineage). Holding the night lock throughout, this:
1. sets today's reports/ aside in `.lmsleep-replay/` (with a note of what is going on: a
   replay cut short is finished by `--restore`, and no night starts until it is);
2. checks out that commit's dvc.lock and params.yaml, and restores the night's data and the
   brain it started from (`models/prior`) out of DVC's cache: `dvc checkout --force`;
3. runs every stage from the curriculum on again: `dvc repro --force --downstream curriculum`;
4. compares the rebuilt `reports/metrics.json` with the one the night recorded, and the
   curriculum's, seeded and night's brains' hashes with the ones its dvc.lock recorded;
5. restores today's dvc.lock, params.yaml, reports/ and the data dvc.lock records.
The live brain and the registry are never touched (tasks/register.py sees a past night).
Refused while a night is unfinished (its brain would be overwritten), while anything on disk is
not recorded in dvc.lock or git (`dvc status`, `git status`: it could not be put back), for
nights recorded before the `wake` stage existed (their dvc.lock holds no brain to start from),
and for nights whose params.yaml lacks a param today's dvc.yaml stages read (recorded before it
existed). The code is today's: a night rebuilds byte for byte when the code that trains it is
unchanged, on the same kind of CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

RECORD = ("dvc.lock", "params.yaml")
REBUILT = ("curriculum", "seed", "dream")  # the stages whose outputs are the night's lessons and brains
AWAY = Path(".lmsleep-replay")  # today's reports while a replay runs, and what it is replaying


class ReplayRefused(RuntimeError):
    pass


def _run(*cmd: str, quiet: bool = False) -> str:
    from tasks.lock import HELD_BY

    tool = Path(sys.executable).with_name(cmd[0])  # the venv's dvc; its stages call `python`: the venv's first
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           HELD_BY: str(os.getpid())}  # the stages run under this process's night lock
    done = subprocess.run([str(tool) if tool.exists() else cmd[0], *cmd[1:]], capture_output=quiet, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed" + (f":\n{done.stderr or done.stdout}" if quiet else ""))
    return done.stdout if quiet else ""


def _outs(lock_text: str) -> dict[str, dict[str, str]]:
    """{stage: {path: md5}} of the rebuilt stages' data and brains, as a dvc.lock records them
    (reports/ hold the clock: they are compared through the metrics)."""
    import yaml

    stages = yaml.safe_load(lock_text).get("stages", {})
    return {s: {o["path"]: o.get("md5") for o in stages.get(s, {}).get("outs", []) if not o["path"].startswith("reports/")}
            for s in REBUILT}


_MISSING = object()  # a key absent, as against one present with a null value


def _missing_params(params_text: str, dvc_yaml: str = "dvc.yaml") -> list[str]:
    """The params today's night stages read (dvc.yaml's `params:` of params.yaml) that a past
    night's params.yaml lacks: a section added since (`curriculum:`, 2026-12-03)."""
    import yaml

    have = yaml.safe_load(params_text) or {}
    wanted = []
    for stage in (yaml.safe_load(Path(dvc_yaml).read_text()).get("stages") or {}).values():
        for entry in stage.get("params") or []:
            keys = entry if isinstance(entry, str) else (entry.get("params.yaml") or []) if isinstance(entry, dict) else []
            wanted += [keys] if isinstance(keys, str) else keys
    missing = []
    for key in dict.fromkeys(wanted):
        node = have
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) and part in node else _MISSING
        if node is _MISSING:
            missing.append(key)
    return missing


def _refuse_unless_safe(rev: str) -> tuple[dict, str]:
    """The night's recorded metrics and dvc.lock; ReplayRefused where a replay could lose something."""
    import mlflow

    from tasks.common import load_pipeline
    from tasks.register import pending

    if AWAY.exists():
        raise ReplayRefused(f"a replay was cut short ({AWAY}/ holds today's reports): python -m flows.replay --restore")
    try:
        lock = _run("git", "show", f"{rev}:dvc.lock", quiet=True)
        recorded = json.loads(_run("git", "show", f"{rev}:reports/metrics.json", quiet=True))
        params = _run("git", "show", f"{rev}:params.yaml", quiet=True)
    except RuntimeError:
        raise ReplayRefused(f"{rev} holds no dvc.lock, reports/metrics.json and params.yaml: commit them with each "
                            "night") from None
    if "\n  wake:" not in lock:
        raise ReplayRefused(f"{rev}'s dvc.lock has no wake stage: it was recorded before the brain each night "
                            "starts from was kept, and cannot be rebuilt")
    missing = _missing_params(params)
    if missing:  # else `dvc repro` fails midway on today's dvc.yaml, after today's reports were set aside
        raise ReplayRefused(f"{rev}'s params.yaml has no {', '.join(missing)}, which today's dvc.yaml stages read: "
                            "it was recorded before they existed and cannot be rebuilt by today's pipeline "
                            "(the code is today's too: check that commit out whole to run it as it was)")
    pipe = load_pipeline()
    mlflow.set_tracking_uri(pipe.registry.uri())  # read only: is a later night registered (`pending`)
    p = pipe.paths
    if pending(pipe) is not None or any(Path(f"{d}.{s}").exists() for d in (p.brain, p.prior, p.seeded, p.night)
                                        for s in ("next", "old")):
        raise ReplayRefused("a night is unfinished here: run it to the end first (make run), then replay")
    if _run("git", "status", "--porcelain", "--untracked-files=no", "--", *RECORD, quiet=True).strip():
        raise ReplayRefused(f"uncommitted changes to {' or '.join(RECORD)}: commit them first (a replay puts "
                            "today's record back from git)")
    # The night's pipeline only: bench/dvc.yaml's stage is not a night's (it runs as experiments).
    unrecorded = json.loads(_run("dvc", "status", "dvc.yaml", "--json", quiet=True) or "{}")
    if unrecorded:
        raise ReplayRefused(f"the workspace holds what dvc.lock does not record ({', '.join(unrecorded)}: a night "
                            "run with another params file?): `dvc commit` it and commit dvc.lock first, or it "
                            "would be lost")
    return recorded, lock


def restore() -> None:
    """Today back: dvc.lock and params.yaml from git, reports/ from where the replay set it, and
    the data dvc.lock records."""
    _run("git", "checkout", "HEAD", "--", *RECORD)
    if (AWAY / "reports").is_dir():
        shutil.rmtree("reports", ignore_errors=True)
        shutil.copytree(AWAY / "reports", "reports")
    _run("dvc", "checkout", "--force", "dvc.yaml")
    shutil.rmtree(AWAY)


def replay(rev: str) -> dict:
    """{night, recorded, rebuilt, differ: metrics that differ, changed: stages whose outputs differ
    from the ones the night recorded}."""
    from tasks.lock import night_lock

    with night_lock(what=f"a replay of {rev}"):
        recorded, lock = _refuse_unless_safe(rev)
        AWAY.mkdir()
        (AWAY / "replaying.json").write_text(json.dumps({"rev": rev, "pid": os.getpid()}))
        if Path("reports").is_dir():
            shutil.copytree("reports", AWAY / "reports")  # tracked or not (evaluation.json is DVC's, uncached)
        try:
            _run("git", "checkout", rev, "--", *RECORD)
            _run("dvc", "checkout", "--force", "dvc.yaml")
            _run("dvc", "repro", "--force", "--downstream", "curriculum")
            rebuilt = json.loads(Path("reports/metrics.json").read_text())
            outs = _outs(Path("dvc.lock").read_text())  # dvc repro wrote the rebuilt outputs' hashes here
        finally:
            restore()
    want = _outs(lock)
    differ = sorted(k for k in recorded.keys() | rebuilt.keys() if recorded.get(k) != rebuilt.get(k))
    return {"night": recorded["night"], "recorded": recorded, "rebuilt": rebuilt, "differ": differ,
            "changed": [s for s in REBUILT if outs[s] != want[s]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", nargs="?", help="the git commit whose dvc.lock recorded the night")
    ap.add_argument("--restore", action="store_true", help="put today back after a replay that was cut short")
    args = ap.parse_args(argv)
    if args.restore:
        from tasks.lock import night_lock

        with night_lock(what="a replay's restore"):
            restore()
        print("today's dvc.lock, params.yaml, reports/ and data are back")
        return
    if not args.rev:
        ap.error("name the git commit of the night to rebuild (or --restore)")
    out = replay(args.rev)
    print(f"\nnight {out['night']} rebuilt from its record:")
    for k in out["differ"]:
        print(f"  {k}: recorded {out['recorded'].get(k)!r}, rebuilt {out['rebuilt'].get(k)!r}")
    print("  metrics: " + ("identical" if not out["differ"] else f"{len(out['differ'])} differ"))
    print("  outputs: " + ("curriculum, seeded and night's brains identical to the recorded ones, byte for byte"
                           if not out["changed"] else f"differ from the recorded ones in {', '.join(out['changed'])}"))
    sys.exit(0 if not (out["differ"] or out["changed"]) else 1)


if __name__ == "__main__":
    main()
