"""Dreaming's third step: each kept dream tried on its own (PAPER.md section 4; SEAL's inner loop).

    before = tau_score(model, tokenizer, tau_rows(tau))
    outcome = try_dream(model, tokenizer, expert_params, dream, tau_rows(tau), before, steps=4, lr=0.01)
    outcome["reward"]   # 1: more of tau answered exactly after 4 steps on the dream alone

A trial trains tonight's expert on one dream and scores tau, then puts the expert back as it
was (its own tensors saved and restored: the model is not copied), so trials are independent
and never touch the live memory: the pipeline fans them out as Prefect task runs
(flows/dream_trials.py). Tau's checks are closed-book rows (`tau_rows`); `missed_lessons` adds
lessons seeding taught and the model still answers wrong (`DreamingConfig.tau_missed`).
"""

from __future__ import annotations

import contextlib
import random

from lmsleep.dreams import dream_rows
from lmsleep.selection import row_losses, sequences
from lmsleep.world import closed_book_prompt


def tau_rows(tau: list[dict]) -> list[dict]:
    """tau checks (`{episode_id, question, answer}`) as closed-book rows."""
    return [{"student": closed_book_prompt(t["question"]), "completion": f" {t['answer']}\n"} for t in tau]


def tau_score(model, tokenizer, tau: list[dict]) -> dict:
    """tau answered teacher-forced: `exact` (share of answers every token of which is the
    model's argmax: what greedy decoding writes) and `loss` (mean per-token loss)."""
    exact, losses = _teacher_forced(model, tokenizer, tau)
    return {"exact": exact.float().mean().item(), "loss": losses.mean().item()}


def _teacher_forced(model, tokenizer, rows: list[dict]):
    """Per row: whether every answer token is the model's argmax, and the row's mean loss."""
    import torch

    ids, labels = sequences(tokenizer, rows)
    device = next(model.parameters()).device
    ids, labels = ids.to(device), labels.to(device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    lab = labels[:, 1:]
    right = (logits[:, :-1].argmax(-1) == lab) | (lab == -100)
    return right.all(-1), row_losses(logits, labels)


def missed_lessons(model, tokenizer, lessons: list[dict], tau: list[dict], per_episode: int,
                   rng: random.Random, keys: list | None = None, batch: int = 64) -> list[dict]:
    """Up to `per_episode` of each episode's closed-book lessons the model answers wrong,
    teacher-forced, as checks (`DreamingConfig.tau_missed`); one per question, none already in
    `tau`, and with `keys` (a keyed memory) only those naming one of tonight's keys."""
    from lmsleep.baselines import lessons_as_checks
    from lmsleep.evaluation import normalize

    seen = {(t["episode_id"], normalize(t["question"])) for t in tau}
    checks = []
    for t in lessons_as_checks(lessons):
        key = (t["episode_id"], normalize(t["question"]))
        if key not in seen:
            seen.add(key)
            checks.append(t)
    if keys is not None:
        from lmsleep.keys import mentions

        checks = [t for t in checks if mentions(t["question"], keys)]
    wrong: dict[str, list[dict]] = {}
    for i in range(0, len(checks), batch):
        part = checks[i:i + batch]
        for t, ok in zip(part, _teacher_forced(model, tokenizer, tau_rows(part))[0].tolist()):
            if not ok:
                wrong.setdefault(t["episode_id"], []).append(t)
    return [t | {"missed": True} for eid in sorted(wrong)
            for t in rng.sample(wrong[eid], min(per_episode, len(wrong[eid])))]


def beats(after: dict, before: dict) -> bool:
    """A trial's reward (SEAL's): more of tau answered exactly than before. A lower loss alone
    does not count: on day 0 it rewarded 45% of the kept dreams, and rehearsing them left recall
    at 0.167 against 0.202 with this rule (docs/dreaming.md)."""
    return after["exact"] > before["exact"]


def bf16_autocast(model, on: bool):
    """bf16 autocast on the model's device when `on` (seeding's `bf16`), else nothing. Autocast
    holds in one thread only: a trial that runs in another sets it again (`try_dream`)."""
    import torch

    return torch.autocast(next(model.parameters()).device.type, dtype=torch.bfloat16) if on \
        else contextlib.nullcontext()


def try_dream(model, tokenizer, params: list, dream: dict, tau: list[dict], before: dict, steps: int,
              lr: float, bf16: bool = False) -> dict:
    """Train `params` (tonight's expert) on one dream for `steps` steps, score tau, and put the
    expert back as it was: the trial's copy is the expert's own tensors, saved and restored (a
    7B model is not copied). Returns `{before, after, reward}`. `bf16`: in bf16 autocast, as
    `before` was scored (a night with seeding's `bf16`)."""
    with bf16_autocast(model, bf16):
        return _try_dream(model, tokenizer, params, dream, tau, before, steps, lr)


def _try_dream(model, tokenizer, params, dream, tau, before, steps, lr) -> dict:
    import torch

    saved = [p.detach().clone() for p in params]
    optimizer = torch.optim.Adam(params, lr=lr)
    ids, labels = sequences(tokenizer, dream_rows(dream))
    device = next(model.parameters()).device
    try:
        for _ in range(steps):
            optimizer.zero_grad()
            row_losses(model(input_ids=ids.to(device)).logits, labels.to(device)).mean().backward()
            optimizer.step()
        after = tau_score(model, tokenizer, tau)
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
    return {"before": before, "after": after, "reward": int(beats(after, before))}
