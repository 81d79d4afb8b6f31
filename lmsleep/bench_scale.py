"""One Knowledge Seeding night at scale: a randomly initialized ~1B Llama on an accelerator.

    python -m lmsleep.bench_scale --lessons L.json --tokenizer models/base    (on a GPU machine)
    python -m lmsleep.bench_scale --tiny ...                                  (a smoke run on a CPU)

What it measures is speed, not quality: the weights are random, so the night's answers are
noise; the shapes, the schedule and every step of a default night are real (rows, replay,
on-policy sampling, learning to imitate, the divergence, the optimizer, settle).
- The lessons are a real night's (the born model's own questions and open-book answers on
  day 0, written by `--teacher` on this machine or read from `--lessons`): a random model
  cannot write them. Nothing reads a probe.
- Tokens are counted by a forward pre-hook on the model: every token a forward pass computes
  (prompts, completions, padding, and each decoding step of sampling), split into passes with
  gradient (the student) and without (the teacher, sampling, replay answers).
- Model FLOPs: 2N per token without gradient, 4N per token with it (the frozen weights get no
  weight gradients, so the backward pass is the activation gradients, ~2N), N the model's own
  parameters (the experts' are < 1%); attention's context term is left out, so MFU is a lower
  bound. MFU = model FLOPs / seconds / the chip's dense bf16 peak (`--peak-tflops`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--size", choices=sorted(SIZES), default="1b")
    ap.add_argument("--tokenizer", type=Path, default=Path("models/base"))
    ap.add_argument("--lessons", type=Path, help="a night's lessons (JSON list); written here from --teacher if absent")
    ap.add_argument("--teacher", type=Path, default=Path("models/base"), help="the born model that writes the lessons")
    ap.add_argument("--encoder", type=Path, help="a sentence-transformers folder for r_sem (default: the packaged one)")
    ap.add_argument("--peak-tflops", type=float, help="the chip's dense bf16 peak (default: from its name)")
    ap.add_argument("--seeding", nargs="*", default=[], metavar="KEY=VALUE",
                    help="seeding config overrides, e.g. lmbda=0 lti=false (to see what sampling costs)")
    ap.add_argument("--out", type=Path, default=Path("reports/bench_scale.json"))
    args = ap.parse_args(argv)
    import torch
    from transformers import AutoTokenizer

    from lmsleep.logs import quiet_libraries
    from lmsleep.params import load_params
    from lmsleep.rewards import SemanticJudge, imitation_reward
    from lmsleep.sleep import Sleeper
    from lmsleep.world import World

    quiet_libraries()
    params = load_params(args.params)
    episodes = World(params.world).day(0)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    if args.lessons and args.lessons.exists():
        lessons = json.loads(args.lessons.read_text())
    else:
        from transformers import AutoModelForCausalLM

        from lmsleep.baselines import teacher_curriculum

        teacher = AutoModelForCausalLM.from_pretrained(args.teacher)
        lessons, _ = teacher_curriculum(teacher, tokenizer, episodes, params.curriculum_for("knowledge_seeding"))
        if args.lessons:
            args.lessons.parent.mkdir(parents=True, exist_ok=True)
            args.lessons.write_text(json.dumps(lessons))
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    model = random_llama(args.size, len(tokenizer), params.seeding.seed, device)
    n_model = sum(p.numel() for p in model.parameters())
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (kv.split("=", 1) for kv in args.seeding)}
    config = replace(params.seeding, **{"bf16": cuda, **overrides})
    judge = None
    if args.encoder:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(args.encoder), device=device)
        judge = SemanticJudge(lambda texts: st.encode(texts, convert_to_tensor=True, normalize_embeddings=True,
                                                      show_progress_bar=False), config.sem_threshold)
    reward = imitation_reward(config.gamma, config.z0, judge or SemanticJudge(threshold=config.sem_threshold))
    sleeper = Sleeper(model, tokenizer, config, params.memory, reward=reward)
    counter = TokenCounter(model)
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    report = sleeper.night(episodes, lessons)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    flops = 2 * n_model * counter.inferred + 4 * n_model * counter.trained
    out = {"device": name, "size": args.size, "seeding_overrides": overrides, "model_parameters": n_model, "bf16": config.bf16,
           "lessons": len(lessons), "seconds": seconds, "tokens_trained": counter.trained,
           "tokens_inferred": counter.inferred, "tokens_per_second": (counter.trained + counter.inferred) / seconds,
           "model_tflops_per_second": flops / seconds / 1e12, "peak_tflops": peak,
           "mfu": flops / seconds / 1e12 / peak if peak else None,
           "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "steps": report["steps"], "counts": report["counts"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"{name}: one night of Knowledge Seeding on a random {args.size} Llama ({n_model / 1e9:.2f} B parameters, "
          f"bf16 {config.bf16}): {seconds:.1f} s, {sum(s.get('steps', 0) for s in report['steps'])} steps")
    print(f"tokens: {counter.trained:,} with gradient, {counter.inferred:,} without; "
          f"{out['tokens_per_second']:,.0f} tokens/s; {out['model_tflops_per_second']:.1f} model TFLOP/s"
          + (f" = MFU {out['mfu']:.1%} of {peak} TFLOP/s" if peak else ""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
