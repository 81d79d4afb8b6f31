"""A night killed (SIGKILL, no cleanup) inside its stages, then run again: the same night
completes once, is trained once and registered once, and `champion` never points at a night
that was not decided. Two nights started at once: one is refused, the other completes. Real
processes, real Prefect (the harness server), MLflow and training."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.flows.test_sleep_cycle import client, write_params

ROOT = Path(__file__).resolve().parents[2]
# A kill inside every stage (tasks/*.py `crash_point`): arrive after the day is written; capture
# between its two outputs; wake with the prior brain written whole but not switched in;
# curriculum with the lessons written and tonight.json not; validate at its start; seed with the
# seeded brain written whole but not switched in; dream with the night's brain written whole but
# not switched in; evaluate at its start; register with the version created, before the
# decision; after the decision, before the live brain moves; with the new live brain written
# whole but not switched in. The micro world has two days, so each night is killed several
# times (each kill, then the next, in the order the flow meets them) before a clean run.
CRASHES = [["arrive", "capture", "wake:staged", "curriculum", "seed:staged", "dream:staged"],
           ["validate", "evaluate", "register:versioned", "register:decided", "register:staged"]]


def night_process(**env) -> subprocess.Popen:
    """`sleep_cycle` in a process of its own, on the test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PYTHONPATH": str(ROOT), "PREFECT_API_URL": PREFECT_API_URL.value(), **env}
    return subprocess.Popen([sys.executable, "-c", "from flows.sleep_cycle import NightParameters, sleep_cycle\n"
                             "sleep_cycle(NightParameters())"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def killed_night(point: str) -> subprocess.CompletedProcess:
    p = night_process(LMSLEEP_CRASH_AT=point)
    _, err = p.communicate(timeout=900)
    return subprocess.CompletedProcess(p.args, p.returncode, "", err)


def test_a_night_killed_in_each_stage_completes_once(harness, night_dir, born_micro_dir):
    import mlflow

    from flows.sleep_cycle import NightParameters, sleep_cycle
    from lmsleep.brain import read_state

    write_params(born_micro_dir)
    c = client()
    for night, points in enumerate(CRASHES):
        for point in points:
            done = killed_night(point)
            assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
            registered = {v.version: v.tags for v in c.search_model_versions("name = 'micro'")}
            champion = c.get_registered_model("micro").aliases.get("champion") if registered else None
            assert champion is None or registered[champion].get("promoted") == "true", "champion on an undecided night"
            # The live brain holds decided nights only: killed anywhere, up to the last rename, it is untouched.
            assert read_state(Path("models/brain"), str(born_micro_dir)).nights == night, f"live brain moved ({point})"

        result = sleep_cycle(NightParameters())  # the rerun
        point = points[-1]
        assert result["night"] == night, point
        by_night = sorted(v.tags["night"] for v in c.search_model_versions("name = 'micro'"))
        assert by_night == [str(n) for n in range(night + 1)], f"one version per night ({point})"
        state = read_state(Path("models/brain"), str(born_micro_dir))
        assert [h["night"] for h in state.history] == list(range(night + 1))
        if point == "dream:staged":  # trained once, dreamed once: the rerun took both from before the kill
            run = f"runs:/{result['mlflow_run']}"
            assert mlflow.artifacts.load_dict(f"{run}/seed.json")["resumed"] == "the seeded brain already holds this night"
            assert "switched in" in mlflow.artifacts.load_dict(f"{run}/dream.json")["resumed"]
    for brain in ("brain", "prior", "seeded", "night"):
        for leftover in (f"models/{brain}.next", f"models/{brain}.old"):
            assert not Path(leftover).exists(), leftover


def test_two_nights_at_once_one_is_refused_and_the_other_completes(harness, night_dir, born_micro_dir):
    import time

    from lmsleep.brain import read_state

    write_params(born_micro_dir)
    first = night_process()
    lock = Path(".lmsleep-night.lock")
    deadline = time.time() + 300
    while not (lock.exists() and f"pid {first.pid}" in lock.read_text()):  # the first one holds the night
        assert first.poll() is None and time.time() < deadline, "the first night never took the lock"
        time.sleep(0.2)
    second = night_process()  # e.g. `make run` beside the UI's Run
    _, err = second.communicate(timeout=600)
    assert second.returncode != 0 and "NightInProgress" in err and f"pid {first.pid}" in err
    _, err = first.communicate(timeout=900)
    assert first.returncode == 0, err[-2000:]
    versions = client().search_model_versions("name = 'micro'")
    assert [v.tags["night"] for v in versions] == ["0"], "exactly one version for the one night"
    assert read_state(Path("models/brain"), str(born_micro_dir)).nights == 1
