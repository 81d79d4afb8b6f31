"""curriculum: the teacher writes tonight's lessons.

    python -m tasks.curriculum

Tonight's episodes are the captured ones the brain has not slept on yet. The teacher is the
brain as it is now, with each episode in its context: it answers the episode's probes and
questions it asks itself (`baselines.self_questions`). Each answer becomes a closed-book
lesson `{prompt, completion, episode_id, gold?}` in `data/curriculum/curriculum.jsonl`;
`tonight.json` lists tonight's episodes and the teacher's open-book ceiling on their probes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmsleep import evaluation as ev
from lmsleep.baselines import teacher_curriculum
from lmsleep.brain import load_brain
from tasks.common import Pipeline, load_pipeline, read_jsonl, write_json


class NothingToSleepOn(RuntimeError):
    pass


def tonight_episodes(pipe: Pipeline, slept_on: set[str]) -> list[dict]:
    return [ep for ep in read_jsonl(pipe.paths.data / "episodes") if ep["id"] not in slept_on]


def curriculum(pipe: Pipeline) -> dict:
    model, tokenizer, state = load_brain(pipe.paths.brain, pipe.params.base_model)
    episodes = tonight_episodes(pipe, state.slept_on())
    if not episodes:
        raise NothingToSleepOn(f"no captured episode is new to the brain in {pipe.paths.data / 'episodes'}: "
                               "put JSONL in data/inbox/ and capture it first")
    from tasks.evaluate import readers, retention_probes

    rows = teacher_curriculum(model, tokenizer, episodes, pipe.params.baselines)
    # The teacher is the brain before the night: its numbers are the "before" of the gates.
    tonight = {"night": state.nights, "episodes": [ep["id"] for ep in episodes],
               "ceiling": ev.open_book(model, tokenizer, episodes), "lessons": len(rows),
               "retention_before": ev.accuracy(model, tokenizer, retention_probes(pipe, state, state.nights)),
               "reading_before": ev.open_book(model, tokenizer, readers(pipe))}
    out = pipe.paths.curriculum
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    write_json(pipe.paths.tonight, tonight)
    return tonight


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    t = curriculum(load_pipeline(args.params))
    print(f"night {t['night']}: {len(t['episodes'])} episodes, {t['lessons']} lessons, ceiling {t['ceiling']:.3f}")


if __name__ == "__main__":
    main()
