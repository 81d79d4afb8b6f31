"""A night of Knowledge Seeding over the memory levels: the schedule, the replay, the steps.

    sleeper = Sleeper(model, tokenizer, SeedingConfig(), MemoryConfig())  # attaches the memory
    report = sleeper.night(episodes, lessons)    # lessons: baselines.teacher_curriculum (never probes)
    sleeper.past.write("models/brain")           # sleeper.json; the memory: lmsleep/brain.py save_brain

Each night `plan` (lmsleep/schedule.py) lists the consolidations: every `periods[l]` nights level
l goes up into a new expert of level l+1 (slowest first), then tonight's episodes (level 0, in
the teacher's context) go into a new level-1 expert. Every consolidation is one
`knowledge_seeding` run whose teacher is the model before it.

What the student is held to, besides the new knowledge (the replay; PAPER.md section 3: the
teacher's own samples). Freezing the old experts alone does not protect them: a new expert can
still overwrite what the model says about anything. So the student also sees, with the same
prompt as the teacher and the teacher's (greedy) answer:
- earlier days: the questions earlier nights' teachers asked themselves, closed-book;
- the base world: questions the model asks itself with nothing in context, closed-book (its own
  samples: what it knows, in its own words; never the stick's base probes). Half of them
  (`replay_matched`) it begins with the words before the name in one of tonight's questions
  ("Where was ..."), so the old is asked in tonight's very forms: without that, a night's
  expert learned the form, not the person, and answered tonight's city for everyone (day 0:
  23 of 29 base answers lost were now one of tonight's values). None names what tonight's
  episodes name: tonight changes those;
- reading: tonight's questions with their episode in context (open-book on texts it reads now),
  and (`replay_notes`) questions on notes the model writes itself, about people it invents: there
  the text's answer is not tonight's value, so the student learns to read the text in front of
  it rather than to say what tonight taught.
An upward consolidation (level l -> l+1) has no context: its rows are the questions of the
nights the sender level holds, answered by the model before, plus the same replay.

Nothing here reads an episode's probes: the questions are the teacher's own (the curriculum).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmsleep.grammar import is_heldout_question
from lmsleep.memory import Memory, MemoryConfig
from lmsleep.schedule import plan
from lmsleep.seeding import SeedingConfig, knowledge_seeding, muted, same_prompt_rows, seeding_rows
from lmsleep.world import closed_book_prompt, first_question, names, open_book_prompt, question_names, question_of


@dataclass
class Past:
    """What earlier nights were about: the teacher's own questions, by night, and where that
    night's knowledge lives now (its level). Saved beside the memory (sleeper.json)."""

    nights: list[dict] = field(default_factory=list)  # {night, level, questions}

    FILE = "sleeper.json"

    def questions(self, level: int | None = None, before: int | None = None) -> list[str]:
        """The questions of the nights in `level` (any), and before night `before` (any)."""
        return [q for n in self.nights if (level is None or n["level"] == level)
                and (before is None or n["night"] < before) for q in n["questions"]]

    def write(self, path: str | Path) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / self.FILE).write_text(json.dumps(asdict(self)))

    @classmethod
    def read(cls, path: str | Path) -> Past:
        """The past saved in a brain directory (none yet: an empty past)."""
        file = Path(path) / cls.FILE
        return cls(**json.loads(file.read_text())) if file.exists() else cls()


class Sleeper:
    """A model that sleeps with Knowledge Seeding (see the module docstring). Given `memory`
    (a brain's, loaded), it goes on from there; otherwise it attaches empty memory levels."""

    def __init__(self, model, tokenizer, config: SeedingConfig, memory_config: MemoryConfig | None = None,
                 memory: Memory | None = None, past: Past | None = None, reward=None):
        self.model, self.tokenizer, self.config = model, tokenizer, config
        self.reward = reward  # the LTI reward (None: rewards.imitation_reward with the default encoder)
        self.memory = memory or Memory.attach(model, memory_config or MemoryConfig())
        self.past = past or Past()
        # Level-1 slots a night takes: seeding's expert, and the rehearsal's where the dreams go into
        # a fresh one (`DreamingConfig.rehearse_into`; the Dreamer, or the pipeline's seed stage, says so).
        self.experts_a_night = 1

    # -- replay ------------------------------------------------------------------------------
    def _answered(self, prompts: list[str], born: bool = False) -> list[dict]:
        """`{prompt, completion}` rows: the model as it is now (before tonight) answering greedily;
        `born`: with every memory level muted, the born model (its own weights never change)."""
        from lmsleep.evaluation import generate

        silent = {lv: self.memory.active_slots(lv) for lv in range(1, self.memory.config.levels + 1)} if born else {}
        with muted(self.memory, silent):
            answers = generate(self.model, self.tokenizer, prompts, max_new_tokens=self.config.max_new_tokens)
        return [{"prompt": p, "completion": f" {a.strip()}\n"} for p, a in zip(prompts, answers) if a.strip()]

    def _own_questions(self, n: int, rng: random.Random, starts: list[str] = (),
                       tonight: set[str] = frozenset()) -> list[str]:
        """Questions the model asks itself with nothing in context (about what it already knows):
        `n` from nothing ("Q:"), and one more after each of `starts` (the first words of tonight's
        own questions). None naming a word of `tonight` (tonight's episodes' capitalized words;
        with the born anchor, every night's): a night changed those, and whoever answers would
        say what they were."""
        import torch

        from lmsleep.evaluation import generate

        prompts = ["Q:"] * max(n, 0) + [f"Q: {s}" for s in starts]
        if not prompts:
            return []
        torch.manual_seed(rng.randrange(2**31))
        samples = generate(self.model, self.tokenizer, prompts, max_new_tokens=32, do_sample=True, top_k=0,
                           temperature=self.config.replay_temperature)
        return questions_to_replay(asked(prompts, samples), tonight)

    @staticmethod
    def _tonight_names(episodes: list[dict]) -> set[str]:
        """The capitalized words of tonight's episodes: whom and what they name."""
        return set().union(*(names(ep["text"]) for ep in episodes))

    @staticmethod
    def _matched_starts(lessons: list[dict], n: int, rng: random.Random, tonight: set[str]) -> list[str]:
        """The words before the first name (a word of `tonight`) of `n` of tonight's own questions:
        the model completes them with people it knows, so the replay asks about the old in the
        very forms tonight's lessons ask about the new. A night's expert otherwise learns the form
        ("born where? -> tonight's city") and answers it for everyone (docs/knowledge-seeding.md)."""
        starts = set()
        for r in lessons:
            words = question_of(r["prompt"]).split()
            named = [bool(names(w) & tonight) for w in words] + [False]
            # A question's first word is capitalized whatever it is ("In which city..."; "In" may
            # open a sentence of tonight's too): there it begins a name only if the next word goes on.
            cut = next((i for i in range(len(words)) if named[i] and (i or named[1])), 0)
            if cut:  # a question that opens with the name has no start of its own
                starts.add(" ".join(words[:cut]))
        starts = sorted(starts)
        return [rng.choice(starts) for _ in range(n)] if starts else []

    def replay(self, n: int, lessons: list[dict], episodes: list[dict], rng: random.Random,
               before: int | None = None, moving: frozenset[str] = frozenset()) -> list[dict]:
        """About `n` replay rows, a third from each source (earlier days, the model's own
        questions, reading: tonight's episodes, or a `replay_notes` share of the model's own
        notes), answered by the model before tonight. `before`: earlier days are
        the nights before that one (dreaming, after tonight joined the past, passes tonight);
        `moving`: the questions an upward consolidation moves (its new rows already), left out."""
        if n <= 0:
            return []
        third = max(1, n // 3)
        tonight = self._tonight_names(episodes)
        earlier = [q for q in self.past.questions(before=before)
                   if q not in moving and not question_names(q) & tonight]
        born = self.config.replay_anchor == "born"
        # Held to the born model, its own questions must not be about anyone a night taught.
        learned = tonight | {w for q in self.past.questions() for w in question_names(q)} if born else tonight
        earlier = rng.sample(earlier, min(third, len(earlier)))
        notes = self._notes(round(third * self.config.replay_notes), lessons, rng, tonight)
        # Each note's question also closed-book (`replay_notes_closed`), in place of one of its
        # own and answered as those are: mostly about someone it does not know, where tonight's
        # values are no answer either. The same name filter as its own questions (a note may be
        # about a base person tonight updates: the answer before would be the old one).
        unknown = ([q for _, q in notes if not question_names(q) & learned]
                   if self.config.replay_notes_closed else [])
        wanted = third + (third - len(earlier)) - len(unknown)  # no past yet: more of its own
        # Where tonight's questions give no starts (dreams only: no lessons), all from nothing.
        starts = self._matched_starts(lessons, round(wanted * self.config.replay_matched), rng, tonight)
        own = self._own_questions(wanted - len(starts), rng, starts, learned) + unknown
        text = {ep["id"]: ep["text"] for ep in episodes}
        reading = [r for r in lessons if r["episode_id"] in text]
        reading = rng.sample(reading, min(third - len(notes), len(reading)))
        rows = self._answered([closed_book_prompt(q) for q in earlier])
        rows += self._answered([closed_book_prompt(q) for q in own], born=born)
        rows += [{"prompt": open_book_prompt(text[r["episode_id"]], question_of(r["prompt"])),
                  "completion": r["completion"]} for r in reading]  # the teacher's own open-book answer
        return rows + self._answered([open_book_prompt(note, q) for note, q in notes])

    def _notes(self, n: int, lessons: list[dict], rng: random.Random, tonight: set[str]) -> list[tuple[str, str]]:
        """About `n` (note, question) pairs for reading replay: notes the model before tonight
        writes from nothing (mostly people it invents, in the forms birth taught; one paragraph,
        as generation stops at a newline), each asked one question that the model writes itself
        after the note, `replay_matched` of them begun in tonight's forms (`_matched_starts`;
        `tonight`: tonight's names). A note may name what tonight names: the answer is the
        note's, read open-book."""
        if n <= 0:
            return []
        import torch

        from lmsleep.evaluation import generate

        if self.tokenizer("")["input_ids"] == []:
            raise ValueError("seeding.replay_notes: the model writes its notes from nothing, which needs a tokenizer "
                             "that starts a text with a BOS token; this one adds none (set replay_notes: 0)")
        torch.manual_seed(rng.randrange(2**31))
        # Temperature 1: invented people with values of every kind, not the model's likeliest few.
        # Half again as many drafts: some are questions, or too short to ask about.
        drafts = generate(self.model, self.tokenizer, [""] * (n + n // 2), max_new_tokens=96, do_sample=True, top_k=0,
                          temperature=1.0)
        notes = [note for note in map(as_note, drafts) if note][:n]
        starts = self._matched_starts(lessons, round(len(notes) * self.config.replay_matched), rng, tonight)
        heads = [f"Q: {start}".rstrip() for start in starts + [""] * (len(notes) - len(starts))]
        samples = generate(self.model, self.tokenizer, [f"{note}\n\n{head}" for note, head in zip(notes, heads, strict=True)],
                           max_new_tokens=32, do_sample=True, top_k=0, temperature=self.config.replay_temperature)
        return [(note, q) for note, q in zip(notes, map(first_question, asked(heads, samples)), strict=True)
                if q and not is_heldout_question(q)]

    def _rows(self, step, lessons: list[dict], episodes: list[dict], rng: random.Random) -> tuple[list, list]:
        """(new rows, replay rows) of one consolidation, by the model as it is now."""
        c = self.config
        questions: list[str] = []  # an upward step's: what it moves, so not replayed as the old
        if step.sender == 0:
            new = seeding_rows(lessons, episodes, c.continuations)
        else:  # what the sender level knows: the questions of its nights, answered by the model before
            questions = self.past.questions(step.sender)
            if not questions:  # a past lost or empty: what the model asks itself stands in
                questions = self._own_questions(64, rng)
            new = same_prompt_rows(self._answered([closed_book_prompt(q) for q in questions]), f"level {step.sender}")
            if not new:
                raise RuntimeError(f"night {self.memory.nights + 1}: nothing to move level {step.sender} up with (no "
                                   "questions of its nights and none the model asks itself); the schedule cannot "
                                   "skip it, or level 1 would overflow")
        return new, self.replay(round(c.replay * len(new)), lessons, episodes, rng, moving=frozenset(questions))

    # -- the night ---------------------------------------------------------------------------
    def night(self, episodes: list[dict], lessons: list[dict], callbacks: list | None = None,
              progress=print) -> dict:
        """Tonight's consolidations; `lessons` are the teacher's own questions and open-book
        answers about `episodes` (`baselines.teacher_curriculum`), never their probes."""
        import time

        c, memory = self.config, self.memory
        tonight = memory.nights + 1
        rng = random.Random(f"{c.seed}-{tonight}")
        used = [len(memory.active_slots(lv)) for lv in range(1, memory.config.levels + 1)]
        steps = plan(tonight, used, memory.config, self.experts_a_night)
        # Every step's rows are written first, by the model as it is before tonight (a later step
        # must not learn from what an earlier one just reset).
        rows_of = {step: self._rows(step, lessons, episodes, rng) for step in steps if step.kind == "consolidate"}
        memory.nights = tonight  # the new experts are born tonight
        report = {"night": tonight, "steps": []}
        for step in steps:
            t0 = time.time()
            if step.kind == "merge":
                memory.merge_oldest(step.receiver)
                report["steps"].append({"kind": "merge", "level": step.receiver, "seconds": time.time() - t0})
                continue
            if step.kind == "move":  # memory.upward: move (the experts as they are, no rows)
                slots = memory.move_up(step.sender, step.receiver)
                self._went_up(step)
                report["steps"].append({"kind": "move", "sender": step.sender, "receiver": step.receiver,
                                        "slots": slots, "seconds": time.time() - t0})
                continue
            new, replay = rows_of[step]
            rows = new + same_prompt_rows(replay, "replay")
            rng.shuffle(rows)
            progress(f"night {tonight}: level {step.sender} -> {step.receiver}: {len(new)} rows + {len(replay)} replay")
            if not rows:  # only a night without lessons (an upward step always has rows, see _rows)
                continue
            done = knowledge_seeding(self.model, self.tokenizer, memory, rows, c, sender=step.sender,
                                     receiver=step.receiver, callbacks=callbacks, reward=self.reward)
            self._went_up(step)
            report["steps"].append({"kind": "consolidate", **done, "new_rows": len(new), "replay_rows": len(replay),
                                    "seconds": time.time() - t0})
        self.past.nights.append({"night": tonight, "level": 1,
                                 "questions": sorted({question_of(r["prompt"]) for r in lessons})})
        report["counts"] = memory.counts()
        return report

    def _went_up(self, step) -> None:
        """The nights the sender level held live in the receiver now."""
        for n in self.past.nights:
            if step.sender and n["level"] == step.sender:
                n["level"] = step.receiver


def as_note(draft: str) -> str | None:
    """A free draft of the model as a note to read: up to its last full stop (a paragraph longer
    than the token budget ends torn), two sentences at least; None for a question or a fragment."""
    note = draft[: draft.rfind(".") + 1].strip()
    return note if note.count(". ") >= 1 and not note.startswith("Q:") else None


def asked(prompts: list[str], samples: list[str]) -> list[str]:
    """What the model asked: each sample after its prompt's start ("Q: Where was" + " Bo Tarn
    born?"), or alone after a bare "Q:"."""
    return [f"{p.removeprefix('Q:').strip()} {a.strip()}".strip() for p, a in zip(prompts, samples, strict=True)]


def questions_to_replay(samples: list[str], tonight: set[str] = frozenset()) -> list[str]:
    """The questions in the model's free samples (`first_question`), unique, sorted; one in
    a held-out form is the exam's form, and is never trained on; one naming a word of `tonight`
    (tonight's episodes' names) asks about what tonight changes."""
    questions = {q for q in map(first_question, samples) if q}
    return sorted(q for q in questions if not is_heldout_question(q) and not question_names(q) & tonight)
