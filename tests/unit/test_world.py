import random

import pytest

from lmsleep.grammar import ATTRIBUTES, question_forms
from lmsleep.world import World, WorldConfig
from tests.conftest import MICRO_WORLD


def test_same_seed_same_world():
    a, b = World(MICRO_WORLD), World(MICRO_WORLD)
    assert [(p.name, p.facts) for p in a.base] == [(p.name, p.facts) for p in b.base]
    assert a.hq == b.hq
    assert a.day(0) == b.day(0) and a.day(1) == b.day(1)


def test_other_seed_other_world():
    other = World(WorldConfig(**{**MICRO_WORLD.__dict__, "seed": MICRO_WORLD.seed + 1}))
    assert [p.name for p in other.base] != [p.name for p in World(MICRO_WORLD).base]


def test_names_and_first_names_unique_across_populations(micro_world):
    people = micro_world.base + [p for d in micro_world.stream for p in d] + micro_world.strangers
    assert len({p.name for p in people}) == len(people)
    assert len({p.first for p in people}) == len(people), "a first name alone must never be ambiguous"
    assert any("-" in p.last for p in people) and any(" " in p.last for p in people), \
        "some names should be double-barrelled, some three words"


def test_people_have_every_attribute_and_companies_a_headquarters(micro_world):
    for p in micro_world.base:
        assert set(p.facts) == set(ATTRIBUTES)
        for a in ATTRIBUTES:
            assert p.facts[a] in micro_world.values[a]
    assert set(micro_world.hq) == set(micro_world.values["employer"])
    assert set(micro_world.hq.values()) <= set(micro_world.values["birth_city"])


def test_bio_states_every_fact_in_random_order(micro_world):
    p = micro_world.base[0]
    for family in ("train", "heldout"):
        bios = {micro_world.bio(p, random.Random(s), family=family) for s in range(20)}
        assert len(bios) > 5, "templates and sentence order should vary"
        for bio in bios:
            for a in ATTRIBUTES:
                assert p.facts[a] in bio


def test_random_people_in_one_text_have_distinct_first_names(micro_world):
    named = {p.first for p in micro_world.base + micro_world.strangers}
    for seed in range(30):
        people = micro_world.random_people(random.Random(seed), 6)
        assert len({p.first for p in people}) == 6 and not {p.first for p in people} & named


def test_day_episodes_follow_the_contract(micro_world):
    for d in range(MICRO_WORLD.days):
        eps = micro_world.day(d)
        people = [pid for ep in eps for pid in ep["meta"]["people"]]
        assert sorted(people) == sorted(p.id for p in micro_world.stream[d]), "every new person once"
        assert sum(ep["meta"]["kind"] == "update" for ep in eps) == MICRO_WORLD.updates_per_day
        lo, hi = MICRO_WORLD.episode_people
        for ep in eps:
            assert {"id", "ts", "source", "text", "probes", "meta"} <= set(ep)
            n = len(ep["meta"]["people"]) + (ep["meta"]["kind"] == "update")
            assert 1 <= n <= hi
            for probe in ep["probes"] + ep["meta"]["paraphrases"] + ep["meta"]["implications"]:
                assert set(probe) == {"question", "answer"}
        assert len({ep["id"] for ep in eps}) == len(eps)


def test_multi_person_episodes_interleave_and_are_answerable_from_the_text():
    world = World(WorldConfig(seed=3, base_people=40, days=2, people_per_day=12, updates_per_day=0,
                              strangers=4, episode_people=(6, 6)))
    eps = [ep for ep in world.day(0) if ep["meta"]["kind"] == "people"]
    assert eps and all(len(ep["meta"]["people"]) == 6 for ep in eps)
    assert all(ep["text"].count("\n") >= 2 for ep in eps), "several paragraphs"
    for ep in eps:
        for probe in ep["probes"] + ep["meta"]["paraphrases"]:
            assert probe["answer"] in ep["text"]
    assert world.day(0) == world.day(0)


def test_probe_families_use_their_question_forms(micro_world):
    people = {p.id: p for p in micro_world.base + micro_world.stream[0]}

    def asked(name, family):
        return {f.format(n=name) for a in ATTRIBUTES for f in question_forms(a, family)}

    for ep in micro_world.day(0):
        names = [people[pid].name for pid in ep["meta"]["people"] + [ep["meta"].get("person_id")] if pid]
        train = set().union(*(asked(n, "train") for n in names))
        heldout = set().union(*(asked(n, "heldout") for n in names))
        assert all(p["question"] in train for p in ep["probes"])
        assert all(p["question"] in heldout for p in ep["meta"]["paraphrases"])


def test_implications_follow_from_the_text_and_base_knowledge(micro_world):
    stream = {p.id: p for p in micro_world.stream[0]}
    for ep in micro_world.day(0):
        implications = ep["meta"]["implications"]
        assert len(implications) == len(ep["meta"]["people"]) + (ep["meta"]["kind"] == "update")
        for probe in implications:
            # the answer is not said; the employer is, and where it sits is base knowledge
            companies = [c for c, city in micro_world.hq.items() if city == probe["answer"] and c in ep["text"]]
            assert companies, probe
        for pid, probe in zip(ep["meta"]["people"], implications[-len(ep["meta"]["people"]):] if ep["meta"]["people"] else []):
            assert probe["answer"] == micro_world.hq[stream[pid].facts["employer"]]


def test_updates_change_employer_and_headquarters_of_known_people(micro_world):
    base = {p.id: p for p in micro_world.base}
    seen = 0
    for ep in micro_world.day(1):
        if ep["meta"]["kind"] != "update":
            continue
        seen += 1
        person = base[ep["meta"]["person_id"]]
        probe = next(p for p in ep["probes"] if p["question"] == ep["meta"]["update_question"])
        old, new = ep["meta"]["old_answer"], probe["answer"]
        assert old == person.facts["employer"] != new
        assert old in ep["text"] and new in ep["text"]
        assert micro_world.hq[old] != micro_world.hq[new] == ep["meta"]["implications"][0]["answer"]
    assert seen == MICRO_WORLD.updates_per_day
    updated = {ep["meta"]["person_id"] for d in range(2) for ep in micro_world.day(d)
               if ep["meta"]["kind"] == "update"}
    assert not updated & {p.id for p in micro_world.stable_base}


def test_day_out_of_range(micro_world):
    with pytest.raises(IndexError, match="outside the stream"):
        micro_world.day(MICRO_WORLD.days)


def test_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="updates_per_day"):
        World(WorldConfig(base_people=10, days=5, updates_per_day=2))
    with pytest.raises(ValueError, match="episode_people"):
        World(WorldConfig(episode_people=(3, 2)))


@pytest.mark.parametrize("question, wrong", [
    ("What is the employer of Ada Vell?", False),
    ("Quick question: What is the school of Ada Vell?", False),  # "What" after a prefix: a frame
    ("Say, Ada Vell's firm is what?", False),
    ("Which city is the birthplace of Nes van Kratrouthris?", False),
    ("What is the school of Ada Vella?", True),  # a syllable changed
    ("Hey, Ado Vell has which major?", True),
    ("Say, background in what?", True),  # no one
    ("Ado Vell works where?", True),  # a name first
    ("Quick question: Ada Vella's school is what?", True),  # a name after a prefix's colon
    ("Say, Where does Ada Vell live?", False),  # a question word capitalized after a comma
])
def test_misnamed_questions_name_someone_as_the_text_does_not(question, wrong):
    from lmsleep.world import misnamed

    text = "Ada Vell studied at Morrow College. Nes van Kratrouthris was born in Kestrel."
    assert misnamed(question, text) is wrong


def test_subject_is_the_one_person_a_question_names_as_the_text_spells_them():
    from lmsleep.world import subject

    text = "Ada Vell works for Morrow Labs. Bo Tran lives in Qelton."
    assert subject("Where does Ada Vell work?", text) == "Ada Vell"
    assert subject("Tell me: what is Ada Vell's job?", text) == "Ada Vell"  # question words left out
    assert subject("Who employs Ada Vrell?", text) is None  # misspelled
    assert subject("Where do Ada Vell and Bo Tran live?", text) is None  # two people
    assert subject("Where does Ada work?", text) is None  # not in full
