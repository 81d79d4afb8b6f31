"""evaluate: the measuring stick on tonight's brain.

    python -m tasks.evaluate

Writes `reports/evaluation.json` (register adds its decision and publishes `reports/metrics.json`): `night`, `incorporation` (closed-book on tonight's probes),
`ceiling` (the teacher's open-book accuracy on them), `paraphrase` (held-out phrasings, where
episodes carry them), `update` (new values answered), `retention` (closed-book on every earlier
night's probes and, on the embedded default, the base population), `retention_before`,
`reading` (open-book on never-seen people).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmsleep import evaluation as ev
from lmsleep.evaluation import base_probe_set, reader_episodes
from lmsleep.brain import MemoryState, load_brain
from lmsleep.world import World
from tasks.common import Pipeline, load_pipeline, read_jsonl, read_tonight, write_json


def retention_probes(pipe: Pipeline, state: MemoryState, before_night: int) -> list[dict]:
    """Probes of episodes consolidated before `before_night`, plus the base population when the
    base model was born on this world (it knows them)."""
    earlier = {eid for n in state.history if n["night"] < before_night for eid in n["episodes"]}
    probes = [p for ep in read_jsonl(pipe.paths.data / "episodes") if ep["id"] in earlier
              for p in ep.get("probes") or []]
    if (Path(pipe.params.base_model) / "world.json").exists():
        probes += base_probe_set(World(pipe.params.world), pipe.params.bench.base_probes)
    return probes


def readers(pipe: Pipeline) -> list[dict]:
    return reader_episodes(World(pipe.params.world), pipe.params.bench.readers)


def evaluate(pipe: Pipeline) -> dict:
    model, tokenizer, state = load_brain(pipe.paths.brain, pipe.params.base_model)
    tonight, episodes = read_tonight(pipe)
    a = ev.after_night(model, tokenizer, episodes, retention_probes(pipe, state, tonight["night"]), readers(pipe))
    metrics = {
        "night": tonight["night"],
        "episodes": len(episodes),
        "incorporation": a["incorporation"],
        "ceiling": tonight["ceiling"],
        "paraphrase": a["paraphrase"],
        "update": a["update"]["new"] if a["update"]["n"] else None,
        "retention": a["kept"],
        "retention_before": tonight["retention_before"],
        "reading": a["reading"],
        "reading_before": tonight["reading_before"],
    }
    write_json(pipe.paths.reports / "evaluation.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    print(json.dumps(evaluate(load_pipeline(args.params)), indent=2))


if __name__ == "__main__":
    main()
