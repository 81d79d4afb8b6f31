"""Import SQuAD-shaped JSON as inbox episodes: the paper's knowledge-incorporation passages.

    python -m lmsleep.squad ../shared/data/squad_val.json --out data/inbox/squad.jsonl

Input: `[{title, context, questions: [{question, answer}]}]` (SEAL's `squad_val.json` shape).
Each passage becomes one episode whose `text` is the passage and whose `probes` are its
questions; `meta.title` keeps the article. A malformed passage is reported by index and field
and skipped; the good ones are written.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from lmsleep import jsonl
SQUAD_TS = "2026-01-01T00:00:00+00:00"  # passages carry no time; a fixed one keeps imports reproducible


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "untitled"


def passage_to_episode(i: int, passage, source: str) -> dict:
    """Passage `i` as an episode dict; ValueError naming the passage and field if malformed."""
    where = f"passage {i}"
    if not isinstance(passage, dict):
        raise ValueError(f"{where}: expected an object, got {type(passage).__name__}")
    title, context, questions = passage.get("title", ""), passage.get("context"), passage.get("questions")
    if not isinstance(context, str) or not context.strip():
        raise ValueError(f"{where}: 'context' must be a non-empty string")
    if not isinstance(questions, list):
        raise ValueError(f"{where}: 'questions' must be a list")
    probes = []
    for j, q in enumerate(questions):
        if not (isinstance(q, dict) and isinstance(q.get("question"), str) and isinstance(q.get("answer"), str)):
            raise ValueError(f"{where}: questions[{j}] needs string 'question' and 'answer'")
        probes.append({"question": q["question"], "answer": q["answer"]})
    return {"id": f"squad-{i:05d}-{_slug(str(title))}", "ts": SQUAD_TS, "source": source, "text": context,
            "probes": probes or None, "meta": {"title": str(title)}}


def import_squad(path: Path) -> tuple[list[dict], list[str]]:
    """(episodes, errors) from a SQuAD-shaped JSON file."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of passages, got {type(data).__name__}")
    episodes, errors = [], []
    for i, passage in enumerate(data):
        try:
            episodes.append(passage_to_episode(i, passage, f"squad:{Path(path).name}"))
        except ValueError as e:
            errors.append(str(e))
    return episodes, errors


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path)
    ap.add_argument("--out", type=Path, default=Path("data/inbox/squad.jsonl"))
    ap.add_argument("--limit", type=int, help="only the first N passages")
    args = ap.parse_args(argv)
    episodes, errors = import_squad(args.path)
    episodes = episodes[: args.limit] if args.limit else episodes
    # Atomic (a temp file renamed into place): capture never reads an inbox file half-written.
    jsonl.write(args.out, ({k: v for k, v in ep.items() if v is not None} for ep in episodes))
    for e in errors:
        print(f"skipped {e}")
    print(f"wrote {len(episodes)} episodes ({sum(len(e['probes'] or []) for e in episodes)} probes) "
          f"to {args.out}; {len(errors)} passages skipped")


if __name__ == "__main__":
    main()
