"""Birth: pre-train the embedded default model from scratch on the base world.

    python -m lmsleep.birth --out models/base   (make birth; 13-18 min on 2 CPU cores)
    python -m lmsleep.birth --check             (make birth-check: does this machine make the recorded model?)

The born model is the teacher every night distils from, so it must (1) read facts about
strangers out of its context, also from notes about six people at once and in wordings it was
never born on, (2) know the base population and where every company is based by heart, asked
in question forms it has never seen, (3) combine the two (where does the employer of the person
in this text sit?), and (4) restate a biography in other words (what dreams sample). It must
*not* know tomorrow's people.

Steps:
1. A byte-level BPE tokenizer is trained on world text with `tokenizers` (every UTF-8 string
   round-trips: bytes, not characters, are the alphabet).
2. A small Llama (`transformers`) is trained on an endless, seeded mix of documents
   (`sample_document`): base biographies and closed-book Q/A (memory), company headquarters,
   notes about 1 to 6 *fresh random people* followed by questions about them, implications
   among them (reading: they can only be answered from the context), the same with an employer
   update, and bio -> "In other words:" -> another rendering (restatement). Questions come
   from the grammar's `train` family only; the `heldout` families are the exam.
   Reading is taught as a curriculum (`reading_stage`): notes state one fact per person first
   (copy the value), then all five (choose by the asked type), then speak of up to six people
   (choose by person); answer tokens weigh `answer_weight` in the loss. Without the curriculum
   reading never emerged in 4.5 M tokens (docs/birth.md).
3. A step is a fixed budget of tokens (`tokens_per_step`): its documents are sorted by length
   and cut into micro-batches of about `micro_tokens` tokens (gradients accumulate), so little
   compute goes to padding and none to attention across documents. (Packing documents into
   long rows was measured slower on 2 cores: attention over 1,024-token rows costs more than
   the ~7% padding this leaves.)
4. The schedule is step-bound (`steps`, cosine) and the arithmetic deterministic
   (`torch.use_deterministic_algorithms`: compiled, the embedding's backward otherwise sums with
   atomic adds, and no two births were the same bytes, measured). A clock cap (`minutes`) is
   opt-in; when it cuts, it says so loudly and birth.json records `clock_capped: true`.
   Another CPU kind rounds differently (its kernels use other instructions), so birth.json keeps
   a *canary*: a hash of the weights after `canary_step` steps. A birth that misses the recorded
   canary says so at that step, and `--check` answers "does this machine make the recorded model?"
   in one to three minutes.
5. A checkpoint every few minutes; a rerun resumes from it. The model is saved with
   `save_pretrained` (safetensors) and measured into `reports/birth.json`, with the steps done,
   tokens/s, and the share of the CPU's measured bf16 matmul peak that birth achieved.

Why a hand-written loop and not `transformers.Trainer`: the data is generated on the fly and
packed per step; Trainer's epoch/dataset bookkeeping adds nothing here. Later stages
(seeding, dreaming, baselines) do go through TRL/transformers trainers.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from lmsleep.grammar import ATTRIBUTES
from lmsleep.world import Person, World, WorldConfig, closed_book_prompt, restate_prompt

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


@dataclass
class BirthConfig:
    """Knobs of birth (params.yaml `birth:`)."""

    vocab_size: int = 2048  # byte-level BPE; small keeps the embedding cheap on CPU
    hidden_size: int = 256
    intermediate_size: int = 768
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 768  # longest document; six people and their questions fit
    tokens_per_step: int = 3072  # non-padding tokens drawn per optimizer step
    micro_tokens: int = 1024  # tokens (padding included) per forward pass; gradients accumulate
    steps: int = 1600  # the schedule: the same model on every machine
    minutes: float | None = None  # opt-in wall-clock cap (checkpoint and measure excluded); loud when it cuts
    lr: float = 2e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 30
    weight_decay: float = 0.0  # memorizing the base population is the point; no decay
    # fp32 by default: bf16 autocast is ~2.3x faster on CPUs with bf16 matmul units (AMX) and
    # ~15x *slower* without them (AMD EPYC with AVX2 only, measured); a fixed dtype keeps the
    # born model the same everywhere.
    bf16: bool = False
    # torch.compile: 1.47x the tokens/s of eager on 2 cores (measured), after ~2 min of compiling;
    # falls back to eager (and says so in birth.json) where it cannot compile.
    compile: bool = True
    # The reading curriculum (`reading_stage`). Copying *the* value from a note is learned first,
    # on notes stating one fact; choosing the value of the asked type among several comes next,
    # then choosing by person among several people. Notes state one fact per person until the
    # first share of the schedule, up to all five by the second; they are about one person until
    # `single_person_until`. (Three runs with full notes from the start never learned to read; a
    # one-fact note is copied within ~0.6 M tokens, measured.)
    facts_ramp: tuple[float, float] = (0.12, 0.3)
    # Answer tokens (after "A:") weigh this much in the loss, the note's unpredictable names and
    # values 1: reading's signal stands out of their noise (3 read twice as well as 1 after
    # ~1M tokens in a measured pair of runs).
    answer_weight: float = 3.0
    single_person_until: float = 0.4
    threads: int = 2  # fixed, not the machine's core count: a parallel reduction's order depends on it
    canary_step: int = 40  # the weights' hash at this step goes into birth.json (see `--check`)
    checkpoint_minutes: float = 2.0
    tokenizer_docs: int = 20000  # sampled documents the BPE is trained on (covers every syllable)
    seed: int = 0
    # Share of each document kind in the training mix (normalized; per document, not per token).
    mix: dict[str, float] = field(default_factory=lambda: {
        "base_bio": 0.10, "base_qa": 0.30, "company": 0.03, "read": 0.45, "read_update": 0.05, "restate": 0.07})


# -- documents ----------------------------------------------------------------------------------
def _qa(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"{closed_book_prompt(q)} {a}" for q, a in pairs)


def _questions(world: World, people: list[Person], rng: random.Random, n: int, implication: float,
               stated: dict[str, tuple[str, ...]] | None = None) -> list:
    """`n` train-family questions about random (person, stated attribute) pairs, and with
    probability `implication` one two-hop question (where a person's employer is based) about
    someone whose employer is stated."""
    stated = stated or {p.id: ATTRIBUTES for p in people}
    pairs = []
    for _ in range(n):
        p = rng.choice(people)
        a = rng.choice(stated[p.id])
        pairs.append((world.question(p, a, rng), p.facts[a]))
    employed = [p for p in people if "employer" in stated[p.id]]
    if employed and rng.random() < implication:
        p = rng.choice(employed)
        at = rng.randint(0, len(pairs))  # drawn before the question: the same documents as before
        imp = world.implication(p, rng)
        pairs.insert(at, (imp.question, imp.answer))
    return pairs


def _stated(rng: random.Random, max_facts: int) -> tuple[str, ...]:
    """The attributes a reading note states about one person: all five, or early in the reading
    curriculum 1 to `max_facts` of them."""
    if max_facts >= len(ATTRIBUTES):
        return ATTRIBUTES
    return tuple(rng.sample(ATTRIBUTES, rng.randint(1, max_facts)))


def sample_document(world: World, rng: random.Random, mix: dict[str, float], max_people: int = 6,
                    max_facts: int = len(ATTRIBUTES)) -> str:
    """One training document of a kind drawn from `mix`; reading notes are about 1 to `max_people`
    people and state 1 to `max_facts` facts about each (the reading curriculum, `reading_stage`)."""
    kind = rng.choices(list(mix), weights=list(mix.values()))[0]
    if kind == "base_bio":
        return world.text(rng.sample(world.base, rng.randint(1, 3)), rng)
    if kind == "base_qa":
        people = [rng.choice(world.base) for _ in range(rng.randint(2, 5))]
        return _qa([pair for p in people for pair in _questions(world, [p], rng, 1, 0.0)])
    if kind == "company":
        companies = rng.sample(world.values["employer"], rng.randint(1, 4))
        if rng.random() < 0.5:
            return " ".join(world.company_sentence(c, rng) for c in companies)
        return _qa([(pr.question, pr.answer) for pr in (world.company_probe(c, rng) for c in companies)])
    if kind == "read":
        # Many one-person notes: reading is discovered on short contexts, then carried to long ones.
        people = world.random_people(rng, 1 if rng.random() < 0.45 else rng.randint(1, max_people))
        stated = {p.id: _stated(rng, max_facts) for p in people}
        text = world.text(people, rng, attributes=stated)
        pairs = _questions(world, people, rng, rng.randint(3, 7), implication=0.6, stated=stated)
        return f"{text}\n\n{_qa(pairs)}"
    if kind == "read_update":
        p, *others = world.random_people(rng, rng.randint(1, min(4, max_people)))
        new = rng.choice([e for e in world.values["employer"] if e != p.facts["employer"]])
        text = world.text(others, rng, extra=[world.update_sentence(p, p.facts["employer"], new, rng)]) \
            if others else world.bio(p, rng) + "\n" + world.update_sentence(p, p.facts["employer"], new, rng)
        moved = p.moved(new)
        pairs = [(world.question(moved, "employer", rng), new)]
        if rng.random() < 0.5:
            imp = world.implication(moved, rng)
            pairs.append((imp.question, imp.answer))
        pairs += _questions(world, others, rng, rng.randint(0, 2), 0.0) if others else []
        rng.shuffle(pairs)
        return f"{text}\n\n{_qa(pairs)}"
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
                     max_position_embeddings=max(1024, config.max_length), tie_word_embeddings=True,
                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(mc)


def micro_batches(tokenizer, docs: list[str], max_length: int, micro_tokens: int) -> list[tuple]:
    """Documents (BOS ... EOS) sorted by length and cut into right-padded micro-batches of about
    `micro_tokens` tokens: (input_ids, attention_mask, labels) each, padding ignored by the loss."""
    import torch

    ids = sorted((x[: max_length - 1] + [tokenizer.eos_token_id] for x in tokenizer(docs)["input_ids"]), key=len)
    groups, cur = [], []
    for x in ids:
        if cur and (len(cur) + 1) * len(x) > micro_tokens:
            groups.append(cur)
            cur = []
        cur.append(x)
    groups.append(cur)
    out = []
    for g in groups:
        width = len(g[-1])
        input_ids = torch.full((len(g), width), tokenizer.pad_token_id)
        labels = torch.full((len(g), width), -100)
        mask = torch.zeros((len(g), width), dtype=torch.long)
        for i, row in enumerate(g):
            input_ids[i, : len(row)] = torch.tensor(row)
            labels[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        out.append((input_ids, mask, labels))
    return out


def answer_mask(tokenizer, labels):
    """True where the predicted token (labels[:, 1:]) belongs to an answer: from just after a line
    `A:` up to and including the newline that ends it."""
    import torch

    cue = tokenizer("\nA:", add_special_tokens=False)["input_ids"]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    prev = labels[:, :-1]  # the token before each predicted one
    k = len(cue)
    starts = torch.zeros_like(prev, dtype=torch.bool)
    if prev.shape[1] >= k:
        windows = prev.unfold(1, k, 1)  # windows[:, i] = prev[:, i:i+k]
        starts[:, k - 1:] = (windows == torch.tensor(cue)).all(-1)
    idx = torch.arange(prev.shape[1]).expand_as(prev)
    last_start = torch.where(starts, idx, -1).cummax(1).values
    last_newline = torch.where((prev == newline) & ~starts, idx, -1).cummax(1).values
    return (last_start > last_newline) & (labels[:, 1:] != -100)


def token_weights(tokenizer, labels, answer_weight: float):
    """Loss weight of each predicted token: 0 for padding, `answer_weight` in answers, else 1."""
    w = (labels[:, 1:] != -100).float()
    if answer_weight != 1.0:
        w[answer_mask(tokenizer, labels)] = answer_weight
    return w


def reading_stage(config: BirthConfig, step: int) -> tuple[int, int]:
    """(most people per reading note, most facts stated per person) at optimizer step `step`."""
    progress = step / config.steps
    first, full = config.facts_ramp
    if progress < first:
        max_facts = 1
    elif progress >= full:
        max_facts = len(ATTRIBUTES)
    else:
        max_facts = 2 + int((len(ATTRIBUTES) - 1) * (progress - first) / (full - first))
    return (1 if progress < config.single_person_until else 6), max_facts


def step_batches(config: BirthConfig, world: World, tokenizer, step: int) -> list[tuple]:
    """The micro-batches of optimizer step `step`: a pure function of the step (resumable,
    reproducible), about `tokens_per_step` tokens of freshly sampled documents."""
    rng = random.Random(f"birth-{config.seed}-{step}")
    max_people, max_facts = reading_stage(config, step)
    docs, n = [], 0
    while n < config.tokens_per_step:
        docs.append(sample_document(world, rng, config.mix, max_people, max_facts))
        n += len(tokenizer(docs[-1])["input_ids"]) + 1
    return micro_batches(tokenizer, docs, config.max_length, config.micro_tokens)


def lr_at(progress: float, step: int, c: BirthConfig) -> float:
    if step < c.warmup_steps:
        return c.lr * (step + 1) / c.warmup_steps
    cos = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return c.lr * (c.min_lr_ratio + (1 - c.min_lr_ratio) * cos)


def matmul_peak(threads: int, n: int = 1024, dtype: str = "bfloat16", seconds: float = 2.0) -> float:
    """The CPU's achievable matmul rate (FLOP/s) on `threads` threads: the denominator of MFU."""
    import torch

    torch.set_num_threads(threads)
    a = torch.randn(n, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b  # warm up
    t0, k = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        k += 1
    return 2 * n ** 3 * k / (time.perf_counter() - t0)


def flops_per_token(model, seq_ctx: float) -> float:
    """6 x (matmul parameters, the tied LM head included) + causal attention over `seq_ctx`."""
    c = model.config
    params = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n)
    params += c.vocab_size * c.hidden_size  # the (tied) LM head is a matmul all the same
    return 6 * params + 6 * c.num_hidden_layers * c.hidden_size * seq_ctx


def weights_md5(model) -> str:
    """A hash of every parameter's bytes, in name order: equal hashes, the same model."""
    import hashlib

    h = hashlib.md5()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def numerics() -> dict:
    """What the born model's bytes depend on besides the params: torch, its CPU kernels, the CPU."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu": cpu_name()}


# Knobs that do not change the weights up to the canary step.
_CLOCK = ("minutes", "checkpoint_minutes")


def recorded_canary(report: Path | None, config: BirthConfig, world_config: WorldConfig) -> dict | None:
    """The canary of the birth recorded in `report`, when that birth had these params (else None)."""
    if report is None or not report.exists():
        return None
    old = json.loads(report.read_text())

    def schedule(c: dict) -> dict:
        return {k: v for k, v in c.items() if k not in _CLOCK}

    if schedule(old.get("config") or {}) != schedule(json.loads(json.dumps(asdict(config)))) or old.get(
            "world") != json.loads(json.dumps(asdict(world_config))) or not old.get("canary"):
        return None
    return {**old["canary"], "numerics": old.get("numerics")}


# -- training -------------------------------------------------------------------------------------
def train(config: BirthConfig, world: World, out: Path, log=print, on_step=None,
          expect_canary: dict | None = None, stop_at: int | None = None) -> dict:
    """Train (or resume) the born model into `out`; returns the facts of the run.

    `on_step(step)` is called after every optimizer step (tests use it to interrupt).
    `expect_canary` (a recorded birth's canary) is compared at `canary_step`: a mismatch is said
    loudly and recorded (`reproduces: false`). `stop_at` ends after that many steps (`--check`)."""
    import torch

    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config, world, out, log, on_step, expect_canary, stop_at)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _train(config: BirthConfig, world: World, out: Path, log, on_step, expect_canary, stop_at) -> dict:
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
    step, elapsed, tokens, ctx_sum = 0, 0.0, 0, 0.0  # ctx_sum: summed causal context, for FLOPs
    canary = None  # {"step", "md5"}, taken at config.canary_step
    if (ckpt / "state.json").exists():
        state = json.loads((ckpt / "state.json").read_text())
        load_model(model, ckpt / "model.safetensors")
        opt.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
        step, elapsed, tokens, ctx_sum = state["step"], state["elapsed"], state["tokens"], state["ctx_sum"]
        canary = state.get("canary")
        log(f"birth: resuming from step {step} ({elapsed / 60:.1f} min already spent)")
    budget = config.minutes * 60 if config.minutes else math.inf
    n_params = sum(p.numel() for p in model.parameters())
    log(f"birth: {n_params / 1e6:.2f} M parameters, {config.steps} steps x {config.tokens_per_step} tokens"
        + (f", capped at {config.minutes} min" if config.minutes else ""))

    def save_checkpoint():
        save_model(model, str(ckpt / "model.safetensors"))
        torch.save(opt.state_dict(), ckpt / "optimizer.pt")
        (ckpt / "state.json").write_text(json.dumps({"step": step, "elapsed": elapsed, "tokens": tokens,
                                                     "ctx_sum": ctx_sum, "canary": canary}))

    forward = torch.compile(model) if config.compile else model
    model.train()
    t_start, last_ckpt = time.time() - elapsed, time.time()
    last = config.steps if stop_at is None else min(config.steps, stop_at)
    bar = tqdm(total=last, initial=step, desc="birth" if stop_at is None else "birth check", unit="step")
    progress = max(step / config.steps, elapsed / budget)
    window_tokens, window_t = 0, time.time()
    while progress < 1.0 and step < last:
        micro = step_batches(config, world, tokenizer, step)
        for g in opt.param_groups:
            g["lr"] = lr_at(progress, step, config)
        # One weighted mean over every predicted token of the step, whatever the micro-batching.
        weights = [token_weights(tokenizer, labels, config.answer_weight) for _, _, labels in micro]
        total = sum(float(w.sum()) for w in weights)
        loss_sum = 0.0
        for (input_ids, mask, labels), w in zip(micro, weights):
            kwargs = dict(input_ids=input_ids, attention_mask=mask, use_cache=False)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
                try:
                    logits = forward(**kwargs).logits
                except Exception as e:  # compiling failed (no C++ toolchain, ...): eager is the same math
                    if forward is model:
                        raise
                    log(f"birth: torch.compile failed ({type(e).__name__}: {e}); training eagerly")
                    forward = model
                    logits = forward(**kwargs).logits
            nll = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(),
                                                    labels[:, 1:].flatten(), reduction="none", ignore_index=-100)
            loss = (nll * w.flatten()).sum() / total
            loss.backward()
            loss_sum += loss.item()
            n = int(mask.sum())
            tokens += n
            window_tokens += n
            ctx_sum += float(mask.sum(1).pow(2).sum() / 2)  # a row of length L attends to L/2 on average
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        elapsed = time.time() - t_start
        progress = max(step / config.steps, elapsed / budget)
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss_sum:.3f}", lr=f"{opt.param_groups[0]['lr']:.1e}",
                            tok_s=f"{window_tokens / max(1e-9, time.time() - window_t):.0f}")
            window_tokens, window_t = 0, time.time()
        # Before a checkpoint (a resumed birth keeps it). Not under a clock cap: the learning rate
        # then follows the clock, and the weights with it.
        if step == min(config.canary_step, config.steps) and not config.minutes:
            canary = {"step": step, "md5": weights_md5(model)}
            if expect_canary and expect_canary["step"] == step and expect_canary["md5"] != canary["md5"]:
                log(f"WARNING: at step {step} this birth's weights differ from the recorded birth's (born with "
                    f"{expect_canary.get('numerics')}, here {numerics()}): this machine will make another model "
                    "than the one reports/birth.json describes. Compare figures only between models born alike.")
        if time.time() - last_ckpt >= config.checkpoint_minutes * 60:
            save_checkpoint()
            last_ckpt = time.time()
        if on_step is not None:
            on_step(step)
    bar.close()
    if stop_at is not None and step < config.steps:  # a check, not a birth: nothing to save
        return {"steps": step, "canary": canary}
    clock_capped = step < config.steps
    if clock_capped:
        log(f"WARNING: birth stopped by its clock cap (birth.minutes={config.minutes}) at step {step} of "
            f"{config.steps}: this machine made a weaker model than the schedule asks for. Remove the cap "
            "for the reproducible model.")
    save_checkpoint()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # The world it was born on: later stages know its base population is worth retaining.
    (out / "world.json").write_text(json.dumps(asdict(world.config), indent=2))
    shutil.rmtree(ckpt)  # born: the resume state (twice the model's size) has served its purpose
    tps = tokens / max(elapsed, 1e-9)
    fpt = flops_per_token(model, ctx_sum / max(tokens, 1))
    reproduces = None if not expect_canary or not canary else expect_canary["md5"] == canary["md5"]
    return {"steps": step, "canary": canary, "reproduces": reproduces, "weights_md5": weights_md5(model),
            "minutes": elapsed / 60, "params": n_params, "tokens": tokens,
            "tokens_per_second": tps, "clock_capped": clock_capped, "compiled": forward is not model, "flops_per_token": fpt,
            "achieved_flops": tps * fpt}


def cpu_name() -> str:
    """The CPU's model name: the same steps on another CPU kind give a different model (its
    kernels round differently, and training amplifies it), so the report says where it was born."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure(model, tokenizer, world: World, n: int = 200) -> dict:
    """The birth report: reading (five ways), memory (three), restatement, self-questions."""
    from lmsleep import evaluation as ev

    rng = random.Random("birth-measure")
    strangers = world.strangers[:n]
    base = rng.sample(world.base, min(n, len(world.base)))
    unseen = [p for day in world.stream for p in day][:n]

    def probes(people, family="train"):
        prs = [pr for p in people for pr in world.probes(p, rng, family)]
        return [pr.as_dict() for pr in prs], [pr.attribute for pr in prs]

    def bios(people, family="train"):
        return [world.bio(p, rng, family=family) for p in people for _ in ATTRIBUTES]

    s_probes, s_attrs = probes(strangers)
    reading = ev.per_attribute_accuracy(model, tokenizer, s_probes, s_attrs, bios(strangers))
    b_probes, b_attrs = probes(base)
    base_by_attr = ev.per_attribute_accuracy(model, tokenizer, b_probes, b_attrs)
    # Six people in one note, one question each about every one of them.
    groups = [strangers[i:i + 6] for i in range(0, len(strangers) - 5, 6)]
    multi, multi_ctx = [], []
    for g in groups:
        text = world.text(g, rng)
        for p in g:
            multi.append(rng.choice(world.probes(p, rng)).as_dict())
            multi_ctx.append(text)
    implications = [world.implication(p, rng).as_dict() for p in strangers]
    companies = [world.company_probe(c, rng).as_dict() for c in world.values["employer"]]
    restate = ev.restatement(model, tokenizer, world, strangers[:100])
    asked = ev.self_questions(model, tokenizer, world, strangers[:100])
    return {
        "open_book": sum(reading.values()) / len(reading),
        "open_book_heldout": ev.accuracy(model, tokenizer, probes(strangers, "heldout")[0], bios(strangers)),
        "open_book_multi": ev.accuracy(model, tokenizer, multi, multi_ctx),
        "open_book_implication": ev.accuracy(model, tokenizer, implications, bios(strangers)[::len(ATTRIBUTES)]),
        "open_book_heldout_bio": ev.accuracy(model, tokenizer, s_probes, bios(strangers, "heldout")),
        "closed_book_base": sum(base_by_attr.values()) / len(base_by_attr),
        "closed_book_base_heldout": ev.accuracy(model, tokenizer, probes(base, "heldout")[0]),
        "closed_book_unseen": ev.accuracy(model, tokenizer, probes(unseen)[0]),
        "closed_book_headquarters": ev.accuracy(model, tokenizer, companies),
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
    expected = recorded_canary(report, config, world_config)  # read before this birth overwrites it
    facts = train(config, world, out, log=log, expect_canary=expected)
    peaks = {d: matmul_peak(config.threads, dtype=d) for d in ("bfloat16", "float32")}
    peak = peaks["bfloat16" if config.bf16 else "float32"]
    facts |= {"matmul_peak_bf16_flops": peaks["bfloat16"], "matmul_peak_fp32_flops": peaks["float32"],
              "mfu": facts["achieved_flops"] / peak, "cpu": cpu_name(), "numerics": numerics()}
    log(f"birth: {facts['steps']} steps in {facts['minutes']:.1f} min, {facts['tokens_per_second']:.0f} tokens/s, "
        f"{facts['achieved_flops'] / 1e9:.1f} GFLOP/s = {facts['mfu']:.0%} of this CPU's measured "
        f"{'bf16' if config.bf16 else 'fp32'} matmul peak (bf16 {peaks['bfloat16'] / 1e9:.1f}, "
        f"fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s on {config.threads} threads)")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    result = {**measure(model, tokenizer, world), **facts,
              "config": asdict(config), "world": asdict(world_config)}
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps(result, indent=2))
    return result


def check(config: BirthConfig, world_config: WorldConfig, report: Path, log=print) -> bool:
    """Does this machine make the model `report` describes? Runs birth to the recorded canary
    step in a scratch directory and compares the weights' hash (a minute or two)."""
    import tempfile

    expected = recorded_canary(report, config, world_config)
    if expected is None:
        raise SystemExit(f"{report} records no canary for these params (born with other params, or before "
                         "canaries were recorded): nothing to check against")
    config = replace(config, minutes=None)  # the canary is the schedule's, never the clock's
    with tempfile.TemporaryDirectory(prefix="lmsleep-birth-check-") as tmp:
        got = train(config, World(world_config), Path(tmp), log=log, stop_at=expected["step"])["canary"]
    if got is None:
        raise SystemExit(f"birth stopped before step {expected['step']}: nothing to compare")
    same = got == {"step": expected["step"], "md5": expected["md5"]}
    log(f"birth check: step {expected['step']} weights {got['md5']}, recorded {expected['md5']}: "
        + ("this machine makes the recorded model" if same else
           f"this machine makes ANOTHER model (recorded on {expected.get('numerics')}, here {numerics()})"))
    return same


REPORTED = ("open_book", "open_book_heldout", "open_book_multi", "open_book_implication", "open_book_heldout_bio",
            "closed_book_base", "closed_book_base_heldout", "closed_book_unseen", "closed_book_headquarters",
            "restatement", "minutes", "steps", "tokens_per_second", "mfu", "compiled", "clock_capped", "params",
            "reproduces")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("models/base"))
    ap.add_argument("--report", type=Path, default=Path("reports/birth.json"))
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--minutes", type=float, help="cap birth at this many minutes (a weaker model if it cuts)")
    ap.add_argument("--steps", type=int, help="override birth.steps")
    ap.add_argument("--check", action="store_true",
                    help="only check that this machine makes the model --report describes (exit 1 if not)")
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
    if args.check:
        raise SystemExit(0 if check(config, world_config, args.report) else 1)
    result = birth(config, world_config, args.out, args.report)
    print(json.dumps({k: result[k] for k in REPORTED}, indent=2))


if __name__ == "__main__":
    main()
