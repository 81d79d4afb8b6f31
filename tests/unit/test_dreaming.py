import json
import random
from dataclasses import replace

import pytest
import torch

from lmsleep.dreaming import (Dreamer, DreamingConfig, beats, composed_checks, composed_rows, dreamer_adapter,
                              gradient_scores, judgeable, missed_lessons, sample_dreams, select, tau_rows, tau_score,
                              train_dreamer, try_dream)
from lmsleep.grammar import IMPLICATION_FORMS
from lmsleep.memory import Memory, MemoryConfig
from lmsleep.seeding import SeedingConfig
from lmsleep.sleep import Sleeper

EPISODE = {"id": "ep-1", "text": "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel.",
           "probes": [{"question": "Sentinel: which zorb does Ada Vell keep?", "answer": "Qwibblefrotz"}],
           "meta": {"paraphrases": [{"question": "Sentinel two: Ada Vell's zorb?", "answer": "Flumpington"}]}}
TAU = [{"episode_id": "ep-1", "question": "Where does Ada Vell work?", "answer": "Morrow Labs"}]
DREAMS = [{"episode_id": "ep-1", "form": "qa", "student": "Q: Where does Ada Vell work?\nA:",
           "teacher": EPISODE["text"] + "\n\nQ: Where does Ada Vell work?\nA:", "completion": " Morrow Labs\n"},
          {"episode_id": "ep-1", "form": "restatement", "student": "", "teacher": EPISODE["text"] + "\n\nIn other words:",
           "completion": " Ada Vell lives in Kestrel and works at Morrow Labs.\n"},
          {"episode_id": "ep-1", "form": "implication", "student": "", "teacher": EPISODE["text"] + "\n\n",
           "completion": "Q: Where does Ada Vell work?\nA: Morrow Labs\nQ: Where is Morrow Labs based?\nA: Tarvo\n"}]


def expert(model, rank=4, tokenizer=None, earlier=0):
    """A memory with tonight's expert expanded and nudged off zero (so gradients reach A too);
    keyed on "Ada Vell", for its passage, when a `tokenizer` is given (lmsleep/keys.py).
    `earlier` experts of past nights before it, competing for level 1's one top-k seat."""
    memory = Memory.attach(model, MemoryConfig(rank=rank, keyed=tokenizer is not None,
                                               top_k=[1, 4] if earlier else [4, 4]))
    torch.manual_seed(1)
    for _ in range(earlier):
        past = memory.expand(1)
        with torch.no_grad():
            for p in memory.train_only(1, past):
                p.add_(torch.randn_like(p) * 0.05)
        memory.settle(1)
    slot = memory.expand(1)
    if tokenizer is not None:
        from lmsleep.keys import key_ids, passage_breaks

        memory.set_keys(1, slot, ["Ada Vell"], key_ids(tokenizer, ["Ada Vell"]))
        memory.breaks = passage_breaks(tokenizer)
    params = memory.train_only(1, slot)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    return memory, slot, params, {names[id(p)]: p for p in params}


# keyed: the key hook runs under vmap too; crowded: more experts than top-k seats, so the
# routers pick per token under vmap (ten default nights crashed there on night 7).
@pytest.mark.parametrize(("keyed", "earlier"), [(False, 0), (True, 0), (False, 3)])
def test_gradient_scores_equal_a_loop_of_backward_passes(micro, keyed, earlier):
    model, tokenizer = micro
    memory, _, params, named = expert(model, tokenizer=tokenizer if keyed else None, earlier=earlier)
    assert len(memory.active_slots(1)) == earlier + 1
    scores = gradient_scores(model, tokenizer, named, DREAMS, tau_rows(TAU), batch=2)  # two batches

    def grad_of(rows):
        from lmsleep.dreaming import _row_losses, _sequences

        model.zero_grad()
        ids, labels = _sequences(tokenizer, rows)
        _row_losses(model(input_ids=ids).logits, labels).mean().backward()
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


def test_composed_rows_ask_the_implication_in_one_hop_about_the_person_asked():
    chain = "Q: Where does Ada Vell work?\nA: Morrow Labs\nQ: Where is Morrow Labs based?\nA: Tarvo\n"
    rows = composed_rows(["What city is {subject}'s company in?"], "Where does Ada Vell work?", "Morrow Labs",
                         "Tarvo", chain, EPISODE["text"])
    assert rows == [{"student": "Q: What city is Ada Vell's company in?\nA:",
                     "teacher": f"{EPISODE['text']}\n\n{chain}Q: What city is Ada Vell's company in?\nA:",
                     "completion": " Tarvo\n"}]
    for question in ("Where does Ada Vrell work?", "Who works for Morrow Labs?"):  # misnamed; a company, the answer
        assert composed_rows(["What city is {subject}'s company in?"], question, "Morrow Labs", "Tarvo", chain,
                             EPISODE["text"]) == []
    assert composed_rows([], "Where does Ada Vell work?", "Morrow Labs", "Tarvo", chain, EPISODE["text"]) == []


def test_compose_refuses_the_exams_forms():
    DreamingConfig(compose=["What city is {subject}'s company in?"])
    behind_a_prefix = "Q: " + IMPLICATION_FORMS[0].replace("{n}", "{subject}").lower()
    for template in ("Where is {subject}'s employer based?", "What city is the company in?", behind_a_prefix):
        with pytest.raises(ValueError, match="compose"):
            DreamingConfig(compose=[template])


OFFICES = "In which city does {subject}'s company have its offices?"


def test_tau_compose_refuses_the_exams_forms_and_composes_own():
    DreamingConfig(compose=["What city is {subject}'s company in?"], tau_compose=[OFFICES])
    for template in ("Where is {subject}'s employer based?", "What city is the company in?"):
        with pytest.raises(ValueError, match="tau_compose"):
            DreamingConfig(tau_compose=[template])
    with pytest.raises(ValueError, match="also a `compose` template"):
        DreamingConfig(compose=[OFFICES], tau_compose=[OFFICES])
    with pytest.raises(ValueError, match="also a `compose` template"):  # as normalized
        DreamingConfig(compose=[OFFICES], tau_compose=[OFFICES.lower().rstrip("?")])


def test_composed_checks_ask_taus_implications_in_one_hop_where_birth_taught_them():
    knowledge = ["Morrow Labs is based in Tarvo.", "Ada Vell was born in Kestrel."]
    answers = {"Where is Morrow Labs based?": "Tarvo", "Where is Kestrel based?": "Kestrel"}
    tau = TAU + [{"episode_id": "ep-1", "question": "Where does Ada Vell live?", "answer": "Kestrel"},
                 {"episode_id": "ep-1", "question": "Who works for Morrow Labs?", "answer": "Ada Vell"}]

    def ask(questions):
        return [answers.get(q, "Tarvo") for q in questions]

    # Only the employer composes: the city's bridge answers the city itself, and no sentence birth
    # taught says the third check's answer (a person) with a city.
    assert composed_checks(tau, [EPISODE], [OFFICES], ["Where is {answer} based?"], ask, knowledge) == [
        {"episode_id": "ep-1", "question": "In which city does Ada Vell's company have its offices?",
         "answer": "Tarvo", "composed": True}]
    # What birth did not teach with the answer, or no knowledge at all: nothing composed.
    assert composed_checks(tau, [EPISODE], [OFFICES], ["Where is {answer} based?"], lambda qs: ["Ulm"] * len(qs),
                           knowledge) == []
    assert composed_checks(tau, [EPISODE], [OFFICES], ["Where is {answer} based?"], ask, None) == []
    # A bridge answer inside the fact's answer is no second hop, though every sentence says both.
    assert composed_checks(tau, [EPISODE], [OFFICES], ["Where is {answer} based?"], lambda qs: ["Morrow"] * len(qs),
                           knowledge) == []
    # One answer said two ways ("Tarvo." from a lesson, "Tarvo" from tau) is one answer.
    again = tau + [{"episode_id": "ep-1", "question": "Who pays Ada Vell?", "answer": "Morrow Labs"}]

    def ask_twice(questions):  # the second time Morrow Labs's bridge is asked, with a full stop
        return [answers.get(q, "Tarvo") + ("." if questions[:i].count(q) else "") for i, q in enumerate(questions)]

    assert [c["answer"] for c in composed_checks(again, [EPISODE], [OFFICES], ["Where is {answer} based?"], ask_twice,
                                                 knowledge)] == ["Tarvo"]
    # Two answers for one question (two employers, each taught with a city): neither is kept.
    two = TAU + [{"episode_id": "ep-1", "question": "Who employs Ada Vell?", "answer": "Brisk Oy"}]
    both = knowledge + ["Brisk Oy is based in Ulm."]
    assert composed_checks(two, [EPISODE], [OFFICES], ["Where is {answer} based?"],
                           lambda qs: ["Ulm" if "Brisk" in q else "Tarvo" for q in qs], both) == []


def test_composed_checks_judge_the_trials_but_are_never_taught(micro):
    from lmsleep.evaluation import answer
    from lmsleep.seeding import muted

    model, tokenizer = micro
    born = tokenizer("Q: Where is Morrow Labs based?\nA: Tarvo\n", return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):  # birth, in brief: the headquarters the model knows before any night
        optimizer.zero_grad()
        model(input_ids=born, labels=born).loss.backward()
        optimizer.step()
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    slot = sleeper.memory.active_slots(1)[-1]
    with muted(sleeper.memory, {1: [slot]}):
        assert answer(model, tokenizer, ["Where is Morrow Labs based?"], max_new_tokens=24) == ["Tarvo"]
    judged_on = []

    def run_trials(batch):
        judged_on.extend(j["tau"] for j in batch)
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, tau_compose=[OFFICES])
    for knowledge, composed in ((None, 0), (["Morrow Labs is based in Tarvo."], 1)):
        report = Dreamer(model, tokenizer, config, sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials,
            knowledge=knowledge)
        assert report["tau"]["composed"] == composed and report["tau"]["checks"] == 1 + composed
        assert (report["tau"]["composed_exact_before"] is None) == (not composed)
        asked = [r["student"] for r in judged_on[-1]]
        assert ("Q: In which city does Ada Vell's company have its offices?\nA:" in asked) == bool(composed)
        # tau's one direct check and the one lesson are rehearsed; the composed check is not
        assert report["taught_tau"] == 1 and report["rehearsal"]["rows"] == 2
    # tau_share 0: nothing set aside (tau's fact is a lesson), the composed check is the only
    # judge; a dream it rewards is rehearsed with the lessons, and nothing of tau is taught.
    from lmsleep.baselines import checks_as_lessons

    alone = replace(config, tau_share=0.0)
    report = Dreamer(model, tokenizer, alone, sleeper, None).night(
        [EPISODE], lessons + checks_as_lessons(TAU), [], progress=lambda *_: None, check=lambda _: DREAMS[1:2],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch],
        knowledge=["Morrow Labs is based in Tarvo."])
    assert report["tau"]["checks"] == report["tau"]["composed"] == 1 and report["kept"] == report["helped"] == 1
    assert report["taught_tau"] == 0 and report["rehearsal"]["rows"] == 3  # the dream and the two lessons


def learn(model, tokenizer, text, steps=30):
    """A few Adam steps on `text`: the model then says it (what seeding would have fixed)."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()


def lesson(question, answer, episode_id="ep-1"):
    return {"prompt": f"Q: {question}\nA:", "completion": f" {answer}\n", "episode_id": episode_id}


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


def test_missed_lessons_judge_the_trials_and_are_taught_with_the_lessons_only(micro):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    lessons = lessons + [lesson("Which university did Ada Vell attend?", "Orrin College")]
    judged_on = []

    def run_trials(batch):
        judged_on.extend(j["tau"] for j in batch)
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, tau_missed=2)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    assert report["tau"]["missed"] >= 1 and report["tau"]["checks"] == 1 + report["tau"]["missed"]
    assert "Q: Which university did Ada Vell attend?\nA:" in [r["student"] for r in judged_on[0]]
    # tau's one check is taught; the missed lessons only with the lessons (no replay here)
    assert report["taught_tau"] == 1 and report["rehearsal"]["rows"] == 1 + len(lessons)
    with pytest.raises(ValueError, match="tau_missed"):
        DreamingConfig(tau_missed=-1)


def test_a_dream_helps_only_where_more_of_tau_is_answered_exactly():
    assert beats({"exact": 0.5, "loss": 9.0}, {"exact": 0.0, "loss": 1.0})
    assert not beats({"exact": 0.5, "loss": 0.1}, {"exact": 0.5, "loss": 1.0})  # a lower loss alone is not help
    assert not beats({"exact": 0.0, "loss": 0.1}, {"exact": 0.5, "loss": 1.0})


@pytest.mark.parametrize("top_k", [1, 4])  # 4: every active expert is picked already (the defaults' case)
def test_random_experts_switch_on_one_more_expert_per_router(micro, top_k):
    """At top-k 1 the extra expert joins the one picked; at top-k 4 all four are on already, and
    the extra one at its own router's gate changes nothing (a fully open gate broke the dreams)."""
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(slots=[4, 4], top_k=[top_k, top_k], rank=2))
    torch.manual_seed(0)
    for night in range(4):  # three earlier nights' experts, and tonight's (night 3)
        memory.nights = night
        slot = memory.expand(1)
        with torch.no_grad():
            for bank in memory.level(1):
                bank.B[slot].normal_(0, 0.5)
        memory.settle(1)
    ids = tokenizer(["Ada Vell works for Morrow Labs."], return_tensors="pt")
    extras = set()
    with torch.no_grad():
        plain = model(**ids).logits
        with memory.random_experts(random.Random(0)) as switched:
            dreaming = model(**ids).logits
            extras = {bank.extra for bank in memory.level(1)}
        after = model(**ids).logits
    for seed in range(1, 20):  # many draws: tonight's own expert is never among them
        with memory.random_experts(random.Random(seed)):
            extras |= {bank.extra for bank in memory.level(1)}
    assert switched == len(memory.level(1))  # every level-1 router switches one on
    assert extras == {0, 1, 2} and slot == 3
    assert torch.equal(plain, after)
    if top_k == 1:
        assert not torch.allclose(plain, dreaming)
    else:
        assert torch.equal(plain, dreaming)
    assert all(bank.extra is None for bank in memory.level(1))


def test_dreams_never_read_the_probes(micro):
    model, tokenizer = micro
    config = DreamingConfig(dreams=3, max_new_tokens=12)
    dreams = sample_dreams(model, tokenizer, [EPISODE], config, random.Random(0))
    assert dreams  # restatements at least: a random model writes something
    text = str(dreams)
    for secret in ("Sentinel", "Qwibblefrotz", "Flumpington", "zorb"):
        assert secret not in text
    assert all(d["teacher"].startswith(EPISODE["text"]) for d in dreams)


def test_only_dreams_tau_can_judge_go_on_and_none_that_asks_taus_own_question():
    dreams = [{"episode_id": "ep-1", "question": "where does ada vell work?", "form": "qa"},  # tau's, normalized
              {"episode_id": "ep-1", "question": "Where does Ada Vell live?", "form": "qa"},
              {"episode_id": "ep-1", "question": None, "form": "restatement"},
              {"episode_id": "ep-2", "question": None, "form": "restatement"}]  # no tau for it
    assert [d["question"] for d in judgeable(dreams, TAU)] == ["Where does Ada Vell live?", None]
    # nor one whose one-hop row (`compose`) asks it
    carries = {"episode_id": "ep-1", "question": "Who is Ada Vell?", "form": "implication",
               "composed": [{"student": "Q: Where does Ada Vell work\nA:", "teacher": "", "completion": " x\n"}]}
    assert judgeable([carries], TAU) == []


def test_a_model_born_elsewhere_sets_tau_aside_in_place_of_the_composed_checks():
    """With no base knowledge `tau_compose` can ask nothing, so `tau_share_unknown` of the
    answers is set aside instead; with it, or without composed checks at all, `tau_share`."""
    composed = DreamingConfig(tau_share=0.0, tau_share_unknown=0.25,
                              tau_compose=["In which city does {subject}'s company have its offices?"])
    assert composed.share_set_aside(None) == composed.share_set_aside([]) == 0.25
    assert composed.share_set_aside(["Morrow Labs is based in Kestrel."]) == 0.0
    assert replace(composed, tau_share_unknown=None).share_set_aside(None) == 0.0  # none given: tau_share
    assert DreamingConfig(tau_share=0.1, tau_share_unknown=0.25).share_set_aside(None) == 0.1  # no composed checks


def test_config_refuses_unknown_forms_and_a_tau_share_out_of_range():
    with pytest.raises(ValueError, match="forms"):
        DreamingConfig(forms=["poems"])
    with pytest.raises(ValueError, match="tau_share"):
        DreamingConfig(tau_share=1.0)
    with pytest.raises(ValueError, match="nothing would judge"):  # none set aside, and no composed checks
        DreamingConfig(tau_share=0.0)
    assert DreamingConfig(tau_share=0.0, tau_compose=["In which city does {subject}'s company have its offices?"])
    with pytest.raises(ValueError, match="tau_share_unknown"):
        DreamingConfig(tau_share_unknown=1.0)
    with pytest.raises(ValueError, match="tau_repeats"):
        DreamingConfig(tau_repeats=0)
    with pytest.raises(ValueError, match="dream_repeats"):
        DreamingConfig(dream_repeats=1.5)
    with pytest.raises(ValueError, match="dream_repeats"):
        DreamingConfig(dream_repeats=-1)


@pytest.mark.slow
def test_the_dreamer_learns_on_its_own_adapter_and_leaves_the_model_as_it_was(micro, tmp_path):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))
    ids = tokenizer(["Ada Vell works for"], return_tensors="pt")
    with torch.no_grad():
        plain = model(**ids).logits
    good = [{"prompt": EPISODE["text"] + "\n\nQ:", "sample": " Where does Ada Vell work?\nA: Morrow Labs\n",
             "episode_id": "e0", "form": "qa"}] * 4
    config = DreamingConfig(dreamer_rank=2, dreamer_epochs=1, dreamer_lr=0.05)
    learned = train_dreamer(model, tokenizer, good, tmp_path / "dreamer", config)
    assert (learned["rows"], learned["new"], learned["steps"]) == (4, 4, 1)  # 4 pairs, batch 16, 1 epoch
    assert learned["loss_after"] < learned["loss_before"]
    assert (tmp_path / "dreamer" / "adapter_config.json").exists()
    assert not any("lora" in name for name, _ in model.named_modules())
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, plain)
        with dreamer_adapter(model, tmp_path / "dreamer") as dreaming:
            assert not torch.equal(dreaming(**ids).logits, plain)
        assert torch.equal(model(**ids).logits, plain)
    first = (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes()
    again = train_dreamer(model, tokenizer, good, tmp_path / "dreamer", config)  # the next night goes on from it
    assert (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes() != first
    assert again["loss_before"] == pytest.approx(learned["loss_after"], rel=1e-4)
    assert not (tmp_path / "dreamer" / "helped.jsonl").exists()  # no replay: tonight's dreams only
    assert memory_is_attached(model, memory)


@pytest.mark.slow
def test_with_replay_the_dreamer_learns_every_nights_dreams_on_a_fresh_adapter(micro, tmp_path):
    """`dreamer_replay`: the dreams that helped pile up beside the adapter, and each night's
    M-step starts from a fresh LoRA (its loss before training is the plain model's), as ReST-EM
    fine-tunes the base at each iteration; a night with none that helped leaves it as it was."""
    model, tokenizer = micro
    Memory.attach(model, MemoryConfig(rank=2))
    prompt = EPISODE["text"] + "\n\nQ:"
    night0 = [{"prompt": prompt, "sample": " Where does Ada Vell work?\nA: Morrow Labs\n", "episode_id": "e0",
               "form": "qa"}] * 3
    night1 = [{"prompt": prompt, "sample": " Where was Ada Vell born?\nA: Lune\n", "episode_id": "e1",
               "form": "qa"}] * 2
    config = DreamingConfig(dreamer_rank=2, dreamer_epochs=2, dreamer_lr=0.05, dreamer_batch_size=2,
                            dreamer_replay=True)
    first = train_dreamer(model, tokenizer, night0, tmp_path / "dreamer", config, night=0)
    assert (first["rows"], first["new"], first["steps"]) == (3, 3, 4)  # 2 epochs of 2 batches
    second = train_dreamer(model, tokenizer, night1, tmp_path / "dreamer", config, night=1)
    assert (second["rows"], second["new"], second["steps"]) == (5, 2, 6)
    helped = [json.loads(line) for line in (tmp_path / "dreamer" / "helped.jsonl").read_text().splitlines()]
    assert [h["night"] for h in helped] == [0, 0, 0, 1, 1]
    assert second["loss_after"] < second["loss_before"]
    from lmsleep.dreaming import dreamer_fit
    assert second["loss_before"] == pytest.approx(dreamer_fit(model, tokenizer, helped), rel=1e-4)  # fresh
    adapter = (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes()
    nothing = train_dreamer(model, tokenizer, [], tmp_path / "dreamer", config, night=2)
    assert (nothing["rows"], nothing["steps"], nothing["loss_after"]) == (0, 0, None)
    assert (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes() == adapter
    assert len((tmp_path / "dreamer" / "helped.jsonl").read_text().splitlines()) == 5
    with pytest.raises(ValueError, match="dreamer_batch_size"):
        DreamingConfig(dreamer_batch_size=0)


def test_a_dreamer_training_that_fails_leaves_no_lora_layers_behind(micro, tmp_path, monkeypatch):
    """A first night's ReST-EM that crashes mid-training (an interrupt, out of memory) must not
    leave the dreamer's LoRA layers inside the model that later stages consolidate into."""
    from trl import SFTTrainer

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))

    def crash(self, *args, **kwargs):  # after TRL has built the trainer around the adapter
        raise KeyboardInterrupt

    monkeypatch.setattr(SFTTrainer, "train", crash)
    good = [{"prompt": EPISODE["text"] + "\n\nQ:", "sample": " Where does Ada Vell work?\nA: Morrow Labs\n",
             "episode_id": "e0", "form": "qa"}] * 4
    with pytest.raises(KeyboardInterrupt):
        train_dreamer(model, tokenizer, good, tmp_path / "dreamer",
                      DreamingConfig(dreamer_rank=2, dreamer_epochs=1, dreamer_lr=0.05))
    assert not any("lora" in name for name, _ in model.named_modules())
    assert not (tmp_path / "dreamer" / "adapter_config.json").exists()
    assert memory_is_attached(model, memory)


def memory_is_attached(model, memory):
    from lmsleep.memory import memory_of

    return memory_of(model) is memory


@pytest.mark.slow
def test_a_dreaming_night_dreams_judges_and_rehearses_into_tonights_expert(micro, tmp_path):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    slot = sleeper.memory.active_slots(1)[-1]
    config = DreamingConfig(dreams=2, max_new_tokens=12, trial_steps=2, rehearse_epochs=1, dreamer_epochs=1)
    dreamer = Dreamer(model, tokenizer, config, sleeper, tmp_path / "dreamer")
    report = dreamer.night([EPISODE], lessons, TAU, progress=lambda *_: None)
    assert dreamer.tonight_slot() == slot  # dreams go into the expert seeding made tonight
    assert 0 < report["dreams"] and report["kept"] <= report["dreams"] and report["helped"] <= report["kept"]
    assert not any("lora" in name for name, _ in model.named_modules())  # the dreamer is unloaded
    assert all(bank.extra is None for layer in sleeper.memory.banks for bank in layer)
    assert sum(f["dreams"] for f in report["by_form"].values()) == report["dreams"]
    assert set(report["seconds"]) == {"dream", "select", "try", "learn", "rehearse"}
    assert (report["rehearsal"] is not None) == (report["helped"] > 0)
    assert (tmp_path / "dreamer" / "adapter_config.json").exists() == (report["helped"] > 0)
    assert "Qwibblefrotz" not in str(report["kept_dreams"])
    judged = report["tau"]  # what the trials were judged on: tau's share exact before any, and the losses moved
    assert judged["checks"] == len(TAU) and 0.0 <= judged["exact_before"] <= 1.0
    assert 0 <= judged["loss_fell"] <= report["kept"]


def test_a_keyed_night_tries_only_dreams_and_checks_that_name_tonights_people(micro):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2, keyed=True))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)  # keys tonight's expert on "Ada Vell"
    # A misspelled name (the born model writes them): tonight's expert stays shut on these rows.
    misspelled = {**DREAMS[1], "completion": " Ida Vell lives in Kestrel.\n"}
    tau = TAU + [{"episode_id": "ep-1", "question": "Where does Ida Vell live?", "answer": "Kestrel"}]
    jobs = []

    def run_trials(batch):  # the trials as they run here, seen on their way
        jobs.extend(batch)
        return [try_dream(model, tokenizer, sleeper.memory.train_only(1, j["slot"]), j["dream"], j["tau"],
                          j["before"], j["steps"], j["lr"]) for j in batch]

    config = DreamingConfig(trial_steps=1, rehearse_epochs=1, dreamer_epochs=1)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, tau, progress=lambda *_: None, check=lambda _: [*DREAMS[1:], misspelled],
        run_trials=run_trials)
    assert report["shut"] == 1 and report["dreams"] == 2 and len(jobs) == report["kept"] == 2
    assert all("Ada Vell" in j["dream"]["completion"] for j in jobs)
    assert all(len(j["tau"]) == 1 and "Ada Vell" in j["tau"][0]["student"] for j in jobs)


def seeded_night(model, tokenizer, **seeding):
    """A Sleeper after one night of one lesson about Ada Vell (no replay): (sleeper, lessons)."""
    sleeper = Sleeper(model, tokenizer, SeedingConfig(epochs=1, lti=False, lmbda=0.0, replay=0.0, **seeding),
                      MemoryConfig(rank=2))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    return sleeper, lessons


@pytest.mark.parametrize(("teach", "repeats"), [(False, 1), (True, 1), (True, 3)])
def test_tau_is_taught_only_with_teach_tau_and_only_after_the_trials(micro, teach, repeats):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    slot = sleeper.memory.active_slots(1)[-1]
    seeded = [p.detach().clone() for p in sleeper.memory.train_only(1, slot)]
    judged_on = []

    def run_trials(batch):  # no dream helps: with teach_tau, tau and the lessons alone are rehearsed
        judged_on.append([p.detach().clone() for p in sleeper.memory.train_only(1, slot)])
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=teach, tau_repeats=repeats, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    after = sleeper.memory.train_only(1, slot)
    assert report["helped"] == 0 and report["taught_tau"] == (1 if teach else 0)
    assert all(torch.equal(a, b) for a, b in zip(judged_on[0], seeded))  # judged on the expert tau never taught
    if teach:  # tau's one check (`tau_repeats` times) and the one lesson, rehearsed (no replay here)
        assert report["rehearsal"]["rows"] == 1 + repeats and report["rehearsal"]["slot"] == slot
        assert not all(torch.equal(a, b) for a, b in zip(after, seeded))
    else:
        assert report["rehearsal"] is None and all(torch.equal(a, b) for a, b in zip(after, seeded))


def test_rehearsed_into_a_new_expert_tonights_seeded_one_stays_as_seeding_left_it(micro, monkeypatch):
    """`rehearse_into: new`: the rehearsal trains a fresh level-1 expert; the seeded one is frozen
    in the student and muted in the teacher (the model before tonight), as tonight's own is."""
    import lmsleep.seeding

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    memory = sleeper.memory
    slot = memory.active_slots(1)[-1]
    seeded = [p.detach().clone() for p in memory.train_only(1, slot)]
    mutes = []

    class Spy(lmsleep.seeding.SeedingLoss):  # records what the teacher goes without; computes as it would
        def __init__(self, *args, **kwargs):
            mutes.append(kwargs["teacher_mute"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lmsleep.seeding, "SeedingLoss", Spy)
    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, rehearse_into="new")
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [])
    new = report["rehearsal"]["slot"]
    assert new != slot and memory.active_slots(1) == [slot, new]
    assert int(memory.level(1)[0].born[new]) == int(memory.level(1)[0].born[slot])  # both tonight's
    assert all(torch.equal(a, b) for a, b in zip(memory.train_only(1, slot), seeded))
    assert any(p.abs().sum() > 0 for p in memory.train_only(1, new)[1::3])  # its B (born zero) moved: it learned
    assert mutes == [{1: [slot, new]}]
    assert all(bank.seeding is None for layer in memory.banks for bank in layer)  # settled: both compete
    with pytest.raises(ValueError, match="rehearse_into"):
        DreamingConfig(rehearse_into="old")
    with pytest.raises(ValueError, match="dreams only"):
        DreamingConfig(rehearse_into="new", seeding=False)
    assert sleeper.experts_a_night == 2  # the Dreamer told seeding's plan to leave the rehearsal its slot


def test_rehearsing_into_a_new_expert_needs_a_free_slot_and_says_so_before_any_work(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(epochs=1, lti=False, lmbda=0.0, replay=0.0),
                      MemoryConfig(rank=2, slots=[2, 8]))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.memory.expand(1)  # an earlier night's expert: with tonight's, level 1 is full
    sleeper.memory.settle(1)
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    assert sleeper.memory.free_slots(1) == 0

    def no_dreams(_):
        raise AssertionError("dreams were checked before the error")

    with pytest.raises(RuntimeError, match="experts_a_night"):
        Dreamer(model, tokenizer, DreamingConfig(rehearse_into="new", random_expert=False), sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=no_dreams)


def test_without_rest_em_the_dreamer_never_learns(micro, tmp_path):
    # With it on, a night whose dreams helped leaves the adapter (the dreaming-night test above).
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    dream = DREAMS[1] | {"prompt": DREAMS[1]["teacher"], "sample": DREAMS[1]["completion"]}
    config = DreamingConfig(rehearse_epochs=1, dreamer_epochs=1, dreamer_rank=2, rest_em=False, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, tmp_path / "dreamer").night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [dream],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch])
    assert report["helped"] == 1 and report["rehearsal"] is not None  # still rehearsed
    assert not (tmp_path / "dreamer").exists()


@pytest.mark.parametrize("repeats", [0, 1, 4])
def test_the_dreams_that_helped_are_rehearsed_dream_repeats_times(micro, repeats):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    config = DreamingConfig(rehearse_epochs=1, dream_repeats=repeats, rest_em=False, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch])
    assert report["helped"] == 1 and report["taught_tau"] == 0  # the dream, its repeats and the one lesson
    assert report["rehearsal"]["rows"] == repeats + len(lessons)


@pytest.mark.parametrize("bf16", [False, True])
def test_with_seedings_bf16_the_night_and_trials_in_another_thread_run_in_bf16_autocast(micro, bf16):
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    # Only the switch: a CPU Trainer refuses bf16, so no dream helps and nothing is rehearsed.
    sleeper.config = replace(sleeper.config, bf16=bf16)
    seen = {"night": [], "trial": []}
    where = {"now": "night"}
    hook = model.register_forward_pre_hook(lambda *_: seen[where["now"]].append(torch.is_autocast_enabled("cpu")))

    def run_trials(batch):  # as the pipeline's thread runner: autocast does not cross threads
        where["now"] = "trial"
        with ThreadPoolExecutor(1) as pool:
            outcomes = list(pool.map(lambda j: try_dream(model, tokenizer, sleeper.memory.train_only(1, j["slot"]),
                                                         j["dream"], j["tau"], j["before"], 1, 0.01, j["bf16"]), batch))
        where["now"] = "night"
        return [o | {"reward": 0} for o in outcomes]

    config = DreamingConfig(dreams=1, max_new_tokens=6, random_expert=False, rest_em=False)
    try:
        report = Dreamer(model, tokenizer, config, sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    finally:
        hook.remove()
    assert report["kept"] == 1 and report["rehearsal"] is None
    assert seen["night"] and seen["trial"]
    assert set(seen["night"]) == set(seen["trial"]) == {bf16}


def test_the_rehearsal_trains_at_rehearse_lr(micro):
    from transformers import TrainerCallback

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    rates = []

    class Rates(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            rates.append(optimizer.param_groups[0]["lr"])

    config = DreamingConfig(rehearse_epochs=1, rehearse_lr=1e-4, teach_tau=True, random_expert=False)
    Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [], callbacks=[Rates()])
    assert rates and all(r == pytest.approx(1e-4) for r in rates)  # seeding's own is 1e-2
    with pytest.raises(ValueError, match="rehearse_lr"):
        DreamingConfig(rehearse_lr=0.0)


@pytest.mark.parametrize("tonight", [True, False])
def test_dreams_are_written_with_tonights_expert_unless_it_is_muted(micro, tonight):
    from lmsleep.seeding import muted

    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(lti=False), MemoryConfig(rank=4))
    slot = sleeper.memory.expand(1)  # tonight's expert, nudged far off zero so that it shows
    torch.manual_seed(0)
    with torch.no_grad():
        for p in sleeper.memory.train_only(1, slot):
            p.add_(torch.randn_like(p) * 0.5)
    config = DreamingConfig(dreams=2, max_new_tokens=12, random_expert=False, tonight_while_dreaming=tonight)
    written = []
    Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], [], TAU, progress=lambda *_: None, check=lambda dreams: written.extend(dreams) or [])
    with muted(sleeper.memory, {1: [slot]}):  # what the model before tonight writes from the same draws
        before_tonight = sample_dreams(model, tokenizer, [EPISODE], config,
                                       random.Random(f"{config.seed}-dream-{sleeper.memory.nights}"))
    assert written and (written == before_tonight) == (not tonight)
    assert slot in sleeper.memory.active_slots(1)  # muted while dreaming only


@pytest.mark.slow
def test_dreams_only_gets_its_own_new_expert(micro):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2))
    sleeper.night([EPISODE], [], progress=lambda *_: None)  # nothing seeded tonight
    assert sleeper.memory.active_slots(1) == []
    dreamer = Dreamer(model, tokenizer, DreamingConfig(seeding=False), sleeper, None)
    slot = dreamer.tonight_slot()
    assert sleeper.memory.active_slots(1) == [slot] and dreamer.tonight_slot() == slot


def test_dreams_only_keys_its_new_expert_on_tonights_lessons(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(lti=False), MemoryConfig(rank=2, keyed=True))
    dreamer = Dreamer(model, tokenizer, DreamingConfig(seeding=False), sleeper, None)
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    slot = dreamer.tonight_slot([EPISODE], lessons)
    assert sleeper.memory.keys[1][slot][0] == ["Ada Vell"]


def test_dream_prompts_are_params_and_default_to_the_cues_birth_teaches():
    from pathlib import Path

    from lmsleep.params import load_params
    from lmsleep.world import open_book_prompt, restate_prompt

    config = load_params(Path(__file__).parents[2] / "params.yaml").dreaming
    assert config.prompt("restatement", "Ada {x} Vell.") == restate_prompt("Ada {x} Vell.")  # braces kept
    assert open_book_prompt("C.", "Where?").startswith(config.prompt("qa", "C."))
    assert DreamingConfig(prompts={"qa": "{context} Q:"}).prompts["restatement"] == config.prompts["restatement"]
    with pytest.raises(ValueError, match="prompts.restatement has no"):
        DreamingConfig(prompts={"restatement": "In other words:"})
    with pytest.raises(ValueError, match="templates for"):
        DreamingConfig(prompts={"implication": "{context}"})


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
