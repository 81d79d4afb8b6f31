"""seed: consolidate tonight's curriculum into the brain's memory.

    python -m tasks.seed

By default Knowledge Seeding (lmsleep/sleep.py): tonight's consolidations over the memory levels,
each distilling the model before it into a new expert, with replay; the brain directory then
holds `memory.safetensors` and `sleeper.json`. `consolidation: context_distillation` (or
`sft_text`) in params.yaml runs a baseline into a LoRA adapter instead. A brain keeps the
method it was started with: switching needs a new brain directory.

Grows the brain tonight starts from (`models/prior`, set down by `wake`). The seeded brain is
written whole into `models/seeded.next`, then switched in as `models/seeded`
(`lmsleep.brain.commit`); the `dream` stage reads it. The live brain (`models/brain`) is not
touched: `register` switches the night in once it is decided. A rerun after a crash does not
train a night the seeded brain (or its complete staged copy) already holds.
"""

from __future__ import annotations

import json
import shutil
import time

from lmsleep import jsonl
from lmsleep.brain import check_memory, commit, complete, load_brain, read_state, save_brain, staging
from lmsleep.memory import memory_of
from tasks.common import Pipeline, crash_point, read_tonight, stage_cli

BASELINES = ("context_distillation", "sft_text")
DREAMER = "dreamer"  # the dreamer's adapter, inside the brain directory (lmsleep/dreamer.py)


def mlflow_loss_callback():
    """Training loss (and the seeding loss's parts) to the active MLflow run, with its step (None
    outside a run: the CLI)."""
    import mlflow
    from transformers import TrainerCallback

    if mlflow.active_run() is None:
        return None

    class LogLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            for key in ("loss", "divergence", "reward"):
                if logs and key in logs:
                    mlflow.log_metric("train_loss" if key == "loss" else f"train_{key}", float(logs[key]),
                                      step=state.global_step)

    return LogLoss()


def _check_method(method: str, model) -> None:
    from peft import PeftModel

    if method not in ("knowledge_seeding", *BASELINES):
        raise ValueError(f"params.yaml consolidation: {method!r} is not knowledge_seeding or one of {BASELINES}")
    has = "knowledge_seeding" if memory_of(model) else "a LoRA adapter" if isinstance(model, PeftModel) else None
    if has and (has == "knowledge_seeding") != (method == "knowledge_seeding"):
        raise ValueError(f"the brain holds {has} and params.yaml asks for {method}: a brain keeps its method; "
                         "point paths.brain (and prior, seeded, night) at new directories to switch")


def holds(state, tonight: dict) -> bool:
    """Whether a brain's state already holds tonight's night (trained, counted) from tonight's
    curriculum: a curriculum written again after a crash with other params (other lessons, another
    tau) is another night's, and is trained anew (brains from before the hash: episodes alone)."""
    if not (state.nights == tonight["night"] + 1 and state.history
            and state.history[-1]["episodes"] == tonight["episodes"]):
        return False
    trained, written = state.history[-1].get("curriculum"), tonight.get("curriculum")
    return trained is None or written is None or trained == written


def _resumed(pipe: Pipeline, tonight: dict) -> dict | None:
    """A night trained before a crash is not trained again: the seeded brain holds it, or a
    complete staged copy of it does (the crash came before the switch), which is switched in now.
    (`dvc repro` removes `models/seeded` before it runs this stage: a replay trains anew.)"""
    base, seeded, staged = pipe.params.base_model, pipe.paths.seeded, staging(pipe.paths.seeded)
    if holds(read_state(seeded, base), tonight):
        return {"night": tonight["night"], "resumed": "the seeded brain already holds this night"}
    if complete(staged) and holds(read_state(staged, base), tonight):
        commit(seeded)
        return {"night": tonight["night"], "resumed": "switched in the brain trained before a crash"}
    if staged.exists():
        shutil.rmtree(staged)  # half-written, or another night's: it was never switched in
    return None


def seed(pipe: Pipeline) -> dict:
    tonight, episodes = read_tonight(pipe)
    resumed = _resumed(pipe, tonight)
    if resumed:
        return resumed
    model, tokenizer, state = load_brain(pipe.paths.prior, pipe.params.base_model)
    if tonight["night"] != state.nights:
        raise RuntimeError(f"the curriculum was written for night {tonight['night']} but the brain has slept "
                           f"{state.nights} nights: rerun the curriculum stage")
    method = pipe.params.consolidation
    _check_method(method, model)
    lessons = jsonl.read(pipe.paths.curriculum)
    callback = mlflow_loss_callback()
    callbacks = [callback] if callback else None
    t0 = time.time()
    out = {}
    if method == "knowledge_seeding":
        from lmsleep.sleep import Past, Sleeper

        if memory_of(model) is not None:
            check_memory(memory_of(model).config, pipe.params.memory)  # wake checked the live brain; this, prior
        from lmsleep.dreaming import experts_a_night

        sleeper = Sleeper(model, tokenizer, pipe.params.seeding, pipe.params.memory, memory=memory_of(model),
                          past=Past.read(pipe.paths.prior))
        # The dream stage after this one may rehearse into a slot of its own: the plan frees it now.
        sleeper.experts_a_night = experts_a_night(pipe.params.dreaming if pipe.params.dream else None)
        report = sleeper.night(episodes, lessons, callbacks=callbacks)
        out = {"steps": report["steps"], "counts": report["counts"]}
    else:
        from lmsleep.baselines import context_distillation, sft_text

        if method == "context_distillation":
            model = context_distillation(model, tokenizer, [], pipe.params.baselines, curriculum=lessons,
                                         callbacks=callbacks)
        else:
            model = sft_text(model, tokenizer, episodes, pipe.params.baselines)
    seconds = time.time() - t0
    state.nights += 1
    state.history.append({"night": tonight["night"], "episodes": tonight["episodes"], "method": method,
                          "curriculum": tonight.get("curriculum")})
    # The seeded brain is written whole (memory.json last), then switched in as models/seeded:
    # a crash before the switch leaves it staged (`_resumed`). The live brain waits for `register`.
    staged = staging(pipe.paths.seeded)
    if staged.exists():
        shutil.rmtree(staged)
    staged.mkdir(parents=True)
    if method == "knowledge_seeding":
        sleeper.past.write(staged)
        if (pipe.paths.prior / DREAMER).is_dir():  # the dreamer goes on learning night after night
            shutil.copytree(pipe.paths.prior / DREAMER, staged / DREAMER)
    save_brain(model, state, staged)
    crash_point("seed:staged")
    commit(pipe.paths.seeded)
    return {"night": tonight["night"], "lessons": len(lessons), "seconds": seconds, "method": method, **out}


def main(argv: list[str] | None = None) -> None:
    print(json.dumps(stage_cli(seed, __doc__, argv)))

if __name__ == "__main__":
    main()
