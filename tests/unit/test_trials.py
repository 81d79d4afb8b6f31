"""lmsleep/trials.py: a dream tried on tonight's expert and put back; the reward; missed lessons."""

import random

import pytest
import torch

from lmsleep.trials import beats, missed_lessons, tau_rows, tau_score, try_dream
from tests.unit.dreaming_fixtures import DREAMS, EPISODE, TAU, expert, learn, lesson


@pytest.mark.parametrize("keyed", [False, True])
def test_a_trial_trains_a_copy_of_the_expert_and_puts_it_back(micro, keyed):
    model, tokenizer = micro
    _, _, params, _ = expert(model, tokenizer=tokenizer if keyed else None)
    saved = [p.detach().clone() for p in params]
    tau = tau_rows(TAU)
    before = tau_score(model, tokenizer, tau)
    trial = try_dream(model, tokenizer, params, DREAMS[0], tau, before, steps=4, lr=0.05)
    assert trial["after"]["loss"] < before["loss"]  # tau's own question: it moves tau's way
    assert all(torch.equal(p, s) for p, s in zip(params, saved))
    assert tau_score(model, tokenizer, tau) == before


def test_a_trial_trains_the_one_hop_rows_a_dream_carries(micro):
    """The composed row rides with its dream: here it is tau's own Q/A and the dream itself is
    unrelated text, so only with it does the trial move tau's loss down."""
    model, tokenizer = micro
    _, _, params, _ = expert(model)
    tau = tau_rows(TAU)
    before = tau_score(model, tokenizer, tau)
    alone = {**DREAMS[1], "completion": " The weather was mild all week.\n"}
    carried = {**alone, "composed": [{"student": tau[0]["student"], "teacher": "", "completion": tau[0]["completion"]}]}
    loss = {name: try_dream(model, tokenizer, params, d, tau, before, steps=4, lr=0.05)["after"]["loss"]
            for name, d in (("alone", alone), ("carried", carried))}
    assert loss["carried"] < before["loss"] and loss["carried"] < loss["alone"]


def test_a_dream_helps_only_where_more_of_tau_is_answered_exactly():
    assert beats({"exact": 0.5, "loss": 9.0}, {"exact": 0.0, "loss": 1.0})
    assert not beats({"exact": 0.5, "loss": 0.1}, {"exact": 0.5, "loss": 1.0})  # a lower loss alone is not help
    assert not beats({"exact": 0.0, "loss": 0.1}, {"exact": 0.5, "loss": 1.0})


def test_missed_lessons_are_the_ones_the_model_answers_wrong_a_few_an_episode(micro):
    model, tokenizer = micro
    learn(model, tokenizer, "Q: Where does Ada Vell live?\nA: Kestrel\n")
    lessons = [lesson("Where does Ada Vell live?", "Kestrel"),  # answered: not missed
               lesson("Where does Ada Vell work?", "Morrow Labs"), lesson("Where does Ada Vell work?", "Morrow Labs"),
               lesson("Which university did Ada Vell attend?", "Orrin College"),
               lesson("Where was Ada Vell born?", "Tarvo"),
               lesson("Where does Bo Lund work?", "Quill Works", "ep-2"),
               {"prompt": EPISODE["text"] + "\n\nQ: Where was Ada Vell born?\nA:", "completion": " Tarvo\n",
                "episode_id": "ep-1"}]  # open-book: not a closed-book check
    got = missed_lessons(model, tokenizer, lessons, [], 9, random.Random(0))
    assert sorted((t["episode_id"], t["question"]) for t in got) == [
        ("ep-1", "Where does Ada Vell work?"), ("ep-1", "Where was Ada Vell born?"),
        ("ep-1", "Which university did Ada Vell attend?"), ("ep-2", "Where does Bo Lund work?")]  # once each
    assert all(t["missed"] for t in got)
    few = missed_lessons(model, tokenizer, lessons, [], 2, random.Random(0))
    assert sorted(t["episode_id"] for t in few) == ["ep-1", "ep-1", "ep-2"]
    assert few == missed_lessons(model, tokenizer, lessons, [], 2, random.Random(0))  # seeded
    # a check tau already holds is not added twice; with a keyed memory, only what names a key
    tau = [{"episode_id": "ep-1", "question": "where does ada vell work", "answer": "Morrow Labs"}]
    assert ("ep-1", "Where does Ada Vell work?") not in {
        (t["episode_id"], t["question"]) for t in missed_lessons(model, tokenizer, lessons, tau, 9, random.Random(0))}
    keyed = missed_lessons(model, tokenizer, lessons, [], 9, random.Random(0), ["Bo Lund"])
    assert [t["question"] for t in keyed] == ["Where does Bo Lund work?"]
