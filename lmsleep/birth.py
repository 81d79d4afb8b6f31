"""Birth: pre-train the embedded default model from scratch on the base world.

    python -m lmsleep.birth --out models/base --minutes 20

The born model is the teacher every night distils from, so it must (1) read a fact about a
stranger out of its context (open-book), (2) know the base population by heart (closed-book),
and (3) restate a biography in other words and pose-and-answer questions about it (what dreams
sample). It must *not* know tomorrow's people.

Steps:
1. A byte-level BPE tokenizer is trained on world text with `tokenizers` (every UTF-8 string
   round-trips: bytes, not characters, are the alphabet).
2. A small Llama (`transformers`) is trained on an endless, seeded mix of documents:
   base bios and closed-book Q/A (memory), bios of *fresh random people* followed by Q/A about
   them (reading: they can only be answered from the context), the same with an employer
   update, and bio -> "In other words:" -> another rendering (restatement).
3. The schedule runs on `progress = max(step / steps, elapsed / budget)`: on a machine fast
   enough it is step-bound and reproducible; on a slower one the time budget anneals the
   learning rate so birth still ends on time.
4. A checkpoint every few minutes; a rerun resumes from it. The model is saved with
   `save_pretrained` (safetensors) and measured into `reports/birth.json`.

Why a hand-written loop and not `transformers.Trainer`: the data is generated on the fly and
the schedule is bounded by wall-clock time; both fight Trainer's epoch/step bookkeeping.
Later stages (seeding, dreaming, baselines) do go through TRL/transformers trainers.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmsleep.world import ATTRIBUTES, Person, World, WorldConfig, closed_book_prompt, restate_prompt

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
BUCKET = 8  # batches drawn together and sorted by length


@dataclass
class BirthConfig:
    """Knobs of birth (params.yaml `birth:`)."""

    vocab_size: int = 2048  # byte-level BPE; small keeps the embedding cheap on CPU
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 384  # longest document; a day's episode is one biography (~90 tokens)
    batch_size: int = 32
    steps: int = 2400  # the reproducible schedule length; `minutes` caps it on slow machines
    minutes: float = 20.0  # wall-clock budget on 2 CPU cores, checkpoint and measure excluded
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 100
    weight_decay: float = 0.0  # memorizing the base population is the point; no decay
    bf16: bool = True  # bf16 autocast: ~2.3x faster than fp32 on this CPU
    threads: int = 2
    checkpoint_minutes: float = 2.0
    tokenizer_docs: int = 20000  # sampled documents the BPE is trained on (covers every syllable)
    seed: int = 0
    # Share of each document kind in the training mix (normalized).
    mix: dict[str, float] = field(default_factory=lambda: {
        "base_bio": 0.15, "base_qa": 0.25, "read": 0.35, "read_update": 0.10, "restate": 0.15})


# -- documents ----------------------------------------------------------------------------------
def _qa(person: Person, attrs, rng: random.Random, world: World) -> str:
    return "".join(f"{closed_book_prompt(world.question(person, a, rng))} {person.facts[a]}\n"
                   for a in attrs)


def sample_document(world: World, rng: random.Random, mix: dict[str, float]) -> str:
    """One training document of a kind drawn from `mix`."""
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind == "base_bio":
        return world.bio(rng.choice(world.base), rng)
    if kind == "base_qa":
        people = [rng.choice(world.base) for _ in range(rng.randint(1, 4))]
        return "".join(_qa(p, [rng.choice(ATTRIBUTES)], rng, world) for p in people).rstrip("\n")
    if kind == "read":
        p = world.random_person(rng)
        attrs = rng.sample(ATTRIBUTES, rng.randint(2, 5))
        return f"{world.bio(p, rng)}\n\n" + _qa(p, attrs, rng, world).rstrip("\n")
    if kind == "read_update":
        p = world.random_person(rng)
        new = rng.choice([e for e in world.values["employer"] if e != p.facts["employer"]])
        text = world.bio(p, rng) + "\n" + world.update_text(p, p.facts["employer"], new, rng)
        moved = Person(p.id, p.first, p.last, {**p.facts, "employer": new})
        attrs = ["employer"] + rng.sample([a for a in ATTRIBUTES if a != "employer"], rng.randint(0, 2))
        rng.shuffle(attrs)
        return f"{text}\n\n" + _qa(moved, attrs, rng, world).rstrip("\n")
    if kind == "restate":
        p = world.random_person(rng)
        return f"{restate_prompt(world.bio(p, rng))} {world.bio(p, rng)}"
    raise ValueError(f"unknown document kind {kind!r} in birth.mix")


# -- tokenizer ------------------------------------------------------------------------------------
def train_tokenizer(world: World, vocab_size: int, seed: int = 0, n_docs: int = 20000):
    """Byte-level BPE on world text, wrapped as a `PreTrainedTokenizerFast` (adds BOS)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(f"tokenizer-{seed}")
    mix = BirthConfig().mix
    corpus = [sample_document(world, rng, mix) for _ in range(n_docs)]
    corpus += [world.bio(p, rng) for day in world.stream for p in day]  # stream names tokenize alike
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   clean_up_tokenization_spaces=False, model_max_length=4096)


def new_model(config: BirthConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    mc = LlamaConfig(vocab_size=len(tokenizer), hidden_size=config.hidden_size,
                     intermediate_size=config.intermediate_size, num_hidden_layers=config.num_layers,
                     num_attention_heads=config.num_heads, num_key_value_heads=config.num_heads,
                     max_position_embeddings=max(512, config.max_length), tie_word_embeddings=True,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(mc)


def batch(tokenizer, docs: list[str], max_length: int):
    """Right-padded input ids and labels (padding ignored); each document ends with EOS."""
    import torch

    ids = [tokenizer(d)["input_ids"][: max_length - 1] + [tokenizer.eos_token_id] for d in docs]
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), tokenizer.pad_token_id)
    labels = torch.full((len(ids), width), -100)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        labels[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return input_ids, mask, labels


def lr_at(progress: float, step: int, c: BirthConfig) -> float:
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * cos)


# -- training -------------------------------------------------------------------------------------
def train(config: BirthConfig, world: World, out: Path, log=print, on_step=None) -> dict:
    """Train (or resume) the born model into `out`; returns timing facts.

    `on_step(step)` is called after every optimizer step (tests use it to interrupt)."""
    import torch
    from safetensors.torch import load_model, save_model
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    if (ckpt / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(ckpt)
    else:
        tokenizer = train_tokenizer(world, config.vocab_size, config.seed, config.tokenizer_docs)
        tokenizer.save_pretrained(ckpt)
    model = new_model(config, tokenizer)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, betas=(0.9, 0.95),
                            weight_decay=config.weight_decay)
    step, elapsed = 0, 0.0
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        load_model(model, ckpt / "model.safetensors")
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        step, elapsed = state["step"], state["elapsed"]
        log(f"birth: resuming from step {step} ({elapsed / 60:.1f} min already spent)")
    budget = config.minutes * 60
    n_params = sum(p.numel() for p in model.parameters())
    log(f"birth: {n_params / 1e6:.2f} M parameters, {config.steps} steps or {config.minutes} min")

    def save_checkpoint():
        save_model(model, str(ckpt / "model.safetensors"))
        torch.save(opt.state_dict(), ckpt / "optimizer.pt")
        (ckpt / "state.json").write_text(json.dumps({"step": step, "elapsed": elapsed}))

    cache: dict[int, list] = {}

    def batches(step: int):
        # Data is a pure function of the step (resumable, reproducible). Documents are drawn in
        # groups of BUCKET batches and sorted by length, which halves the compute spent on padding.
        group = step // BUCKET
        if group not in cache:
            cache.clear()
            rng = random.Random(f"birth-{config.seed}-{group}")
            docs = [sample_document(world, rng, config.mix) for _ in range(BUCKET * config.batch_size)]
            docs.sort(key=len)
            chunks = [docs[i * config.batch_size:(i + 1) * config.batch_size] for i in range(BUCKET)]
            rng.shuffle(chunks)
            cache[group] = chunks
        return batch(tokenizer, cache[group][step % BUCKET], config.max_length)

    model.train()
    tokens = 0
    t_start, last_ckpt = time.time() - elapsed, time.time()
    bar = tqdm(total=config.steps, initial=step, desc="birth", unit="step")
    progress = max(step / config.steps, elapsed / budget)
    while progress < 1.0:
        input_ids, mask, labels = batches(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, step, config)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += int(mask.sum())
        elapsed = time.time() - t_start
        progress = max(step / config.steps, elapsed / budget)
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}",
                            tok_s=f"{tokens / max(1e-9, time.time() - last_ckpt):.0f}")
        if time.time() - last_ckpt >= config.checkpoint_minutes * 60:
            save_checkpoint()
            last_ckpt, tokens = time.time(), 0
        if on_step is not None:
            on_step(step)
    bar.close()
    save_checkpoint()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # The world it was born on: later stages know its base population is worth retaining.
    (out / "world.json").write_text(json.dumps(asdict(world.config), indent=2))
    shutil.rmtree(ckpt)  # born: the resume state (twice the model's size) has served its purpose
    return {"steps": step, "minutes": elapsed / 60, "params": n_params}


def measure(model, tokenizer, world: World, n: int = 200) -> dict:
    """The birth report: the three accuracies, restatement, and per-attribute reading."""
    from lmsleep import evaluation as ev

    rng = random.Random("birth-measure")
    strangers = world.strangers[:n]
    base = rng.sample(world.base, min(n, len(world.base)))
    unseen = [p for day in world.stream for p in day][:n]

    def probes(people, family="train"):
        prs = [pr for p in people for pr in world.probes(p, rng, family)]
        return [pr.as_dict() for pr in prs], [pr.attribute for pr in prs]

    s_probes, s_attrs = probes(strangers)
    contexts = [world.bio(p, rng) for p in strangers for _ in ATTRIBUTES]
    reading = ev.per_attribute_accuracy(model, tokenizer, s_probes, s_attrs, contexts)
    b_probes, b_attrs = probes(base)
    base_by_attr = ev.per_attribute_accuracy(model, tokenizer, b_probes, b_attrs)
    restate = ev.restatement(model, tokenizer, world, strangers[:100])
    asked = ev.self_questions(model, tokenizer, world, strangers[:100])
    return {
        "open_book": sum(reading.values()) / len(reading),
        "closed_book_base": sum(base_by_attr.values()) / len(base_by_attr),
        "closed_book_unseen": ev.accuracy(model, tokenizer, probes(unseen)[0]),
        "paraphrase_base": ev.accuracy(model, tokenizer, probes(base, "heldout")[0]),
        "restatement": restate["precision"],
        "restatement_coverage": restate["coverage"],
        "self_questions_posed": asked["posed"],
        "self_questions_answered": asked["answered"],
        "open_book_by_attribute": reading,
        "closed_book_base_by_attribute": base_by_attr,
    }


def birth(config: BirthConfig, world_config: WorldConfig, out: Path, report: Path | None = None,
          log=print) -> dict:
    """Train, save and measure the born model; write `report` (reports/birth.json)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    world = World(world_config)
    facts = train(config, world, out, log=log)
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    result = {**measure(model, tokenizer, world), **facts,
              "config": asdict(config), "world": asdict(world_config)}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("models/base"))
    ap.add_argument("--report", type=Path, default=Path("reports/birth.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--minutes", type=float, help="override birth.minutes")
    ap.add_argument("--steps", type=int, help="override birth.steps")
    args = ap.parse_args(argv)
    from lmsleep.logs import quiet_libraries
    from lmsleep.params import load_params

    quiet_libraries()
    params = load_params(args.params)
    config, world_config = params.birth, params.world
    if args.minutes is not None:
        config.minutes = args.minutes
    if args.steps is not None:
        config.steps = args.steps
    result = birth(config, world_config, args.out, args.report)
    keys = ("open_book", "closed_book_base", "closed_book_unseen", "restatement", "minutes", "params")
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
