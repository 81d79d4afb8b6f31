"""seed: consolidate tonight's curriculum into the brain's memory.

    python -m tasks.seed

For now the context-distillation baseline (a LoRA adapter learns the teacher's answers without
the context); the Knowledge Seeding issue swaps in upward distillation into a new expert
without changing this stage's inputs and outputs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lmsleep.baselines import context_distillation
from lmsleep.brain import load_brain, save_brain
from tasks.common import Pipeline, load_pipeline, read_jsonl

METHOD = "context_distillation"


def mlflow_loss_callback():
    """Training loss to the active MLflow run, with its step (None outside a run: the CLI)."""
    import mlflow
    from transformers import TrainerCallback

    if mlflow.active_run() is None:
        return None

    class LogLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                mlflow.log_metric("train_loss", float(logs["loss"]), step=state.global_step)

    return LogLoss()


def seed(pipe: Pipeline) -> dict:
    model, tokenizer, state = load_brain(pipe.paths.brain, pipe.params.base_model)
    tonight = json.loads(pipe.paths.tonight.read_text())
    if tonight["night"] != state.nights:
        raise RuntimeError(f"the curriculum was written for night {tonight['night']} but the brain has slept "
                           f"{state.nights} nights: rerun the curriculum stage")
    lessons = read_jsonl(pipe.paths.curriculum)
    t0 = time.time()
    callback = mlflow_loss_callback()
    model = context_distillation(model, tokenizer, [], pipe.params.baselines, curriculum=lessons,
                                 callbacks=[callback] if callback else None)
    seconds = time.time() - t0
    state.nights += 1
    state.history.append({"night": tonight["night"], "episodes": tonight["episodes"], "method": METHOD})
    save_brain(model, state, pipe.paths.brain)
    return {"night": tonight["night"], "lessons": len(lessons), "seconds": seconds, "method": METHOD}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    print(json.dumps(seed(load_pipeline(args.params))))


if __name__ == "__main__":
    main()
