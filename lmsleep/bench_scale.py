"""One night at scale: a randomly initialized ~1B Llama on an accelerator.

    python -m lmsleep.bench_scale --lessons L.json --tokenizer models/base    (on a GPU machine)
    python -m lmsleep.bench_scale --lessons L.json --dreaming --dreams D.json (and then Dreaming)
    python -m lmsleep.bench_scale ... --nights 2 --warmup seeding.epochs=1    (the second night)
    python -m lmsleep.bench_scale --size tiny ...                             (a smoke run on a CPU)

What it measures is speed, not quality: the weights are random, so the night's answers are
noise; the shapes, the schedule and every step of a default night are real (rows, replay,
on-policy sampling, learning to imitate, the divergence, the optimizer, settle).
- The lessons are a real night's (the born model's own questions and open-book answers on
  that day, written by `--teacher` on this machine or read from `--lessons`): a random model
  cannot write them. Nothing reads a probe.
- `--dreaming`: the default night is Knowledge Seeding and then Dreaming (a share of the lessons
  set aside as tau first, as `lmsleep.bench` does). The random model samples its dreams (their
  cost is real), but the dreams selected, tried, learned and rehearsed are the born model's own
  on that day (`--dreams`, written by `--teacher`, through the bench's dream checks). Random
  weights answer no check, so no trial earns a reward: each trial runs in full, then a seeded
  `--helped-share` of them counts as helped, so ReST-EM and the rehearsal train as many dreams
  as a born model's night does. The report gives the night against its seeding alone.
- `--nights N`: one model through days 0..N-1 (`{day}` in `--lessons` and `--dreams`), the
  last night reported. The nights before it make what it meets (an expert each, the dreamer's
  adapter) and may run shortened (`--warmup`). Each day's lessons and dreams are the born
  model's own: on a real night 1 the model after night 0 writes them, which random weights
  cannot stand in for.
- Tokens are counted by a forward pre-hook on the model: every token a forward pass computes
  (prompts, completions, padding, and each decoding step of sampling), split into passes with
  gradient (the student) and without (the teacher, sampling, replay answers).
- Model FLOPs: 2N per token without gradient, 4N per token with it (the frozen weights get no
  weight gradients, so the backward pass is the activation gradients, ~2N), N the model's own
  parameters (the experts' are < 1%); attention's context term is left out, so MFU is a lower
  bound. MFU = model FLOPs / seconds / the chip's dense bf16 peak (`--peak-tflops`). Selection's
  per-sample gradients run under `vmap`, where the hook sees one row of each batch: a lower
  bound there too.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

SIZES = {  # Llama shapes; "1b" is TinyLlama's (22 layers, d 2048, GQA 32/4 heads)
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4),
}
PEAK_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}  # dense bf16, vendor sheets


class TokenCounter:
    """Tokens every forward pass of `model` computes, with and without gradient."""

    def __init__(self, model):
        import torch

        self.trained = self.inferred = 0
        self._grad = torch.is_grad_enabled
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        n = int(ids.numel()) if ids is not None else int(kwargs["inputs_embeds"].shape[:2].numel())
        if self._grad():
            self.trained += n
        else:
            self.inferred += n


def random_llama(size: str, vocab_size: int, seed: int, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=2048, tie_word_embeddings=False,
                         **SIZES[size])
    with torch.device(device):
        return LlamaForCausalLM(config)


def day_path(path: Path | None, day: int) -> Path | None:
    """A per-day file: `{day}` in `path` is the day (`reports/day{day}_lessons.json`)."""
    return Path(str(path).replace("{day}", str(day))) if path else None


def written_lessons(path: Path | None, teacher: Path, tokenizer, episodes: list[dict], curriculum) -> list[dict]:
    """A day's lessons: read from `path`, or written by the born model (and saved there)."""
    if path and path.exists():
        return json.loads(path.read_text())
    from lmsleep.baselines import teacher_curriculum

    lessons, _ = teacher_curriculum(born_model(teacher), tokenizer, episodes, curriculum)
    if path:
        _write(path, lessons)
    return lessons


# What a dream's sampling depends on: a `--dreams` file written with others is written again.
SAMPLING = ("forms", "dreams", "temperature", "max_new_tokens", "bridges", "compose", "prompts", "seed")


def written_dreams(path: Path | None, teacher: Path, tokenizer, episodes: list[dict], dreaming, day: int = 0
                   ) -> list[dict]:
    """A day's dreams, as the born model writes them on that night (sampled as `Dreamer.night`
    samples them; the night checks them as the bench does; from night 1 on, the real dreamer is
    the model after the nights before, with its ReST-EM adapter): read from `path`
    (`{written_with, dreams}`, or a plain list of one's own, taken as it is), or written here
    (and saved there) when it is absent or was written by another teacher or sampling."""
    from dataclasses import asdict

    with_ = {"teacher": str(teacher), **{k: v for k, v in asdict(dreaming).items() if k in SAMPLING}}
    if path and path.exists():
        saved = json.loads(path.read_text())
        if isinstance(saved, list):
            return saved
        if saved.get("written_with") == with_:
            return saved["dreams"]
        print(f"{path} was written by another teacher or sampling: writing it again")
    from lmsleep.dreams import sample_dreams

    rng = random.Random(f"{dreaming.seed}-dream-{day + 1}")  # as `Dreamer.night` seeds it after that seeding
    dreams = sample_dreams(born_model(teacher), tokenizer, episodes, dreaming, rng)
    if path:
        _write(path, {"written_with": with_, "dreams": dreams})
    return dreams


@lru_cache(maxsize=1)
def born_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def stand_in_trials(model, tokenizer, memory, share: float, seed: int):
    """`run_trials` for random weights: each trial runs in full (`try_dream`; its cost is what is
    measured), then `share` of them (rounded; which ones, seeded) count as helped (`earned`: the
    reward it earned itself)."""
    from lmsleep.trials import try_dream

    rng = random.Random(seed)

    def run(jobs: list[dict]) -> list[dict]:
        helped = set(rng.sample(range(len(jobs)), round(share * len(jobs))))
        outcomes = []
        for i, j in enumerate(jobs):
            o = try_dream(model, tokenizer, memory.train_only(1, j["slot"]), j["dream"], j["tau"], j["before"],
                          j["steps"], j["lr"], j["bf16"])
            outcomes.append(o | {"earned": o["reward"], "reward": int(i in helped)})
        return outcomes

    return run


class Timed:
    """`with Timed(counter, n_model, peak) as t:` seconds (the device synchronized), tokens,
    model FLOPs and peak GPU memory of what runs inside, in `t.stats`."""

    def __init__(self, counter: TokenCounter, n_model: int, peak: float | None):
        self.counter, self.n_model, self.peak = counter, n_model, peak

    def _sync(self):
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def __enter__(self):
        import torch

        self._sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.start = (self.counter.trained, self.counter.inferred, time.perf_counter())
        return self

    def __exit__(self, *exc):
        import torch

        self._sync()
        cuda = torch.cuda.is_available()
        trained, inferred = self.counter.trained - self.start[0], self.counter.inferred - self.start[1]
        seconds = time.perf_counter() - self.start[2]
        tflops = (2 * self.n_model * inferred + 4 * self.n_model * trained) / seconds / 1e12
        self.stats = {"seconds": seconds, "tokens_trained": trained, "tokens_inferred": inferred,
                      "tokens_per_second": (trained + inferred) / seconds, "model_tflops_per_second": tflops,
                      "mfu": tflops / self.peak if self.peak else None,
                      "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}


# Seeding keys the reward is built from once, before the first night: a warm-up cannot change them.
REWARD_KEYS = ("gamma", "z0", "sem_threshold")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--tokenizer", type=Path, default=Path("models/base"))
    ap.add_argument("--lessons", type=Path,
                    help="a night's lessons (JSON list), `{day}` in the path for one file a day; "
                         "written there from --teacher if absent")
    ap.add_argument("--teacher", type=Path, default=Path("models/base"),
                    help="the born model that writes the lessons and the dreams")
    ap.add_argument("--encoder", type=Path, help="a sentence-transformers folder for r_sem (default: the packaged one)")
    ap.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 peak (default: from its name)")
    ap.add_argument("--seeding", nargs="*", default=[], metavar="KEY=VALUE",
                    help="seeding config overrides, e.g. lmbda=0 lti=false (to see what sampling costs)")
    ap.add_argument("--dreaming", nargs="*", metavar="KEY=VALUE",
                    help="dream after seeding (the default night: sleep), with these dreaming config overrides")
    ap.add_argument("--dreams", type=Path,
                    help="the born model's dreams (JSON), `{day}` in the path for one file a day; "
                         "written there if absent or written another way")
    ap.add_argument("--helped-share", type=float, default=0.23,
                    help="the share of trials counted as helped (default: sleep's night 0 on the born model, "
                         "docs/dreaming.md)")
    ap.add_argument("--nights", type=int, default=1,
                    help="nights on days 0..N-1, one model: the last is the one reported (an expert per night "
                         "before it, their replay, the dreamer's adapter)")
    ap.add_argument("--warmup", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="overrides for the nights before the last, e.g. seeding.epochs=1 dreaming.rehearse_epochs=1: "
                         f"they are run for what they leave, which their length does not change (not {REWARD_KEYS}: "
                         "the reward is built once)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_scale.json"))
    args = ap.parse_args(argv)
    if not 0 <= args.helped_share <= 1:
        ap.error(f"--helped-share is a share of the trials, between 0 and 1, not {args.helped_share}")
    if args.nights < 1:
        ap.error(f"--nights is at least 1, not {args.nights}")
    for flag, path in (("--lessons", args.lessons), ("--dreams", args.dreams)):
        if args.nights > 1 and path and "{day}" not in str(path):
            ap.error(f"{flag} {path}: with --nights {args.nights}, put {{day}} in the path (one file a day)")
    warmup: dict[str, dict] = {"seeding": {}, "dreaming": {}}
    for key, value in key_values(args.warmup).items():
        section, _, field = key.partition(".")
        if section not in warmup or not field:
            ap.error(f"--warmup {key}: name the section, seeding.KEY or dreaming.KEY")
        if section == "seeding" and field in REWARD_KEYS:
            ap.error(f"--warmup {key}: the reward is built once, for every night; give it in --seeding")
        warmup[section][field] = value
    if args.nights == 1 and any(warmup.values()):
        ap.error("--warmup changes the nights before the last: give --nights 2 or more")
    if warmup["dreaming"] and args.dreaming is None:
        ap.error("--warmup dreaming.KEY without --dreaming: no night dreams")
    import torch
    from transformers import AutoTokenizer

    from lmsleep.logs import quiet_libraries
    from lmsleep.params import load_params
    from lmsleep.rewards import SemanticJudge, imitation_reward
    from lmsleep.sleep import Sleeper
    from lmsleep.world import World

    quiet_libraries()
    params = load_params(args.params)
    last = args.nights - 1
    # Each night's overrides and configs, checked before anything loads (a misspelled key fails here).
    seeding_overrides = [key_values(args.seeding) | ({} if day == last else warmup["seeding"])
                         for day in range(args.nights)]
    dreaming_overrides = [None if args.dreaming is None else
                          key_values(args.dreaming) | ({} if day == last else warmup["dreaming"])
                          for day in range(args.nights)]
    cuda = torch.cuda.is_available()
    try:
        seeding = [replace(params.seeding, **{"bf16": cuda, **o}) for o in seeding_overrides]
        dreaming = [None if o is None else replace(params.dreaming, **o) for o in dreaming_overrides]
    except (TypeError, ValueError) as e:
        ap.error(f"--seeding, --dreaming or --warmup: {e}")
    world = World(params.world)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    curriculum = params.curriculum_for("knowledge_seeding")
    # Every day's lessons and dreams first (the born model writes what is missing): a missing
    # teacher fails before any night, and the random model's draws do not depend on it.
    episodes = [world.day(day) for day in range(args.nights)]
    lessons = [written_lessons(day_path(args.lessons, day), args.teacher, tokenizer, episodes[day], curriculum)
               for day in range(args.nights)]
    dreams = [None if dreaming[day] is None else
              written_dreams(day_path(args.dreams, day), args.teacher, tokenizer, episodes[day], dreaming[day], day)
              for day in range(args.nights)]
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    model = random_llama(args.size, len(tokenizer), params.seeding.seed, device)
    n_model = sum(p.numel() for p in model.parameters())
    config = seeding[last]
    print(f"{name}: {args.nights} night(s) on a random {args.size} Llama ({n_model / 1e9:.2f} B parameters), "
          f"bf16 {config.bf16}" + (f", {peak} TFLOP/s peak" if peak else ""))
    judge = None
    if args.encoder:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(args.encoder), device=device)
        judge = SemanticJudge(lambda texts: st.encode(texts, convert_to_tensor=True, normalize_embeddings=True,
                                                      show_progress_bar=False), config.sem_threshold)
    reward = imitation_reward(config.gamma, config.z0, judge or SemanticJudge(threshold=config.sem_threshold))
    sleeper = Sleeper(model, tokenizer, seeding[0], params.memory, reward=reward)
    if args.dreaming:  # its Dreamer is made after each night's seeding: the plan must leave its slot first
        from lmsleep.dreaming import experts_a_night

        sleeper.experts_a_night = experts_a_night(params.dreaming)
    counter = TokenCounter(model)
    earlier: list[dict] = []
    with tempfile.TemporaryDirectory() as dreamer_dir:  # the dreamer's adapter, from night to night
        for day in range(args.nights):
            sleeper.config = seeding[day]
            out = {"device": name, "size": args.size, "seeding_overrides": seeding_overrides[day],
                   "model_parameters": n_model, "bf16": seeding[day].bf16, "day": day,
                   "warmup": {} if day == last else warmup, "peak_tflops": peak}
            if day == last:
                out["earlier_nights"] = earlier
            out |= night_at_scale(args, sleeper, dreaming[day], dreaming_overrides[day], lessons[day], dreams[day],
                                  world=world, episodes=episodes[day], dreamer_dir=Path(dreamer_dir) / "dreamer",
                                  timed=lambda: Timed(counter, n_model, peak), seed=curriculum.seed, day=day,
                                  report_so_far=out)
            if day < last:
                earlier.append(out)
    _write(args.out, out)
    print(f"wrote {args.out}")


def night_at_scale(args, sleeper, dreaming, dreaming_overrides: dict | None, lessons: list[dict],
                   dreams: list[dict] | None, *, world, episodes: list[dict], dreamer_dir: Path, timed, seed: int,
                   day: int, report_so_far: dict) -> dict:
    """Day `day`'s night, Knowledge Seeding and (with `dreaming`) then Dreaming, each part in a
    `timed()`; tau set aside with the curriculum's `seed`, as `lmsleep.bench` does. After each
    part, `report_so_far` and what the night has measured are written to `--out`: what a run that
    dies in the middle of a night still leaves."""
    tau, seeded = [], lessons
    if dreaming is not None:
        from lmsleep.baselines import set_aside_checks

        lessons, tau = set_aside_checks(lessons, {ep["id"] for ep in episodes}, dreaming.share_set_aside(None), seed,
                                        dreaming.tau_by_answer)
        seeded = lessons if dreaming.seeding else []  # dreams only: no lesson is seeded (lmsleep.bench)
    with timed() as seeding:
        report = sleeper.night(episodes, seeded)
    out = {"lessons": len(seeded), **seeding.stats, "steps": report["steps"], "counts": report["counts"]}
    n_steps = sum(s.get("steps", 0) for s in report["steps"])
    print(f"day {day}'s night: Knowledge Seeding {out['seconds']:.1f} s, {n_steps} steps; tokens: "
          f"{out['tokens_trained']:,} with gradient, {out['tokens_inferred']:,} without; "
          f"{out['tokens_per_second']:,.0f} tokens/s; {out['model_tflops_per_second']:.1f} model TFLOP/s"
          + (f" = MFU {out['mfu']:.1%}" if out["mfu"] is not None else ""))
    _write(args.out, report_so_far | out)
    if dreaming is None:
        return out
    from lmsleep.checks import fit_dreams, world_knowledge
    from lmsleep.dreaming import Dreamer
    from lmsleep.params import validation_limits

    # The dreams pass the bench's checks and what birth taught, as in `lmsleep.bench`.
    limits = validation_limits(args.params)
    knowledge = world_knowledge(world)
    model, tokenizer = sleeper.model, sleeper.tokenizer
    with timed() as night:
        dreamer = Dreamer(model, tokenizer, dreaming, sleeper, dreamer_dir)
        trials = stand_in_trials(model, tokenizer, sleeper.memory, args.helped_share, dreaming.seed + day)
        dreamt = dreamer.night(episodes, lessons, tau, run_trials=trials, written=dreams, knowledge=knowledge,
                               check=lambda d: fit_dreams(d, episodes, limits, knowledge)[0])
    kept = dreamt["kept_dreams"]
    out["dreaming"] = {"overrides": dreaming_overrides, "tau": len(tau), "written": len(dreams),
                       "helped_share": args.helped_share, **night.stats,
                       "stages": dreamt["seconds"], "rehearsal": dreamt["rehearsal"],
                       **{k: dreamt[k] for k in ("set_aside", "dreams", "kept", "helped", "random_expert_routers")},
                       "earned": sum(d["trial"]["earned"] for d in kept)}
    out["night_over_seeding"] = (out["seconds"] + night.stats["seconds"]) / out["seconds"]
    stages = ", ".join(f"{k} {v:.1f}" for k, v in dreamt["seconds"].items())
    print(f"day {day}'s night: dreaming {night.stats['seconds']:.1f} s ({stages}); {dreamt['dreams']} dreams judged, "
          f"{dreamt['kept']} tried, {dreamt['helped']} counted as helped ({out['dreaming']['earned']} earned); "
          f"{night.stats['tokens_per_second']:,.0f} tokens/s; {night.stats['model_tflops_per_second']:.1f} "
          f"model TFLOP/s; the night is {out['night_over_seeding']:.2f}x its seeding")
    _write(args.out, report_so_far | out)
    return out


def key_values(pairs: list[str]) -> dict:
    """`["epochs=1", "lti=false"]` as `{"epochs": 1, "lti": False}` (YAML values)."""
    import yaml

    return {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in pairs)}


def _write(path: Path, out: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
