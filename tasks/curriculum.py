"""curriculum: the teacher writes tonight's lessons.

    python -m tasks.curriculum

Tonight's episodes are the captured ones the brain has not slept on yet. The teacher is the
brain as it is before the night (`models/prior`, set down by `wake`), with each episode in its
context (or each of its paragraphs, `baselines.window`): it asks itself questions about it
(`baselines.self_questions` per sentence) and answers them; then it asks about each name it
skipped, begun with the name (`baselines.ask_each_name`, counted by facts with `ask_distinct`,
for up to `ask_rounds` rounds), with names spelled as the episode spells them
(`baselines.respell`). These knobs are `baselines:`'s, with `curriculum:` on top of them when
the night consolidates by Knowledge Seeding (params.yaml's default: every fact asked about). The
episodes' probes are the exam and are never read here. Each answer becomes a closed-book lesson
`{prompt, completion, episode_id}` (and `context`, the paragraph read, with paragraph windows)
in `data/curriculum/curriculum.jsonl`, except:
- a lesson whose answer is not in the text read, whose question has a held-out form, or
  (`baselines.drop_misnamed`) whose question names someone as the episode does not spell them
  (a small teacher changes a syllable of a long name as it samples), goes to
  `data/curriculum/dropped.jsonl` with the reason;
- an episode too long for the model's context (with room for a question and its answer) is
  not read tonight: it goes to `dropped.jsonl` with its length and the model's limit;
- for episodes that bring no probes (a user's own documents), a share of the lessons
  (`baselines.checks_share`) is set aside, never taught, as `data/curriculum/checks.jsonl`:
  the night's exam for them;
- when tonight dreams, a share (`dreaming.tau_share`) of every episode's remaining lessons
  (`dreaming.tau_by_answer`: of its answers, with every lesson that has one) is set aside
  too, as `data/curriculum/tau.jsonl`: what dreams are judged on, taught by neither `seed`
  nor `dream`'s trials (`dreaming.teach_tau`: rehearsed once the trials are over); with
  `tau_share: 0` (params.yaml's) it is empty and `dreaming.tau_compose`'s checks alone judge
  the dreams, except for a model born elsewhere, whose knowledge no composed check can be
  asked from: then `dreaming.tau_share_unknown` of the answers is set aside.
`tonight.json` lists tonight's episodes and what the teacher (the brain before the night)
scores: the open-book ceiling of every probe family, retention and reading: the "before" of
the measuring stick and the gates.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from lmsleep import jsonl
from lmsleep import evaluation as ev
from lmsleep.baselines import set_aside_checks, teacher_curriculum
from lmsleep.brain import complete, load_brain
from tasks.common import Pipeline, crash_point, dreams_tonight, load_pipeline, write_json
from tasks.lock import night_lock
from tasks.validate import base_knowledge


class NothingToSleepOn(RuntimeError):
    pass


def tonight_episodes(pipe: Pipeline, slept_on: set[str]) -> list[dict]:
    return [ep for ep in jsonl.read(pipe.paths.data / "episodes") if ep["id"] not in slept_on]


def new_episodes(pipe: Pipeline) -> list[dict]:
    """Captured episodes the brain has not slept on yet."""
    from lmsleep.brain import read_state

    return tonight_episodes(pipe, read_state(pipe.paths.brain, pipe.params.base_model).slept_on())


def curriculum(pipe: Pipeline) -> dict:
    if not complete(pipe.paths.prior):
        raise FileNotFoundError(f"{pipe.paths.prior} holds no brain: run the wake stage first (python -m tasks.wake)")
    model, tokenizer, state = load_brain(pipe.paths.prior, pipe.params.base_model)
    episodes = tonight_episodes(pipe, state.slept_on())
    if not episodes:
        raise NothingToSleepOn(f"no captured episode is new to the brain in {pipe.paths.data / 'episodes'}: "
                               "put JSONL in data/inbox/ and capture it first")
    # Episodes the model cannot read in one context are set aside, with the reason (dropped.jsonl
    # and tonight.json); they stay new, so a night after the user splits them still sees them.
    too_long = ev.too_long(tokenizer, episodes, ev.context_limit(model))
    set_aside = {r["episode_id"] for r in too_long}
    episodes = [ep for ep in episodes if ep["id"] not in set_aside]
    if not episodes:
        raise NothingToSleepOn("every new episode is too long for the model: "
                               + "; ".join(r["reason"] for r in too_long))
    from tasks.evaluate import kept_probes, readers

    config = pipe.params.curriculum_for()  # baselines: (+ curriculum: for Knowledge Seeding)
    lessons, dropped = teacher_curriculum(model, tokenizer, episodes, config, pipe.limits.drop_ungrounded)
    probe_less = {ep["id"] for ep in episodes if not ev.has_probes(ep)}
    lessons, checks = set_aside_checks(lessons, probe_less, config.checks_share, config.seed)
    tau = []
    if dreams_tonight(pipe):  # the night's own judge of dreams: untaught until the trials are over, never the exam's checks
        dreaming = pipe.params.dreaming
        share = dreaming.share_set_aside(base_knowledge(pipe.params))  # none known: tau_share_unknown
        lessons, tau = set_aside_checks(lessons, {ep["id"] for ep in episodes}, share, config.seed + 1,
                                        dreaming.tau_by_answer)
    ungrounded = sum(r["reason"].startswith("answer not in") for r in dropped)
    misnamed = sum(r["reason"].startswith("question names") for r in dropped)
    # The teacher is the brain before the night: its numbers are the "before" of the stick and gates.
    ceilings = ev.ceilings(model, tokenizer, episodes)
    tonight = {"night": state.nights, "episodes": [ep["id"] for ep in episodes],
               "too_long": [r["episode_id"] for r in too_long], "lessons": len(lessons),
               "checks": len(checks), "tau": len(tau), **ceilings, "teacher_accuracy": ceilings["recall_ceiling"],
               "dropped_share": ungrounded / max(1, len(lessons) + len(checks) + len(dropped)),
               "misnamed": misnamed,
               **{f"{k}_before": ev.accuracy(model, tokenizer, v)
                  for k, v in kept_probes(pipe, state, state.nights).items()},
               "reading_before": ev.open_book(model, tokenizer, readers(pipe))}
    # What tonight teaches and judges by, hashed: a night trained before a crash is resumed only
    # from the same curriculum (tasks/seed.py `holds`).
    tonight["curriculum"] = hashlib.sha256(json.dumps([lessons, checks, tau], sort_keys=True).encode()).hexdigest()[:16]
    folder = pipe.paths.curriculum.parent
    for name, rows in ((pipe.paths.curriculum.name, lessons), ("dropped.jsonl", dropped + too_long),
                       ("checks.jsonl", checks), (pipe.paths.tau.name, tau)):
        jsonl.write(folder / name, rows)
    crash_point("curriculum")  # the lessons written, tonight.json not yet
    write_json(pipe.paths.tonight, tonight)
    return tonight


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    with night_lock(what="the curriculum stage"):
        t = curriculum(load_pipeline(args.params))
    ceiling = "-" if t["recall_ceiling"] is None else f"{t['recall_ceiling']:.3f}"
    print(f"night {t['night']}: {len(t['episodes'])} episodes, {t['lessons']} lessons, {t['checks']} checks "
          f"({t['dropped_share']:.0%} dropped as ungrounded, {t['misnamed']} as misnamed), "
          f"recall ceiling {ceiling}")


if __name__ == "__main__":
    main()
