"""The embedded world: fictional people, their biographies, the companies they work for, and
questions about them.

Everything here is a pure function of a seed, so the same `WorldConfig` always yields the same
people, the same days and the same episodes.

The world has three populations, all with disjoint names (first names too, so a first name
alone is never ambiguous inside one text):
- the *base* population, known at birth: the born model reads their biographies and answers
  questions about them closed-book;
- the *stream*: each day brings new people and a few **updates** (a base person changes
  employer), written as episodes of 1 to 6 people whose biographies are interleaved into
  paragraphs, as a meeting note or a news item would be (DESIGN.md's contract);
- *strangers*: never seen by any training, used to measure in-context reading.
Every company has a headquarters city, known at birth: an episode that says where someone
works implies where they go to work (`implications`, two hops: the text, then the weights).

How it talks is `lmsleep/grammar.py`: question and biography families, `train` and `heldout`.
Values have distinctive shapes (invented multi-syllable names, a company or university suffix,
digits, lowercase fields), sometimes with an article ("the Velmora Institute"), and names are
sometimes three words ("Ana van Drosk") or double-barrelled.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from lmsleep.grammar import (ATTRIBUTES, BIO_SENTENCES, HQ_QUESTIONS, HQ_SENTENCES, IMPLICATION_FORMS,
                             UPDATE_SENTENCES, question_forms)

# Syllables for invented names. Consonant-vowel shapes keep names pronounceable and give the
# tokenizer enough shared pieces that an unseen name is still a handful of known tokens.
_ONSETS = ["b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "st", "th", "sh", "tr", "vl", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "ia"]
_CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "nd", "rk", "x"]
_PARTICLES = ("van", "de", "al", "di")

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

# Prompt shapes shared by birth, the teacher and the measuring stick: one place, one format.
RESTATE_CUE = "In other words:"


def closed_book_prompt(question: str) -> str:
    return f"Q: {question}\nA:"


def question_of(prompt: str) -> str:
    """The question of a closed-book prompt (the inverse of `closed_book_prompt`)."""
    return prompt.removeprefix("Q: ").removesuffix("\nA:")


def first_question(sample: str) -> str | None:
    """The question a sampled `Q:` continuation asks: cut at its first question mark; None where
    it asks none, or one of eight characters or fewer."""
    if "?" not in sample:
        return None
    q = sample[: sample.index("?") + 1].strip()
    return q if len(q) > 8 else None


def names(text: str) -> set[str]:
    """The capitalized words of a text, roughly the names, places and companies it mentions.
    For a question's, `question_names` (it leaves out the question words)."""
    return {w for w in re.findall(r"\b[\w-]+", text) if len(w) > 1 and w[0].isupper()}


# Words a question capitalizes that name no one: its first word, a prefix's, a frame's after a
# colon ("Quick question: What is ..."). A name can stand there too ("Ada Vell works where?").
QUESTION_WORDS = frozenset("what which where when who whom whose how why in on at of for from to the a an "
                           "tell name say hey please quick question one more is was were did does do".split())


def question_names(question: str) -> set[str]:
    """The capitalized words a question says (whom and what it asks about), question words left
    out wherever they stand."""
    return {w for w in re.findall(r"\b[\w-]+", question)
            if len(w) > 1 and w[0].isupper() and w.lower() not in QUESTION_WORDS}


def subject(question: str, text: str) -> str | None:
    """The one person a question asks about, as `text` spells them: its run of capitalized words
    (question words left out) that `text` says in full ("Ada Vell" in "Where does Ada Vell
    work?"); None where it names no one the text says, or several."""
    said, people = names(text), set()
    for run in re.findall(r"\b[A-Z][\w-]*(?: [A-Z][\w-]*)*", question):
        words = [w for w in run.split() if w.lower() not in QUESTION_WORDS]
        name = " ".join(words)
        if len(words) > 1 and set(words) <= said and name in text:
            people.add(name)
    return people.pop() if len(people) == 1 else None


def misnamed(question: str, text: str) -> bool:
    """The question names no one, or someone as `text` does not spell them: a small model samples
    long invented names with a syllable changed ("Korkdeir-Rartei" for "Korkdeir-Rarbreir"), and
    a lesson about that person teaches a value for a name nobody has."""
    said = question_names(question)
    return not said or not said <= names(text)


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

    def moved(self, employer: str) -> Person:
        return Person(self.id, self.first, self.last, {**self.facts, "employer": employer})


@dataclass(frozen=True)
class Probe:
    question: str
    answer: str
    attribute: str
    person_id: str

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
    episode_people: [min, max] people in one episode of the stream (an update's news sits
      among up to max-1 new people's biographies).
    """

    seed: int = 0
    base_people: int = 240
    days: int = 10
    people_per_day: int = 16
    updates_per_day: int = 4
    strangers: int = 200
    cities: int = 60
    universities: int = 30
    companies: int = 60
    episode_people: tuple[int, int] = (1, 6)


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


def _last_name(rng: random.Random) -> str:
    """About one in four last names is double-barrelled and one in seven has a particle: names
    of two to four words, several tokens each."""
    last = _word(rng, 2, 3)
    r = rng.random()
    if r < 0.25:
        last += "-" + _word(rng, 1, 2)
    elif r < 0.40:
        last = f"{rng.choice(_PARTICLES)} {last}"
    return last


class World:
    """A deterministic world. `World(WorldConfig(seed=1))` twice gives equal objects."""

    def __init__(self, config: WorldConfig | None = None):
        self.config = config or WorldConfig()
        c = self.config
        lo, hi = c.episode_people
        if not 1 <= lo <= hi:
            raise ValueError(f"world.episode_people must be [min, max] with 1 <= min <= max, got {list(c.episode_people)}")
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
        # Base knowledge that episodes combine with: where each company is headquartered.
        self.hq: dict[str, str] = {e: rng.choice(self.values["birth_city"]) for e in self.values["employer"]}
        self._name_words = taken  # names never collide with value words
        self._names: set[str] = set()
        self._firsts: set[str] = set()
        self.base = [self._new_person(rng, f"b{i:05d}") for i in range(c.base_people)]
        self.stream = [[self._new_person(rng, f"d{d:03d}p{i:03d}") for i in range(c.people_per_day)]
                       for d in range(c.days)]
        self.strangers = [self._new_person(rng, f"s{i:05d}") for i in range(c.strangers)]
        # Updates touch base people only, each at most once, so no day's probe is overwritten
        # by a later day and the base retention set (people never updated) stays fixed. The new
        # employer sits in another city, so the implication changes too.
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
                old_hq = self.hq[p.facts["employer"]]
                new = rng.choice([e for e in self.values["employer"] if self.hq[e] != old_hq])
                day_updates.append((p, new))
            self.updates.append(day_updates)
        updated = {p.id for day in self.updates for p, _ in day}
        self.stable_base = [p for p in self.base if p.id not in updated]

    # -- people ------------------------------------------------------------------------------
    def _new_person(self, rng: random.Random, pid: str) -> Person:
        while True:
            first, last = _word(rng, 1, 2), _last_name(rng)
            if first not in self._firsts and first not in self._name_words and len(first) >= 3:
                break
        self._firsts.add(first)
        self._names.add(f"{first} {last}")
        return Person(pid, first, last, {a: rng.choice(self.values[a]) for a in ATTRIBUTES})

    def random_people(self, rng: random.Random, k: int = 1) -> list[Person]:
        """Fresh people for training the reading skill: never one of the world's named people,
        first names distinct among themselves and from every named person."""
        people, firsts = [], set()
        while len(people) < k:
            first, last = _word(rng, 1, 2), _last_name(rng)
            if first in firsts or first in self._firsts or first in self._name_words or len(first) < 3:
                continue
            firsts.add(first)
            people.append(Person(f"x{len(people)}", first, last,
                                 {a: rng.choice(self.values[a]) for a in ATTRIBUTES}))
        return people

    def random_person(self, rng: random.Random) -> Person:
        return self.random_people(rng, 1)[0]

    # -- text ----------------------------------------------------------------------------------
    @staticmethod
    def sentence(person: Person, attribute: str, rng: random.Random, family: str = "train",
                 full_name: bool = False) -> str:
        """One sentence stating one fact. The name is the full name, or now and then the first
        name alone; university and company names sometimes carry an article."""
        template = rng.choice(BIO_SENTENCES[family][attribute])
        name = person.name if full_name or rng.random() < 0.65 else person.first
        value = person.facts[attribute]
        if attribute in ("university", "employer") and rng.random() < 0.25:
            value = ("The " if template.startswith("{v}") else "the ") + value
        return template.format(name=name, v=value)

    def sentences(self, person: Person, rng: random.Random, attributes: tuple[str, ...] = ATTRIBUTES,
                  family: str = "train") -> list[str]:
        """One sentence per attribute in random order; the first names the person in full."""
        attrs = list(attributes)
        rng.shuffle(attrs)
        return [self.sentence(person, a, rng, family, full_name=(i == 0)) for i, a in enumerate(attrs)]

    def bio(self, person: Person, rng: random.Random, attributes: tuple[str, ...] = ATTRIBUTES,
            family: str = "train") -> str:
        """A biography: one paragraph, one sentence per attribute, in random order."""
        return " ".join(self.sentences(person, rng, attributes, family))

    @staticmethod
    def interleave(parts: list[list[str]], rng: random.Random) -> str:
        """Several people's sentences merged in random order (each person's own order kept),
        cut into paragraphs of 3 to 6 sentences: a note about several people at once."""
        queues = [list(p) for p in parts if p]
        merged = []
        while queues:
            q = rng.choices(queues, weights=[len(x) for x in queues])[0]
            merged.append(q.pop(0))
            queues = [x for x in queues if x]
        paragraphs, i = [], 0
        while i < len(merged):
            n = rng.randint(3, 6)
            paragraphs.append(" ".join(merged[i:i + n]))
            i += n
        return "\n".join(paragraphs)

    def text(self, people: list[Person], rng: random.Random, family: str = "train",
             extra: list[str] = (), attributes: dict[str, tuple[str, ...]] | None = None) -> str:
        """The text of an episode about `people` (and `extra` sentences, e.g. an update);
        `attributes[person.id]`, where given, are the facts it states about that person."""
        stated = {p.id: (attributes or {}).get(p.id, ATTRIBUTES) for p in people}
        if len(people) == 1 and not extra:
            return self.bio(people[0], rng, stated[people[0].id], family=family)
        return self.interleave([self.sentences(p, rng, stated[p.id], family=family) for p in people]
                               + [[s] for s in extra], rng)

    @staticmethod
    def update_sentence(person: Person, old: str, new: str, rng: random.Random) -> str:
        return rng.choice(UPDATE_SENTENCES).format(name=person.name, old=old, v=new)

    def company_sentence(self, company: str, rng: random.Random) -> str:
        return rng.choice(HQ_SENTENCES).format(c=company, city=self.hq[company])

    # -- questions -----------------------------------------------------------------------------
    @staticmethod
    def question(person: Person, attribute: str, rng: random.Random, family: str = "train") -> str:
        return rng.choice(question_forms(attribute, family)).format(n=person.name)

    def probes(self, person: Person, rng: random.Random, family: str = "train",
               attributes: tuple[str, ...] = ATTRIBUTES) -> list[Probe]:
        return [Probe(self.question(person, a, rng, family), person.facts[a], a, person.id)
                for a in attributes]

    def implication(self, person: Person, rng: random.Random) -> Probe:
        """Where the person's employer is based: not in any biography, known about the company."""
        return Probe(rng.choice(IMPLICATION_FORMS).format(n=person.name), self.hq[person.facts["employer"]],
                     "employer_hq", person.id)

    def company_probe(self, company: str, rng: random.Random) -> Probe:
        return Probe(rng.choice(HQ_QUESTIONS).format(c=company), self.hq[company], "hq", company)

    # -- the stream ----------------------------------------------------------------------------
    def _episode(self, eid: str, ts: str, d: int, people: list[Person], rng: random.Random,
                 update: tuple[Person, str] | None = None) -> dict:
        meta: dict = {"day": d, "kind": "update" if update else "people", "people": [p.id for p in people]}
        asked = list(people)
        extra = []
        if update:
            p, new = update
            old = p.facts["employer"]
            moved = p.moved(new)
            extra = [self.update_sentence(p, old, new, rng)]
            upd = self.probes(moved, rng, attributes=("employer",))[0]
            meta |= {"person_id": p.id, "old_answer": old, "update_question": upd.question}
        probes = ([upd] if update else []) + [pr for p in asked for pr in self.probes(p, rng)]
        paraphrases = ([self.probes(moved, rng, "heldout", ("employer",))[0]] if update else []) + [
            pr for p in asked for pr in self.probes(p, rng, "heldout")]
        implications = ([self.implication(moved, rng)] if update else []) + [self.implication(p, rng) for p in asked]
        meta |= {"paraphrases": [pr.as_dict() for pr in paraphrases],
                 "implications": [pr.as_dict() for pr in implications]}
        return {"id": eid, "ts": ts, "source": "world", "text": self.text(people, rng, extra=extra),
                "probes": [pr.as_dict() for pr in probes], "meta": meta}

    def day(self, d: int) -> list[dict]:
        """Day `d` as episodes (DESIGN.md contract) of 1 to 6 people (`episode_people`).

        `probes` ask every stated fact in the train question family (recall); `meta.paraphrases`
        the same facts in the held-out family; `meta.implications` where each person's employer
        is based. An update episode's news sits among other people's biographies; it carries
        `meta.old_answer` (the employer that must no longer be answered) and
        `meta.update_question` (its probe).
        """
        if not 0 <= d < self.config.days:
            raise IndexError(f"day {d} outside the stream of {self.config.days} days")
        rng = random.Random(f"lmsleep-day-{self.config.seed}-{d}")
        ts = (datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(days=d)).isoformat()
        lo, hi = self.config.episode_people
        people = list(self.stream[d])
        rng.shuffle(people)
        groups: list[tuple[list[Person], tuple | None]] = []
        for upd in self.updates[d]:
            k = rng.randint(0, min(3, hi - 1, len(people)))
            groups.append((people[:k], upd))
            people = people[k:]
        while people:
            k = min(rng.randint(lo, hi), len(people))
            groups.append((people[:k], None))
            people = people[k:]
        rng.shuffle(groups)
        return [self._episode(f"day{d:03d}-e{i:02d}", ts, d, group, rng, upd)
                for i, (group, upd) in enumerate(groups)]

    def value_pattern(self, attribute: str) -> re.Pattern:
        """Matches any value of an attribute's pool as a whole word (for grading restatements)."""
        alts = sorted(self.values[attribute], key=len, reverse=True)
        return re.compile(r"(?<!\w)(" + "|".join(re.escape(v) for v in alts) + r")(?!\w)")
