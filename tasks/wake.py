"""wake: set down the brain tonight starts from, where the night's stages can declare it.

    python -m tasks.wake

Copies the live brain (`models/brain`: every night committed so far) whole into `models/prior`;
before the first night, an empty brain (the base model alone). Tonight's stages read the brain
before the night from `models/prior` (the curriculum's teacher, seed's memory to grow, the
replay questions), and dvc.yaml declares it; DVC caches it with every night, so checking out a
night's `dvc.lock` restores the brain that night started from and
`dvc repro --force --downstream curriculum` rebuilds the night from it (README, Lineage).

A brain whose memory params.yaml would reshape (`memory:` changed since it grew) is refused
here, naming each knob, before the curriculum's minutes (`seed` checks its prior again).

Why a copy: the live brain cannot be declared directly. It changes when the night commits
(`register` switches the night's brain in), so a stage depending on it would be out of date
the moment the night ends, and `dvc commit` would record the brain after the night as the one
the night read; and as no stage's output, it would not be cached to restore.
"""

from __future__ import annotations

import json
import shutil

from lmsleep.brain import check_memory, commit, complete, copy, grown_memory, read_state, staging, write_state
from tasks.common import Pipeline, crash_point, stage_cli


def wake(pipe: Pipeline) -> dict:
    live, prior, night = pipe.paths.brain, pipe.paths.prior, pipe.paths.night
    state = read_state(live, pipe.params.base_model)  # finishes a switch a crash cut (`recover`)
    if complete(night) and read_state(night, pipe.params.base_model).nights > state.nights:
        raise RuntimeError(f"{night} holds a night the live brain does not (a night cut before it committed): "
                           "finish it with `make run` before a new night starts")
    if pipe.params.consolidation == "knowledge_seeding" and complete(live):
        grown = grown_memory(live)  # refused here, not at the seed stage after the curriculum's minutes
        if grown is not None:
            check_memory(grown, pipe.params.memory)
    staged = staging(prior)
    if staged.exists():
        shutil.rmtree(staged)
    if complete(live):
        copy(live, staged)
    else:  # no night committed yet: the base model alone
        write_state(state, staged)
    crash_point("wake:staged")
    commit(prior)
    return {"nights": state.nights}


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(stage_cli(wake, __doc__, argv)))

if __name__ == "__main__":
    main()
