"""Dreaming's fourth step: ReST-EM's M-step, the dreamer learning from the dreams that helped.

    with dreamer_adapter(model, "models/brain/dreamer") as dreaming_model:
        ...                                    # dreams written with the dreamer's LoRA on
    train_dreamer(model, tokenizer, helped, "models/brain/dreamer", DreamingConfig(), night=3)

The dreamer is a LoRA adapter of its own (PEFT, trained with TRL's SFTTrainer through
`baselines.train_lora`) on the (prompt -> dream) pairs that earned reward 1: tonight's, or with
`dreamer_replay` every night's so far (`helped.jsonl` beside it, a fresh LoRA each night), so
tomorrow's dreams are better. Only the adapter trains; it is unloaded after, leaving the base
model and its memory as they were.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from lmsleep.selection import row_losses, sequences

if TYPE_CHECKING:
    from lmsleep.dreaming import DreamingConfig


class dreamer_adapter:
    """`with dreamer_adapter(model, path) as dreaming_model:` the model with the dreamer's LoRA
    on (PEFT), or the model itself before the dreamer has learned anything; unloaded on exit."""

    def __init__(self, model, path: str | Path | None):
        self.model, self.path = model, Path(path) if path else None
        self.peft = None

    def __enter__(self):
        if self.path is None or not (self.path / "adapter_config.json").exists():
            return self.model
        from peft import PeftModel

        self.peft = PeftModel.from_pretrained(self.model, str(self.path))
        return self.peft

    def __exit__(self, *exc):
        if self.peft is not None:
            self.peft.unload()  # the LoRA layers go; the base and its memory stay as they were


HELPED = "helped.jsonl"  # beside the dreamer's adapter: every night's dreams that helped (`dreamer_replay`)


def dreamer_fit(model, tokenizer, pairs: list[dict], batch: int = 8) -> float:
    """Mean per-token loss of the dreamer (`model`, its adapter on) on `(prompt -> sample)`
    pairs: how well it writes the dreams it learns from, before and after ReST-EM's M-step."""
    import torch

    rows = [{"student": p["prompt"], "completion": p["sample"]} for p in pairs]
    device, losses = next(model.parameters()).device, []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            ids, labels = sequences(tokenizer, rows[i:i + batch])
            losses += row_losses(model(input_ids=ids.to(device)).logits, labels.to(device)).tolist()
    return sum(losses) / len(losses)


def train_dreamer(model, tokenizer, dreams: list[dict], path: str | Path, config: DreamingConfig,
                  night: int = 0) -> dict:
    """ReST-EM's M-step: SFT of the dreamer adapter (at `path`; created on its first night) on
    the (prompt -> sample) pairs of the dreams that earned reward 1 tonight, or with
    `dreamer_replay` on every night's so far (kept in `path/helped.jsonl`, a fresh LoRA each
    night). Returns what it learned from: `{rows, new, steps, loss_before, loss_after}` (the
    dreamer's loss on those pairs before and after; None where nothing was trained)."""
    import json

    from peft import PeftModel, get_peft_model
    from transformers import TrainerCallback

    from lmsleep.baselines import BaselineConfig, lora_config, train_lora
    from lmsleep.brain import save_adapter

    path = Path(path)
    pairs = [{"prompt": d["prompt"], "sample": d["sample"], "episode_id": d["episode_id"], "form": d["form"],
              "night": night} for d in dreams]
    report = {"rows": 0, "new": len(pairs), "steps": 0, "loss_before": None, "loss_after": None}
    if not pairs:  # nothing new: the dreamer stays as it was (with replay too: same data, same adapter)
        return report
    if config.dreamer_replay:  # the nights before, then tonight's (written once the adapter is saved)
        kept = (path / HELPED).read_text().splitlines() if (path / HELPED).exists() else []
        pairs = [json.loads(line) for line in kept if line.strip()] + pairs
    lora = BaselineConfig(lora_r=config.dreamer_rank, lora_alpha=2 * config.dreamer_rank,
                          learning_rate=config.dreamer_lr, epochs=config.dreamer_epochs,
                          batch_size=config.dreamer_batch_size, seed=config.seed)
    # Wrapped here, not by TRL: a training that fails after TRL injected the LoRA layers would
    # leave them in the model, with nothing holding the wrapper that can unload them.
    goes_on = (path / "adapter_config.json").exists() and not config.dreamer_replay
    start = PeftModel.from_pretrained(model, str(path), is_trainable=True) if goes_on \
        else get_peft_model(model, lora_config(lora, model))

    class Steps(TrainerCallback):  # the optimizer steps TRL took (not a formula of rows and batch)
        def on_train_end(self, args, state, control, **kwargs):
            report["steps"] = state.global_step

    try:
        report["loss_before"] = dreamer_fit(start, tokenizer, pairs)
        trained = train_lora(start, tokenizer, [{"prompt": p["prompt"], "completion": p["sample"]} for p in pairs],
                             lora, callbacks=[Steps()])
        report["loss_after"] = dreamer_fit(trained, tokenizer, pairs)
        save_adapter(trained, path)
    finally:
        start.unload()  # the LoRA layers go, whatever happened; the base and its memory stay
    if config.dreamer_replay:  # after the adapter: a night that fails leaves the buffer as the adapter learned it
        tmp = path / f"{HELPED}.tmp"
        tmp.write_text("".join(json.dumps(p) + "\n" for p in pairs))
        tmp.replace(path / HELPED)
    report["rows"] = len(pairs)
    return report
