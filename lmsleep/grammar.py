"""How the embedded world talks: a small grammar of questions and biography sentences.

Questions are built from parts: a politeness prefix x a frame x (for generic frames) a noun
naming the attribute, with the person's name in the frame's own position:

    "Quick question: " + "what is {n}'s {noun}?" + noun="alma mater"
    -> "Quick question: what is Ana Lo's alma mater?"

Every attribute has about 250 forms. Some are declared **held out** and belong to the
`heldout` family: never seen by birth, by the teacher's prompts or by any night, they are what
the paraphrase probes ask. A form is held out when
- its frame is one of the new frames (`HELDOUT_FRAMES`: wordings no training form uses), or
- its (frame, noun) pair or its (prefix, frame) pair is one of the declared new combinations
  (`heldout_noun_pair`, `heldout_prefix_pair`): each part is known from training, the
  combination is not.
Everything else is the `train` family (birth's questions and the episodes' probes).

Biography sentences come in two families the same way: `train` (birth's) and `heldout`
(wordings no training text uses, for the held-out reading measure).
"""

from __future__ import annotations

import re
from functools import lru_cache

ATTRIBUTES: tuple[str, ...] = ("birth_city", "birth_year", "university", "major", "employer")
FAMILIES = ("train", "heldout")

PREFIXES: tuple[str, ...] = ("", "Quick question: ", "Please answer: ", "I wonder, ", "Say, ", "Hey, ",
                             "One more: ")

NOUNS: dict[str, tuple[str, ...]] = {
    "birth_city": ("birthplace", "place of birth", "city of birth", "home town"),
    "birth_year": ("birth year", "year of birth", "natal year"),
    "university": ("university", "alma mater", "school", "college"),
    "major": ("major", "field of study", "subject", "degree subject"),
    "employer": ("employer", "company", "workplace", "firm"),
}
TYPES = {"birth_city": "city", "birth_year": "year", "university": "university", "major": "field",
         "employer": "company"}

# Frames shared by every attribute: {noun} and {type} come from the tables above.
GENERIC_FRAMES: tuple[str, ...] = (
    "What is the {noun} of {n}?",
    "What is {n}'s {noun}?",
    "Which {type} is the {noun} of {n}?",
    "{n}'s {noun} is what?",
    "Name the {noun} of {n}.",
    "Tell me the {noun} of {n}.",
    "{n} has which {noun}?",
    "The {noun} of {n} is which {type}?",  # held out: a new frame
)
# Frames with the attribute's own verb; the last of each is held out (a new frame).
VERB_FRAMES: dict[str, tuple[str, ...]] = {
    "birth_city": ("Where was {n} born?", "In which city was {n} born?", "{n} was born in which city?",
                   "Which city was {n} born in?", "{n} was born where?"),
    "birth_year": ("When was {n} born?", "In what year was {n} born?", "{n} was born in which year?",
                   "What year was {n} born in?", "{n} was born when?"),
    "university": ("Which university did {n} attend?", "Where did {n} go to university?",
                   "{n} graduated from which university?", "Which school did {n} go to?",
                   "{n} got a degree from which school?"),
    "major": ("What did {n} major in?", "What subject did {n} study?", "{n} majored in what?",
              "In which field did {n} earn a degree?", "{n} studied which subject?"),
    "employer": ("Where does {n} work?", "Which company employs {n}?", "{n} works for which company?",
                 "Who employs {n}?", "{n} works where?"),
}
HELDOUT_FRAMES = {GENERIC_FRAMES[-1]} | {frames[-1] for frames in VERB_FRAMES.values()}


def heldout_noun_pair(attr_i: int, frame_i: int, noun_i: int) -> bool:
    """A declared new combination of a generic frame and a noun (each known from training)."""
    return (attr_i + frame_i + noun_i) % 4 == 3


def heldout_prefix_pair(prefix_i: int, frame_i: int) -> bool:
    """A declared new combination of a prefix and a frame (the bare frame is always trained)."""
    return prefix_i > 0 and (prefix_i + frame_i) % 5 == 4


def _with_prefix(prefix: str, question: str) -> str:
    # "I wonder, what is ..." but "I wonder, {n} ..." keeps the name as it is.
    if prefix.endswith(", ") and not question.startswith("{n}"):
        question = question[0].lower() + question[1:]
    return prefix + question


@lru_cache(maxsize=None)
def question_forms(attribute: str, family: str) -> tuple[str, ...]:
    """Every question form (with `{n}` for the name) of `attribute` in `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown question family {family!r}; choose from {FAMILIES}")
    a = ATTRIBUTES.index(attribute)
    out = []
    frames = [(f, i, n_i) for i, f in enumerate(GENERIC_FRAMES) for n_i in range(len(NOUNS[attribute]))]
    frames += [(f, len(GENERIC_FRAMES) + i, None) for i, f in enumerate(VERB_FRAMES[attribute])]
    for frame, f_i, n_i in frames:
        filled = frame if n_i is None else frame.replace("{noun}", NOUNS[attribute][n_i]).replace(
            "{type}", TYPES[attribute])
        for p_i, prefix in enumerate(PREFIXES):
            held = (frame in HELDOUT_FRAMES or heldout_prefix_pair(p_i, f_i)
                    or (n_i is not None and heldout_noun_pair(a, f_i, n_i)))
            if held == (family == "heldout"):
                out.append(_with_prefix(prefix, filled))
    return tuple(out)


# -- implications: one hop read from the text, one from what the model knows -----------------------
IMPLICATION_FORMS: tuple[str, ...] = (
    "In which city is the employer of {n} based?",
    "Where is {n}'s employer based?",
    "In which city is the company {n} works for headquartered?",
    "Where are the headquarters of {n}'s employer?",
)
HQ_SENTENCES: tuple[str, ...] = (
    "{c} is based in {city}.", "{c} has its headquarters in {city}.",
    "The headquarters of {c} are in {city}.", "{c} is headquartered in {city}.",
)
HQ_QUESTIONS: tuple[str, ...] = (
    "Where is {c} based?", "In which city is {c} headquartered?", "Where are the headquarters of {c}?",
)

# -- biography sentences ----------------------------------------------------------------------------
# {name} is the person's name as this sentence says it (full, or the first name alone), {v} the value.
BIO_SENTENCES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "birth_city": ("{name} was born in {v}.", "{name} was born in the city of {v}.",
                       "The birthplace of {name} is {v}.", "{name} is a native of {v}.",
                       "{v} is where {name} was born."),
        "birth_year": ("{name} was born in the year {v}.", "{name} came into the world in {v}.",
                       "The birth year of {name} is {v}.", "In {v}, {name} was born."),
        "university": ("{name} studied at {v}.", "{name} graduated from {v}.", "{name} attended {v}.",
                       "{v} is where {name} earned a degree.", "{name} holds a degree from {v}."),
        "major": ("{name} majored in {v}.", "{name} earned a degree in {v}.", "The field {name} studied was {v}.",
                  "{name} chose {v} as a major.", "{name} has a background in {v}."),
        "employer": ("{name} works at {v}.", "{name} is employed by {v}.", "{name} has a job at {v}.",
                     "These days {name} works for {v}.", "{v} employs {name}."),
    },
    "heldout": {
        "birth_city": ("{name}'s hometown is {v}.", "{name} first saw the light of day in {v}.",
                       "{v} is the city {name} calls home."),
        "birth_year": ("{name}'s year of birth is {v}.", "{name} has been alive since {v}.",
                       "The records give {v} as the year {name} was born."),
        "university": ("{name} is an alumnus of {v}.", "{name} spent the student years at {v}.",
                       "{v} counts {name} among its graduates."),
        "major": ("{name} wrote a thesis in {v}.", "{v} was the subject {name} read at university.",
                  "{name} trained as a specialist in {v}."),
        "employer": ("{name} draws a salary from {v}.", "{name} is on the payroll of {v}.",
                     "{v} is where {name} spends the working week."),
    },
}
UPDATE_SENTENCES: tuple[str, ...] = (
    "Update: {name} left {old} and now works at {v}.",
    "News: {name} has joined {v}, leaving {old}.",
    "{name} no longer works at {old}; {name} is now employed by {v}.",
)


def _forms_pattern(forms, whole: bool = True) -> re.Pattern:
    """A pattern matching any of `forms` whoever `{n}` names (longest forms tried first): the
    whole text, as written; else anywhere in it, in any case."""
    alts = "|".join(sorted((re.escape(f).replace(re.escape("{n}"), r".+?") for f in forms), key=len, reverse=True))
    return re.compile(f"^(?:{alts})$") if whole else re.compile(alts, re.IGNORECASE)


@lru_cache(maxsize=None)
def _heldout_question_pattern() -> re.Pattern:
    return _forms_pattern({f for a in ATTRIBUTES for f in question_forms(a, "heldout")})


def is_heldout_question(question: str) -> bool:
    """True if `question` has a held-out form (whoever it names): the teacher must not teach it."""
    return bool(_heldout_question_pattern().match(question.strip()))


@lru_cache(maxsize=None)
def _implication_question_pattern() -> re.Pattern:
    return _forms_pattern(IMPLICATION_FORMS)


def is_implication_question(question: str) -> bool:
    """True if `question` has the form of an implication probe (whoever it names): the exam's."""
    return bool(_implication_question_pattern().match(question.strip()))


@lru_cache(maxsize=None)
def _exam_form_inside_pattern() -> re.Pattern:
    return _forms_pattern({f for a in ATTRIBUTES for f in question_forms(a, "heldout")} | set(IMPLICATION_FORMS),
                          whole=False)


def has_exam_form(text: str) -> bool:
    """True if a held-out or implication probe's form appears anywhere in `text`, whatever its
    case ("Q: in which city ..."): a template a user writes must not carry the exam's phrasing
    behind a prefix (`is_heldout_question` matches a whole question, as the teacher writes it)."""
    return bool(_exam_form_inside_pattern().search(" ".join(text.split())))
