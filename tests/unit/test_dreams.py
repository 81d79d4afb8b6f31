"""lmsleep/dreams.py: the dreams written, the one-hop rows and checks, what tau can judge."""

import random

from lmsleep.dreaming import DreamingConfig
from lmsleep.dreams import composed_checks, composed_rows, judgeable, sample_dreams
from tests.unit.dreaming_fixtures import EPISODE, OFFICES, TAU


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
