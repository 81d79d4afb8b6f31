"""curriculum: the teacher writes tonight's lessons.

    python -m tasks.curriculum

Tonight's episodes are the captured ones the brain has not slept on yet. The teacher is the
brain as it is now, with each episode in its context: it answers the episode's probes and
questions it asks itself (`baselines.self_questions`). Each answer becomes a closed-book
lesson `{prompt, completion, episode_id, gold?}` in `data/curriculum/curriculum.jsonl`.
A lesson whose answer is not in its episode's text is not taught: it goes to
`data/curriculum/dropped.jsonl` with the reason (a teacher whose reading a past night damaged
answers from its weights instead). `tonight.json` lists tonight's episodes, the teacher's
open-book ceiling and accuracy on the probes, and the share of lessons dropped.
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


def new_episodes(pipe: Pipeline) -> list[dict]:
    """Captured episodes the brain has not slept on yet."""
    from lmsleep.brain import read_state

    return tonight_episodes(pipe, read_state(pipe.paths.brain, pipe.params.base_model).slept_on())


def curriculum(pipe: Pipeline) -> dict:
    model, tokenizer, state = load_brain(pipe.paths.brain, pipe.params.base_model)
    episodes = tonight_episodes(pipe, state.slept_on())
    if not episodes:
        raise NothingToSleepOn(f"no captured episode is new to the brain in {pipe.paths.data / 'episodes'}: "
                               "put JSONL in data/inbox/ and capture it first")
    from tasks.evaluate import readers, retention_probes
    from tasks.validate import grounded, teacher_accuracy

    rows = teacher_curriculum(model, tokenizer, episodes, pipe.params.baselines)
    texts = {ep["id"]: ep["text"] for ep in episodes}
    ok = [not pipe.limits.drop_ungrounded or grounded(r["completion"], texts[r["episode_id"]]) for r in rows]
    kept = [r for r, good in zip(rows, ok) if good]
    dropped = [{**r, "reason": "answer not in the episode text"} for r, good in zip(rows, ok) if not good]
    # The teacher is the brain before the night: its numbers are the "before" of the gates.
    tonight = {"night": state.nights, "episodes": [ep["id"] for ep in episodes],
               "ceiling": ev.open_book(model, tokenizer, episodes), "lessons": len(kept),
               "teacher_accuracy": teacher_accuracy(rows), "dropped_share": len(dropped) / max(1, len(rows)),
               "retention_before": ev.accuracy(model, tokenizer, retention_probes(pipe, state, state.nights)),
               "reading_before": ev.open_book(model, tokenizer, readers(pipe))}
    out = pipe.paths.curriculum
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    out.with_name("dropped.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in dropped), encoding="utf-8")
    write_json(pipe.paths.tonight, tonight)
    return tonight


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    t = curriculum(load_pipeline(args.params))
    print(f"night {t['night']}: {len(t['episodes'])} episodes, {t['lessons']} lessons "
          f"({t['dropped_share']:.0%} dropped as ungrounded), ceiling {t['ceiling']:.3f}")


if __name__ == "__main__":
    main()
