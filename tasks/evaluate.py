"""evaluate: the measuring stick on tonight's brain (`models/night`, before it goes live).

    python -m tasks.evaluate

Writes `reports/evaluation.json` (register adds its decision and publishes `reports/metrics.json`):
`night`; `recall`, `paraphrase`, `implication` (closed-book on tonight's probe families) each
with its `*_ceiling` (the teacher's open-book accuracy on the same probes); `checks` (for
probe-less episodes: agreement with the teacher on checks never taught); `update` and
`update_stale` (new value answered, old one still answered); `retention` and
`retention_heldout` (closed-book on earlier nights' probes and, on the embedded default, the
base population, in train and in held-out forms) with their `*_before`; `reading` and
`reading_before` (open-book on never-seen people). A figure with nothing to measure is null.
"""

from __future__ import annotations

import json
from pathlib import Path

from lmsleep import jsonl
from lmsleep import evaluation as ev
from lmsleep.evaluation import base_probe_set, reader_episodes
from lmsleep.brain import MemoryState, load_brain
from lmsleep.world import World
from tasks.common import Pipeline, crash_point, read_tonight, stage_cli, write_json


def kept_probes(pipe: Pipeline, state: MemoryState, before_night: int) -> dict[str, list[dict]]:
    """What should have stayed: probes of episodes consolidated before `before_night` (their train
    forms, and their paraphrases), plus the base population when the base model was born on
    this world (it knows them)."""
    earlier = {eid for n in state.history if n["night"] < before_night for eid in n["episodes"]}
    episodes = [ep for ep in jsonl.read(pipe.paths.data / "episodes") if ep["id"] in earlier]
    kept = {"retention": ev.episode_probes(episodes)[0],
            "retention_heldout": ev.episode_probes(episodes, "paraphrases")[0]}
    if (Path(pipe.params.base_model) / "world.json").exists():
        world = World(pipe.params.world)
        kept["retention"] += base_probe_set(world, pipe.params.bench.base_probes)
        kept["retention_heldout"] += base_probe_set(world, pipe.params.bench.base_probes, "heldout")
    return kept


def readers(pipe: Pipeline) -> list[dict]:
    return reader_episodes(World(pipe.params.world), pipe.params.bench.readers)


def evaluate(pipe: Pipeline) -> dict:
    crash_point("evaluate")
    model, tokenizer, state = load_brain(pipe.paths.night, pipe.params.base_model)
    tonight, episodes = read_tonight(pipe)
    checks = jsonl.read(pipe.paths.curriculum.with_name("checks.jsonl"))
    kept = kept_probes(pipe, state, tonight["night"])
    a = ev.after_night(model, tokenizer, episodes, kept, readers(pipe), checks)
    metrics = {"night": tonight["night"], "episodes": len(episodes)}
    for family in ev.FAMILY_KEYS:
        metrics |= {family: a[family], f"{family}_ceiling": tonight[f"{family}_ceiling"]}
    # .get: a night whose curriculum was written before the update ceiling was measured (resumed
    # after an upgrade) has none; it reads null, like any figure with nothing to measure.
    metrics |= {"checks": a["checks"], "update": a["update"]["new"], "update_stale": a["update"]["old"],
                "update_ceiling": tonight.get("update_ceiling"),
                "update_stale_ceiling": tonight.get("update_stale_ceiling")}
    for name in kept:
        metrics |= {name: a[name], f"{name}_before": tonight[f"{name}_before"]}
    metrics |= {"reading": a["reading"], "reading_before": tonight["reading_before"]}
    write_json(pipe.paths.reports / "evaluation.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(stage_cli(evaluate, __doc__, argv), indent=2))

if __name__ == "__main__":
    main()
