import random

import pytest

from lmsleep import evaluation as ev

# Three nights, three days. Row i = after night i; column j = day j's probes.
R = [
    [0.8, 0.0, 0.1],
    [0.6, 0.9, 0.0],
    [0.5, 0.7, 1.0],
]


def test_acc_is_the_mean_of_the_last_row():
    assert ev.acc(R) == pytest.approx((0.5 + 0.7 + 1.0) / 3)


def test_bwt_by_hand():
    # (R[2][0] - R[0][0] + R[2][1] - R[1][1]) / 2 = (-0.3 - 0.2) / 2
    assert ev.bwt(R) == pytest.approx(-0.25)


def test_forgetting_by_hand():
    # day 0: max(0.8, 0.6) - 0.5 = 0.3; day 1: max(0.0, 0.9) - 0.7 = 0.2
    assert ev.forgetting(R) == pytest.approx(0.25)


def test_positive_transfer_gives_negative_forgetting():
    R_up = [[0.2, 0.0], [0.6, 0.5]]
    assert ev.bwt(R_up) == pytest.approx(0.4)
    assert ev.forgetting(R_up) == pytest.approx(-0.4)


def test_days_not_yet_lived_need_not_be_measured():
    """The bench measures a row up to the next day only; the metrics read the lower triangle."""
    sparse = [[0.8, 0.0, None], [0.6, 0.9, 0.0], [0.5, 0.7, 1.0]]
    assert (ev.acc(sparse), ev.bwt(sparse), ev.forgetting(sparse)) == (ev.acc(R), ev.bwt(R), ev.forgetting(R))


def test_single_night_has_no_backward_metrics():
    assert ev.acc([[0.4]]) == pytest.approx(0.4)
    assert ev.bwt([[0.4]]) is None and ev.forgetting([[0.4]]) is None


@pytest.mark.parametrize("pred, gold, same", [
    ("Velmora", "velmora", True),
    (" The Velmora. ", "Velmora", True),
    ("Zentrix Labs", "zentrix labs!", True),
    ("Velmora Bay", "Velmora", False),
    ("", "Velmora", False),
    ("1987", "1987", True),
])
def test_exact_match_normalizes(pred, gold, same):
    assert ev.exact_match(pred, gold) is same


def test_episode_probes_pairs_each_probe_with_its_text():
    eps = [{"id": "a", "text": "A.", "probes": [{"question": "q1", "answer": "x"}, {"question": "q2", "answer": "y"}],
            "meta": {"paraphrases": [{"question": "p1", "answer": "x"}]}},
           {"id": "b", "text": "B.", "probes": None}]
    probes, contexts = ev.episode_probes(eps)
    assert [p["question"] for p in probes] == ["q1", "q2"] and contexts == ["A.", "A."]
    probes, contexts = ev.episode_probes(eps, "paraphrases")
    assert [p["question"] for p in probes] == ["p1"] and contexts == ["A."]


def test_open_book_puts_the_context_in_the_prompt(micro, micro_world, monkeypatch):
    """The ceiling is measured with each episode's text before its question; closed-book without."""
    model, tokenizer = micro
    seen: list[list[str]] = []
    real = ev.generate

    def spy(model, tokenizer, prompts, **kw):
        seen.append(list(prompts))
        return real(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(ev, "generate", spy)
    episodes = micro_world.day(0)
    ceiling = ev.open_book(model, tokenizer, episodes)
    closed = ev.closed_book(model, tokenizer, episodes)
    assert 0.0 <= ceiling <= 1.0 and 0.0 <= closed <= 1.0
    open_prompts, closed_prompts = seen
    probes = [(ep["text"], p["question"]) for ep in episodes for p in ep["probes"]]
    assert open_prompts == [f"{text}\n\nQ: {q}\nA:" for text, q in probes]
    assert closed_prompts == [f"Q: {q}\nA:" for _, q in probes]


def test_generate_is_greedy_and_batch_independent(micro):
    model, tokenizer = micro
    prompts = ["Q: Where was Ka Lo born?\nA:", "Some much longer prompt about nothing at all\n\nQ: Who?\nA:"]
    together = ev.generate(model, tokenizer, prompts, batch_size=2)
    alone = [ev.generate(model, tokenizer, [p], batch_size=1)[0] for p in prompts]
    assert together == alone
    assert together == ev.generate(model, tokenizer, prompts, batch_size=2)


def test_nothing_to_measure_is_none_not_zero(micro, micro_world):
    model, tokenizer = micro
    bare = [{"id": "x", "text": "A passage about nothing."}]
    assert ev.accuracy(model, tokenizer, []) is None
    assert ev.closed_book(model, tokenizer, bare) is None
    assert ev.ceilings(model, tokenizer, bare) == {"recall_ceiling": None, "paraphrase_ceiling": None,
                                                   "implication_ceiling": None, "update_ceiling": None,
                                                   "update_stale_ceiling": None}
    a = ev.after_night(model, tokenizer, bare, {"retention": []}, [])
    assert a["recall"] is a["paraphrase"] is a["implication"] is a["checks"] is a["retention"] is None
    assert a["update"] == {"new": None, "old": None, "n": 0} and a["reading"] is None


def test_update_test_counts_new_and_old(micro, micro_world, monkeypatch):
    model, tokenizer = micro
    eps = [ep for ep in micro_world.day(0) if ep["meta"]["kind"] == "update"]
    assert len(eps) == 2
    # the first person answers the new employer, the second still the old one
    new = next(p for p in eps[0]["probes"] if p["question"] == eps[0]["meta"]["update_question"])
    replies = [new["answer"], eps[1]["meta"]["old_answer"]]
    monkeypatch.setattr(ev, "answer", lambda *a, **k: replies)
    assert ev.update_test(model, tokenizer, eps) == {"new": 0.5, "old": 0.5, "n": 2}


def test_the_update_ceiling_asks_the_teacher_reading_the_news(micro, micro_world, monkeypatch):
    """The teacher reads "X left A and now works at B" before the question: what it answers there
    is what a night can teach. The model's replies are stood in (a micro model cannot read)."""
    model, tokenizer = micro
    eps = [ep for ep in micro_world.day(0) if ep["meta"]["kind"] == "update"]
    asked = []

    def reads(model, tokenizer, prompts, **kw):
        asked.extend(prompts)  # open-book: the new value if the news is in the prompt, else the old
        return [next((ep["meta"]["old_answer"] if ep["text"] not in p else
                      next(q["answer"] for q in ep["probes"] if q["question"] == ep["meta"]["update_question"])
                      for ep in eps if p.endswith(f"Q: {ep['meta']['update_question']}\nA:")), "") for p in prompts]

    monkeypatch.setattr(ev, "generate", reads)
    assert ev.update_test(model, tokenizer, eps) == {"new": 0.0, "old": 1.0, "n": 2}
    assert not any(ep["text"] in p for p in asked for ep in eps)  # closed-book: no episode read
    asked.clear()
    assert ev.update_test(model, tokenizer, eps, in_context=True) == {"new": 1.0, "old": 0.0, "n": 2}
    assert [ep["text"] in p for p, ep in zip(asked, eps)] == [True, True]
    c = ev.ceilings(model, tokenizer, eps)
    assert (c["update_ceiling"], c["update_stale_ceiling"]) == (1.0, 0.0)


def test_restatement_grades_stated_facts(micro_world, monkeypatch):
    person = micro_world.strangers[0]
    wrong_city = next(c for c in micro_world.values["birth_city"] if c != person.facts["birth_city"])
    text = f" {person.name} was born in {wrong_city}. {person.name} works at {person.facts['employer']}."
    monkeypatch.setattr(ev, "generate", lambda *a, **k: [text])
    r = ev.restatement(None, None, micro_world, [person])
    assert r["precision"] == pytest.approx(0.5)  # one of two stated facts is right
    assert r["coverage"] == pytest.approx(1 / 5)


def test_self_questions_grades_posed_and_answered(micro_world, monkeypatch):
    a, b = micro_world.strangers[:2]

    def fake_generate(model, tokenizer, prompts, **kw):
        if prompts[0].endswith("Q:"):  # the questions the model poses: one well-formed, one not
            return [f" Where was {a.name} born?", " What is the meaning of life?"]
        return [f" {a.facts['birth_city']}"]  # its answer to the well-formed one

    monkeypatch.setattr(ev, "generate", fake_generate)
    assert ev.self_questions(None, None, micro_world, [a, b]) == {"posed": 0.5, "answered": 1.0}


def test_episodes_too_long_for_the_model_are_named_with_its_limit(micro):
    from lmsleep.evaluation import PROMPT_ROOM, context_limit, too_long

    model, tokenizer = micro
    limit = context_limit(model)
    assert limit == model.config.max_position_embeddings
    short = {"id": "short", "text": "Ada Vell works for Morrow Labs."}
    long = {"id": "long", "text": "Ada Vell works for Morrow Labs. " * limit}
    (refused,) = too_long(tokenizer, [short, long], limit)
    assert refused["episode_id"] == "long" and f"{limit:,} positions" in refused["reason"]
    n = len(tokenizer(short["text"])["input_ids"])
    assert too_long(tokenizer, [short], n + PROMPT_ROOM) == [] and too_long(tokenizer, [short], n + PROMPT_ROOM - 1)
    assert too_long(tokenizer, [long], None) == []  # a config that does not say: nothing refused


def test_context_limit_reads_gpt2_configs_too():
    from transformers import GPT2Config, GPT2LMHeadModel

    from lmsleep.evaluation import context_limit

    model = GPT2LMHeadModel(GPT2Config(n_positions=64, n_embd=8, n_layer=1, n_head=2, vocab_size=50))
    assert context_limit(model) == 64


def test_the_generation_budget_fits_the_longest_answer(micro):
    from lmsleep.evaluation import answer_budget

    _, tokenizer = micro
    short = {"question": "Where?", "answer": "Kestrel"}
    long = {"question": "What happened?", "answer": " ".join(["the committee approved the new budget"] * 6)}
    assert answer_budget(tokenizer, [short]) == 12  # our world's answers: the floor
    n = len(tokenizer(" " + long["answer"], add_special_tokens=False)["input_ids"])
    assert n > 12 and answer_budget(tokenizer, [short, long]) == n + 2


def test_dream_quality_grades_each_form_with_the_worlds_truth(micro_world):
    from lmsleep.evaluation import dream_quality

    p = micro_world.stream[0][0]
    company = p.facts["employer"]
    episode = {"id": "e", "text": micro_world.bio(p, random.Random(0))}
    wrong_city = next(c for c in micro_world.values["birth_city"] if c != micro_world.hq[company])
    dreams = [
        {"episode_id": "e", "form": "restatement", "completion": f" {p.name} works at {company} in {wrong_city}.\n"},
        {"episode_id": "e", "form": "qa", "completion": f" {company}\n"},
        {"episode_id": "e", "form": "implication",
         "completion": f"Q: Where does {p.name} work?\nA: {company}\nQ: Where is {company} based?\nA: {micro_world.hq[company]}\n"},
        {"episode_id": "e", "form": "implication",
         "completion": f"Q: Where does {p.name} work?\nA: {company}\nQ: Where is {company} based?\nA: {wrong_city}\n"},
    ]
    quality = dream_quality(micro_world, [episode], dreams)
    right_city = wrong_city == p.facts["birth_city"]  # the bio says the birth city: stated, so right
    assert quality["restatement"] == (1.0 if right_city else 0.5)
    assert quality["qa"] == 1.0 and quality["implication"] == 0.5
    assert dream_quality(micro_world, [episode], [])["qa"] is None
