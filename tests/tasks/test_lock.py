"""One night at a time: real processes hold and contend for the night's lock."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.lock import NightInProgress, night_lock

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def hold_lock(cwd: Path) -> subprocess.Popen:
    """Another process that takes the lock, says so, and sleeps."""
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom tasks.lock import night_lock\n"
                               "with night_lock(what='a test night'):\n    print('held', flush=True)\n"
                               "    time.sleep(120)"], cwd=cwd, env=ENV, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_night_is_refused_naming_the_holder_until_it_dies(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    holder = hold_lock(tmp_path)
    try:
        with pytest.raises(NightInProgress, match=rf"pid {holder.pid} \(a test night"):
            with night_lock():
                pass
        # A stage run the way `dvc repro` runs it is refused too, with the same message.
        stage = subprocess.run([sys.executable, "-m", "tasks.capture", "--data", "data"], cwd=tmp_path, env=ENV,
                               capture_output=True, text=True, timeout=120)
        assert stage.returncode != 0 and f"pid {holder.pid}" in stage.stderr
        assert not (tmp_path / "data").exists(), "the refused stage wrote nothing"
    finally:
        holder.send_signal(signal.SIGKILL)  # a crash, not a polite exit
        holder.wait()
    with night_lock():  # the kernel dropped the dead holder's lock: no stale lock to clear
        pass


def test_commands_a_holder_starts_run_under_its_lock_and_no_one_else_does(tmp_path, monkeypatch):
    from tasks.lock import HELD_BY

    monkeypatch.chdir(tmp_path)
    holder = hold_lock(tmp_path)
    try:
        monkeypatch.setenv(HELD_BY, str(holder.pid))  # as flows/replay.py sets it for `dvc repro`'s stages
        with night_lock():
            pass
        monkeypatch.setenv(HELD_BY, str(os.getpid()))  # naming a process that does not hold it changes nothing
        with pytest.raises(NightInProgress):
            with night_lock():
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert f"pid {holder.pid} " in (tmp_path / ".lmsleep-night.lock").read_text(), "the holder's note stays its own"
