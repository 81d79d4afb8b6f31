"""lmsleep/selection.py: per-sample gradient scores and the top-k + random selection."""

import random

import pytest
import torch

from lmsleep.selection import gradient_scores, row_losses, select, sequences
from lmsleep.trials import tau_rows
from tests.unit.dreaming_fixtures import DREAMS, EPISODE, TAU, expert


# keyed: the key hook runs under vmap too; crowded: more experts than top-k seats, so the
# routers pick per token under vmap (ten default nights crashed there on night 7).
@pytest.mark.parametrize(("keyed", "earlier"), [(False, 0), (True, 0), (False, 3)])
def test_gradient_scores_equal_a_loop_of_backward_passes(micro, keyed, earlier):
    model, tokenizer = micro
    memory, _, params, named = expert(model, tokenizer=tokenizer if keyed else None, earlier=earlier)
    assert len(memory.active_slots(1)) == earlier + 1
    scores = gradient_scores(model, tokenizer, named, DREAMS, tau_rows(TAU), batch=2)  # two batches

    def grad_of(rows):
        model.zero_grad()
        ids, labels = sequences(tokenizer, rows)
        row_losses(model(input_ids=ids).logits, labels).mean().backward()
        return torch.cat([p.grad.flatten() for p in params])

    g_tau = grad_of(tau_rows(TAU))
    loop = [torch.nn.functional.cosine_similarity(grad_of([d]), g_tau, dim=0).item() for d in DREAMS]
    assert scores == pytest.approx(loop, abs=1e-4)
    assert scores[0] == pytest.approx(1.0, abs=1e-5)  # the dream that is tau's own row points exactly its way


def test_select_keeps_the_top_per_episode_plus_random_ones():
    dreams = [{"episode_id": e, "i": i} for e in ("a", "b") for i in range(5)]
    scores = [0.1, 0.9, 0.5, 0.3, 0.2, 0.0, 0.1, 0.2, 0.3, 0.8]
    kept = select(dreams, scores, keep_top=2, keep_random=1, rng=random.Random(0))
    by = {e: [d["i"] for d in kept if d["episode_id"] == e] for e in "ab"}
    assert {1, 2} <= set(by["a"]) and len(by["a"]) == 3
    assert {4, 3} <= set(by["b"]) and len(by["b"]) == 3
    assert all("score" in d for d in kept)
    unscored = select(dreams, None, keep_top=2, keep_random=1, rng=random.Random(0))
    assert len(unscored) == 6 and "score" not in unscored[0]


def test_selection_ranks_a_dream_that_restates_taus_answer_above_unrelated_text(micro):
    model, tokenizer = micro
    _, _, _, named = expert(model)
    restating = {"episode_id": "ep-1", "form": "restatement", "student": "",
                 "teacher": EPISODE["text"] + "\n\nIn other words:", "completion": " Ada Vell works for Morrow Labs.\n"}
    unrelated = [{"episode_id": "ep-1", "form": "restatement", "student": "", "teacher": EPISODE["text"] + "\n\n",
                  "completion": text} for text in (" Rain fell on the quiet harbour all week.\n",
                                                   " 7 8 9 10 11 12 13 14\n", " Zorbia exports copper and tin.\n")]
    scores = gradient_scores(model, tokenizer, named, [restating, *unrelated], tau_rows(TAU))
    assert scores[0] > max(scores[1:]), scores
    kept = select([restating, *unrelated], scores, keep_top=1, keep_random=0, rng=random.Random(0))
    assert kept == [restating | {"score": scores[0]}]
