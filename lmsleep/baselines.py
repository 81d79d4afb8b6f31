"""The consolidation methods the paper compares against, as plain functions on any HF causal LM.

- `sft_text`: SFT on the raw episode text into a LoRA adapter (PEFT). The same adapter keeps
  learning night after night.
- `context_distillation`: the *teacher* (the model as it is before the night, with the episode
  in its context) asks itself questions about the episode and answers them; the student
  (the same model, without the context) is trained on those answers with TRL's `SFTTrainer`
  into the LoRA adapter. The episode's probes are the exam: nothing here reads them.
- `sequential_merge`: SEAL's continual setup: context distillation into a fresh adapter each
  night, merged into the weights (`merge_and_unload`) before the next night.

    model = sequential_merge(model, tokenizer, world.day(0), BaselineConfig())

All three return the consolidated model; the caller keeps it for the next night.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from lmsleep.evaluation import normalize
from lmsleep.grammar import is_heldout_question
from lmsleep.world import closed_book_prompt, first_question, misnamed, question_names, question_of

METHODS = ("none", "sft_text", "context_distillation", "sequential_merge")
WINDOWS = ("episode", "paragraph")  # what the teacher reads at a time (BaselineConfig.window)
# The knobs of `teacher_curriculum` and `set_aside_checks` (the rest of BaselineConfig trains the
# baselines' LoRA): what params.yaml's `curriculum:` may set for Knowledge Seeding's nights.
CURRICULUM_KNOBS = ("self_questions", "question_temperature", "window", "ask_each_name", "ask_distinct",
                    "ask_rounds", "respell", "drop_misnamed", "checks_share")


@dataclass
class BaselineConfig:
    """Knobs of the baseline nights (params.yaml `baselines:`)."""

    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    # Facts live in the MLP as much as in attention: adapt every projection.
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
        "c_attn", "c_proj", "c_fc"])  # the last three: GPT-2 names, for a second architecture
    learning_rate: float = 1e-3
    epochs: int = 8
    batch_size: int = 16
    self_questions: float = 2.0  # questions the teacher asks itself per sentence of an episode (2 to 64 an episode)
    # Drop the teacher's questions that name someone as the episode does not spell them (or no
    # one): sampled at temperature 1, 60-74% of day 0's and day 3's lessons (seeds 0 and 2)
    # changed a syllable of a name. Off: those lessons still teach the right value for a name
    # one syllable off, and without them context distillation's night 0 learned less (recall
    # 0.234 -> 0.135 over 3 seeds; 0.226 with 2.5x the questions). docs/knowledge-seeding.md.
    drop_misnamed: bool = False
    question_temperature: float = 1.0  # the teacher's own questions are sampled at this temperature
    # What the teacher reads at a time as it asks and answers: the whole episode, or each of its
    # paragraphs (lines) alone. The born model reads one person's note far better than six
    # people's (birth.json: open_book 0.98, open_book_multi 0.17), and asked about the whole
    # episode it keeps to a few of its facts (docs/knowledge-seeding.md: a curriculum that covers).
    window: str = "episode"
    # Every name a window states is asked about in at least this many lessons (0: off). A free sample
    # after "Q:" drifts to some people and skips others: an update ("X left A and now works at
    # B") with no question about X is never taught, and X's old employer stays. The missing ones
    # are sampled begun with the name ("Q: X"), which the grammar's name-first frames continue;
    # a name is a run of two or more capitalized words (`keys.text_names`; one word alone is as
    # often a sentence's first word), and one that a lesson gives as its answer is a value, left
    # out: asked about, companies keyed tonight's expert open on strangers' notes (reading 0.98
    # -> 0.73-0.86 after one night, docs/knowledge-seeding.md). An owed question that names
    # someone besides its name is dropped (`about_alone`): its other names would be keys too.
    ask_each_name: int = 0
    # Count a name's lessons by their distinct answers (the facts taught), not by questions: a
    # free sample asks one fact of a person again and again (a birth year four times) and skips
    # the rest. With `ask_rounds` > 1 the owed questions are asked again while a name is owed
    # (a round's question may be dropped, or repeat a fact). Day 0, born teacher, with `respell`:
    # the probes whose fact a lesson about that person teaches, 39 -> 57 of 84 at 5 answers and
    # 3 rounds, for 182 -> 322 lessons (docs/knowledge-seeding.md: what the lessons cover).
    ask_distinct: bool = False
    ask_rounds: int = 1
    # A question's names as the episode spells them, before the teacher answers (`respell`): a
    # misspelled name keys no expert (its lesson trains nothing under keyed memory). Day 0: 33 ->
    # 39 of 84 probes covered, with fewer lessons (193 -> 182: respelled questions repeat others).
    respell: bool = False
    checks_share: float = 0.25  # of a probe-less episode's grounded Q/A, set aside as checks, never taught
    max_length: int = 512
    logging_steps: int = 5  # loss reported to callbacks (the pipeline logs it to MLflow)
    # TRL's SFTConfig turns bf16 autocast on by default: on a CPU without bf16 units (the CI kind)
    # that made every step ~11x slower (2.8 s vs 0.25 s, measured). On for a GPU.
    bf16: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.question_temperature <= 0:
            raise ValueError(f"baselines.question_temperature must be > 0 (the questions are sampled), got "
                             f"{self.question_temperature}")
        if self.window not in WINDOWS:
            raise ValueError(f"baselines.window must be one of {WINDOWS}, got {self.window!r}")
        if self.ask_each_name < 0:
            raise ValueError(f"baselines.ask_each_name must be >= 0, got {self.ask_each_name}")
        if self.ask_rounds < 1:
            raise ValueError(f"baselines.ask_rounds must be >= 1 (the rounds of owed questions), got {self.ask_rounds}")


def lora_config(config: BaselineConfig, model):
    """A LoRA on `config.target_modules` that `model` has (a clear error when it has none)."""
    from peft import LoraConfig

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    targets = [t for t in config.target_modules if t in names]
    if not targets:
        raise ValueError(f"none of baselines.target_modules {config.target_modules} is a module of "
                         f"{type(model).__name__}; set baselines.target_modules in params.yaml")
    return LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")


def train_lora(model, tokenizer, rows: list[dict], config: BaselineConfig, callbacks: list | None = None):
    """One SFT run with TRL. `rows` are {"text"} (language modelling) or {"prompt", "completion"}
    (loss on the completion only). A plain model gets a new LoRA adapter; a PEFT model keeps
    training the adapter it has. `callbacks` (transformers TrainerCallbacks) see the loss every
    `logging_steps`; without them nothing is logged."""
    import tempfile

    from datasets import Dataset
    from peft import PeftModel
    from trl import SFTConfig, SFTTrainer

    if not rows:
        return model
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp, num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate, lr_scheduler_type="constant",
            logging_strategy="steps" if callbacks else "no", logging_steps=config.logging_steps,
            save_strategy="no", report_to="none", max_length=config.max_length, seed=config.seed,
            data_seed=config.seed, gradient_checkpointing=False, bf16=config.bf16,  # accelerate picks the device
            disable_tqdm=False)  # a progress bar even with transformers' logging at ERROR (lmsleep.logs)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
            peft_config=None if isinstance(model, PeftModel) else lora_config(config, model), callbacks=callbacks)
        trainer.train()
    model = trainer.model
    model.eval()
    return model


def _sentences(text: str) -> int:
    return max(1, len(re.findall(r"[.!?](?:\s|$)", text)))


def windows(text: str, window: str = "episode") -> list[str]:
    """What the teacher reads at a time: the whole text, or each of its non-empty lines."""
    if window == "paragraph":
        return [line.strip() for line in text.split("\n") if line.strip()] or [text]
    return [text]


def _asks(text: str, config: BaselineConfig) -> list[tuple[str, int]]:
    """(window, questions to ask of it): an episode's `self_questions` per sentence (2 to 64),
    shared among its windows by their sentences, at least one each."""
    parts = windows(text, config.window)
    budget = max(2, min(64, math.ceil(config.self_questions * _sentences(text))))
    total = sum(_sentences(w) for w in parts)
    return [(w, max(1, budget * _sentences(w) // total)) for w in parts]


def teacher_curriculum(teacher, tokenizer, episodes: Sequence[dict], config: BaselineConfig,
                       drop_ungrounded: bool = True) -> tuple[list[dict], list[dict]]:
    """What the teacher says with each episode in context: (lessons, dropped).

    The teacher reads the episode (or, with `config.window: paragraph`, each of its paragraphs
    alone), asks itself questions about what it reads (sampled after `text\\n\\nQ:`,
    `self_questions` per sentence) and answers each greedily, open-book, from the same text. The
    episode's probes are never read: they are the exam. A lesson is `{prompt, completion,
    episode_id}`; its prompt is the closed-book one (the context is what the student must do
    without); one read from a paragraph also carries that paragraph (`context`), which the
    teacher has before it when it is distilled (`seeding.seeding_rows`). A lesson goes to
    `dropped` with a reason instead when its question has a held-out form (the exam's
    paraphrases ask in those forms), with `drop_ungrounded`, when its answer is not in the text
    read (the teacher can ask about someone who is not there, and would teach a hallucination),
    and with `config.drop_misnamed`, when the question names someone as the episode does not
    (`world.misnamed`: a name with a syllable changed in sampling). With `config.ask_each_name`,
    a second round asks about the names the first round's lessons skipped (`unasked_names`),
    and drops a question there that names someone besides its name (`about_alone`), for up to
    `config.ask_rounds` rounds (counted by distinct answers with `config.ask_distinct`). With
    `config.respell`, a question's names are first spelled as the episode spells them (`respell`).
    """
    import torch

    from lmsleep.evaluation import answer, generate, grounded

    torch.manual_seed(config.seed)
    owners = [(ep, text) for ep in episodes for text, n in _asks(ep["text"], config) for _ in range(n)]
    asked = generate(teacher, tokenizer, [f"{text}\n\nQ:" for _, text in owners], max_new_tokens=40,
                     do_sample=True, top_k=0, temperature=config.question_temperature)
    seen: set = set()

    def new_questions(samples) -> list[tuple[dict, str, str]]:
        out = []
        for ep, text, q in samples:
            if q and config.respell:
                q = respell(q, ep["text"])
            if q and (ep["id"], q) not in seen:
                seen.add((ep["id"], q))
                out.append((ep, text, q))
        return out

    def judge(questions) -> tuple[list[dict], list[dict], list[tuple[dict, str, str]]]:
        """The teacher answers each question open-book: (lessons, dropped, the lessons' questions)."""
        answers = answer(teacher, tokenizer, [q for _, _, q in questions], [text for _, text, _ in questions],
                         max_new_tokens=24)
        lessons, dropped, taught = [], [], []
        for (ep, text, q), a in zip(questions, answers, strict=True):
            if not a:
                continue
            row = {"prompt": closed_book_prompt(q), "completion": f" {a}\n", "episode_id": ep["id"]}
            if text != ep["text"]:  # read from one paragraph: the teacher's view when it is distilled
                row["context"] = text
            if is_heldout_question(q):
                dropped.append(row | {"reason": "held-out question form (the exam asks in it)"})
            elif drop_ungrounded and not grounded(a, text):
                dropped.append(row | {"reason": "answer not in the text the teacher read"})
            elif config.drop_misnamed and misnamed(q, ep["text"]):
                dropped.append(row | {"reason": "question names someone the episode does not (or no one)"})
            else:
                lessons.append(row)
                taught.append((ep, text, q))
        return lessons, dropped, taught

    lessons, dropped, taught = judge(new_questions(
        (ep, text, first_question(q)) for (ep, text), q in zip(owners, asked, strict=True)))
    # Then the names the lessons skipped (`ask_each_name`), each question begun with the name,
    # for up to `ask_rounds` rounds (a round's question can be dropped, or repeat a fact).
    for _ in range(config.ask_rounds if config.ask_each_name else 0):
        owed = unasked_names(owners, taught, config.ask_each_name, [r["completion"] for r in lessons],
                             distinct=config.ask_distinct)
        if not owed:
            break
        rests = generate(teacher, tokenizer, [f"{text}\n\nQ: {name}" for _, text, name in owed], max_new_tokens=40,
                         do_sample=True, top_k=0, temperature=config.question_temperature)
        more, gone, more_taught = judge(new_questions(
            (ep, text, first_question(name + rest)) for (ep, text, name), rest in zip(owed, rests, strict=True)))
        names = sorted({name for _, _, name in owed}, key=len, reverse=True)  # the longest a question begins with
        for row, question in zip(more, more_taught, strict=True):
            q = question_of(row["prompt"])
            if about_alone(q, next(n for n in names if q.startswith(n))):
                lessons.append(row)
                taught.append(question)
            else:
                gone.append(row | {"reason": "an owed question names someone besides the name it was owed for"})
        dropped = dropped + gone
    return lessons, dropped


def respell(question: str, text: str, at_least: float = 75.0) -> str:
    """`question` with each name it says as `text` spells it. A small model copies long invented
    names with a syllable changed ("Chexzol Korkdeir-Rarza" for "Chexzol Korkdeir-Rarbreir"), or
    by one word ("Chexzol"): a lesson about that spelling keys nothing (`keys.night_keys` keeps the
    names the episode states), so under keyed memory it trains no expert, and without keys it
    teaches a value for a name nobody has. A name of two words or more that `text` does not state
    becomes the name it states closest to it (rapidfuzz's ratio, 0-100), if that is `at_least` and
    10 ahead of the next; one word becomes the one name `text` states beginning with it. A name
    no one is close to stays (`drop_misnamed` can drop its lesson)."""
    from rapidfuzz import fuzz

    from lmsleep.keys import mentions, name_runs, text_names

    said = text_names(text)
    for run in name_runs(question):
        name = run.removesuffix("'s")
        if name in said:
            continue
        if " " in name:
            if mentions(text, [name]):
                continue
            scored = sorted(((fuzz.ratio(name, n), n) for n in said), reverse=True)
            ok = scored and scored[0][0] >= at_least and (len(scored) == 1 or scored[1][0] <= scored[0][0] - 10)
        else:
            scored = [(100, n) for n in said if n.split()[0] == name]
            ok = len(scored) == 1
        if ok:  # a function, not a string: a replacement string would read backslashes in the name
            full = scored[0][1]
            question = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", lambda _: full, question, count=1)
    return question


def about_alone(question: str, name: str) -> bool:
    """Whether `question` names no one but `name` (question words aside). Begun with a company, the
    teacher writes the grammar's value-first frames ("Dendvian Press employs Ana Vell?"): a
    question about a relation, whose answer is often wrong and whose names key tonight's expert
    open on every note that mentions the company (day 0: 2 of 29 keys, day 2: 8 of 33; each
    opens on up to 5 of the reading test's 100 notes, docs/knowledge-seeding.md)."""
    return not question_names(question) - set(name.split())


def unasked_names(owners: list[tuple[dict, str]], questions: list[tuple[dict, str, str]],
                  at_least: int, answers: Sequence[str] = (), distinct: bool = False) -> list[tuple[dict, str, str]]:
    """(episode, window, name) once for each question still owed: every name of two or more words
    that a window states is asked about `at_least` times among that window's `questions` (the
    lessons' questions: one dropped as ungrounded or held-out teaches nothing). A name that one
    of the lessons' `answers` gives is a value (a company, a city), not whom the text is about:
    asked about, it would key tonight's expert on a name that strangers' notes share. With
    `distinct`, `answers` holds each question's answer, in order, and a name's questions count by
    their different answers: the facts taught, not the questions asked."""
    from lmsleep.keys import mentions, text_names

    values = " | ".join(answers)  # one search per name, not one per name and answer
    asked: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for (ep, text, q), a in zip(questions, answers if distinct else [""] * len(questions), strict=True):
        asked.setdefault((ep["id"], text), []).append((q, a))
    owed = []
    for (episode_id, text), ep in {(ep["id"], text): ep for ep, text in owners}.items():
        for name in text_names(text):
            if not mentions(values, [name]):
                said = [(q, a) for q, a in asked.get((episode_id, text), []) if mentions(q, [name])]
                told = len({normalize(a) for _, a in said}) if distinct else len(said)
                owed += [(ep, text, name)] * max(0, at_least - told)
    return owed


def set_aside_checks(lessons: list[dict], episode_ids: set[str], share: float, seed: int = 0,
                     by_answer: bool = False) -> tuple[list[dict], list[dict]]:
    """(lessons, checks): for each episode in `episode_ids` (those without probes), a `share` of
    its lessons (at least one, when it has two or more) becomes a held-out check, never taught;
    `share` 0 sets none aside (a night whose dreams are judged by checks never taught anyway:
    `DreamingConfig.tau_compose`).
    `by_answer`: a share of its distinct answers instead, every lesson with one of them a check:
    the teacher asks one fact several ways, and a check whose answer another lesson still
    teaches judges what was taught (on day 0, 35 of 42 checks set aside by question had one).
    A check is `{episode_id, question, answer}` (and the lesson's `context`, when it has one): the
    closed-book student should answer as the open-book teacher did."""
    if share == 0:
        return list(lessons), []
    by_episode: dict[str, list[dict]] = {}
    for row in lessons:
        by_episode.setdefault(row["episode_id"], []).append(row)
    held: set[int] = set()
    for eid, rows in by_episode.items():
        groups = [[r] for r in rows]  # what is held out together: a lesson, or every lesson with one answer
        if by_answer:
            same: dict[str, list[dict]] = {}
            for r in rows:
                same.setdefault(normalize(r["completion"]), []).append(r)
            groups = [same[a] for a in sorted(same)]
        if eid not in episode_ids or len(groups) < 2:
            continue
        k = max(1, round(share * len(groups)))
        for group in random.Random(f"{seed}-{eid}").sample(groups, k):
            held |= {id(r) for r in group}
    return [r for r in lessons if id(r) not in held], [_as_check(r) for r in lessons if id(r) in held]


def _as_check(lesson: dict) -> dict:
    """A closed-book lesson as a check (`{episode_id, question, answer}`, its context kept)."""
    return {"episode_id": lesson["episode_id"], "question": question_of(lesson["prompt"]),
            "answer": lesson["completion"].strip()} | ({"context": lesson["context"]} if "context" in lesson else {})


def checks_as_lessons(checks: list[dict]) -> list[dict]:
    """Checks back as the lessons they were set aside from (`set_aside_checks`' inverse)."""
    return [{"prompt": closed_book_prompt(c["question"]), "completion": f" {c['answer']}\n",
             "episode_id": c["episode_id"]} | ({"context": c["context"]} if "context" in c else {}) for c in checks]


def lessons_as_checks(lessons: list[dict]) -> list[dict]:
    """Closed-book lessons as checks (`checks_as_lessons`' inverse); a lesson whose prompt is not
    one closed-book question is left out."""
    return [_as_check(r) for r in lessons
            if closed_book_prompt(q := question_of(r["prompt"])) == r["prompt"] and "\n" not in q]


def sft_text(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig):
    """Language-model the raw episode text into the LoRA adapter."""
    return train_lora(model, tokenizer, [{"text": ep["text"]} for ep in episodes], config)


def context_distillation(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig,
                         curriculum: list[dict] | None = None, callbacks: list | None = None):
    """Distil the teacher's in-context answers into the LoRA adapter (the model is its own teacher)."""
    if curriculum is None:
        curriculum, _ = teacher_curriculum(model, tokenizer, episodes, config)
    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in curriculum]
    random.Random(config.seed).shuffle(rows)
    return train_lora(model, tokenizer, rows, config, callbacks)


def sequential_merge(model, tokenizer, episodes: Sequence[dict], config: BaselineConfig,
                     curriculum: list[dict] | None = None):
    """Context distillation into a fresh adapter, merged into the weights after the night."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        model = model.merge_and_unload()
    model = context_distillation(model, tokenizer, episodes, config, curriculum)
    return model.merge_and_unload() if isinstance(model, PeftModel) else model  # nothing taught: nothing merged


def consolidate(method: str, model, tokenizer, episodes: Sequence[dict], config: BaselineConfig):
    """One night of `method` (one of METHODS); `none` sleeps without learning."""
    if method == "none":
        return model
    fns = {"sft_text": sft_text, "context_distillation": context_distillation,
           "sequential_merge": sequential_merge}
    if method not in fns:
        raise ValueError(f"unknown consolidation method {method!r}; choose from {METHODS}")
    return fns[method](model, tokenizer, episodes, config)
