"""What makes data fit to use: the measures and bounds of the data suites.

The pipeline runs them as Great Expectations suites (tasks/validate.py: the GX result is the
night's artifact, a failing row is set aside with the failed expectation). The bench runs no
GX, yet it must measure the night users run, so it sets dreams aside with `fit_dreams`: the
same measures against the same bounds (`dream_bounds`, from params.yaml `validate:`), as plain
comparisons. A test holds the two to the same verdicts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from lmsleep.episodes import MAX_TEXT_CHARS
from lmsleep.evaluation import grounded, normalize


@dataclass
class ValidationLimits:
    """Bounds of the data suites (params.yaml `validate:`), see tasks/validate.py."""

    max_text_chars: int = MAX_TEXT_CHARS  # the Episode contract's own bound
    max_answer_chars: int = 200
    min_grounded: float = 0.95  # share of answers found in their episode text
    max_repetition: float = 0.5  # share of repeated word 3-grams in a text
    teacher_floor: float = 0.5  # teacher's open-book accuracy on probes with a known answer
    max_dropped: float = 0.5  # share of the teacher's lessons dropped as ungrounded
    max_dream_chars: int = 2000  # a dream's length (the dreams suite; a dream out of bounds is set aside)
    min_dream_grounding: float = 0.8  # share of a dream's names (capitalized words) its episode says
    drop_ungrounded: bool = True  # the curriculum stage drops lessons whose answer is not in the text


def repetition(text: str, n: int = 3) -> float:
    """Share of word n-grams that repeat an earlier one: 0 for prose, near 1 for a stuck loop."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def names_grounded(text: str, context: str) -> float:
    """Share of a text's capitalized words (names, places, companies: the facts a restatement
    states) found in `context`; 1.0 for a text without any."""
    names = re.findall(r"\b[A-Z][\w-]+", text)
    words = set(re.findall(r"\b[\w-]+", context))
    return sum(n in words for n in names) / len(names) if names else 1.0


def world_knowledge(world) -> list[str]:
    """What birth taught a model born on `world` (lmsleep.world.World), one sentence each: its
    companies' headquarters and the base population's biographies. Sentences, not whole
    biographies: a biography says someone's employer and their birth city, which would pass
    "Morrow Labs is based in <that city>" as implied."""
    rng = random.Random(0)
    return ([world.company_sentence(c, rng) for c in world.values["employer"]]
            + [s for p in world.base for s in world.sentences(p, rng)])


def known_sentences(knowledge: list[str]) -> list[str]:
    """`knowledge` as `implied` reads it: each sentence normalized and padded with a space each
    side (once per suite, not once per dream)."""
    return [f" {normalize(s)} " for s in knowledge]


def implied(first: str, second: str, known: list[str]) -> bool:
    """Some sentence of the knowledge says both answers, as whole words (`known`:
    `known_sentences`)."""
    a, b = f" {normalize(first)} ", f" {normalize(second)} "
    return a.strip() != "" and b.strip() != "" and any(a in s and b in s for s in known)


def dream_measures(dreams: list[dict], episodes: list[dict], knowledge: list[str] | None = None) -> list[dict]:
    """Per dream, what the dreams suite bounds: `chars`, `repetition`, `grounded` (a qa dream's
    answer, or an implication's first one, is in the episode: 1.0 or 0.0; a restatement: the
    share of its names the episode says) and `implied` (an implication's second answer and its
    first said together by a sentence of `knowledge`; 1.0 where unknown or for other forms)."""
    texts = {ep["id"]: ep["text"] for ep in episodes}
    known = known_sentences(knowledge or [])
    rows = []
    for d in dreams:
        text, implies = texts.get(d["episode_id"], ""), 1.0
        if d["form"] == "restatement":
            score = names_grounded(d["completion"], text)
        elif d["form"] == "qa":  # the answer read from the episode
            score = float(grounded(d["completion"], text))
        else:  # implication, "Q: q\nA: a\nQ: bridge\nA: i\n": a read from the episode, i from what birth taught
            answers = [line[3:] for line in d["completion"].split("\n") if line.startswith("A: ")] or [""]
            score = float(grounded(answers[0], text))
            if knowledge is not None:
                implies = float(implied(answers[0], answers[-1], known))
        rows.append({"chars": len(d["completion"].strip()), "repetition": repetition(d["completion"]),
                     "grounded": score, "implied": implies})
    return rows


def dream_bounds(limits: ValidationLimits) -> dict[str, tuple[float | None, float | None]]:
    """The dreams suite's bounds, `{column: (min, max)}` (None: unbounded), inclusive: what the
    GX suite expects of each column and what `dream_faults` compares, from one table."""
    return {"chars": (1, limits.max_dream_chars), "repetition": (None, limits.max_repetition),
            "grounded": (limits.min_dream_grounding, None), "implied": (1, None)}


def dream_faults(measures: dict, limits: ValidationLimits) -> list[str]:
    """The bounds (`dream_bounds`) that a dream's `measures` break, each as "column value
    below/above bound"."""
    faults = []
    for column, (lo, hi) in dream_bounds(limits).items():
        value = measures[column]
        if lo is not None and value < lo:
            faults.append(f"{column} {value:g} below {lo:g}")
        elif hi is not None and value > hi:
            faults.append(f"{column} {value:g} above {hi:g}")
    return faults


def fit_dreams(dreams: list[dict], episodes: list[dict], limits: ValidationLimits,
               knowledge: list[str] | None = None) -> tuple[list[dict], list[dict]]:
    """(the dreams within the suite's bounds, the others with their `reasons`): the bench's
    stand-in for the GX suite, on the same measures and bounds."""
    good, bad = [], []
    for d, m in zip(dreams, dream_measures(dreams, episodes, knowledge), strict=True):
        faults = dream_faults(m, limits)
        if faults:
            bad.append(d | {"reasons": faults})
        else:
            good.append(d)
    return good, bad
