"""Knowledge Seeding's cost, measured: one step against TRL's GKD step, and memory over 100 nights.

    python -m lmsleep.bench_seeding            (make bench-seeding; writes reports/bench_seeding.json)

1. One training step on the same model and the same batch (day 0's curriculum, the teacher's
   own questions), in this process, timed over `--repeats` steps each after a warm-up:
   - TRL's `GKDTrainer.training_step` (teacher: a copy of the model; both see the same ids);
   - `SeedingTrainer.training_step` (teacher: the same weights with the episode in context, so
     its sequences are longer), with and without learning to imitate.
   Off-policy (lmbda 0) and on-policy (lmbda 1, the student samples its completions) are timed
   apart, since sampling dominates on-policy steps. Ratios are seeding / GKD: the target is <= 1.
2. A default night, by stage (`--parts night`): day 0 from the born model, params.yaml's
   Knowledge Seeding night as the `curriculum` and `seed` stages run it: the teacher writes
   the lessons, then each consolidation of the night trains (its steps and seconds), and what
   it learned, closed-book on day 0's probes (the exam, read after the night). The target is
   two minutes on 2 cores for the two stages together.
3. Memory after 100 nights of the default schedule, on the real model: every night's `plan`
   run with the real `expand`, `reset` and `merge_oldest` (no training: the shapes and counts
   are what is measured), then the parameter counts: bounded by the slots, whatever the nights.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path


PARTS = ("steps", "night", "memory")


def _timed(step, repeats: int) -> float:
    step()  # warm-up: first-call allocations, lazy imports
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def gkd_step(model, teacher, tokenizer, rows: list[dict], lmbda: float, max_new_tokens: int):
    """A callable running one `GKDTrainer.training_step` on `rows` (prompt = the student's prompt)."""
    import torch
    from datasets import Dataset
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    tmp = tempfile.mkdtemp(prefix="gkd-")
    args = GKDConfig(output_dir=tmp, per_device_train_batch_size=len(rows), lmbda=lmbda, beta=0.5,
                     max_new_tokens=max_new_tokens, report_to="none", bf16=False, save_strategy="no",
                     learning_rate=1e-4, disable_dropout=True)
    dummy = Dataset.from_list([{"messages": [{"role": "user", "content": "x"}]}])
    trainer = GKDTrainer(model=model, teacher_model=teacher, args=args, train_dataset=dummy,
                         processing_class=tokenizer, data_collator=lambda b: b)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which we step by hand
    trainer.model.train()
    pad = tokenizer.pad_token_id
    prompts = [tokenizer(r["student"])["input_ids"] for r in rows]
    full = [p + tokenizer(r["completion"], add_special_tokens=False)["input_ids"] for p, r in zip(prompts, rows)]
    width, pwidth = max(map(len, full)), max(map(len, prompts))

    def batch():
        ids = torch.full((len(rows), width), pad)
        mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
        pids, pmask = torch.full((len(rows), pwidth), pad), torch.zeros(len(rows), pwidth, dtype=torch.long)
        for i, (p, f) in enumerate(zip(prompts, full)):
            ids[i, : len(f)], mask[i, : len(f)] = torch.tensor(f), 1
            labels[i, len(p): len(f)] = torch.tensor(f[len(p):])
            pids[i, pwidth - len(p):], pmask[i, pwidth - len(p):] = torch.tensor(p), 1  # left-padded prompts
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, "prompts": pids,
                "prompt_attention_mask": pmask}

    def step():
        trainer.training_step(trainer.model, batch())
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    return step


def seeding_step(model, tokenizer, memory, rows: list[dict], config):
    """A callable running one `SeedingTrainer.training_step` on `rows`, tonight's expert training."""
    from transformers import TrainingArguments

    from lmsleep.rewards import SemanticJudge, imitation_reward
    from lmsleep.seeding import SeedingLoss, _trainer_class

    slot = memory.active_slots(1)[-1]
    memory.train_only(1, slot)
    reward = imitation_reward(config.gamma, config.z0, SemanticJudge(threshold=config.sem_threshold)) \
        if config.lti else None
    loss = SeedingLoss(tokenizer, memory, config, teacher_mute={1: [slot]}, student_mute={}, reward=reward)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="ks-"), per_device_train_batch_size=len(rows),
                             report_to="none", bf16=False, save_strategy="no", learning_rate=1e-4,
                             remove_unused_columns=False)
    trainer = _trainer_class()(model=model, args=args, train_dataset=rows, data_collator=lambda b: {"rows": b},
                               seeding_loss=loss)
    trainer.create_optimizer_and_scheduler(num_training_steps=100)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which we step by hand
    trainer.model.train()

    def step():
        trainer.training_step(trainer.model, {"rows": rows})
        trainer.optimizer.step()
        trainer.optimizer.zero_grad()

    return step


def memory_after(nights: int, model, config) -> dict:
    """Run `nights` nights of the schedule with the real memory operations; the counts after."""
    from lmsleep.memory import Memory
    from lmsleep.schedule import plan

    memory = Memory.attach(model, config)
    most = 0
    for night in range(1, nights + 1):
        memory.nights = night
        for s in plan(night, [len(memory.active_slots(lv)) for lv in range(1, config.levels + 1)], config):
            if s.kind == "merge":
                memory.merge_oldest(s.receiver)
            elif s.kind == "move":
                memory.move_up(s.sender, s.receiver)
            else:
                memory.expand(s.receiver)
                memory.settle(s.receiver)
                if s.sender:
                    memory.reset(s.sender)
        most = max(most, memory.counts()["active_experts"])
    return {"nights": nights, **memory.counts(), "most_active_experts": most,
            "per_level": [len(memory.active_slots(lv)) for lv in range(1, config.levels + 1)]}


def step_costs(params, repeats: int) -> dict:
    """One seeding step against TRL's GKD step on the born model and day 0's first batch of lessons."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.baselines import teacher_curriculum
    from lmsleep.memory import Memory
    from lmsleep.seeding import seeding_rows
    from lmsleep.world import World

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(params.base_model)
    episodes = World(params.world).day(0)
    lessons, _ = teacher_curriculum(model, tokenizer, episodes, params.curriculum_for("knowledge_seeding"))
    rows = [r for r in seeding_rows(lessons, episodes) if r["kind"] == "question"][: params.seeding.batch_size]
    teacher = copy.deepcopy(model)
    c = params.seeding
    out = {"batch": len(rows), "max_new_tokens": c.max_new_tokens, "seconds": {}}
    # GKD first, on the plain model; then memory goes on and seeding is timed on the same weights.
    for lmbda in (0.0, 1.0):
        out["seconds"][f"gkd_lmbda{lmbda:g}"] = _timed(gkd_step(model, teacher, tokenizer, rows, lmbda,
                                                                c.max_new_tokens), repeats)
    memory = Memory.attach(model, params.memory)
    memory.expand(1)
    for lmbda in (0.0, 1.0):
        for lti in (False, True):
            name = f"seeding_lmbda{lmbda:g}" + ("_lti" if lti else "")
            out["seconds"][name] = _timed(seeding_step(model, tokenizer, memory, rows, replace(c, lmbda=lmbda, lti=lti)),
                                          repeats)
    s = out["seconds"]
    out["ratios"] = {k: s[k] / s[f"gkd_lmbda{k.split('lmbda')[1][0]}"] for k in s if k.startswith("seeding")}
    return out


def default_night(params, drop_ungrounded: bool = True) -> dict:
    """One night of params.yaml's Knowledge Seeding on day 0 from the born model, timed by stage;
    `drop_ungrounded` as the curriculum stage has it (params.yaml `validate:`). Every lesson is
    taught, as a pipeline night that dreams does by default (`dreaming.tau_share: 0`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep import evaluation as ev
    from lmsleep.baselines import teacher_curriculum
    from lmsleep.sleep import Sleeper
    from lmsleep.world import World

    tokenizer = AutoTokenizer.from_pretrained(params.base_model)
    model = AutoModelForCausalLM.from_pretrained(params.base_model)
    episodes = World(params.world).day(0)
    t0 = time.perf_counter()
    lessons, _ = teacher_curriculum(model, tokenizer, episodes, params.curriculum_for("knowledge_seeding"),
                                    drop_ungrounded)
    t1 = time.perf_counter()
    report = Sleeper(model, tokenizer, params.seeding, params.memory).night(episodes, lessons, progress=lambda *_: None)
    t2 = time.perf_counter()
    return {"episodes": len(episodes), "lessons": len(lessons),
            "seconds": {"curriculum": t1 - t0, "seed": t2 - t1}, "total": t2 - t0,
            "consolidations": [{k: step.get(k) for k in ("kind", "sender", "receiver", "new_rows", "replay_rows", "steps", "seconds")}
                               for step in report["steps"]],
            "closed_book_after": {family: ev.closed_book(model, tokenizer, episodes, key)
                                  for family, key in ev.FAMILY_KEYS.items()}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/bench_seeding.json"))
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure (default: all)")
    args = ap.parse_args(argv)
    import torch

    from lmsleep.logs import quiet_libraries

    quiet_libraries()
    from transformers import AutoModelForCausalLM

    from lmsleep.params import load_born

    params = load_born(args.params)
    torch.set_num_threads(params.birth.threads)
    torch.manual_seed(0)
    out = {"threads": params.birth.threads}
    if "steps" in args.parts:
        out["steps"] = step_costs(params, args.repeats)
        s = out["steps"]["seconds"]
        print(f"one step, batch {out['steps']['batch']}, median of {args.repeats} (seconds; ratio to TRL's GKD step, "
              "same lmbda):")
        for k, v in s.items():
            ratio = out["steps"]["ratios"].get(k)
            print(f"  {k:26s} {v:7.3f}" + (f"   x{ratio:.2f}" if ratio else ""))
    if "night" in args.parts:
        from lmsleep.params import validation_limits

        limits = validation_limits(args.params)
        out["night"] = n = default_night(params, limits.drop_ungrounded)
        steps = ", ".join(f"{c['kind']} {c['sender']}->{c['receiver']}: {c['new_rows']} + {c['replay_rows']} replay rows, "
                          f"{c['steps']} steps, "
                          f"{c['seconds']:.1f} s" for c in n["consolidations"])
        print(f"a default night (day 0, {n['episodes']} episodes, {params.birth.threads} threads): curriculum "
              f"{n['seconds']['curriculum']:.1f} s ({n['lessons']} lessons), seed {n['seconds']['seed']:.1f} s ({steps}); "
              f"{n['total']:.1f} s in all (target <= 120)")
        print("  after it, closed-book on day 0: " + ", ".join(f"{k} {v:.3f}" for k, v in n["closed_book_after"].items()))
    if "memory" in args.parts:
        out["memory_after_100_nights"] = {
            "default": memory_after(100, AutoModelForCausalLM.from_pretrained(params.base_model), params.memory)}
        m = out["memory_after_100_nights"]["default"]
        print(f"memory after 100 nights ({params.memory.periods} periods, {params.memory.slots} slots): experts per "
              f"level {m['per_level']} (at most {m['most_active_experts']} active), {m['memory']:,} memory parameters "
              f"pre-allocated beside {m['model']:,}; {m['per_token_parameters']:,} used per token at most")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    kept = json.loads(args.out.read_text()) if args.out.exists() and set(args.parts) != set(PARTS) else {}
    args.out.write_text(json.dumps({**kept, **out}, indent=2))  # a part measured alone keeps the others
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
