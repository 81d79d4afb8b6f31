"""The continual-learning benchmark: N days of the stream, each consolidation method side by side,
over several seeds.

    python -m lmsleep.bench                   (make bench: bench.days, bench.methods, bench.seeds)
    python -m lmsleep.bench --days 3 --seeds 0 --methods none sft_text
    python -m lmsleep.bench --seeds 0 --methods knowledge_seeding ks_no_lti ks_no_replay   (ablations)
    python -m lmsleep.bench --methods sleep knowledge_seeding dreams_only sleep_no_selection   (Dreaming)

Methods: the baselines (`none`, `sft_text`, `context_distillation`, `sequential_merge`),
`knowledge_seeding` (params.yaml `seeding:` and `memory:`; the teacher's own curriculum, then the
night's consolidations over the memory levels, lmsleep/sleep.py), `sleep` (Knowledge Seeding, then
Dreaming: params.yaml `dreaming:`, lmsleep/dreaming.py), and their ablations, named in
`bench.variants` as overrides of those sections (`sleep_no_selection`, `sleep_no_random_expert`,
`dreams_only`; "without dreaming" is `knowledge_seeding`). A variant builds on another with
`from:` (the paper's objective is `ks_paper`; its ablations are `from: ks_paper`), or on a
baseline, whose curriculum it may change (`cd_facts: {from: context_distillation, baselines: ...}`).

For every method and seed we start from the born model and live `days` days. Each night:
1. ceilings: the teacher (the model before the night) answers the day's probe families
   open-book (recall, paraphrase, implication);
2. the method consolidates the day's episodes into the weights (timed: seconds per night); no
   method sees a probe: the teacher asks itself its own questions;
3. the measuring stick: closed-book accuracy on every day's probes in train forms (a row of R)
   and in held-out forms (a row of R_paraphrase), up to tomorrow's, tonight's implications, the update test,
   base-population retention (train and held-out forms), and reading (open-book on strangers).

A seed changes what the teacher asks itself and the order of training; the world and the born
model stay fixed. `none` trains nothing and decodes greedily, so it runs once and stands for
every seed. (method, seed) runs are independent and go to `bench.workers` processes.

Prints one table (mean and spread over seeds) and writes `reports/bench.json`, the table's
columns in `reports/bench_summary.json`, and R-matrix heatmaps (`reports/bench_R_<method>.png`,
recall and paraphrase side by side, seed 0).

Each (method, seed) run is also written as it finishes (`reports/bench_runs/<method>-seed<k>.json`),
so a long table survives an interrupted session: `--resume` takes a run from there instead of
running it again, if it was made with the same settings (threads per worker included), born
model, `lmsleep/` code and library versions (a fingerprint of them all: `SavedRuns`); anything
else runs again, and a run that fails leaves the others saved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path

from lmsleep import evaluation as ev
from lmsleep.baselines import BaselineConfig, consolidate
from lmsleep.checks import ValidationLimits, fit_dreams, world_knowledge
from lmsleep.dreaming import DreamingConfig
from lmsleep.evaluation import base_probe_set, reader_episodes
from lmsleep.schedule import MemoryConfig
from lmsleep.seeding import SeedingConfig
from lmsleep.world import World, WorldConfig


def night_of(method: str, model, tokenizer, config: BaselineConfig, seeding: SeedingConfig | None,
             memory: MemoryConfig | None, dreaming: DreamingConfig | None = None, dreamer_dir: str | None = None,
             reports: list | None = None, check=None, knowledge: list[str] | None = None):
    """`night(episodes) -> model`: a baseline, or Knowledge Seeding when `seeding` is given (the
    teacher's own curriculum, then the night's consolidations over the memory levels), followed by
    Dreaming when `dreaming` is given (its reports appended to `reports`; `check(dreams, episodes)
    -> (fit, set aside)` guards the dreams before any is used, as the pipeline's data suite does;
    `knowledge`: what birth taught, for tau's composed checks)."""
    if seeding is None:
        return lambda episodes: consolidate(method, model, tokenizer, episodes, config)
    from lmsleep.baselines import set_aside_checks, teacher_curriculum
    from lmsleep.dreaming import Dreamer
    from lmsleep.sleep import Sleeper

    sleeper = Sleeper(model, tokenizer, seeding, memory)
    dreamer = Dreamer(model, tokenizer, dreaming, sleeper, dreamer_dir) if dreaming else None

    def night(episodes):
        lessons, _ = teacher_curriculum(model, tokenizer, episodes, config)
        if dreamer is None:
            sleeper.night(episodes, lessons, progress=lambda *_: None)
            return model
        # tau: a share of the teacher's own Q/A set aside, taught neither by seeding nor by dreams.
        lessons, tau = set_aside_checks(lessons, {ep["id"] for ep in episodes}, dreaming.share_set_aside(knowledge),
                                        config.seed, dreaming.tau_by_answer)
        sleeper.night(episodes, lessons if dreaming.seeding else [], progress=lambda *_: None)
        guard = (lambda dreams: check(dreams, episodes)[0]) if check else None
        reports.append(dreamer.night(episodes, lessons, tau, progress=lambda *_: None, check=guard,
                                     knowledge=knowledge))
        return model

    return night


def run_method(method: str, base_model: str, world_config: WorldConfig, n_days: int, config: BaselineConfig,
               n_base: int, n_readers: int, threads: int = 2, seeding: SeedingConfig | None = None,
               memory: MemoryConfig | None = None, dreaming: DreamingConfig | None = None,
               limits: ValidationLimits | None = None, consolidation: str | None = None, log=print) -> dict:
    """One method, one seed (config.seed), `n_days` nights from the born model; `consolidation`:
    the baseline a baseline's variant runs (its name is the method's otherwise). Dreams are held
    to the pipeline's dreams suite (`limits`: params.yaml `validate:`; lmsleep/checks.py), with
    what birth taught this world as the base knowledge."""
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    torch.set_num_threads(threads)
    world = World(world_config)
    kept = {"base": base_probe_set(world, n_base), "base_heldout": base_probe_set(world, n_base, "heldout")}
    readers = reader_episodes(world, n_readers)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    model = AutoModelForCausalLM.from_pretrained(base_model)
    days = [world.day(d) for d in range(n_days)]
    dreams: list[dict] = []
    dreamer_dir = tempfile.TemporaryDirectory()  # the dreamer's adapter, night after night
    knowledge = world_knowledge(world)
    check = partial(fit_dreams, limits=limits or ValidationLimits(), knowledge=knowledge)
    night = night_of(consolidation or method, model, tokenizer, config, seeding, memory, dreaming, dreamer_dir.name,
                     dreams, check, knowledge)
    R, R_para, nights = [], [], []
    for d in range(n_days):
        t0 = time.time()
        ceilings = ev.ceilings(model, tokenizer, days[d])
        t1 = time.time()
        model = night(days[d])
        t2 = time.time()
        seconds = t2 - t1
        # Days after tomorrow are not measured (None): the metrics read R[i][j] for j <= i, and
        # tomorrow (j = i + 1) shows what a night cannot know yet (near chance). Measuring every
        # day every night was ~40% of a 10-night run.
        R.append([ev.closed_book(model, tokenizer, eps) if j <= d + 1 else None for j, eps in enumerate(days)])
        R_para.append([ev.closed_book(model, tokenizer, eps, "paraphrases") if j <= d + 1 else None
                       for j, eps in enumerate(days)])
        if dreams:  # how right each form of tonight's dreams was (the world's truth), then the texts go
            dreams[-1]["quality"] = ev.dream_quality(world, days[d], dreams[-1].pop("all_dreams"))
            dreams[-1].pop("kept_dreams")
        a = ev.after_night(model, tokenizer, days[d], kept, readers)
        time_spent = {"ceilings": t1 - t0, "consolidation": seconds, "measuring": time.time() - t2}
        nights.append({"night": d, "seconds": seconds, "time": time_spent, **ceilings,
                       "recall": R[d][d], "paraphrase": R_para[d][d],
                       "implication": a["implication"], "update": a["update"]["new"],
                       "update_stale": a["update"]["old"], "base": a["base"], "base_heldout": a["base_heldout"],
                       "reading": a["reading"], **({"dreams": dreams[-1]} if dreams else {})})
        log(f"  {method} seed {config.seed} night {d}: recall {R[d][d]:.2f}/{ceilings['recall_ceiling']:.2f} "
            f"paraphrase {R_para[d][d]:.2f} implication {a['implication']:.2f} base {a['base_heldout']:.2f} "
            f"reading {a['reading']:.2f}  {seconds:.1f}s"
            + (f"  dreams {dreams[-1]['helped']}/{dreams[-1]['kept']} helped" if dreams else ""))
    dreamer_dir.cleanup()

    def mean(key):
        return sum(n[key] for n in nights) / n_days

    return {
        **{k: mean(k) for k in ("recall", "recall_ceiling", "paraphrase", "paraphrase_ceiling", "implication",
                                "implication_ceiling", "update", "update_ceiling", "update_stale",
                                "update_stale_ceiling")},
        "acc": ev.acc(R), "bwt": ev.bwt(R), "forgetting": ev.forgetting(R),
        "acc_paraphrase": ev.acc(R_para), "bwt_paraphrase": ev.bwt(R_para),
        "forgetting_paraphrase": ev.forgetting(R_para),
        "base_retention": nights[-1]["base"], "base_retention_heldout": nights[-1]["base_heldout"],
        "reading": nights[-1]["reading"], "seconds_per_night": mean("seconds"),
        "time": {k: sum(n["time"][k] for n in nights) for k in nights[0]["time"]},
        # Dreaming: the share of kept dreams whose trial helped, night by night (ReST-EM should raise it).
        "dream_success": [n["dreams"]["success"] for n in nights] if dreams else None,
        "R": R, "R_paraphrase": R_para, "nights": nights,
    }


def summarize(per_seed: list[dict]) -> dict:
    """Mean and population spread (std) over seeds of every scalar; the per-seed values kept."""
    out: dict = {}
    for k, v in per_seed[0].items():
        if isinstance(v, (int, float)) or v is None:
            values = [s[k] for s in per_seed]
            if any(x is None for x in values):
                out[k], out[f"{k}_std"] = None, None
            else:
                out[k], out[f"{k}_std"] = statistics.fmean(values), statistics.pstdev(values)
    out["seeds"] = per_seed
    return out


COLUMNS = [("recall", "recall"), ("recall_ceiling", "ceil"), ("paraphrase", "paraphr"),
           ("paraphrase_ceiling", "ceil"), ("implication", "implic"), ("implication_ceiling", "ceil"),
           ("acc", "ACC"), ("bwt", "BWT"), ("forgetting", "forget"), ("forgetting_paraphrase", "fgt_par"),
           ("base_retention_heldout", "base_ho"), ("update", "update"), ("update_ceiling", "ceil"),
           ("update_stale", "stale"), ("update_stale_ceiling", "ceil"),
           ("reading", "reading"), ("seconds_per_night", "s/night")]


def table(methods: dict[str, dict], born: dict, n_seeds: int) -> str:
    head = f"{'method':22s}" + "".join(f"{short:>14s}" for _, short in COLUMNS)
    lines = [f"mean ± spread (std) over {n_seeds} seed(s); every figure closed-book but reading; "
             "ceil = open-book ceiling of the column before it", head, "-" * len(head)]
    for name, m in methods.items():
        cells = ""
        for k, _ in COLUMNS:
            if m[k] is None:
                cells += f"{'-':>14s}"
            else:
                digits = 1 if k == "seconds_per_night" else 3
                cells += f"{m[k]:>8.{digits}f}±{m[f'{k}_std']:<5.{digits}f}"
        lines.append(f"{name:22s}{cells}")
    lines.append("born model, before any night: " + ", ".join(f"{k} {v:.3f}" for k, v in born.items()))
    lines += ["", "recall right after each night (R[d][d], seed 0) / its open-book ceiling:"]
    for name, m in methods.items():
        nights = m["seeds"][0]["nights"]
        lines.append(f"  {name:22s}" + " ".join(f"{n['recall']:.2f}/{n['recall_ceiling']:.2f}" for n in nights))
    dreaming = {name: m["seeds"] for name, m in methods.items() if m["seeds"][0].get("dream_success")}
    if dreaming:
        lines += ["", "share of kept dreams that helped (their trial beat the model before), night by night, per seed:"]
        for name, seeds in dreaming.items():
            for s in seeds:
                lines.append(f"  {name:22s}" + " ".join("  - " if x is None else f"{x:.2f}" for x in s["dream_success"]))
    return "\n".join(lines)


def summary(methods: dict[str, dict]) -> dict:
    """The table's columns, mean and spread (`bench_summary.json`): per method, or flat when the
    run has one method, as each queued DVC experiment does (bench/dvc.yaml), so that
    `dvc exp show` lines the experiments up in the same columns."""
    rows = {name: {k: m[k] for col, _ in COLUMNS for k in (col, f"{col}_std")} for name, m in methods.items()}
    return next(iter(rows.values())) if len(rows) == 1 else rows


def heatmaps(m: dict, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (key, name) in zip(axes, (("R", "recall (train forms)"), ("R_paraphrase", "paraphrase (held-out)"))):
        R = m[key]
        n = len(R)
        im = ax.imshow([[float("nan") if x is None else x for x in row] for row in R], vmin=0, vmax=1,
                       cmap="viridis")  # days after tomorrow: not measured, blank
        for i in range(n):
            for j in range(n):
                if R[i][j] is None:
                    continue
                ax.text(j, i, f"{R[i][j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if R[i][j] < 0.5 else "black")
        ax.set_xlabel("day j (probes)")
        ax.set_ylabel("after night i")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_title(f"{title}: {name}", fontsize=9)
    fig.colorbar(im, ax=axes, fraction=0.025)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def variant_overrides(method: str, params) -> tuple[str, dict]:
    """`(root, overrides)` of a method: the method it builds on (`from:`, default knowledge_seeding,
    followed through variants to a baseline, knowledge_seeding or sleep) and its sections' overrides,
    an ancestor's first and each descendant's on top of them, knob by knob."""
    from lmsleep.baselines import METHODS

    roots = (*METHODS, "knowledge_seeding", "sleep")
    variants = params.bench.variants
    shadowed = sorted(set(variants) & set(roots))
    if shadowed:  # it would never run: the method of that name is params.yaml's own
        raise SystemExit(f"params.yaml: bench.variants may not be named after a method ({shadowed}); change the "
                         "sections themselves, or give the variant another name")
    chain, name = [], method
    while name not in roots:
        if name not in variants:
            where = f" (bench.variants.{chain[-1]}.from)" if chain else ""
            raise SystemExit(f"unknown method {name!r}{where}: choose from {list(METHODS)}, knowledge_seeding, sleep "
                             f"or a bench.variants entry ({sorted(variants)})")
        if name in chain:
            loop = " -> ".join(chain[chain.index(name):] + [name])
            raise SystemExit(f"params.yaml: bench.variants build on each other in a loop: {loop} (reached from {method})")
        entry = variants[name]
        if not isinstance(entry, dict) or not all(isinstance(v, dict | None) for k, v in entry.items() if k != "from"):
            raise SystemExit(f"params.yaml: bench.variants.{name} must map sections to their knobs "
                             f"({{from: ..., seeding: {{...}}, ...}}), got {entry!r}")
        if not isinstance(entry.get("from", ""), str):
            raise SystemExit(f"params.yaml: bench.variants.{name}.from must name one method, got {entry['from']!r}")
        chain.append(name)
        name = entry.get("from", "knowledge_seeding")
    merged: dict[str, dict] = {}
    for variant in reversed(chain):
        for key, knobs in variants[variant].items():
            if key != "from":
                merged[key] = {**merged.get(key, {}), **(knobs or {})}
    return name, merged


def method_configs(method: str, params) -> dict:
    """`{config, seeding, memory}` for Knowledge Seeding and its ablations, plus `dreaming` for
    `sleep` (Knowledge Seeding + Dreaming) and its ablations (`bench.variants`: overrides of
    params.yaml's `seeding:`/`memory:`/`dreaming:`/`baselines:`; a variant overriding `dreaming`
    dreams); `config` is the curriculum (`baselines:` + `curriculum:`, then the variant's
    `baselines:`, whose knobs are then the curriculum's only: `CURRICULUM_KNOBS`). `{}` for a
    baseline; a variant built on one (`from: context_distillation`) may change its `baselines:`
    only, and names the baseline it runs (`consolidation`)."""
    from lmsleep.baselines import CURRICULUM_KNOBS, METHODS, BaselineConfig
    from lmsleep.params import build_section

    root, over = variant_overrides(method, params)
    sections = {"seeding": SeedingConfig, "memory": MemoryConfig, "dreaming": DreamingConfig,
                "baselines": BaselineConfig}
    allowed = ("baselines",) if root in METHODS else tuple(sections)
    unknown = sorted(set(over) - set(allowed))
    if unknown:
        raise SystemExit(f"params.yaml: bench.variants.{method} (on {root}) may override {', '.join(allowed)}, "
                         f"not {unknown}")
    idle = sorted(set(over.get("baselines", {})) - set(CURRICULUM_KNOBS)) if root not in METHODS else []
    if idle:  # a LoRA knob on a Knowledge Seeding night would change nothing, silently
        raise SystemExit(f"params.yaml: bench.variants.{method}.baselines (on {root}) may set the curriculum's "
                         f"knobs {list(CURRICULUM_KNOBS)}, not {idle}: Knowledge Seeding trains no LoRA")
    # The curriculum (run_method's `config`): the root's (`baselines:`, + `curriculum:` for Knowledge
    # Seeding), then the variant's `baselines:`.
    config = build_section(BaselineConfig, {**asdict(params.curriculum_for(root)), **over.get("baselines", {})},
                           f"bench.variants.{method}.baselines")
    if root in METHODS:
        return {} if method == root else {"consolidation": root, "config": config}
    # Knowledge Seeding's sections always; `dreaming` for sleep or a variant that changes it.
    wanted = {"seeding", "memory"} | (set(over) - {"baselines"}) | ({"dreaming"} if root == "sleep" else set())
    configs = {key: build_section(cls, {**asdict(getattr(params, key)), **over.get(key, {})},
                                  f"bench.variants.{method}.{key}")
               for key, cls in sections.items() if key in wanted}
    return {**configs, "config": config}


class SavedRuns:
    """Finished (method, seed) runs on disk, one JSON file each, and when one may stand in for a
    run (`--resume`): when its fingerprint is this run's. The fingerprint covers the run's settings
    (the threads per worker too: a thread count changes CPU numerics), the born model's files, this
    package's code, the training libraries' versions and whether a GPU trains: a result made any
    other way is not this run's. The model and code digest is taken once (a 1B model is GBs)."""

    def __init__(self, folder: Path, base_model: str):
        from importlib.metadata import version

        import torch

        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256(json.dumps([{lib: version(lib) for lib in ("torch", "transformers", "trl", "peft")},
                                       torch.cuda.is_available()]).encode())
        base = Path(base_model)
        files = [(str(f.relative_to(base)), f) for f in sorted(base.rglob("*")) if f.is_file()]
        files += [(f"lmsleep/{f.name}", f) for f in sorted(Path(__file__).parent.glob("*.py"))]
        for name, file in files:
            data = file.read_bytes()
            h.update(f"{name}:{len(data)}:".encode() + data)
        self.digest = h.hexdigest()

    def fingerprint(self, job: tuple) -> str:
        method, seed, kwargs = job
        settings = {k: asdict(v) if hasattr(v, "__dataclass_fields__") else v
                    for k, v in kwargs.items() if k != "base_model"}  # its files are in the digest, not its path
        return hashlib.sha256(json.dumps([method, seed, settings, self.digest], sort_keys=True,
                                         default=str).encode()).hexdigest()

    def file(self, method: str, seed: int) -> Path:
        return self.folder / f"{method}-seed{seed}.json"

    def load(self, job: tuple, log=print) -> dict | None:
        """The saved result of `job` if its fingerprint matches (saying which way it went)."""
        method, seed, _ = job
        file = self.file(method, seed)
        if not file.exists():
            return None
        try:
            saved = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log(f"not resumed {method} seed {seed}: {file} is unreadable ({e})")
            return None
        if saved.get("fingerprint") != self.fingerprint(job):
            log(f"not resumed {method} seed {seed}: {file} was made with other settings, model, code or libraries")
            return None
        log(f"resumed {method} seed {seed} from {file}")
        return saved["result"]

    def save(self, job: tuple, result: dict) -> None:
        """Written whole or not at all (a session may end mid-write): a temporary file, renamed."""
        method, seed, _ = job
        file = self.file(method, seed)
        tmp = file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"method": method, "seed": seed, "fingerprint": self.fingerprint(job),
                                   "result": result}))
        tmp.replace(file)


def _die_with_parent() -> None:
    """A worker ends when the bench does (Linux): killed bench processes otherwise leave their
    workers training on, unseen, slowing whatever runs next (measured: a 2x slower night)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _job(args: tuple) -> tuple[str, int, dict]:
    method, seed, kwargs = args
    kwargs = dict(kwargs)
    for key in ("seeding", "dreaming"):
        if kwargs.get(key) is not None:
            kwargs[key] = replace(kwargs[key], seed=seed)
    return method, seed, run_method(method, config=replace(kwargs.pop("config"), seed=seed), **kwargs)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--days", type=int, help="override bench.days")
    ap.add_argument("--methods", nargs="+", help="override bench.methods")
    ap.add_argument("--seeds", nargs="+", type=int, help="override bench.seeds")
    ap.add_argument("--out", type=Path, default=Path("reports"))
    ap.add_argument("--resume", action="store_true",
                    help="take finished runs from <out>/bench_runs where their fingerprint matches")
    args = ap.parse_args(argv)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.params import load_born, validation_limits

    params, limits = load_born(args.params), validation_limits(args.params)
    b = params.bench
    n_days, methods, seeds = args.days or b.days, args.methods or b.methods, args.seeds or b.seeds
    if n_days > params.world.days:
        raise SystemExit(f"bench.days={n_days} exceeds the stream's world.days={params.world.days}")
    t_start = time.time()
    torch.set_num_threads(b.threads)
    world = World(params.world)
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    born_model = AutoModelForCausalLM.from_pretrained(params.base_model)
    days = [ep for d in range(n_days) for ep in world.day(d)]
    born = {"base": ev.accuracy(born_model, tokenizer, base_probe_set(world, b.base_probes)),
            "base_heldout": ev.accuracy(born_model, tokenizer, base_probe_set(world, b.base_probes, "heldout")),
            "reading": ev.open_book(born_model, tokenizer, reader_episodes(world, b.readers)),
            **{family: ev.closed_book(born_model, tokenizer, days, key) for family, key in ev.FAMILY_KEYS.items()}}
    common = {"base_model": params.base_model, "world_config": params.world, "n_days": n_days,
              "config": params.baselines, "n_base": b.base_probes, "n_readers": b.readers,
              "threads": max(1, b.threads // b.workers), "limits": limits}
    configs = {m: method_configs(m, params) for m in methods}
    jobs = [(m, s, {**common, **configs[m]}) for m in methods for s in (seeds[:1] if m == "none" else seeds)]
    jobs.sort(key=lambda job: "seeding" not in job[2])  # the longest runs (Knowledge Seeding) first: less idle at the end
    runs: dict[str, dict[int, dict]] = {m: {} for m in methods}
    saved = SavedRuns(args.out / "bench_runs", params.base_model)
    for job in jobs if args.resume else []:
        result = saved.load(job)
        if result is not None:
            runs[job[0]][job[1]] = result
    resumed = [f"{m} seed {s}" for m, by_seed in runs.items() for s in by_seed]
    jobs = [job for job in jobs if job[1] not in runs[job[0]]]
    print(f"{len(jobs)} runs ({', '.join(methods)}; seeds {seeds}) x {n_days} nights on {b.workers} worker(s)")
    failed = []
    with ProcessPoolExecutor(b.workers, mp_context=mp.get_context("spawn"), initializer=_die_with_parent) as pool:
        futures = {pool.submit(_job, job): job for job in jobs}
        for done in as_completed(futures):
            job = futures[done]
            try:
                runs[job[0]][job[1]] = result = done.result()[2]
            except Exception as e:  # the other runs go on and are saved; the bench fails at the end
                failed.append(f"{job[0]} seed {job[1]}: {type(e).__name__}: {e}")
                print(f"FAILED {failed[-1]}")
                continue
            saved.save(job, result)
    if failed:
        raise SystemExit(f"{len(failed)} run(s) failed ({'; '.join(failed)}); the {sum(map(len, runs.values()))} "
                         f"that finished are in {saved.folder} (--resume takes them)")
    results = {m: summarize([runs[m][s] for s in seeds if s in runs[m]] if m != "none" else [runs[m][seeds[0]]])
               for m in methods}
    minutes = (time.time() - t_start) / 60
    report = {"days": n_days, "seeds": seeds, "world_seed": params.world.seed, "minutes": minutes,
              "workers": b.workers, "resumed": resumed, "born": born, "methods": results}
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    (args.out / "bench_summary.json").write_text(json.dumps(summary(results), indent=2))
    for name, m in results.items():
        heatmaps(m["seeds"][0], name, args.out / f"bench_R_{name}.png")
    print()
    print(table(results, born, len(seeds)))
    spent = {k: sum(run["time"][k] for m in results.values() for run in m["seeds"]) / 60
             for k in ("ceilings", "consolidation", "measuring")}
    print(f"\n{minutes:.1f} min on {b.workers} worker(s); process-minutes: "
          + ", ".join(f"{k} {v:.1f}" for k, v in spent.items())
          + (f" (with {len(resumed)} run(s) resumed from earlier: {', '.join(resumed)})" if resumed else "")
          + f"\nwrote {args.out / 'bench.json'}, {args.out / 'bench_summary.json'} and {len(results)} heatmaps")


if __name__ == "__main__":
    main()
