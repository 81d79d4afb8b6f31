"""The continual-learning benchmark: N days of the stream, each consolidation method side by side.

    python -m lmsleep.bench --days 5          (make bench)

For every method (`none`, `sft_text`, `context_distillation`, `sequential_merge`) we start from
the born model and live `days` days. Each night:
1. ceiling: the teacher (the model before the night) answers the day's probes open-book;
2. the method consolidates the day's episodes into the weights (timed: seconds per night);
3. the measuring stick: closed-book accuracy on every day's probes (a row of R), paraphrases of
   tonight's facts, the update test, base-population retention, and reading (open-book on
   strangers: a night that breaks reading breaks every later night).

Prints one table and writes `reports/bench.json` and one R-matrix heatmap per method.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmsleep import evaluation as ev
from lmsleep.evaluation import base_probe_set, reader_episodes
from lmsleep.baselines import BaselineConfig, consolidate
from lmsleep.world import World


def night_metrics(model, tokenizer, days: list[list[dict]], d: int,
                  base_probes: list[dict], readers: list[dict]) -> dict:
    """Everything the measuring stick reads after night `d`: a row of R, and the night's judgement."""
    return {"row": [ev.closed_book(model, tokenizer, eps) for eps in days],
            **ev.after_night(model, tokenizer, days[d], base_probes, readers)}


def run_method(method: str, base_model: str, world: World, n_days: int, config: BaselineConfig,
               base_probes: list[dict], readers: list[dict], log=print) -> dict:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    days = [world.day(d) for d in range(n_days)]
    R, nights = [], []
    for d in range(n_days):
        ceiling = ev.open_book(model, tokenizer, days[d])
        t0 = time.time()
        model = consolidate(method, model, tokenizer, days[d], config)
        seconds = time.time() - t0
        m = night_metrics(model, tokenizer, days, d, base_probes, readers)
        R.append(m["row"])
        nights.append({"night": d, "ceiling": ceiling, "seconds": seconds, **m})
        log(f"  {method:22s} night {d}: incorporation {m['row'][d]:.2f} (ceiling {ceiling:.2f}) "
            f"paraphrase {m['paraphrase']:.2f} update {m['update']['new']:.2f} base {m['kept']:.2f} "
            f"reading {m['reading']:.2f}  {seconds:.1f}s")
    incorporation = sum(R[d][d] for d in range(n_days)) / n_days
    ceiling = sum(n["ceiling"] for n in nights) / n_days
    return {
        "incorporation": incorporation,
        "ceiling": ceiling,
        "ratio": incorporation / ceiling if ceiling else None,
        "acc": ev.acc(R),
        "bwt": ev.bwt(R),
        "forgetting": ev.forgetting(R),
        "base_retention": nights[-1]["kept"],
        "paraphrase": sum(n["paraphrase"] for n in nights) / n_days,
        "update": sum(n["update"]["new"] for n in nights) / n_days,
        "update_stale": sum(n["update"]["old"] for n in nights) / n_days,
        "reading": nights[-1]["reading"],
        "seconds_per_night": sum(n["seconds"] for n in nights) / n_days,
        "R": R,
        "nights": nights,
    }


COLUMNS = [("incorporation", "incorp"), ("ceiling", "ceiling"), ("ratio", "ratio"), ("acc", "ACC"),
           ("bwt", "BWT"), ("forgetting", "forget"), ("base_retention", "base"),
           ("paraphrase", "paraphr"), ("update", "update"), ("reading", "reading"),
           ("seconds_per_night", "s/night")]


def table(methods: dict[str, dict], born: dict) -> str:
    head = f"{'method':22s}" + "".join(f"{short:>9s}" for _, short in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in methods.items():
        cells = "".join(f"{'-':>9s}" if m[k] is None else f"{m[k]:9.3f}" for k, _ in COLUMNS)
        lines.append(f"{name:22s}{cells}")
    lines.append(f"born model: base {born['base']:.3f}, reading {born['reading']:.3f} "
                 "(base and reading above are after the last night)")
    lines += ["", "incorporation right after each night (R[d][d]) / open-book ceiling that night:"]
    for name, m in methods.items():
        cells = " ".join(f"{m['R'][d][d]:.2f}/{n['ceiling']:.2f}" for d, n in enumerate(m["nights"]))
        lines.append(f"  {name:22s}{cells}")
    return "\n".join(lines)


def heatmap(R: list[list[float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.4))
    im = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    n = len(R)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{R[i][j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if R[i][j] < 0.5 else "black")
    ax.set_xlabel("day j (probes)")
    ax.set_ylabel("after night i")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--days", type=int, help="override bench.days")
    ap.add_argument("--methods", nargs="+", help="override bench.methods")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    args = ap.parse_args(argv)
    import torch

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.params import load_params

    params = load_params(args.params)
    n_days = args.days or params.bench.days
    methods = args.methods or params.bench.methods
    if not (Path(params.base_model) / "config.json").exists():
        raise SystemExit(f"no model at {params.base_model!r}: run `make birth` (or set base_model in params.yaml)")
    if n_days > params.world.days:
        raise SystemExit(f"bench.days={n_days} exceeds the stream's world.days={params.world.days}")
    torch.set_num_threads(params.birth.threads)
    world = World(params.world)
    base_probes = base_probe_set(world, params.bench.base_probes)
    readers = reader_episodes(world, params.bench.readers)
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    born_model = AutoModelForCausalLM.from_pretrained(params.base_model)
    born = {"base": ev.accuracy(born_model, tokenizer, base_probes),
            "reading": ev.open_book(born_model, tokenizer, readers)}  # before any night
    results = {}
    for method in methods:
        print(f"{method}: {n_days} nights")
        results[method] = run_method(method, params.base_model, world, n_days, params.baselines,
                                     base_probes, readers)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"days": n_days, "seed": params.world.seed, "born": born, "methods": results}
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    for name, m in results.items():
        heatmap(m["R"], f"R matrix: {name}", args.out / f"bench_R_{name}.png")
    print()
    print(table(results, born))
    print(f"\nwrote {args.out / 'bench.json'} and {len(results)} heatmaps")


if __name__ == "__main__":
    main()
