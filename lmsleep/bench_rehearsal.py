"""What a dreaming night's rehearsal costs the facts seeding taught: one day, probe by probe.

    python -m lmsleep.bench_rehearsal --method sleep_rehearse_tail_no_dreams --seeds 0 1 2
    (make bench-rehearsal; writes reports/bench_rehearsal.json)

Every sleep measured with tau set aside (`sleep_quarter_tau`, the default until 2026-12-05, and
its variants) answers fewer of the exam's held-out phrasings than Knowledge Seeding alone
(docs/dreaming.md). Such a night differs from Knowledge Seeding's in two ways:
seeding teaches three quarters of the answers (tau, the rest, is set aside to judge the dreams),
and a rehearsal then teaches tau and the dreams that helped, beside the lessons again, into the
expert seeding made. This script takes the same day from the born model three ways, per seed:

1. Knowledge Seeding alone: every lesson seeded, with `--method`'s own seeding, memory and
   curriculum (for `sleep` and most variants, the bench's `knowledge_seeding`);
2. `--method`'s seeding: its lessons less tau, set aside as the bench sets it aside;
3. the same model after `--method`'s dreaming night (trials, ReST-EM, the rehearsal), its dreams
   held to the pipeline's dreams suite as the bench holds them, so this is the bench's night 0.

Each is asked the day's probes closed-book (`probes`: recall; `paraphrases`: the held-out
phrasings), and each probe is sorted by its fact: tau's (an answer set aside) or not. The counts
say where the rehearsal's answers come from: tau facts it taught, and other facts it lost or
gained against the seeding before it. Probes are only read after each model is made: the nights
are given the day without them (no `probes`, no `meta`), so no training path can see them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

FAMILIES = ("probes", "paraphrases")  # the exam's families (lmsleep.evaluation), read only by `outcomes`
STAGES = ("knowledge_seeding", "seeded", "rehearsed")


def outcomes(model, tokenizer, day: list[dict], family: str) -> list[tuple[str, str, bool]]:
    """(episode id, answer, answered exactly) for every probe of `family` on `day`, closed-book."""
    from lmsleep import evaluation as ev

    probes = [(ep["id"], p) for ep in day for p in ev.episode_probes([ep], family)[0]]
    said = ev.answer(model, tokenizer, [p["question"] for _, p in probes],
                     max_new_tokens=ev.answer_budget(tokenizer, [p for _, p in probes]))
    return [(eid, p["answer"], ev.exact_match(s, p["answer"])) for (eid, p), s in zip(probes, said, strict=True)]


def tally(right: dict[str, list[bool]], of_tau: list[bool]) -> dict:
    """Counts over one family's probes: right in each stage, on tau's facts, and the other facts
    the rehearsal lost or gained against the seeding before it (and against Knowledge Seeding)."""
    ks, seeded, rehearsed = (right[s] for s in STAGES)
    other = [not t for t in of_tau]
    return {"asked": len(of_tau), "tau_facts": sum(of_tau),
            "right": {s: sum(right[s]) for s in STAGES},
            "right_on_tau_facts": {s: sum(r and t for r, t in zip(right[s], of_tau)) for s in STAGES},
            "other_lost_in_rehearsal": sum(a and not b and o for a, b, o in zip(seeded, rehearsed, other)),
            "other_gained_in_rehearsal": sum(b and not a and o for a, b, o in zip(seeded, rehearsed, other)),
            "other_knowledge_seeding_only": sum(a and not b and o for a, b, o in zip(ks, rehearsed, other)),
            "other_rehearsed_only": sum(b and not a and o for a, b, o in zip(ks, rehearsed, other))}


def three_ways(params, method: str, seed: int, day_index: int, limits, drop_ungrounded: bool = True) -> dict:
    """The day three ways from the born model (module docstring), with `seed` for every knob
    (`drop_ungrounded`: as the curriculum does; off for a micro teacher, whose answers seldom are)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.baselines import set_aside_checks, teacher_curriculum
    from lmsleep.bench import method_configs
    from lmsleep.checks import fit_dreams, world_knowledge
    from lmsleep.dreaming import Dreamer
    from lmsleep.evaluation import normalize
    from lmsleep.sleep import Sleeper
    from lmsleep.world import World

    sleep = method_configs(method, params)
    if "dreaming" not in sleep:
        raise SystemExit(f"--method {method} does not dream: name sleep or one of its variants (bench.variants)")
    world = World(params.world)
    day, knowledge = world.day(day_index), world_knowledge(world)
    # What the nights are given: the day without its exam (the probes and the meta's held-out
    # families), so no training path here can read them; `day` itself is only asked, after.
    unexamined = [{k: v for k, v in ep.items() if k not in ("probes", "meta")} for ep in day]
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    asked: dict[str, dict[str, list[tuple]]] = {f: {} for f in FAMILIES}
    seconds, tau, report = {}, [], {}
    alone = {k: v for k, v in sleep.items() if k != "dreaming"}  # the same night without its dreaming
    for name, c in (("knowledge_seeding", alone), ("sleep", sleep)):
        model = AutoModelForCausalLM.from_pretrained(params.base_model)
        curriculum = replace(c["config"], seed=seed)
        sleeper = Sleeper(model, tokenizer, replace(c["seeding"], seed=seed), c["memory"])
        lessons, _ = teacher_curriculum(model, tokenizer, unexamined, curriculum, drop_ungrounded=drop_ungrounded)
        t0 = time.time()
        if name == "knowledge_seeding":
            sleeper.night(unexamined, lessons, progress=lambda *_: None)
        else:  # as lmsleep.bench.night_of runs it, with the measure taken between seeding and dreaming
            dreaming = replace(c["dreaming"], seed=seed)
            share = dreaming.share_set_aside(knowledge)
            lessons, tau = set_aside_checks(lessons, {ep["id"] for ep in unexamined}, share, curriculum.seed,
                                            dreaming.tau_by_answer)
            sleeper.night(unexamined, lessons if dreaming.seeding else [], progress=lambda *_: None)
            seconds["seeded"] = time.time() - t0
            for f in FAMILIES:
                asked[f]["seeded"] = outcomes(model, tokenizer, day, f)
            t0 = time.time()
            check = partial(fit_dreams, limits=limits, knowledge=knowledge)
            with tempfile.TemporaryDirectory() as dreamer_dir:
                report = Dreamer(model, tokenizer, dreaming, sleeper, Path(dreamer_dir) / "dreamer").night(
                    unexamined, lessons, tau, progress=lambda *_: None,
                    check=lambda dreams: check(dreams, unexamined)[0],
                    knowledge=knowledge)
        stage = "knowledge_seeding" if name == "knowledge_seeding" else "rehearsed"
        seconds[stage] = time.time() - t0  # training only (seeding; or the dreaming night), not the exam
        for f in FAMILIES:
            asked[f][stage] = outcomes(model, tokenizer, day, f)
    held = {(t["episode_id"], normalize(t["answer"])) for t in tau}  # tau's facts: its answers, per episode
    counts = {f: tally({s: [ok for *_, ok in asked[f][s]] for s in STAGES},
                       [(eid, normalize(answer)) in held for eid, answer, _ in asked[f]["seeded"]])
              for f in FAMILIES}
    return {"seed": seed, "day": day_index, "tau_checks": len(tau), "seconds": seconds,  # rehearsed: the dreaming night
            "dreams": {k: report[k] for k in ("dreams", "kept", "helped")},
            "rehearsal_rows": (report["rehearsal"] or {}).get("rows", 0), **counts}


def day_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The options a one-day diagnostic from the born model shares (this one, bench_dream_facts)."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: the bench's one-thread workers' numerics)")
    ap.add_argument("--out", type=Path, default=Path(out))
    return ap


def born(args: argparse.Namespace):
    """(params, the dreams' bounds) once torch runs on `--threads` and the libraries are quiet."""
    import torch

    from lmsleep.logs import quiet_libraries
    from lmsleep.params import load_born, validation_limits

    quiet_libraries()
    torch.set_num_threads(args.threads)
    return load_born(args.params), validation_limits(args.params)


def main(argv: list[str] | None = None) -> None:
    ap = day_parser(__doc__, "reports/bench_rehearsal.json")
    ap.add_argument("--method", default="sleep", help="sleep or a variant of it (bench.variants)")
    ap.add_argument("--day", type=int, default=0)
    args = ap.parse_args(argv)
    params, limits = born(args)
    runs = []
    for seed in args.seeds:
        runs.append(three_ways(params, args.method, seed, args.day, limits))
        for f in FAMILIES:
            r = runs[-1][f]
            print(f"seed {seed} {f:11s} right {r['right']}  on tau's {r['tau_facts']} facts "
                  f"{r['right_on_tau_facts']}  other facts lost {r['other_lost_in_rehearsal']} / gained "
                  f"{r['other_gained_in_rehearsal']} in the rehearsal", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"method": args.method, "day": args.day, "threads": args.threads, "runs": runs},
                                   indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
