"""The measures the data suites bound (lmsleep/checks.py); the suites themselves run as GX in
tests/tasks/test_validate.py, where the bench's stand-in is held to the same verdicts."""

from lmsleep.checks import ValidationLimits, dream_faults, dream_measures, names_grounded, repetition, world_knowledge
from lmsleep.grammar import ATTRIBUTES


def test_repetition_measure():
    assert repetition("a b c d e f") == 0.0
    assert repetition("a b " * 20) > 0.9
    assert repetition("two words") == 0.0


def test_names_grounded_is_the_share_of_capitalized_words_the_context_says():
    context = "Ada Vell works for Morrow Labs in Qelton."
    assert names_grounded(" Ada Vell is at Morrow Labs.\n", context) == 1.0
    assert names_grounded(" Ada Vrell is at Morrow Labs.\n", context) == 0.75  # one name misspelled of four
    assert names_grounded(" no names here\n", context) == 1.0


def test_dream_faults_name_each_broken_bound_and_only_those():
    limits = ValidationLimits(max_dream_chars=10, max_repetition=0.5, min_dream_grounding=0.8)
    fine = {"chars": 10, "repetition": 0.5, "grounded": 0.8, "implied": 1.0}  # every bound inclusive
    assert dream_faults(fine, limits) == []
    broken = {"chars": 0, "repetition": 0.9, "grounded": 0.5, "implied": 0.0}
    assert [f.split()[0] for f in dream_faults(broken, limits)] == ["chars", "repetition", "grounded", "implied"]
    assert dream_faults(fine | {"chars": 11}, limits) == ["chars 11 above 10"]


def test_world_knowledge_says_every_headquarters_and_every_base_biography(micro_world):
    knowledge = world_knowledge(micro_world)
    assert len(knowledge) == len(micro_world.hq) + len(micro_world.base) * len(ATTRIBUTES)
    assert all(any(c in s and city in s for s in knowledge) for c, city in micro_world.hq.items())


def test_an_implication_is_implied_by_one_sentence_of_the_knowledge_not_by_a_biography(micro_world):
    """A biography says someone's employer and birth city; "the employer is based in that city"
    does not follow from it, only from the headquarters sentence."""
    person = next(p for p in micro_world.base if micro_world.hq[p.facts["employer"]] != p.facts["birth_city"])
    employer = person.facts["employer"]
    ep = {"id": "e", "text": f"{person.name} works for {employer}."}

    def implication(second):
        return {"episode_id": "e", "form": "implication",
                "completion": f"Q: Who employs {person.name}?\nA: {employer}\nQ: Where is {employer} based?\nA: {second}\n"}

    right, wrong = dream_measures([implication(micro_world.hq[employer]), implication(person.facts["birth_city"])],
                                  [ep], world_knowledge(micro_world))
    assert right["grounded"] == wrong["grounded"] == 1.0
    assert right["implied"] == 1.0 and wrong["implied"] == 0.0
