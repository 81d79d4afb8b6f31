"""Knowledge Seeding: upward distillation from the model's smaller self into a new expert.

    memory = Memory.attach(model, MemoryConfig())
    rows = seeding_rows(lessons, episodes) + same_prompt_rows(replay, "replay")   # never probes
    knowledge_seeding(model, tokenizer, memory, rows, SeedingConfig(), sender=0, receiver=1)

PAPER.md section 3. One consolidation (compute, consolidate, update):
1. teacher = the model before the night: tonight's new expert muted, the sender level intact,
   and, for level 0, the episode in its context;
2. student = the same network after `expand` (a new expert in the receiving level, B = 0) with
   the sender level muted (reset when the night commits: synaptic pruning); no context;
3. only the new expert and its router row learn (`Memory.train_only`).
Teacher and student are one set of weights seen through two memory views, so a 7B model is not
held twice.

The loss per batch (maximising L_KS = (1-alpha) E[r] - alpha D):
- generalized distillation: with probability `lmbda` the completions are the student's own
  samples (on-policy), else the teacher's (the rows' `completion`); the teacher scores them with
  its prompt (context + question), the student with its own; the per-token divergence is TRL's
  generalized JSD (`GKDTrainer.generalized_jsd_loss`, `beta`). No gradient through sampling.
- learning to imitate: `lti_rows` teacher answers per batch are cut at a random token (from none
  of it given to all but its last token); the student writes `lti_group` continuations of each
  prefix; rewards (`lmsleep/rewards.py`) against the teacher's rest; group-relative REINFORCE
  (advantage = reward - group mean).
- loss = alpha * divergence + (1 - alpha) * REINFORCE loss.
Replay rows (lmsleep/sleep.py: earlier nights' questions, the model's own, open-book reading) have
the same teacher and student prompt: there the student is held to what the model did before tonight.

Why not a TRL trainer as is: `GKDTrainer` feeds teacher and student the same input ids, and
`SDFTTrainer`'s teachers are a reference copy or an EMA/base adapter; here the teacher is the
same network with another memory view and a longer prompt. `SeedingTrainer` is a
`transformers.Trainer` (progress bars, logging, accelerate/DDP) whose loss is computed here, with
TRL's divergence.
"""

from __future__ import annotations

import random
import re
from contextlib import contextmanager
from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch stays out of params.py's imports
    from lmsleep.memory import Memory


@dataclass
class SeedingConfig:
    """Knobs of Knowledge Seeding (params.yaml `seeding:`); defaults from PAPER.md section 3."""

    lmbda: float = 0.5  # share of on-policy batches (student-sampled completions)
    beta: float = 0.5  # generalized JSD: 0 forward KL(teacher || student), 1 reverse KL
    alpha: float = 0.5  # weight of the divergence against the imitation reward
    gamma: float = 0.5  # r = gamma * r_sem + (1 - gamma) * r_abs
    z0: float = 0.5  # r_abs threshold, a share of the longer string
    sem_threshold: float = 0.8  # cosine at which the encoder judges two texts the same
    temperature: float = 1.0
    learning_rate: float = 1e-2
    # transformers' scheduler names ("constant", "linear", "cosine"): how the rate moves over a run.
    lr_scheduler: str = "constant"
    epochs: int = 8
    batch_size: int = 16
    max_new_tokens: int = 24  # on-policy and LTI completions
    lti_rows: int = 2  # teacher completions cut per batch for learning to imitate
    lti_group: int = 4  # student continuations per prefix
    # Replay rows per new row: 1x -> 2x with the matched questions took day 0's base (held-out)
    # 0.48 -> 0.58 and reading 0.83 -> 0.96 (docs/knowledge-seeding.md).
    replay: float = 2.0
    # Sampling temperature of the questions the model asks itself for replay: lower asks more
    # about what it knows (on the born model, 0.5: 99% of them about people of its base world,
    # 1.0: 61%; a count made with the world's list, which nothing in training reads).
    replay_temperature: float = 0.5
    # Share of those own questions begun with the first words of one of tonight's questions (the
    # model completes them with people it knows): the old asked in tonight's forms.
    replay_matched: float = 0.5
    # Who answers those own questions (about the base world): "before", the model before tonight,
    # or "born", the born model (every memory level muted), so a night's expert is held to what
    # birth taught rather than to what earlier nights' drift left of it; its own questions then
    # leave out whatever an earlier night's questions named (the born model does not know them).
    # Measured worse after one night (base held-out 0.34 vs 0.45 without LTI; docs/knowledge-seeding.md), so "before".
    replay_anchor: str = "before"
    # Share of the reading replay asked on notes the model writes itself (from nothing: invented
    # people, in birth's forms) instead of tonight's episodes. On tonight's episodes the text's
    # answer is tonight's value, so nothing there tells a night's expert to read the text: after
    # one night it answered strangers' birthplaces with tonight's city (docs/knowledge-seeding.md).
    replay_notes: float = 0.0
    # Each note's question asked closed-book too, answered as the model's own questions are
    # (mostly about someone it does not know): tonight's values are no answer there either.
    replay_notes_closed: bool = False
    # Rows where the teacher continues an episode's sentences from the text before (the student
    # from nothing). Off: on day 0 they halved the night's speed and left closed-book recall
    # where it was (0.107 with, 0.119 without; docs/knowledge-seeding.md).
    continuations: bool = False
    # Share of the divergence given to tonight's rows in batches that hold both kinds; the rest
    # goes to the replay. None: TRL's mean over all completion tokens, where tonight's rows, a
    # third of them at `replay` 2.0, get a third of the weight.
    new_share: float | None = None
    # Learning to imitate's prefixes drawn from every row (True) or from tonight's only: on a
    # replay row the student already says what the teacher says, so its group's rewards agree
    # and the advantage is zero.
    lti_replay: bool = True
    # Upward consolidations (level l -> l+1, no context): start the new expert as the sender level
    # condensed (Memory.condense) and train it `upward_epochs` (None: `epochs`). Over 4 nights
    # this made the upward night 2.2x faster (820 -> 367 s) and kept the earlier days as well
    # (paraphrase 0.073 vs 0.077 after it; docs/knowledge-seeding.md). PAPER.md leaves the init open.
    condense: bool = True
    upward_epochs: int | None = 2
    # Switches for the paper's ablations.
    lti: bool = True  # False: distillation only
    expansion: bool = True  # False: distil into the level's existing newest expert (no new one)
    optim: str = "adamw_torch"  # transformers' optimizer names
    # bf16 autocast: on for GPUs that have bf16 units; off on CPUs, where TRL's bf16 default made
    # each step ~11x slower on CPUs without them (docs/baselines.md).
    bf16: bool = False
    logging_steps: int = 5
    seed: int = 0

    def __post_init__(self):
        for name in ("lmbda", "beta", "alpha", "gamma", "z0", "replay_matched", "replay_notes", "new_share"):
            v = getattr(self, name)
            if v is None and name == "new_share":  # None: by tokens
                continue
            if not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
                raise ValueError(f"seeding.{name} must lie in [0, 1], got {v}")
        if self.lti and self.lti_group < 2:
            raise ValueError(f"seeding.lti_group must be >= 2 (a group of one has no relative advantage), got "
                             f"{self.lti_group}")
        if self.replay_anchor not in ("before", "born"):
            raise ValueError(f"seeding.replay_anchor must be 'before' or 'born', got {self.replay_anchor!r}")
        if self.replay < 0 or self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"seeding needs replay >= 0, epochs >= 1, batch_size >= 1 (got {self.replay}, "
                             f"{self.epochs}, {self.batch_size})")
        if self.lr_scheduler != "constant":  # checked now, not minutes into a night (the import costs ~6 s cold)
            from transformers.trainer_utils import SchedulerType

            names = [s.value for s in SchedulerType]
            if self.lr_scheduler not in names:
                raise ValueError(f"seeding.lr_scheduler must be one of transformers' {names}, "
                                 f"got {self.lr_scheduler!r}")


# -- rows -----------------------------------------------------------------------------------------
def seeding_rows(lessons: list[dict], episodes: list[dict], continuations: bool = False) -> list[dict]:
    """Tonight's rows `{student, teacher, completion, kind}` (level 0 -> 1):

    - questions: each lesson (the teacher's own question, closed-book prompt, its open-book
      answer) with what the teacher read in front of it (its `context`: the episode, or one of
      its paragraphs; a lesson without one: the episode);
    - continuations (if asked): each sentence of an episode, written by the student from nothing,
      by the teacher with the episode in front of it.
    Nothing here reads an episode's probes."""
    text = {ep["id"]: ep["text"] for ep in episodes}
    read = [(les, les.get("context") or text[les["episode_id"]]) for les in lessons if les["episode_id"] in text]
    rows = [{"student": les["prompt"], "teacher": f"{context}\n\n{les['prompt']}", "completion": les["completion"],
             "kind": "question"} for les, context in read]
    for ep in episodes if continuations else []:
        for sentence in re.findall(r"[^.!?\n]+[.!?]", ep["text"]):
            rows.append({"student": "", "teacher": f"{ep['text']}\n\n", "completion": sentence.strip() + "\n",
                         "kind": "continuation"})
    return rows


def same_prompt_rows(answered: list[dict], kind: str) -> list[dict]:
    """Rows where teacher and student see the same prompt (`{prompt, completion}`, the teacher's
    answer): replay (the student held to the model before tonight) and upward consolidations."""
    return [{"student": r["prompt"], "teacher": r["prompt"], "completion": r["completion"], "kind": kind}
            for r in answered]


# -- views of the memory --------------------------------------------------------------------------
@contextmanager
def muted(memory: Memory, slots: dict[int, list[int]], on: dict[int, list[int]] | None = None):
    """Temporarily switch off `{level: [slots]}`, and switch on `on` (buffers flip back on exit)."""
    saved = []
    for switch, view in ((False, slots), (True, on or {})):
        for level, idx in view.items():
            for bank in memory.level(level):
                for i in idx:
                    saved.append((bank, i, i in bank.active_slots()))
                    bank.set_active(i, switch)
    try:
        yield
    finally:
        for bank, i, was in reversed(saved):  # a slot in both views gets its first state back
            bank.set_active(i, was)


# -- the loss ---------------------------------------------------------------------------------------
def completion_logits(model, tokenizer, prompts: list[str], completions: list[list[int]]):
    """Logits that predict each completion token after its prompt: ([B, T, V], labels [B, T]
    with -100 past each completion's end)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs, starts = [], []
    for p, c in zip(prompts, completions, strict=True):
        ids = tokenizer(p)["input_ids"] if p else ([tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else [])
        if not ids:
            raise ValueError("an empty prompt needs a tokenizer with a BOS token to start from")
        seqs.append(ids + c)
        starts.append(len(ids))
    width = max(map(len, seqs))
    device = next(model.parameters()).device
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(input_ids)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s, device=device)
        mask[i, : len(s)] = 1
    logits = model(input_ids=input_ids, attention_mask=mask).logits
    T = max(map(len, completions))
    rows = torch.arange(len(seqs), device=device)[:, None]
    pos = torch.tensor([[min(st - 1 + t, width - 1) for t in range(T)] for st in starts], device=device)
    labels = torch.full((len(seqs), T), -100, dtype=torch.long, device=device)
    for i, c in enumerate(completions):
        labels[i, : len(c)] = torch.tensor(c, device=device)
    return logits[rows, pos], labels


def divergence(student_logits, teacher_logits, labels, beta: float, temperature: float = 1.0):
    """Mean per-token generalized JSD over completion tokens: TRL's own loss."""
    from trl.experimental.gkd import GKDTrainer

    return GKDTrainer.generalized_jsd_loss(student_logits, teacher_logits, labels=labels, beta=beta,
                                           temperature=temperature, reduction="batchmean")


class SeedingLoss:
    """Computes one batch's Knowledge Seeding loss on `model` (see the module docstring)."""

    def __init__(self, tokenizer, memory: Memory, config: SeedingConfig, teacher_mute: dict, student_mute: dict,
                 reward=None, teacher_on: dict | None = None):
        self.tokenizer, self.memory, self.config = tokenizer, memory, config
        self.teacher_mute, self.student_mute = teacher_mute, student_mute
        self.teacher_on = teacher_on or {}  # switched on in the teacher's view only (a kept copy)
        self.reward = reward
        self.logs: dict[str, list[float]] = {}

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _sample(self, model, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
        """The student's own completions (no gradient), one per prompt, cut after a newline."""
        from lmsleep.evaluation import generate

        texts = generate(model, self.tokenizer, prompts, max_new_tokens=max_new_tokens, do_sample=True, top_k=0,
                         temperature=self.config.temperature)
        return [self._encode(t + "\n") for t in texts]

    def __call__(self, model, rows: list[dict], step: int, unwrapped=None):
        """`model` is what gradients flow through (a DDP wrapper, perhaps); `unwrapped` the
        plain model, for sampling and for the teacher's forward passes."""
        import torch

        c = self.config
        unwrapped = unwrapped or model
        rng = random.Random(f"{c.seed}-{step}")
        on_policy = rng.random() < c.lmbda
        lti = c.lti and c.alpha < 1.0
        prompts, references = self._imitation_prompts(rows, rng) if lti else ([], [])
        group = [p for p in prompts for _ in range(c.lti_group)]
        with muted(self.memory, self.student_mute):
            # One sampling call for both (on-policy completions, then LTI continuations): on a
            # GPU each call is a launch-bound decoding loop, so two calls cost nearly twice one.
            asked = ([r["student"] for r in rows] if on_policy else []) + group
            samples = self._sample(unwrapped, asked, c.max_new_tokens) if asked else []
            completions = samples[: len(rows)] if on_policy else [self._encode(r["completion"]) for r in rows]
            student, labels = completion_logits(model, self.tokenizer, [r["student"] for r in rows], completions)
        with torch.no_grad(), muted(self.memory, self.teacher_mute, self.teacher_on):
            teacher, _ = completion_logits(unwrapped, self.tokenizer, [r["teacher"] for r in rows], completions)
        gd = divergence(student, teacher, labels, c.beta, c.temperature)
        self._log("divergence", gd.item())
        by_kind = self._by_kind(rows, student, teacher, labels)
        if by_kind and c.new_share is not None:  # the logged `divergence` stays TRL's pooled mean
            gd = c.new_share * by_kind["divergence_new"] + (1 - c.new_share) * by_kind["divergence_replay"]
        if not lti:
            return gd
        imitation = self._imitation(model, group, references, samples[len(samples) - len(group):])
        return c.alpha * gd + (1 - c.alpha) * imitation

    def _imitation_prompts(self, rows: list[dict], rng: random.Random) -> tuple[list[str], list[str]]:
        """Learning to imitate's prefixes and the teacher's rests: `lti_rows` of the batch's
        teacher answers, each cut at a random token."""
        # The teacher's answer without its closing newline: a cut must leave something to write
        # (a rest of "\n" compared "" with "" and rewarded 1 for nothing), and the cut may be at
        # 0 (the whole answer from the prompt alone): with one token of a short answer given,
        # the rest was almost always right, the group's rewards equal and the advantage zero.
        picked = [r for r in rows if self._encode(r["completion"].rstrip("\n"))
                  and (self.config.lti_replay or r.get("kind") != "replay")]
        prompts, references = [], []
        for r in rng.sample(picked, min(self.config.lti_rows, len(picked))):
            ids = self._encode(r["completion"].rstrip("\n"))
            cut = rng.randint(0, len(ids) - 1)
            prompts.append(r["student"] + self.tokenizer.decode(ids[:cut]))
            references.append(self.tokenizer.decode(ids[cut:]).split("\n")[0])
        return prompts, references

    def _imitation(self, model, group: list[str], references: list[str], samples: list[list[int]]):
        """Group-relative REINFORCE on the student's continuations (`samples`, `lti_group` per
        prefix, in `group` order) of the teacher's prefixes."""
        import torch

        c = self.config
        if not group:
            return torch.zeros((), requires_grad=True)
        with muted(self.memory, self.student_mute):
            texts = [self.tokenizer.decode(s).split("\n")[0] for s in samples]
            refs = [ref for ref in references for _ in range(c.lti_group)]
            rewards = torch.tensor(self.reward(group, texts, reference=refs))
            by_prefix = rewards.view(-1, c.lti_group)
            advantage = (by_prefix - by_prefix.mean(dim=1, keepdim=True)).flatten()
            logits, labels = completion_logits(model, self.tokenizer, group, samples)
        logp = torch.log_softmax(logits.float() / c.temperature, dim=-1)
        mask = labels != -100
        token_logp = logp.gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1) * mask
        seq_logp = token_logp.sum(-1) / mask.sum(-1).clamp_min(1)
        self._log("reward", rewards.mean().item())
        return -(advantage.to(seq_logp) * seq_logp).mean()

    def _by_kind(self, rows: list[dict], student, teacher, labels) -> dict:
        """The divergence on tonight's rows (lessons, dreams, a level's questions) and on the
        replay apart, in batches that hold both (else {}), logged: the mean hides a student that
        fits the new by drifting on the old (a level-0 step starts its replay at 0, where both
        views agree). With a gradient, for `new_share`."""
        replay = [r.get("kind") == "replay" for r in rows]
        if all(replay) or not any(replay):
            return {}
        import torch

        c = self.config
        out = {}
        with torch.set_grad_enabled(c.new_share is not None and torch.is_grad_enabled()):
            for key, want in (("divergence_new", False), ("divergence_replay", True)):
                idx = [i for i, is_replay in enumerate(replay) if is_replay == want]
                out[key] = divergence(student[idx], teacher[idx], labels[idx], c.beta, c.temperature)
                self._log(key, out[key].item())
        return out

    def _log(self, key: str, value: float) -> None:
        self.logs.setdefault(key, []).append(value)

    def pop_logs(self) -> dict[str, float]:
        out = {k: sum(v) / len(v) for k, v in self.logs.items() if v}
        self.logs.clear()
        return out


def _trainer_class():
    from transformers import Trainer

    class SeedingTrainer(Trainer):
        """A `transformers.Trainer` whose batches are seeding rows and whose loss is `SeedingLoss`."""

        def __init__(self, *args, seeding_loss: SeedingLoss, **kwargs):
            super().__init__(*args, **kwargs)
            self.seeding_loss = seeding_loss

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = self.seeding_loss(model, inputs["rows"], self.state.global_step,
                                     unwrapped=self.accelerator.unwrap_model(model))
            return (loss, None) if return_outputs else loss

        def log(self, logs: dict, *args, **kwargs):
            super().log({**logs, **self.seeding_loss.pop_logs()}, *args, **kwargs)

    return SeedingTrainer


def knowledge_seeding(model, tokenizer, memory: Memory, rows: list[dict], config: SeedingConfig,
                      sender: int = 0, receiver: int = 1, callbacks: list | None = None,
                      output_dir: str | None = None, reward=None, resume: int | None = None,
                      teacher_mute: dict[int, list[int]] | None = None) -> dict:
    """One consolidation `sender -> receiver` (level 0: the context in the rows' teacher prompts).
    Expands the receiver (or, with `expansion` off, trains its newest expert), trains on `rows`,
    settles the new expert and resets the sender. Returns what happened.

    `resume`: train the receiver's expert in that slot further instead (tonight's, with dreams
    rehearsed into it), the teacher still the model without it; `teacher_mute` (`{level:
    [slots]}`): more experts the teacher goes without (tonight's seeded one, when the dreams are
    rehearsed into a fresh expert beside it)."""
    import tempfile

    from transformers import TrainingArguments

    # No use_cpu here: accelerate decides (a GPU when there is one, DDP under `accelerate launch`).

    from lmsleep.rewards import SemanticJudge, imitation_reward

    if not rows:
        raise ValueError("nothing to seed: no rows (the curriculum has no lessons and there is no replay)")
    before = None  # without expansion: the trained expert's copy from before tonight
    if resume is not None:
        if resume not in memory.active_slots(receiver):
            raise ValueError(f"resume={resume}: level {receiver} has no active expert there "
                             f"(active: {memory.active_slots(receiver)})")
        slot = resume
        for bank in memory.level(receiver):
            bank.seeding = slot
    elif config.expansion or not memory.active_slots(receiver):
        slot = memory.expand(receiver)
        if sender and config.condense:
            memory.condense(sender, receiver, slot)
    else:  # without expansion: the level's newest expert trains in place ...
        slot = memory.active_slots(receiver)[-1]
        before = memory.copy_expert(receiver, slot)  # ... and the teacher keeps it as it was (switched off)
        for bank in memory.level(receiver):
            bank.seeding = slot
    try:  # from here on, the kept copy goes whatever happens (a failure anywhere below)
        if memory.config.keyed and not sender:  # tonight's names key the expert (lmsleep/keys.py)
            from lmsleep.keys import key_expert

            key_expert(memory, tokenizer, receiver, slot, rows)
        memory.train_only(receiver, slot)
        # Dropout off, with TRL's own helper (its trainers do the same): the teacher's targets and the
        # student's samples must not be noised (GPT-2 drops 0.1 by default). The model stays so.
        from trl.trainer.utils import disable_dropout_in_model

        disable_dropout_in_model(model)
        # The teacher is the model before tonight (PAPER.md section 3): without the new expert, with
        # the sender level. Without expansion it is the trained expert's copy from before tonight:
        # with the live expert as teacher, teacher and student were one model on the replay, which
        # then held nothing (ten nights of `ks_no_expansion` ended at base 0.00, reading 0.00; docs/knowledge-seeding.md).
        sender_slots = {sender: memory.active_slots(sender)} if sender else {}
        teacher_mute = {level: list(slots) for level, slots in (teacher_mute or {}).items()}
        teacher_mute[receiver] = teacher_mute.get(receiver, []) + [slot]
        teacher_on = {receiver: [before]} if before is not None else {}
        if config.lti and reward is None:
            reward = imitation_reward(config.gamma, config.z0, SemanticJudge(threshold=config.sem_threshold))
        loss = SeedingLoss(tokenizer, memory, config, teacher_mute=teacher_mute, student_mute=sender_slots,
                           reward=reward, teacher_on=teacher_on)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        with tempfile.TemporaryDirectory() as tmp:
            args = TrainingArguments(
                output_dir=output_dir or tmp,
                num_train_epochs=config.upward_epochs if sender and config.upward_epochs else config.epochs,
                per_device_train_batch_size=config.batch_size, learning_rate=config.learning_rate,
                lr_scheduler_type=config.lr_scheduler, weight_decay=0.0, optim=config.optim,
                logging_steps=config.logging_steps,
                save_strategy="no", report_to="none", seed=config.seed, data_seed=config.seed,
                remove_unused_columns=False, bf16=config.bf16, disable_tqdm=False, dataloader_pin_memory=False)
            trainer = _trainer_class()(model=model, args=args, train_dataset=rows,
                                       data_collator=lambda batch: {"rows": batch}, seeding_loss=loss,
                                       callbacks=callbacks)
            result = trainer.train()
    finally:  # the kept copy goes, whatever happened
        if before is not None:
            memory.clear(receiver, before)
    model.eval()
    memory.settle(receiver)
    if sender:
        memory.reset(sender)
    return {"sender": sender, "receiver": receiver, "slot": slot, "rows": len(rows),
            "steps": result.global_step, "train_loss": result.training_loss}
