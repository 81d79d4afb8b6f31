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
from tasks.common import Pipeline, load_pipeline, read_jsonl, write_json


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
    tonight = json.loads(pipe.paths.tonight.read_text())
    ids = set(tonight["episodes"])
    episodes = [ep for ep in read_jsonl(pipe.paths.data / "episodes") if ep["id"] in ids]
    has_paraphrases = any((ep.get("meta") or {}).get("paraphrases") for ep in episodes)
    update = ev.update_test(model, tokenizer, episodes)
    metrics = {
        "night": tonight["night"],
        "episodes": len(episodes),
        "incorporation": ev.closed_book(model, tokenizer, episodes),
        "ceiling": tonight["ceiling"],
        "paraphrase": ev.closed_book(model, tokenizer, episodes, "paraphrases") if has_paraphrases else None,
        "update": update["new"] if update["n"] else None,
        "retention": ev.accuracy(model, tokenizer, retention_probes(pipe, state, tonight["night"])),
        "retention_before": tonight["retention_before"],
        "reading": ev.open_book(model, tokenizer, readers(pipe)),
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
