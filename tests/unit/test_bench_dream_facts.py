import re

import pytest

from lmsleep.bench_dream_facts import held, restatement_pairs, sort_facts, stated

ADA, BO = "Ada Vell", "Bo Rask"


def lesson(episode_id, question, answer):
    return {"episode_id": episode_id, "prompt": f"Q: {question}\nA:", "completion": f" {answer}"}


def restatement(episode_id, text):
    return {"episode_id": episode_id, "form": "restatement", "sample": f" {text}\n", "question": None,
            "completion": f" {text}\n"}


def qa(episode_id, question, answer, form="qa"):
    return {"episode_id": episode_id, "form": form, "sample": f" {question}\nA: {answer}\n", "question": question,
            "completion": f" {answer}\n" if form == "qa" else f"Q: {question}\nA: {answer}\nQ: x\nA: y\n"}


def test_a_lesson_holds_a_fact_only_under_the_name_and_with_the_answer():
    lessons = [lesson("e0", f"Where was {ADA} born?", "Lund"), lesson("e0", "Where was Ada Vel born?", "Oslo")]
    assert held(lessons, ADA, "Lund")
    assert held(lessons, ADA, "lund.")  # normalized, as the exam grades
    assert not held(lessons, ADA, "Oslo")  # taught only under a misspelled name
    assert not held(lessons, BO, "Lund")


def test_a_dream_states_a_fact_in_one_sentence_naming_the_person_or_as_its_answer():
    r = restatement("e0", f"{ADA} was born in Lund. {BO} works at Morrow Labs.")
    assert stated(r, ADA, "Lund") and stated(r, BO, "Morrow Labs")
    assert not stated(r, ADA, "Morrow Labs")  # in another person's sentence
    assert not stated(restatement("e0", f"{ADA} was born in Lundby."), ADA, "Lund")  # a whole phrase only
    assert stated(qa("e0", f"Where does {ADA} work?", "Morrow Labs"), ADA, "Morrow Labs")
    assert stated(qa("e0", f"Where does {ADA} work?", "Morrow Labs", "implication"), ADA, "Morrow Labs")
    assert not stated(qa("e0", f"Where does {BO} work?", "Morrow Labs"), ADA, "Morrow Labs")


def test_restatement_pairs_count_values_in_sentences_naming_one_person_only():
    facts = {"e0": {ADA: {"Lund", "Morrow Labs"}, BO: {"Oslo"}}}
    values = [re.compile(r"(?<!\w)(Lund|Oslo|Morrow Labs|Kest Works)(?!\w)")]
    dreams = [restatement("e0", f"{ADA} was born in Lund and works at Kest Works. {ADA} and {BO} met in Oslo."),
              qa("e0", f"Where was {ADA} born?", "Oslo")]  # not a restatement: not counted
    c = {"e0": f"{ADA} was born in Lund. {ADA} works at Morrow Labs. Kest Works is in Oslo."}
    assert restatement_pairs(dreams, facts, values, c) == {"right": 1, "wrong": 1, "right_in_a_sentence_of_c": 1,
                                                        "wrong_in_a_sentence_of_c": 0}
    c = {"e0": f"{ADA} left Kest Works. {ADA} was born in Oslo."}  # a wrong pair C states together
    assert restatement_pairs(dreams, facts, values, c) == {"right": 1, "wrong": 1, "right_in_a_sentence_of_c": 0,
                                                        "wrong_in_a_sentence_of_c": 1}


def test_each_probe_is_sorted_by_lesson_and_by_dream():
    day = [{"id": "e0", "meta": {"people": ["a"]}, "probes": [
        {"question": f"Where was {ADA} born?", "answer": "Lund"},
        {"question": f"Where does {ADA} work?", "answer": "Morrow Labs"},
        {"question": f"When was {ADA} born?", "answer": "1970"}]},
        {"id": "e1", "meta": {"people": ["b"], "person_id": "a"}, "probes": [
            {"question": f"Where does {ADA} work?", "answer": "Kest Works"}]}]
    lessons = [lesson("e0", f"Where was {ADA} born?", "Lund")]
    dreams = [restatement("e0", f"{ADA} was born in Lund."), qa("e0", f"Who employs {ADA}?", "Morrow Labs"),
              restatement("e1", f"{ADA} now works at Kest Works.")]
    out = sort_facts(day, lessons, dreams, {"a": ADA, "b": BO})
    assert (out["probes"], out["held"], out["not_held"]) == (4, 1, 3)
    assert (out["held_and_dreamt"], out["not_held_but_dreamt"]) == (1, 2)
    assert out["by_form"] == {"restatement": {"held": 1, "not_held": 1}, "qa": {"held": 0, "not_held": 1}}


@pytest.mark.slow
def test_one_day_on_a_born_micro_model(born_micro_dir):
    """End to end on a real (micro) model: lessons and dreams written, each probe's fact sorted."""
    from lmsleep.bench_dream_facts import one_day
    from lmsleep.checks import ValidationLimits
    from lmsleep.params import load_params
    from tests.conftest import MICRO_WORLD

    params = load_params(raw={
        "base_model": str(born_micro_dir),
        "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)},
        "baselines": {"self_questions": 2}, "curriculum": {"window": "paragraph"},
        "memory": {"periods": [1, 2], "slots": [2, 4], "top_k": [2, 2], "rank": 4},
        "dreaming": {"max_new_tokens": 8}})
    out = one_day(params, seed=0, day_index=0, dreams_each=2, limits=ValidationLimits())
    f = out["facts"]
    assert f["probes"] > 0 and f["held"] + f["not_held"] == f["probes"]
    assert 0 <= f["held_and_dreamt"] <= f["held"] and 0 <= f["not_held_but_dreamt"] <= f["not_held"]
    assert 0 <= out["dreams_fit"] <= out["dreams_written"]
    p = out["restatement_pairs"]
    assert 0 <= p["right_in_a_sentence_of_c"] <= p["right"] and 0 <= p["wrong_in_a_sentence_of_c"] <= p["wrong"]
