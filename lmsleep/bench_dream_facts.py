"""Could a dream teach a fact no lesson holds? One day, fact by fact.

    python -m lmsleep.bench_dream_facts --seeds 0 --days 0 1 --dreams 4 16
    (make bench-dream-facts; writes reports/bench_dream_facts.json)

Over ten nights `sleep` is above Knowledge Seeding alone on recall and implication, and level
on paraphrase (docs/dreaming.md). Paraphrase is the held-out phrasing of the facts recall asks,
and the model answers it about as often as recall: what limits it is which facts the night
teaches, not how they are asked. The student learns what a lesson teaches and almost nothing
else (docs/knowledge-seeding.md), and a dream rewarded for a fact a lesson already holds
teaches what the rehearsal teaches anyway (`sleep_missed`). So a dream could add to paraphrase
only by stating a fact no lesson holds. This script counts how often one does.

For each seed and day, from the born model (night 0's reader and dreamer: no dreamer adapter
trained yet, no expert of tonight's):
1. the curriculum's lessons, as the `curriculum` stage writes them for `sleep`;
2. the dreams the born model writes of the same episodes, `--dreams` of each form per episode,
   held to the dreams suite's bounds as the bench holds them (`fit_dreams`);
3. then, and only then, the day's recall probes are read, to sort each probe's fact: held by a
   lesson (one naming the person as the probe does, with the probe's answer) or not, and stated
   by a dream (a restatement sentence naming the person with the answer; a qa or implication
   dream whose question names the person, with that answer).
Besides, what restatements state of one person in a sentence naming only them: right (one of
the episode's facts about the person) or wrong, and how many of each a sentence of the episode
also states together (what a check of each stated pair against C could keep). Nothing here trains.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import replace

SENTENCE = re.compile(r"(?<=[.!?])\s+|\n")


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE.split(text) if s.strip()]


def says(sentence: str, value: str) -> bool:
    """`value` stated in `sentence` as a whole phrase (so "Lund" is not found in "Lundby")."""
    return re.search(r"(?<!\w)" + re.escape(value) + r"(?!\w)", sentence) is not None


def held(lessons: list[dict], name: str, answer: str) -> bool:
    """A lesson names the person as the probe does and teaches the probe's answer."""
    from lmsleep.evaluation import normalize

    return any(name in les["prompt"] and normalize(les["completion"]) == normalize(answer) for les in lessons)


def stated(dream: dict, name: str, answer: str) -> bool:
    """The dream says the fact: a restatement sentence naming the person with the answer, or a
    qa / implication dream asking about the person whose (first) answer is it."""
    from lmsleep.evaluation import normalize

    if dream["form"] == "restatement":
        return any(name in s and says(s, answer) for s in sentences(dream["sample"]))
    first = re.search(r"^A: (.*)$", dream["completion"], flags=re.M)
    said = first.group(1) if first else dream["completion"]
    return name in (dream.get("question") or "") and normalize(said) == normalize(answer)


def restatement_pairs(dreams: list[dict], facts: dict[str, dict[str, set[str]]], values: list[re.Pattern],
                      texts: dict[str, str]) -> dict:
    """Right and wrong (person, value) pairs the restatements state in sentences naming one of
    their episode's people only (`facts`: episode id -> name -> the values true of the person);
    and of them, those a sentence of the episode (`texts`) also states together: what a check of
    each stated pair against C could keep."""
    out = {"right": 0, "wrong": 0, "right_in_a_sentence_of_c": 0, "wrong_in_a_sentence_of_c": 0}
    for d in dreams:
        if d["form"] != "restatement":
            continue
        people, c = facts[d["episode_id"]], sentences(texts[d["episode_id"]])
        for s in sentences(d["sample"]):
            named = [n for n in people if n in s]
            if len(named) != 1:
                continue
            for v in {v for pat in values for v in pat.findall(s)}:
                verdict = "right" if v in people[named[0]] else "wrong"
                out[verdict] += 1
                out[f"{verdict}_in_a_sentence_of_c"] += any(named[0] in t and says(t, v) for t in c)
    return out


def sort_facts(day: list[dict], lessons: list[dict], dreams: list[dict], names: dict[str, str]) -> dict:
    """Each recall probe's fact: held by a lesson or not, and stated by a dream (by form) or not."""
    out = {"probes": 0, "held": 0, "not_held": 0, "held_and_dreamt": 0, "not_held_but_dreamt": 0,
           "by_form": {}}
    for ep in day:
        mine = [les for les in lessons if les["episode_id"] == ep["id"]]
        dreamt = [d for d in dreams if d["episode_id"] == ep["id"]]
        here = [names[i] for i in episode_people(ep)]
        for p in ep["probes"]:
            name = asked_about(p, here)
            h = held(mine, name, p["answer"])
            forms = {d["form"] for d in dreamt if stated(d, name, p["answer"])}
            out["probes"] += 1
            out["held" if h else "not_held"] += 1
            if forms:
                out["held_and_dreamt" if h else "not_held_but_dreamt"] += 1
            for f in forms:
                out["by_form"].setdefault(f, {"held": 0, "not_held": 0})["held" if h else "not_held"] += 1
    return out


def asked_about(probe: dict, names: list[str]) -> str:
    """The person a probe asks about: the longest of the episode's names in its question."""
    return max((n for n in names if n in probe["question"]), key=len)


def episode_people(ep: dict) -> list[str]:
    """The ids of the people an episode states (an update's person among them)."""
    return list(ep["meta"]["people"]) + ([ep["meta"]["person_id"]] if "person_id" in ep["meta"] else [])


def one_day(params, seed: int, day_index: int, dreams_each: int, limits) -> dict:
    """Lessons and dreams of one day from the born model, then the day's facts sorted by them."""
    import time

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.baselines import teacher_curriculum
    from lmsleep.bench import method_configs
    from lmsleep.checks import fit_dreams, world_knowledge
    from lmsleep.dreams import sample_dreams
    from lmsleep.sleep import Sleeper
    from lmsleep.world import ATTRIBUTES, World

    sleep = method_configs("sleep", params)
    world = World(params.world)
    day = world.day(day_index)
    # What lessons and dreams are written from: the day without its exam.
    unexamined = [{k: v for k, v in ep.items() if k not in ("probes", "meta")} for ep in day]
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    model = AutoModelForCausalLM.from_pretrained(params.base_model)
    # The memory in place and no expert yet, as on the bench's night 0 (the numerics are its).
    Sleeper(model, tokenizer, sleep["seeding"], sleep["memory"])
    t0 = time.time()
    lessons, _ = teacher_curriculum(model, tokenizer, unexamined, replace(sleep["config"], seed=seed))
    config = replace(sleep["dreaming"], seed=seed, dreams=dreams_each)
    # The draws of the bench's first night (lmsleep.dreaming.Dreamer._night: seeding has counted it).
    written = sample_dreams(model, tokenizer, unexamined, config, random.Random(f"{seed}-dream-1"))
    fit, _ = fit_dreams(written, unexamined, limits, world_knowledge(world))
    seconds = time.time() - t0
    names = {p.id: p.name for p in world.base + [q for d in world.stream for q in d] + world.strangers}
    truth = {ep["id"]: {names[i]: set() for i in episode_people(ep)} for ep in day}
    for ep in day:  # the episode's facts about each of its people: its probes' answers
        for p in ep["probes"]:
            truth[ep["id"]][asked_about(p, list(truth[ep["id"]]))].add(p["answer"])
    return {"seed": seed, "day": day_index, "dreams_each": dreams_each, "lessons": len(lessons),
            "dreams_written": len(written), "dreams_fit": len(fit), "seconds": round(seconds, 1),
            "facts": sort_facts(day, lessons, fit, names),
            "restatement_pairs": restatement_pairs(fit, truth, [world.value_pattern(a) for a in ATTRIBUTES],
                                                  {ep["id"]: ep["text"] for ep in day})}


def main(argv: list[str] | None = None) -> None:
    from lmsleep.bench_rehearsal import born, day_parser

    ap = day_parser(__doc__, "reports/bench_dream_facts.json")
    ap.add_argument("--days", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--dreams", type=int, nargs="+", default=[4, 16], help="dreams of each form per episode")
    args = ap.parse_args(argv)
    params, limits = born(args)
    runs = []
    for seed in args.seeds:
        for d in args.days:
            for m in args.dreams:
                r = one_day(params, seed, d, m, limits)
                runs.append(r)
                f, p = r["facts"], r["restatement_pairs"]
                print(f"seed {seed} day {d} dreams {m}: {r['lessons']} lessons, {r['dreams_fit']} of "
                      f"{r['dreams_written']} dreams fit; of {f['probes']} facts {f['held']} held by a lesson, "
                      f"{f['held_and_dreamt']} of them dreamt; {f['not_held']} held by none, "
                      f"{f['not_held_but_dreamt']} of them dreamt; restatements state {p['right']} right, "
                      f"{p['wrong']} wrong ({p['right_in_a_sentence_of_c']} / {p['wrong_in_a_sentence_of_c']} of them "
                      f"also in a sentence of C) ({r['seconds']} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": args.threads, "runs": runs}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
