"""Dreaming: the model writes itself a practice curriculum, keeps what measurably helps, and
learns to dream better (PAPER.md section 4, built on SEAL).

    lessons, tau = set_aside_checks(lessons, episode_ids, config.share_set_aside(knowledge))  # tau: untaught
    sleeper.night(episodes, lessons)                 # Knowledge Seeding first (lmsleep/sleep.py)
    report = Dreamer(model, tokenizer, DreamingConfig(), sleeper, "models/brain/dreamer").night(
        episodes, lessons, tau, knowledge=knowledge)   # knowledge: what birth taught, or None

A task is (C, tau): C an episode read in context, tau the night's own held-out checks about it
(a share of the teacher's grounded questions and answers, set aside before anything is taught,
and with `tau_compose` what tonight's facts imply, asked in one hop and never taught; with
`tau_share: 0` those alone; with `tau_missed`, also a few of the lessons seeding taught and
tonight's expert still answers wrong. Never the episode's probes, which stay the exam). After
the night's consolidation:

1. dream (lmsleep/dreams.py): for each episode, `dreams` samples of each form (an implication
   per qa dream and bridge), written by the model with C in context (and the dreamer adapter,
   once it has learned), while every router also switches on one random extra expert
   (`random_expert`; each layer's router draws its own):
   - restatement: C in other words (the form birth teaches);
   - qa: a question the model asks itself about C and its open-book answer (grounded in C, never
     in a held-out question form: those are the exam's);
   - implication: a qa dream whose answer is then asked about closed-book through each
     `bridges` template ("Where is {answer} based?"): what C implies with what the model knew;
     with `compose`, the dream also carries that implication asked in one hop ("What city is
     {subject}'s company in?"), the student closed-book, the teacher reading C and the chain;
2. select (lmsleep/selection.py): score each dream by the cosine between the gradient of its
   SFT loss and that of the tau loss, over tonight's expert (the parameters a dream would
   train); per-sample gradients with `torch.func` (`vmap(grad(...))`: one batched pass, not a
   loop of backwards). Keep the top `keep_top` of each episode plus `keep_random` others at
   random (diversity);
3. try (lmsleep/trials.py): each kept dream trains tonight's expert for `trial_steps` steps,
   which is put back after (its own tensors saved and restored); its reward is 1 if more of tau
   is then answered exactly than before (teacher-forced; `try_dream`); with `tau_compose`, tau
   also asks what tonight's facts imply, in one hop (`composed_checks`, lmsleep/dreams.py).
   Trials are independent: the pipeline fans them out as Prefect task runs;
4. learn (lmsleep/dreamer.py; the rehearsal here): ReST-EM. The dreamer, a LoRA adapter of its
   own (PEFT, trained with TRL's SFTTrainer), is fine-tuned on the (prompt -> dream) pairs that
   earned reward 1 (tonight's, or with `dreamer_replay` every night's so far, on a fresh LoRA),
   so tomorrow's dreams are better; the same dreams, beside tonight's lessons, are rehearsed
   into tonight's expert (or, with `rehearse_into: new`, a fresh one beside it) through
   Knowledge Seeding (the teacher is the model before tonight reading C; replay still protects
   the old).

Switches for the paper's ablations: `selection`, `random_expert`, and `seeding` (False: the
night's lessons are not seeded, only the dreams go in: the SEAL-like dreams-only run).

This file holds the knobs (`DreamingConfig`) and the night that runs the four steps in order
(`Dreamer`); each step lives in its own module, named above.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from lmsleep.dreamer import dreamer_adapter, train_dreamer
from lmsleep.dreams import composed_checks, dream_rows, judgeable, sample_dreams
from lmsleep.grammar import has_exam_form
from lmsleep.selection import gradient_scores, select
from lmsleep.trials import bf16_autocast, missed_lessons, tau_rows, tau_score, try_dream
from lmsleep.world import open_book_prompt, restate_prompt

FORMS = ("restatement", "qa", "implication")
# The prompts dreams are sampled from by default: the cues birth teaches (world.restate_prompt's
# cue, and the open-book prompt up to its question).
PROMPTS = {"restatement": restate_prompt("{context}"), "qa": open_book_prompt("{context}", "").removesuffix(" \nA:")}


@dataclass
class DreamingConfig:
    """Knobs of Dreaming (params.yaml `dreaming:`); PAPER.md section 4 and the defaults it leaves open.
    The measured defaults are params.yaml's (nothing set aside, the one-hop checks judging, the
    rehearsal at seeding's tail rate, the dreamer on every night's helpful dreams, dreams at 0.5:
    docs/dreaming.md); a field's default here is the night as first built."""

    forms: list[str] = field(default_factory=lambda: list(FORMS))
    dreams: int = 4  # m: dreams per episode and form
    max_new_tokens: int = 96  # a restatement's length
    temperature: float = 1.0
    # Tonight's expert on while dreams are written. False: muted, so the model before tonight
    # reads C, as seeding's teacher does. On a keyed memory C's names open the fitted expert and
    # its dreams misname C's people (day 0: 0 of 47 named one as C does; the born model: 34 of 61).
    tonight_while_dreaming: bool = True
    # Closed-book questions about a qa dream's answer: what it implies with what the model knows.
    # World-specific (the embedded world's companies have headquarters); [] turns the form off.
    bridges: list[str] = field(default_factory=lambda: ["Where is {answer} based?"])
    # The implication asked in one hop: an implication dream whose question names one person of
    # C (`world.subject`) also carries, per template, a row asking it closed-book ("What city is
    # {subject}'s company in?", `{subject}` that person), answered by a teacher that reads C and
    # the chain (privileged context, as in seeding). The chain alone trains the two hops apart,
    # each in the presence of the other. Tried and rehearsed with its chain. Never an exam form
    # (refused): the exam's implication probes are lmsleep/grammar.py's IMPLICATION_FORMS.
    compose: list[str] = field(default_factory=list)
    # Checks of the two hops (`composed_checks`): tonight's facts (tau's and the lessons') about one
    # person of C whose answer the model before tonight takes through a bridge to what birth
    # taught with it (the dreams suite's `implied`), asked per template about that person and
    # added to tau, so a trial can reward a dream for the two hops, which direct checks cannot.
    # They judge, never teach. Never an exam form, nor a `compose` one (a dream carrying the very
    # question would be judged on what it teaches).
    tau_compose: list[str] = field(default_factory=list)
    # What dreams are sampled from, the episode in place of {context}: the cues birth teaches the
    # born model (restatement after `world.RESTATE_CUE`, questions after "Q:"). A user's model
    # dreams after the cues it knows; a cue it never learned yields dreams the GX suite refuses.
    prompts: dict[str, str] = field(default_factory=dict)  # {form: template}; a form left out keeps PROMPTS'
    # Of each episode's lessons, set aside as tau (untaught while the trials judge by it; `teach_tau`).
    # 0: none. Seeding then teaches every lesson, as Knowledge Seeding alone does (a tau set aside
    # and taught late unteaches what seeding taught: docs/dreaming.md), and the dreams are judged
    # by `tau_compose`'s checks alone, which are never taught (required then).
    tau_share: float = 0.25
    # Set aside in `tau_share`'s place where birth's knowledge is unknown (a model born elsewhere):
    # `tau_compose` then asks nothing, and with `tau_share: 0` nothing would judge the dreams.
    # None: `tau_share` either way (`share_set_aside`).
    tau_share_unknown: float | None = None
    # A share of each episode's answers instead, with every lesson that has one (`set_aside_checks`):
    # set aside by question, 35 of day 0's 42 checks (39 of day 1's) had a taught lesson with their
    # answer, and tonight's expert answered .36-.77 of tau before any trial; by answer, .00-.05
    # (docs/dreaming.md).
    tau_by_answer: bool = False
    # Up to this many of each episode's lessons that tonight's expert still answers wrong after
    # seeding (teacher-forced, closed-book) join tau as checks (0: none). They were taught, so
    # nothing is set aside; a trial rewards a dream that makes a fact seeding taught but did not
    # fix come right, and `judgeable` refuses a dream asking the lesson's very question, so the
    # dream must teach the fact in other words. The one-hop checks alone judge implication only:
    # no restatement or qa dream had ever helped. With 3, over 10 nights x 3 seeds, 248 of 568 kept
    # restatement and qa dreams helped, paraphrase stayed (.414 against .412) and implication fell
    # (.148 against .180): docs/dreaming.md.
    tau_missed: int = 0
    keep_top: int = 4  # dreams kept per episode by gradient score
    keep_random: int = 2  # and at random, for diversity
    grad_batch: int = 16  # dreams per batched per-sample-gradient pass
    trial_steps: int = 4  # SFT steps of a trial on one dream
    trial_lr: float = 1e-2
    dreamer_rank: int = 8  # the dreamer's LoRA (ReST-EM)
    dreamer_lr: float = 1e-3
    dreamer_epochs: int = 2
    dreamer_batch_size: int = 16
    # ReST-EM's data. False: tonight's dreams that helped, the adapter going on from last night's.
    # They are a handful (3-7 a night on the bench: one or two steps at batch 16), so the dreamer
    # barely moves. True: every night's dreams that helped so far (`helped.jsonl` beside the
    # adapter), on a fresh LoRA each night. The fresh start is ReST-EM's (Singh et al. 2024
    # fine-tune the base model at each iteration, not the last iterate); keeping every night's
    # dreams is ours (a night has too few). A dreamer trained without replay is dropped on the
    # first night with it (no `helped.jsonl` yet). Ten nights: docs/dreaming.md.
    dreamer_replay: bool = False
    rehearse_epochs: int = 4  # successful dreams into tonight's expert (Knowledge Seeding's loss)
    # The rehearsal's rate (None: seeding's). A seeding whose rate decays to 0 (`lr_scheduler:
    # linear`) ends on a fitted expert, which the rehearsal would start shaking at the full rate
    # again; the rate of the seeding's last `rehearse_epochs` continues its tail instead
    # (1e-2 x 4/32 after 32 epochs). Measured both ways: docs/dreaming.md.
    rehearse_lr: float | None = None
    # Rehearse tonight's lessons beside the dreams: trained on dreams alone, the expert drifts off
    # what seeding just taught it (day 0: recall 0.19 -> 0.08 after dreams alone).
    rehearse_lessons: bool = True
    # Where the rehearsal goes. "tonight": tonight's seeded expert trains on (PAPER.md: the dreams
    # are rehearsed into the new memory). "new": a fresh level-1 expert beside it, keyed on the
    # same names, while the seeded one stays as seeding left it (frozen in the student, muted in
    # the teacher). Day 0, three seeds: the rehearsal into tonight's expert lost 8-11 paraphrase
    # probes seeding had answered, on facts tau did not hold (docs/dreaming.md). "new" takes a
    # second slot a night (`memory.slots`; seeding's plan frees it). The trials still judge the
    # dreams on tonight's seeded expert, not on the fresh one they are then rehearsed into.
    rehearse_into: str = "tonight"
    # Teach tau in the rehearsal, once the trials have judged by it: its checks are the teacher's
    # own Q/A (never the exam's probes), so after the trials nothing needs them untaught; kept
    # untaught they cost seeding a quarter of its lessons (two nights: recall .27/.29 against
    # Knowledge Seeding alone's .32/.32). With it, tonight is rehearsed even if no dream helped.
    teach_tau: bool = False
    # Tau's rows this many times in the rehearsal. Seeding teaches every other lesson 14 epochs
    # from its full rate; the rehearsal teaches tau in 4, so a night that set a quarter of its
    # facts aside recalls less than seeding alone (three nights: .443 against .481). params.yaml
    # rehearses it 3 times: over ten nights x three seeds recall .387 -> .403, paraphrase
    # .379 -> .396, implication .095 -> .117 (Knowledge Seeding alone .403 / .402 / .115).
    tau_repeats: int = 1
    # The rows of the dreams that helped, this many times in the rehearsal. Once, they are a
    # rounding error in it: on the default night 6 of day 0's 535 rows (tonight's lessons 205,
    # tau 3 x 108), 1 of night 3's 451 (docs/dreaming.md, "At scale").
    dream_repeats: int = 1  # 0: no dream is rehearsed (the control: the rehearsal without them)
    # Learning to imitate in the rehearsal too (when seeding has it on). PAPER.md says the dreams
    # are rehearsed into the new memory, not with which objective.
    rehearse_lti: bool = True
    # Switches for the ablations.
    selection: bool = True  # False: keep keep_top + keep_random dreams at random
    random_expert: bool = True  # False: dream with the routers' own top-k only
    rest_em: bool = True  # False: the dreamer never learns (tomorrow dreams as the model does tonight)
    seeding: bool = True  # False: the night's lessons are not seeded (dreams only, SEAL-like)
    seed: int = 0

    def __post_init__(self):
        unknown = sorted(set(self.forms) - set(FORMS))
        if unknown or not self.forms:
            raise ValueError(f"dreaming.forms must be a non-empty subset of {list(FORMS)}, got {self.forms}")
        # dream_repeats 0: the rehearsal's control; tau_missed 0: no missed lesson judges
        for name, least in (("tau_repeats", 1), ("dream_repeats", 0), ("tau_missed", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < least:
                raise ValueError(f"dreaming.{name} must be a whole number >= {least}, got {getattr(self, name)!r}")
        if not 0.0 <= self.tau_share < 1.0:
            raise ValueError(f"dreaming.tau_share must lie in [0, 1), got {self.tau_share}")
        if self.tau_share_unknown is not None and not 0.0 <= self.tau_share_unknown < 1.0:
            raise ValueError(f"dreaming.tau_share_unknown must lie in [0, 1) or be null, got {self.tau_share_unknown}")
        if self.tau_share == 0 and not self.tau_compose:
            raise ValueError("dreaming.tau_share: 0 sets no check aside, so only dreaming.tau_compose's checks could "
                             "judge the dreams, and it is empty: nothing would judge them")
        if not isinstance(self.prompts, dict) or set(self.prompts) - set(PROMPTS):
            raise ValueError(f"dreaming.prompts: templates for {sorted(PROMPTS)} only (qa's questions also start "
                             f"the implications), got {self.prompts!r}")
        self.prompts = {**PROMPTS, **self.prompts}
        missing = sorted(form for form, t in self.prompts.items() if "{context}" not in t)
        if missing:
            raise ValueError(f"dreaming.prompts.{missing[0]} has no {{context}} (where the episode goes): "
                             f"{self.prompts[missing[0]]!r}")
        for name in ("compose", "tau_compose"):
            templates = getattr(self, name)
            asked = {t: t.format(subject="Ada Vell") for t in templates if "{subject}" in t}
            exam = [t for t in templates if t not in asked or has_exam_form(asked[t])]
            if exam:
                raise ValueError(f"dreaming.{name}: {exam[0]!r} has no {{subject}} or is in a form of the exam's "
                                 "probes (lmsleep/grammar.py): a dream must not learn, nor be judged on, the exam's "
                                 "phrasing")
        from lmsleep.evaluation import normalize

        both = sorted({normalize(t) for t in self.compose} & {normalize(t) for t in self.tau_compose})
        if both:
            raise ValueError(f"dreaming.tau_compose: {both[0]!r} is also a `compose` template: the dreams carrying "
                             "it would be judged on the very question they teach")
        if self.rehearse_lr is not None and self.rehearse_lr <= 0:
            raise ValueError(f"dreaming.rehearse_lr must be > 0 or null (seeding's rate), got {self.rehearse_lr}")
        if self.rehearse_into not in ("tonight", "new"):
            raise ValueError(f"dreaming.rehearse_into must be 'tonight' or 'new', got {self.rehearse_into!r}")
        if self.rehearse_into == "new" and not self.seeding:
            raise ValueError("dreaming.rehearse_into: new keeps the seeded expert as it is, and dreams only "
                             "(seeding: false) seeds none: its own new expert is where the dreams go")
        if self.dreamer_batch_size < 1 or self.dreamer_epochs < 1:
            raise ValueError(f"dreaming.dreamer_batch_size and dreamer_epochs must be >= 1, got "
                             f"{self.dreamer_batch_size} and {self.dreamer_epochs}")
        if self.dreams < 1 or self.keep_top + self.keep_random < 1 or self.trial_steps < 1:
            raise ValueError("dreaming needs dreams >= 1, keep_top + keep_random >= 1 and trial_steps >= 1")

    def share_set_aside(self, knowledge: list[str] | None) -> float:
        """Of each episode's answers, the share set aside as tau tonight: `tau_share`, or
        `tau_share_unknown` where `tau_compose`'s checks need birth's `knowledge` and it is
        unknown (a model born elsewhere: `tasks.validate.base_knowledge`)."""
        if self.tau_compose and not knowledge and self.tau_share_unknown is not None:
            return self.tau_share_unknown
        return self.tau_share

    def prompt(self, form: str, context: str) -> str:
        """The prompt a dream of `form` is sampled from (a replace, not `str.format`: an episode's
        own braces stay as they are)."""
        return self.prompts[form].replace("{context}", context)


# -- the dreaming night -----------------------------------------------------------------------------
def experts_a_night(config: DreamingConfig | None) -> int:
    """Level-1 slots a night takes (seeding's plan frees them first): two where the dreams are
    rehearsed into a fresh expert beside the seeded one."""
    return 2 if config is not None and config.rehearse_into == "new" else 1


class Dreamer:
    """Dreams after a night of Knowledge Seeding, into that night's expert (module docstring)."""

    def __init__(self, model, tokenizer, config: DreamingConfig, sleeper, dreamer_dir: str | Path | None):
        self.model, self.tokenizer, self.config, self.sleeper = model, tokenizer, config, sleeper
        self.dreamer_dir = dreamer_dir
        sleeper.experts_a_night = experts_a_night(config)  # seeding's plan leaves the rehearsal its slot

    def tonight_slot(self, episodes: list[dict] = (), lessons: list[dict] = ()) -> int:
        """Tonight's level-1 expert: the one seeding made, or a new one (dreams only), keyed on
        the names of tonight's `lessons` where the memory is keyed (lmsleep/keys.py): else the
        trials would try dreams on an expert shut everywhere."""
        memory = self.sleeper.memory
        slots = memory.active_slots(1)
        if slots and int(memory.level(1)[0].born[slots[-1]]) == memory.nights:
            return slots[-1]
        slot = memory.expand(1)
        memory.settle(1)
        if memory.config.keyed:
            from lmsleep.keys import key_expert
            from lmsleep.seeding import seeding_rows

            key_expert(memory, self.tokenizer, 1, slot, seeding_rows(list(lessons), list(episodes)))
        return slot

    def night(self, episodes: list[dict], lessons: list[dict], tau: list[dict], progress=print,
              check=None, callbacks: list | None = None, run_trials=None, knowledge: list[str] | None = None,
              written: list[dict] | None = None) -> dict:
        """Tonight's dreams (after `sleeper.night`): `lessons` those seeding taught, `tau` the
        checks set aside. `check(dreams) -> dreams` may set some aside before any is used (the
        pipeline's data suite); `knowledge`: what birth taught, as sentences (`tau_compose`);
        `callbacks` see the rehearsal's training (transformers');
        `run_trials(jobs) -> outcomes` runs the trials elsewhere (the pipeline fans them out as
        Prefect task runs), each job `{slot, dream, tau, before, steps, lr, bf16}` for `try_dream` on
        the model as it is now (tonight's expert in `slot`); `written`: dreams written elsewhere,
        used in place of the ones sampled here (which are still sampled: `lmsleep/bench_scale.py`
        times a random model that writes nothing usable). With seeding's `bf16`, the night runs in
        bf16 autocast, as seeding does (the trials too, wherever they run: each job says `bf16`)."""
        with bf16_autocast(self.model, self.sleeper.config.bf16):
            return self._night(episodes, lessons, tau, progress, check, callbacks, run_trials, knowledge, written)

    def _night(self, episodes, lessons, tau, progress, check, callbacks, run_trials, knowledge, written) -> dict:
        import time

        from lmsleep.seeding import muted

        c, memory = self.config, self.sleeper.memory
        rng = random.Random(f"{c.seed}-dream-{memory.nights}")
        times, t0 = {}, time.time()
        slot = self.tonight_slot(episodes, lessons)
        if c.rehearse_into == "new" and not memory.free_slots(1):  # before any work, not after the trials
            raise RuntimeError(f"dreaming.rehearse_into: new needs a free level-1 slot beside tonight's expert, "
                               f"and all {memory.config.slots[0]} are taken: seeding ran without the Dreamer's "
                               "Sleeper.experts_a_night (2), or memory.slots[0] is below 2")
        tonight = contextlib.nullcontext() if c.tonight_while_dreaming else muted(memory, {1: [slot]})
        with dreamer_adapter(self.model, self.dreamer_dir) as dreaming_model, tonight:
            if c.random_expert:  # its own draws: with or without it, the dreams sample alike
                with memory.random_experts(random.Random(f"{c.seed}-extra-{memory.nights}")) as switched:
                    dreams = sample_dreams(dreaming_model, self.tokenizer, episodes, c, rng)
            else:
                switched, dreams = 0, sample_dreams(dreaming_model, self.tokenizer, episodes, c, rng)
        sampled = len(dreams)
        if written is not None:
            dreams = [dict(d) for d in written]
        if check is not None:
            dreams = check(dreams)
        set_aside = (sampled if written is None else len(written)) - len(dreams)
        times["dream"] = time.time() - t0
        every_tau = tau
        dreams, tau, composed, missed, shut = self._judges(dreams, tau, lessons, episodes, slot, knowledge, rng,
                                                           progress)
        tau_of: dict[str, list[dict]] = {}
        for t in tau:
            tau_of.setdefault(t["episode_id"], []).append(t)
        dreams = judgeable(dreams, tau)
        params = memory.train_only(1, slot)
        t0 = time.time()
        scores = self._scores(dreams, tau_of, params) if c.selection and dreams else None
        kept = select(dreams, scores, c.keep_top, c.keep_random, rng)
        times["select"] = time.time() - t0
        t0 = time.time()
        before = {eid: tau_score(self.model, self.tokenizer, tau_rows(rows)) for eid, rows in tau_of.items()}
        composed_before = tau_score(self.model, self.tokenizer, tau_rows(composed))["exact"] if composed else None
        jobs = [{"slot": slot, "dream": d, "tau": tau_rows(tau_of[d["episode_id"]]), "before": before[d["episode_id"]],
                 "steps": c.trial_steps, "lr": c.trial_lr, "bf16": self.sleeper.config.bf16} for d in kept]
        if run_trials is None:  # here, one after another, on this very model
            outcomes = [try_dream(self.model, self.tokenizer, params, j["dream"], j["tau"], j["before"], j["steps"],
                                  j["lr"], j["bf16"]) for j in jobs]
        else:
            outcomes = run_trials(jobs)
        for d, outcome in zip(kept, outcomes, strict=True):
            d["trial"] = outcome
        good = [d for d in kept if d["trial"]["reward"]]
        times["try"] = time.time() - t0
        progress(f"night {memory.nights}: {len(dreams)} dreams, {len(kept)} kept, {len(good)} helped")
        t0 = time.time()
        learned = None
        if self.dreamer_dir is not None and c.rest_em:
            learned = train_dreamer(self.model, self.tokenizer, good, self.dreamer_dir, c, night=memory.nights)
        times["learn"] = time.time() - t0
        t0 = time.time()
        rehearsed, taught = self._rehearse(good, every_tau, lessons, episodes, slot, rng, callbacks)
        times["rehearse"] = time.time() - t0
        by_form = {f: {"dreams": sum(d["form"] == f for d in dreams), "kept": sum(d["form"] == f for d in kept),
                       "helped": sum(d["form"] == f for d in good)} for f in c.forms}
        # Why trials did or did not help: how much of tau was exact before any, and how many
        # trials moved its loss down at all (a reward needs one more check exact).
        exact = sum(b["exact"] * len(tau_of[e]) for e, b in before.items())
        judged = {"checks": len(tau), "composed": len(composed), "missed": len(missed), "episodes": len(before),
                  "exact_before": exact / len(tau) if tau else None,
                  "composed_exact_before": composed_before,
                  "loss_fell": sum(d["trial"]["after"]["loss"] < d["trial"]["before"]["loss"] for d in kept)}
        return {"night": memory.nights, "sampled": sampled, "set_aside": set_aside, "shut": shut,
                "dreams": len(dreams), "kept": len(kept), "helped": len(good), "tau": judged, "taught_tau": len(taught),
                "success": len(good) / len(kept) if kept else None, "by_form": by_form,
                "random_expert_routers": switched, "dreamer": learned, "rehearsal": rehearsed, "seconds": times,
                "all_dreams": dreams, "kept_dreams": kept}

    def _judges(self, dreams, tau, lessons, episodes, slot, knowledge, rng, progress):
        """What judges tonight's dreams: tau, on a keyed memory only the checks and dreams that
        name tonight's people, plus the composed checks (`tau_compose`) and the missed lessons
        (`tau_missed`). Returns `(dreams, tau, composed, missed, shut)`."""
        from lmsleep.seeding import muted

        c, memory = self.config, self.sleeper.memory
        shut = 0
        if memory.config.keyed:
            # Tonight's expert is shut on a row that names none of its people (lmsleep/keys.py): a
            # dream that names none teaches it nothing, a check that names none it cannot move. The
            # born model misspells names: on day 0 all 38 kept dreams left tau's loss unchanged.
            from lmsleep.keys import mentions

            keys = memory.keys.get(1, {}).get(slot, ([], []))[0]
            tau = [t for t in tau if mentions(t["question"], keys)]
            shut = len(dreams)
            dreams = [d for d in dreams if mentions(d["student"] + d["completion"], keys)]
            shut -= len(dreams)
        composed: list[dict] = []
        if c.tau_compose:
            from lmsleep.baselines import lessons_as_checks
            from lmsleep.evaluation import answer

            def ask(questions):
                return answer(self.model, self.tokenizer, questions, max_new_tokens=24) if questions else []

            # From every fact of tonight, taught or set aside: a composed check is itself never
            # taught, so it judges the two hops on either (day 0: 8 from tau alone, 16 with the
            # lessons; docs/dreaming.md).
            if knowledge is None:
                progress(f"night {memory.nights}: dreaming.tau_compose is on but no base knowledge was given "
                         "(a model born elsewhere): no composed checks"
                         + (", and no check was set aside (dreaming.tau_share_unknown): no dream is judged"
                            if not tau else f"; the {len(tau)} checks set aside judge the dreams"))
            with muted(memory, {1: [slot]}):  # what the model knew before tonight
                composed = composed_checks(tau + lessons_as_checks(lessons), episodes, c.tau_compose, c.bridges,
                                           ask, knowledge)
            if memory.config.keyed:  # as tau's own checks above: the ones tonight's expert can move
                composed = [t for t in composed if mentions(t["question"], keys)]
            tau = tau + composed
        missed: list[dict] = []
        if c.tau_missed and c.seeding:
            missed = missed_lessons(self.model, self.tokenizer, lessons, tau, c.tau_missed, rng,
                                    keys if memory.config.keyed else None)
            tau = tau + missed
        return dreams, tau, composed, missed, shut

    def _scores(self, dreams, tau_of, params) -> list[float]:
        """Each dream's gradient cosine with its episode's tau (`gradient_scores`), over `params`
        (tonight's expert); 0.0 for a dream whose episode has no tau."""
        c = self.config
        names = {id(p): n for n, p in self.model.named_parameters()}
        scores = [0.0] * len(dreams)
        for eid, rows in tau_of.items():
            mine = [i for i, d in enumerate(dreams) if d["episode_id"] == eid]
            if mine:
                got = gradient_scores(self.model, self.tokenizer, {names[id(p)]: p for p in params},
                                      [dreams[i] for i in mine], tau_rows(rows), c.grad_batch)
                for i, s in zip(mine, got):
                    scores[i] = s
        return scores

    def _rehearse(self, good, every_tau, lessons, episodes, slot, rng, callbacks):
        """The dreams that helped, beside tonight's lessons, tau (once judged) and replay, into
        tonight's expert (or a fresh one: `rehearse_into: new`) through Knowledge Seeding.
        Returns `(rehearsal report or None, tau's checks taught)`."""
        from lmsleep.baselines import checks_as_lessons
        from lmsleep.seeding import knowledge_seeding, muted, same_prompt_rows, seeding_rows

        c, memory = self.config, self.sleeper.memory
        rehearsed = None
        # The trials are over: tau is taught (not its composed checks: they only judge).
        taught = checks_as_lessons(every_tau) if c.teach_tau and c.seeding else []
        if good or taught:
            s = self.sleeper.config
            rows = [{k: r[k] for k in ("student", "teacher", "completion")} | {"kind": "dream"}
                    for d in good for r in dream_rows(d) for _ in range(c.dream_repeats)]
            if c.rehearse_lessons and c.seeding:  # dreams only: the lessons are taught in no form
                rows += seeding_rows(lessons, episodes)
            rows += [dict(r) for r in seeding_rows(taught, episodes) for _ in range(c.tau_repeats)]
            with muted(memory, {1: [slot]}):  # replay is answered by the model before tonight, as in seeding
                replay = self.sleeper.replay(round(s.replay * len(rows)), lessons + taught if c.seeding else [],
                                             episodes, rng, before=memory.nights)
            rows += same_prompt_rows(replay, "replay")
            rng.shuffle(rows)
            into = slot
            if c.rehearse_into == "new":  # tonight's seeded expert stays as it is; a fresh one learns beside it
                into = memory.expand(1)
            # The teacher is the model before tonight (tonight's experts muted), as in seeding: a
            # teacher that is the expert being trained chases itself (day 0, 4 epochs: recall 0.19 -> 0.0).
            rehearsed = knowledge_seeding(self.model, self.tokenizer, memory, rows,
                                          replace(s, epochs=c.rehearse_epochs, lti=s.lti and c.rehearse_lti,
                                                  learning_rate=c.rehearse_lr or s.learning_rate),
                                          reward=self.sleeper.reward, resume=into, callbacks=callbacks,
                                          teacher_mute={1: [slot]} if into != slot else None)
        return rehearsed, taught
