"""The consolidation methods the paper compares against, as plain functions on any HF causal LM.

- `sft_text`: SFT on the raw episode text into a LoRA adapter (PEFT). The same adapter keeps
  learning night after night.
- `context_distillation`: the *teacher* (the model as it is before the night, with the episode
  in its context) answers the episode's probes and questions it asks itself; the student
  (the same model, without the context) is trained on those answers with TRL's `SFTTrainer`
  into the LoRA adapter.
- `sequential_merge`: SEAL's continual setup: context distillation into a fresh adapter each
  night, merged into the weights (`merge_and_unload`) before the next night.

    model = sequential_merge(model, tokenizer, world.day(0), BaselineConfig())

All three return the consolidated model; the caller keeps it for the next night.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmsleep.world import closed_book_prompt

METHODS = ("none", "sft_text", "context_distillation", "sequential_merge")


@dataclass
class BaselineConfig:
    """Knobs of the baseline nights (params.yaml `baselines:`)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    # Facts live in the MLP as much as in attention: adapt every projection.
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
        "c_attn", "c_proj", "c_fc"])  # the last three: GPT-2 names, for a second architecture
    learning_rate: float = 1e-3
    epochs: int = 8
    batch_size: int = 16
    self_questions: int = 4  # questions the teacher asks itself per episode, besides its probes
    max_length: int = 512
    logging_steps: int = 5  # loss reported to callbacks (the pipeline logs it to MLflow)
    seed: int = 0


def _lora(config: BaselineConfig, model):
    from peft import LoraConfig

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in config.target_modules if t in names]
    if not targets:
        raise ValueError(f"none of baselines.target_modules {config.target_modules} is a module of "
                         f"{type(model).__name__}; set baselines.target_modules in params.yaml")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def _train(model, tokenizer, rows: list[dict], config: BaselineConfig, callbacks: list | None = None):
    """One SFT run with TRL. `rows` are {"text"} (language modelling) or {"prompt", "completion"}
    (loss on the completion only). A plain model gets a new LoRA adapter; a PEFT model keeps
    training the adapter it has. `callbacks` (transformers TrainerCallbacks) see the loss every
    `logging_steps`; without them nothing is logged."""
    import tempfile

    from datasets import Dataset
    from peft import PeftModel
    from trl import SFTConfig, SFTTrainer

    if not rows:
        return model
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp, num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate, lr_scheduler_type="constant",
            logging_strategy="steps" if callbacks else "no", logging_steps=config.logging_steps,
            save_strategy="no", report_to="none", max_length=config.max_length, seed=config.seed,
            data_seed=config.seed, use_cpu=True, gradient_checkpointing=False)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
            peft_config=None if isinstance(model, PeftModel) else _lora(config, model), callbacks=callbacks)
        trainer.train()
    model = trainer.model
    model.eval()
    return model


def teacher_curriculum(teacher, tokenizer, episodes: Sequence[dict], config: BaselineConfig) -> list[dict]:
    """What the teacher says with each episode in context: {prompt, completion, episode_id, gold?}.

    Questions are the episode's probes, if any, plus `self_questions` the teacher asks itself
    (sampled after `text\\n\\nQ:`); the teacher answers each greedily, open-book. The prompt the
    student learns from is the closed-book one: the context is what it must do without.
    Rows asked from a probe keep the probe's answer as `gold` (for the teacher-accuracy check).
    """
    import torch

    from lmsleep.evaluation import answer, generate, normalize

    questions: list[tuple[str, str, str, str | None]] = []  # (episode id, context, question, gold)
    for ep in episodes:
        for p in ep.get("probes") or []:
            questions.append((ep["id"], ep["text"], p["question"], p["answer"]))
    if config.self_questions > 0:
        torch.manual_seed(config.seed)
        prompts = [f"{ep['text']}\n\nQ:" for ep in episodes for _ in range(config.self_questions)]
        asked = generate(teacher, tokenizer, prompts, max_new_tokens=32, do_sample=True, top_k=0)
        owners = [ep for ep in episodes for _ in range(config.self_questions)]
        for ep, q in zip(owners, asked, strict=True):
            q = q.strip()
            if q.endswith("?") and len(q) > 8:
                questions.append((ep["id"], ep["text"], q, None))
    seen, unique = set(), []
    for item in questions:
        if (item[0], item[2]) not in seen:
            seen.add((item[0], item[2]))
            unique.append(item)
    answers = answer(teacher, tokenizer, [q for _, _, q, _ in unique], [c for _, c, _, _ in unique])
    rows = []
    for (eid, context, q, gold), a in zip(unique, answers, strict=True):
        # A self-asked question is kept only if its answer is in the episode: the teacher can
        # ask about someone who is not there, and would then teach a hallucination.
        if a and (gold is not None or normalize(a) in normalize(context)):
            row = {"prompt": closed_book_prompt(q), "completion": f" {a}\n", "episode_id": eid}
            rows.append(row | ({"gold": gold} if gold is not None else {}))
    return rows


def sft_text(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig):
    """Language-model the raw episode text into the LoRA adapter."""
    return _train(model, tokenizer, [{"text": ep["text"]} for ep in episodes], config)


def context_distillation(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig,
                         curriculum: list[dict] | None = None, callbacks: list | None = None):
    """Distil the teacher's in-context answers into the LoRA adapter (the model is its own teacher)."""
    if curriculum is None:
        curriculum = teacher_curriculum(model, tokenizer, episodes, config)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in curriculum]
    random.Random(config.seed).shuffle(rows)
    return _train(model, tokenizer, rows, config, callbacks)


def sequential_merge(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig):
    """Context distillation into a fresh adapter, merged into the weights after the night."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    return context_distillation(model, tokenizer, episodes, config).merge_and_unload()


def consolidate(method: str, model, tokenizer, episodes: Sequence[dict], config: BaselineConfig):
    """One night of `method` (one of METHODS); `none` sleeps without learning."""
    if method == "none":
        return model
    fns = {"sft_text": sft_text, "context_distillation": context_distillation,
           "sequential_merge": sequential_merge}
    if method not in fns:
        raise ValueError(f"unknown consolidation method {method!r}; choose from {METHODS}")
    return fns[method](model, tokenizer, episodes, config)
