"""One day and one night on the embedded default (what `make run` does until the pipeline lands).

    python -m lmsleep.night --day 0 --method context_distillation

1. Birth, if `base_model` (params.yaml) holds no model yet: the embedded default is born.
2. Day `d` of the stream is read in context (its episodes), and the night consolidates it
   with a baseline method (default: context distillation into a LoRA adapter).
3. The measuring stick reports what moved into the weights and what was kept, before and
   after the night, into `reports/night.json`; the adapter is saved under `models/nights/`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmsleep import evaluation as ev
from lmsleep.baselines import METHODS, consolidate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--day", type=int, default=0)
    ap.add_argument("--method", default="context_distillation", choices=METHODS)
    ap.add_argument("--report", type=Path, default=Path("reports/night.json"))
    args = ap.parse_args(argv)
    import torch

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.evaluation import base_probe_set, reader_episodes
    from lmsleep.birth import birth
    from lmsleep.params import load_params
    from lmsleep.world import World

    params = load_params(args.params)
    base = Path(params.base_model)
    if not (base / "config.json").exists():
        print(f"no model at {base}: birth of the embedded default ({params.birth.steps} steps)")
        birth(params.birth, params.world, base, Path("reports/birth.json"))
    torch.set_num_threads(params.birth.threads)
    world = World(params.world)
    episodes = world.day(args.day)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    kept = {"base": base_probe_set(world, params.bench.base_probes),
            "base_heldout": base_probe_set(world, params.bench.base_probes, "heldout")}
    readers = reader_episodes(world, params.bench.readers)

    def snapshot(m) -> dict:
        a = ev.after_night(m, tokenizer, episodes, kept, readers)
        return {k: a[k] for k in ("recall", "paraphrase", "implication", "base", "base_heldout", "reading")} | {
            "update": a["update"]["new"]}

    before = snapshot(model)
    ceilings = ev.ceilings(model, tokenizer, episodes)
    t0 = time.time()
    model = consolidate(args.method, model, tokenizer, episodes, params.baselines)
    seconds = time.time() - t0
    after = snapshot(model)
    if args.method != "none":
        out = Path("models/nights") / f"day{args.day:03d}-{args.method}"
        model.save_pretrained(out)
    report = {"day": args.day, "method": args.method, "episodes": len(episodes), **ceilings,
              "seconds": seconds, "before": before, "after": after}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2))

    print(f"\nday {args.day}: {len(episodes)} episodes, night by {args.method} in {seconds:.1f} s\n")
    print(f"{'':32s}{'before':>8s}{'after':>8s}{'ceiling':>9s}")
    rows = [("tonight, recall (closed-book)", "recall"), ("  paraphrase (held-out forms)", "paraphrase"),
            ("  implication (two hops)", "implication"), ("  updates (new value)", "update"),
            ("base population", "base"), ("  held-out forms", "base_heldout"), ("reading strangers (open)", "reading")]
    for label, k in rows:
        ceiling = ceilings.get(f"{k}_ceiling")
        cells = [before[k], after[k]] + ([ceiling] if ceiling is not None else [])
        print(f"{label:32s}" + "".join(f"{'-':>8s}" if v is None else f"{v:8.3f}" for v in cells))
    print(f"\nwrote {args.report}")


if __name__ == "__main__":
    main()
