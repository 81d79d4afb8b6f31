"""arrive: the embedded default's day. The world's next day arrives, as an app would post it.

    python -m tasks.arrive            (day = nights the brain has slept)

It lands in `data/arrivals/` (kept, so `dvc repro` can replay it; capture reads it beside the
inbox and its content hashes keep it from being captured twice). With your own data, drop
JSONL files in `data/inbox/` instead (or import SQuAD-shaped JSON with `python -m lmsleep.squad`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lmsleep import jsonl
from lmsleep.brain import read_state
from lmsleep.world import World
from tasks.common import Pipeline, crash_point, load_pipeline
from tasks.lock import night_lock


def arrive(pipe: Pipeline, day: int | None = None) -> Path | None:
    """Write day `day` (default: the next one the brain has not slept on) to data/arrivals/;
    None once the world's stream (world.days) is over."""
    if day is None:
        day = read_state(pipe.paths.brain, pipe.params.base_model).nights
    world = World(pipe.params.world)
    if day >= world.config.days:
        return None
    out = pipe.paths.data / "arrivals" / f"world-day{day:03d}.jsonl"
    jsonl.write(out, world.day(day))  # atomic: capture never sees half a day
    crash_point("arrive")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--day", type=int)
    args = ap.parse_args(argv)
    with night_lock(what="the arrive stage"):
        path = arrive(load_pipeline(args.params), args.day)
    print(f"arrived: {path}" if path else "the world's stream is over (world.days): nothing arrives")


if __name__ == "__main__":
    main()
