import random

import pytest

from lmsleep.world import ATTRIBUTES, QUESTION_TEMPLATES, World, WorldConfig
from tests.conftest import MICRO_WORLD


def test_same_seed_same_world():
    a, b = World(MICRO_WORLD), World(MICRO_WORLD)
    assert [(p.name, p.facts) for p in a.base] == [(p.name, p.facts) for p in b.base]
    assert a.day(0) == b.day(0) and a.day(1) == b.day(1)


def test_other_seed_other_world():
    other = World(WorldConfig(**{**MICRO_WORLD.__dict__, "seed": MICRO_WORLD.seed + 1}))
    assert [p.name for p in other.base] != [p.name for p in World(MICRO_WORLD).base]


def test_names_unique_across_populations(micro_world):
    people = micro_world.base + [p for d in micro_world.stream for p in d] + micro_world.strangers
    assert len({p.name for p in people}) == len(people)
    assert any("-" in p.last for p in people), "some last names should be double-barrelled"


def test_people_have_every_attribute(micro_world):
    for p in micro_world.base:
        assert set(p.facts) == set(ATTRIBUTES)
        for a in ATTRIBUTES:
            assert p.facts[a] in micro_world.values[a]


def test_bio_states_every_fact_in_random_order(micro_world):
    p = micro_world.base[0]
    bios = {World.bio(p, random.Random(s)) for s in range(20)}
    assert len(bios) > 5, "templates and sentence order should vary"
    for bio in bios:
        for a in ATTRIBUTES:
            assert p.facts[a] in bio


def test_day_episodes_follow_the_contract(micro_world):
    eps = micro_world.day(0)
    assert len(eps) == MICRO_WORLD.people_per_day + MICRO_WORLD.updates_per_day
    for ep in eps:
        assert {"id", "ts", "source", "text", "probes", "meta"} <= set(ep)
        assert ep["text"] and ep["probes"]
        for probe in ep["probes"] + ep["meta"]["paraphrases"]:
            assert set(probe) == {"question", "answer"}
    assert len({ep["id"] for ep in eps}) == len(eps)


def test_paraphrases_use_held_out_templates_only(micro_world):
    people = {p.id: p for p in micro_world.base + micro_world.stream[0]}
    for ep in micro_world.day(0):
        name = people[ep["meta"]["person_id"]].name
        asked = {f: {t.format(name=name) for ts in QUESTION_TEMPLATES[f].values() for t in ts}
                 for f in ("train", "heldout")}
        assert not asked["train"] & asked["heldout"]
        assert all(p["question"] in asked["train"] for p in ep["probes"])
        assert all(p["question"] in asked["heldout"] for p in ep["meta"]["paraphrases"])


def test_updates_change_employer_of_known_people(micro_world):
    base = {p.id: p for p in micro_world.base}
    for ep in micro_world.day(1):
        if ep["meta"]["kind"] != "update":
            continue
        person = base[ep["meta"]["person_id"]]
        old, new = ep["meta"]["old_answer"], ep["probes"][0]["answer"]
        assert old == person.facts["employer"] != new
        assert old in ep["text"] and new in ep["text"]
    updated = {ep["meta"]["person_id"] for d in range(2) for ep in micro_world.day(d)
               if ep["meta"]["kind"] == "update"}
    assert not updated & {p.id for p in micro_world.stable_base}


def test_day_out_of_range(micro_world):
    with pytest.raises(IndexError, match="outside the stream"):
        micro_world.day(MICRO_WORLD.days)


def test_too_many_updates_is_a_clear_error():
    with pytest.raises(ValueError, match="updates_per_day"):
        World(WorldConfig(base_people=10, days=5, updates_per_day=2))
