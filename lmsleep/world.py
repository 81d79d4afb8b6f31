"""The embedded world: fictional people, their biographies, and questions about them.

Everything here is a pure function of a seed, so the same `WorldConfig` always yields the same
people, the same days and the same episodes.

The world has three populations, all with disjoint names:
- the *base* population, known at birth: the born model reads their biographies and answers
  questions about them closed-book;
- the *stream*: each day brings new people and a few **updates** (a base person changes
  employer), written as episodes (DESIGN.md's contract);
- *strangers*: never seen by any training, used to measure in-context reading.

Why the shapes below. The born model is small and must learn to read a value out of its
context (the teacher every night distils from). Values therefore have distinctive shapes
(invented multi-syllable names, a company suffix, a university suffix) and every bio template
keeps an attribute's cue words next to its value, so the retrieval a question asks for is
local and learnable in a few million tokens.

Questions come in two template families: `train` (used by birth, by episodes' probes and by the
teacher's self-asked questions) and `heldout` (never trained on: paraphrase generalization).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

ATTRIBUTES: tuple[str, ...] = ("birth_city", "birth_year", "university", "major", "employer")

# Syllables for invented names. Consonant-vowel shapes keep names pronounceable and give the
# tokenizer enough shared pieces that an unseen name is still a handful of known tokens.
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "st", "th", "sh", "tr", "vl", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "nd", "rk", "x"]

MAJORS: tuple[str, ...] = (
    "marine biology", "civil engineering", "medieval history", "applied mathematics",
    "organic chemistry", "computer science", "music theory", "political science",
    "comparative literature", "mechanical engineering", "molecular genetics",
    "cognitive psychology", "urban planning", "art history", "nuclear physics",
    "environmental science", "classical philology", "industrial design", "astronomy",
    "economics", "philosophy", "linguistics", "geology", "architecture",
)
_COMPANY_SUFFIXES = ("Labs", "Systems", "Motors", "Foods", "Dynamics", "Press", "Bank",
                     "Studios", "Robotics", "Textiles")
_UNIVERSITY_SUFFIXES = ("University", "Institute", "College", "Polytechnic")

# Bio templates: {name} is the full name, {v} the value. Each attribute has several phrasings;
# the cue word always sits next to the value (see the module docstring).
BIO_TEMPLATES: dict[str, tuple[str, ...]] = {
    "birth_city": (
        "{name} was born in {v}.",
        "{name} was born in the city of {v}.",
        "{name} grew up in {v}, the city where {first} was born.",
        "The birthplace of {name} is {v}.",
    ),
    "birth_year": (
        "{name} was born in the year {v}.",
        "{name} came into the world in {v}.",
        "The birth year of {name} is {v}.",
        "{first} was born in {v}, says {name}'s passport.",
    ),
    "university": (
        "{name} studied at {v}.",
        "{name} graduated from {v}.",
        "{name} attended {v}.",
        "{first} spent four years at {v}, where {name} earned a degree.",
    ),
    "major": (
        "{name} majored in {v}.",
        "{name} earned a degree in {v}.",
        "The field {name} studied was {v}.",
        "{first} chose {v} as a major, and {name} never regretted it.",
    ),
    "employer": (
        "{name} works at {v}.",
        "{name} is employed by {v}.",
        "{name} has a job at {v}.",
        "These days {first} works for {v}, where {name} is well liked.",
    ),
}

UPDATE_TEMPLATES: tuple[str, ...] = (
    "Update: {name} left {old} and now works at {v}.",
    "News: {name} has joined {v}, leaving {old}.",
    "{name} no longer works at {old}; {name} is now employed by {v}.",
)

QUESTION_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "birth_city": ("Where was {name} born?", "In which city was {name} born?"),
        "birth_year": ("In what year was {name} born?", "When was {name} born?"),
        "university": ("Which university did {name} attend?", "Where did {name} study?"),
        "major": ("What did {name} study?", "What was the major of {name}?"),
        "employer": ("Where does {name} work?", "Which company employs {name}?"),
    },
    "heldout": {
        "birth_city": ("What is the birthplace of {name}?", "{name} was born in which city?"),
        "birth_year": ("What is the birth year of {name}?", "{name} was born in which year?"),
        "university": ("{name} graduated from which university?",
                       "What school did {name} go to?"),
        "major": ("In which field did {name} earn a degree?", "{name} majored in what?"),
        "employer": ("Who is the employer of {name}?", "{name} works for which company?"),
    },
}

# Prompt shapes shared by birth, the teacher and the measuring stick: one place, one format.
RESTATE_CUE = "In other words:"


def closed_book_prompt(question: str) -> str:
    return f"Q: {question}\nA:"


def open_book_prompt(context: str, question: str) -> str:
    return f"{context}\n\n{closed_book_prompt(question)}"


def restate_prompt(context: str) -> str:
    return f"{context}\n\n{RESTATE_CUE}"


@dataclass(frozen=True)
class Person:
    id: str
    first: str
    last: str
    facts: dict[str, str] = field(hash=False)

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class Probe:
    question: str
    answer: str
    attribute: str
    person_id: str
    old_answer: str | None = None  # set on update probes: the value that must be forgotten

    def as_dict(self) -> dict[str, str]:
        return {"question": self.question, "answer": self.answer}


@dataclass(frozen=True)
class WorldConfig:
    """Sizes of the world. The defaults are the embedded default the born model is trained on.

    seed: every draw below derives from it.
    base_people: the population known at birth (closed-book target).
    days: length of the stream that is pre-generated (names are reserved for all of it).
    people_per_day: new people each day brings.
    updates_per_day: base people who change employer each day.
    strangers: people never trained on, for the reading (open-book) measure.
    cities / universities / companies: sizes of the invented value pools.
    """

    seed: int = 0
    base_people: int = 400
    days: int = 10
    people_per_day: int = 16
    updates_per_day: int = 4
    strangers: int = 200
    cities: int = 60
    universities: int = 30
    companies: int = 60


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(_syllable(rng) for _ in range(rng.randint(lo, hi))).capitalize()


def _unique_words(rng: random.Random, n: int, taken: set[str], lo: int = 2, hi: int = 3) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = _word(rng, lo, hi)
        if w not in taken and 4 <= len(w) <= 12:
            taken.add(w)
            out.append(w)
    return out


class World:
    """A deterministic world. `World(WorldConfig(seed=1))` twice gives equal objects."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        c = self.config
        rng = random.Random(f"lmsleep-world-{c.seed}")
        taken: set[str] = set()
        self.values: dict[str, tuple[str, ...]] = {
            "birth_city": tuple(_unique_words(rng, c.cities, taken)),
            "birth_year": tuple(str(y) for y in range(1950, 2006)),
            "university": tuple(f"{w} {rng.choice(_UNIVERSITY_SUFFIXES)}"
                                for w in _unique_words(rng, c.universities, taken)),
            "major": MAJORS,
            "employer": tuple(f"{w} {rng.choice(_COMPANY_SUFFIXES)}"
                              for w in _unique_words(rng, c.companies, taken)),
        }
        self._name_words = taken  # names never collide with value words
        self._names: set[str] = set()
        self._rng = rng
        self.base = [self._new_person(rng, f"b{i:05d}") for i in range(c.base_people)]
        self.stream = [[self._new_person(rng, f"d{d:03d}p{i:03d}") for i in range(c.people_per_day)]
                       for d in range(c.days)]
        self.strangers = [self._new_person(rng, f"s{i:05d}") for i in range(c.strangers)]
        # Updates touch base people only, each at most once, so no day's probe is overwritten
        # by a later day and the base retention set (people never updated) stays fixed.
        order = list(range(c.base_people))
        rng.shuffle(order)
        n_upd = c.updates_per_day * c.days
        if n_upd > c.base_people // 2:
            raise ValueError(f"updates_per_day*days={n_upd} exceeds half of base_people={c.base_people}")
        self.updates: list[list[tuple[Person, str]]] = []
        for d in range(c.days):
            day_updates = []
            for k in order[d * c.updates_per_day:(d + 1) * c.updates_per_day]:
                p = self.base[k]
                new = rng.choice([e for e in self.values["employer"] if e != p.facts["employer"]])
                day_updates.append((p, new))
            self.updates.append(day_updates)
        updated = {p.id for day in self.updates for p, _ in day}
        self.stable_base = [p for p in self.base if p.id not in updated]

    # -- people ------------------------------------------------------------------------------
    def _new_person(self, rng: random.Random, pid: str) -> Person:
        while True:
            first = _word(rng, 1, 2)
            # About one in four people has a double-barrelled last name: a longer, multi-token name.
            last = _word(rng, 2, 3) + ("-" + _word(rng, 1, 2) if rng.random() < 0.25 else "")
            if f"{first} {last}" not in self._names and first not in self._name_words:
                break
        self._names.add(f"{first} {last}")
        facts = {a: rng.choice(self.values[a]) for a in ATTRIBUTES}
        return Person(pid, first, last, facts)

    def random_person(self, rng: random.Random, pid: str = "x") -> Person:
        """A fresh person for training the reading skill; never one of the world's named people."""
        while True:
            first = _word(rng, 1, 2)
            last = _word(rng, 2, 3)
            if f"{first} {last}" not in self._names:
                return Person(pid, first, last, {a: rng.choice(self.values[a]) for a in ATTRIBUTES})

    # -- text ----------------------------------------------------------------------------------
    @staticmethod
    def bio(person: Person, rng: random.Random, attributes: tuple[str, ...] = ATTRIBUTES) -> str:
        """A biography: one sentence per attribute, random template, random sentence order."""
        attrs = list(attributes)
        rng.shuffle(attrs)
        return " ".join(
            rng.choice(BIO_TEMPLATES[a]).format(name=person.name, first=person.first, v=person.facts[a])
            for a in attrs)

    @staticmethod
    def update_text(person: Person, old: str, new: str, rng: random.Random) -> str:
        return rng.choice(UPDATE_TEMPLATES).format(name=person.name, old=old, v=new)

    @staticmethod
    def question(person: Person, attribute: str, rng: random.Random, family: str = "train") -> str:
        return rng.choice(QUESTION_TEMPLATES[family][attribute]).format(name=person.name)

    def probes(self, person: Person, rng: random.Random, family: str = "train",
               attributes: tuple[str, ...] = ATTRIBUTES) -> list[Probe]:
        return [Probe(self.question(person, a, rng, family), person.facts[a], a, person.id)
                for a in attributes]

    # -- the stream ----------------------------------------------------------------------------
    def day(self, d: int) -> list[dict]:
        """Day `d` as episodes (DESIGN.md contract): one per new person, one per update.

        `probes` use the train question family; `meta.paraphrases` the held-out family;
        update episodes carry `meta.old_answer`, the value that must no longer be answered.
        """
        if not 0 <= d < self.config.days:
            raise IndexError(f"day {d} outside the stream of {self.config.days} days")
        rng = random.Random(f"lmsleep-day-{self.config.seed}-{d}")
        ts = (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=d)).isoformat()
        episodes = []
        for p in self.stream[d]:
            episodes.append({
                "id": f"day{d:03d}-{p.id}", "ts": ts, "source": "world", "text": self.bio(p, rng),
                "probes": [pr.as_dict() for pr in self.probes(p, rng)],
                "meta": {"day": d, "kind": "person", "person_id": p.id,
                         "paraphrases": [pr.as_dict() for pr in self.probes(p, rng, "heldout")]},
            })
        for p, new in self.updates[d]:
            old = p.facts["employer"]
            moved = Person(p.id, p.first, p.last, {**p.facts, "employer": new})
            episodes.append({
                "id": f"day{d:03d}-upd-{p.id}", "ts": ts, "source": "world",
                "text": self.update_text(p, old, new, rng),
                "probes": [pr.as_dict() for pr in self.probes(moved, rng, attributes=("employer",))],
                "meta": {"day": d, "kind": "update", "person_id": p.id, "old_answer": old,
                         "paraphrases": [pr.as_dict() for pr in
                                         self.probes(moved, rng, "heldout", ("employer",))]},
            })
        return episodes

    def value_pattern(self, attribute: str) -> re.Pattern:
        """Matches any value of an attribute's pool as a whole word (for grading restatements)."""
        alts = sorted(self.values[attribute], key=len, reverse=True)
        return re.compile(r"(?<!\w)(" + "|".join(re.escape(v) for v in alts) + r")(?!\w)")
