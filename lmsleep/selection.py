"""Dreaming's second step: which dreams to try (PAPER.md section 4).

    scores = gradient_scores(model, tokenizer, expert_params, dreams, tau_rows(tau))
    kept = select(dreams, scores, keep_top=4, keep_random=2, rng=random.Random(0))

A dream's score is the cosine between the gradient of its SFT loss and the gradient of tau's
loss over tonight's expert (the parameters a dream would train): per-sample gradients with
`torch.func` (`vmap(grad(...))`: one batched pass, not a loop of backwards). Kept: the top
`keep_top` of each episode plus `keep_random` others at random (diversity). `sequences` and
`row_losses` turn rows into right-padded ids and per-row losses, for the trials and the dreamer too.
"""

from __future__ import annotations

import random


def sequences(tokenizer, rows: list[dict]):
    """Right-padded ids and labels (-100 off the completion) of `student` + `completion` rows.
    Right padding needs no attention mask in a causal model (pads come after every real token),
    which is what lets `torch.func.vmap` run the model: its mask code branches on the mask."""
    import torch

    seqs, labels = [], []
    for r in rows:
        prompt = tokenizer(r["student"])["input_ids"] if r["student"] else [tokenizer.bos_token_id]
        if prompt == [None]:
            raise ValueError("a dream without a prompt needs a tokenizer with a BOS token")
        completion = tokenizer(r["completion"], add_special_tokens=False)["input_ids"]
        seqs.append(prompt + completion)
        labels.append([-100] * len(prompt) + completion)
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs])
    return ids, torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])


def row_losses(logits, labels):
    """Mean next-token loss over each row's completion: [N]."""
    import torch.nn.functional as F

    lab = labels[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), lab, ignore_index=-100, reduction="none")
    return nll.sum(-1) / (lab != -100).sum(-1).clamp_min(1)


def gradient_scores(model, tokenizer, params: dict, dreams: list[dict], tau: list[dict],
                    batch: int = 16) -> list[float]:
    """Cosine between each dream's SFT-loss gradient and the tau loss's gradient over `params`
    (name -> tensor: tonight's expert). Per-sample gradients in one batched pass per `batch`
    dreams (`torch.func.vmap` over `grad`)."""
    import torch
    from torch.func import functional_call, grad, vmap

    device = next(model.parameters()).device
    params = {k: v.detach() for k, v in params.items()}

    def loss(p, ids, labels):
        return row_losses(functional_call(model, p, (ids,)).logits, labels).mean()

    ids, labels = sequences(tokenizer, tau)
    g_tau = torch.cat([g.flatten() for g in grad(loss)(params, ids.to(device), labels.to(device)).values()])
    per_dream = vmap(grad(lambda p, i, lab: loss(p, i[None], lab[None])), in_dims=(None, 0, 0))
    scores: list[float] = []
    for start in range(0, len(dreams), batch):
        ids, labels = sequences(tokenizer, dreams[start:start + batch])
        g = per_dream(params, ids.to(device), labels.to(device))
        flat = torch.cat([v.flatten(1) for v in g.values()], dim=1)
        scores += torch.nn.functional.cosine_similarity(flat, g_tau[None], dim=1).tolist()
    return scores


def select(dreams: list[dict], scores: list[float] | None, keep_top: int, keep_random: int,
           rng: random.Random) -> list[dict]:
    """Per episode: the `keep_top` best-scored dreams plus `keep_random` of the rest at random
    (no scores: `keep_top + keep_random` at random, the no-selection ablation)."""
    by_episode: dict[str, list[int]] = {}
    for i, d in enumerate(dreams):
        by_episode.setdefault(d["episode_id"], []).append(i)
    kept: list[int] = []
    for idx in by_episode.values():
        if scores is None:
            kept += rng.sample(idx, min(keep_top + keep_random, len(idx)))
            continue
        ranked = sorted(idx, key=lambda i: -scores[i])
        rest = ranked[keep_top:]
        kept += ranked[:keep_top] + rng.sample(rest, min(keep_random, len(rest)))
    return [dreams[i] | ({"score": scores[i]} if scores is not None else {}) for i in sorted(kept)]
