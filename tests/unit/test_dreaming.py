"""lmsleep/dreaming.py: the knobs, and the night that runs dreaming's four steps and the rehearsal."""

import random
from dataclasses import replace

import pytest
import torch

from lmsleep.dreaming import Dreamer, DreamingConfig
from lmsleep.dreams import sample_dreams
from lmsleep.grammar import IMPLICATION_FORMS
from lmsleep.memory import Memory, MemoryConfig
from lmsleep.seeding import SeedingConfig
from lmsleep.sleep import Sleeper
from lmsleep.trials import try_dream
from tests.unit.dreaming_fixtures import DREAMS, EPISODE, OFFICES, TAU, lesson, seeded_night


def test_compose_refuses_the_exams_forms():
    DreamingConfig(compose=["What city is {subject}'s company in?"])
    behind_a_prefix = "Q: " + IMPLICATION_FORMS[0].replace("{n}", "{subject}").lower()
    for template in ("Where is {subject}'s employer based?", "What city is the company in?", behind_a_prefix):
        with pytest.raises(ValueError, match="compose"):
            DreamingConfig(compose=[template])


def test_tau_compose_refuses_the_exams_forms_and_composes_own():
    DreamingConfig(compose=["What city is {subject}'s company in?"], tau_compose=[OFFICES])
    for template in ("Where is {subject}'s employer based?", "What city is the company in?"):
        with pytest.raises(ValueError, match="tau_compose"):
            DreamingConfig(tau_compose=[template])
    with pytest.raises(ValueError, match="also a `compose` template"):
        DreamingConfig(compose=[OFFICES], tau_compose=[OFFICES])
    with pytest.raises(ValueError, match="also a `compose` template"):  # as normalized
        DreamingConfig(compose=[OFFICES], tau_compose=[OFFICES.lower().rstrip("?")])


def test_composed_checks_judge_the_trials_but_are_never_taught(micro):
    from lmsleep.evaluation import answer
    from lmsleep.seeding import muted

    model, tokenizer = micro
    born = tokenizer("Q: Where is Morrow Labs based?\nA: Tarvo\n", return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):  # birth, in brief: the headquarters the model knows before any night
        optimizer.zero_grad()
        model(input_ids=born, labels=born).loss.backward()
        optimizer.step()
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    slot = sleeper.memory.active_slots(1)[-1]
    with muted(sleeper.memory, {1: [slot]}):
        assert answer(model, tokenizer, ["Where is Morrow Labs based?"], max_new_tokens=24) == ["Tarvo"]
    judged_on = []

    def run_trials(batch):
        judged_on.extend(j["tau"] for j in batch)
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, tau_compose=[OFFICES])
    for knowledge, composed in ((None, 0), (["Morrow Labs is based in Tarvo."], 1)):
        report = Dreamer(model, tokenizer, config, sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials,
            knowledge=knowledge)
        assert report["tau"]["composed"] == composed and report["tau"]["checks"] == 1 + composed
        assert (report["tau"]["composed_exact_before"] is None) == (not composed)
        asked = [r["student"] for r in judged_on[-1]]
        assert ("Q: In which city does Ada Vell's company have its offices?\nA:" in asked) == bool(composed)
        # tau's one direct check and the one lesson are rehearsed; the composed check is not
        assert report["taught_tau"] == 1 and report["rehearsal"]["rows"] == 2
    # tau_share 0: nothing set aside (tau's fact is a lesson), the composed check is the only
    # judge; a dream it rewards is rehearsed with the lessons, and nothing of tau is taught.
    from lmsleep.baselines import checks_as_lessons

    alone = replace(config, tau_share=0.0)
    report = Dreamer(model, tokenizer, alone, sleeper, None).night(
        [EPISODE], lessons + checks_as_lessons(TAU), [], progress=lambda *_: None, check=lambda _: DREAMS[1:2],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch],
        knowledge=["Morrow Labs is based in Tarvo."])
    assert report["tau"]["checks"] == report["tau"]["composed"] == 1 and report["kept"] == report["helped"] == 1
    assert report["taught_tau"] == 0 and report["rehearsal"]["rows"] == 3  # the dream and the two lessons


def test_missed_lessons_judge_the_trials_and_are_taught_with_the_lessons_only(micro):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    lessons = lessons + [lesson("Which university did Ada Vell attend?", "Orrin College")]
    judged_on = []

    def run_trials(batch):
        judged_on.extend(j["tau"] for j in batch)
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, tau_missed=2)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    assert report["tau"]["missed"] >= 1 and report["tau"]["checks"] == 1 + report["tau"]["missed"]
    assert "Q: Which university did Ada Vell attend?\nA:" in [r["student"] for r in judged_on[0]]
    # tau's one check is taught; the missed lessons only with the lessons (no replay here)
    assert report["taught_tau"] == 1 and report["rehearsal"]["rows"] == 1 + len(lessons)
    with pytest.raises(ValueError, match="tau_missed"):
        DreamingConfig(tau_missed=-1)


@pytest.mark.parametrize("top_k", [1, 4])  # 4: every active expert is picked already (the defaults' case)
def test_random_experts_switch_on_one_more_expert_per_router(micro, top_k):
    """At top-k 1 the extra expert joins the one picked; at top-k 4 all four are on already, and
    the extra one at its own router's gate changes nothing (a fully open gate broke the dreams)."""
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(slots=[4, 4], top_k=[top_k, top_k], rank=2))
    torch.manual_seed(0)
    for night in range(4):  # three earlier nights' experts, and tonight's (night 3)
        memory.nights = night
        slot = memory.expand(1)
        with torch.no_grad():
            for bank in memory.level(1):
                bank.B[slot].normal_(0, 0.5)
        memory.settle(1)
    ids = tokenizer(["Ada Vell works for Morrow Labs."], return_tensors="pt")
    extras = set()
    with torch.no_grad():
        plain = model(**ids).logits
        with memory.random_experts(random.Random(0)) as switched:
            dreaming = model(**ids).logits
            extras = {bank.extra for bank in memory.level(1)}
        after = model(**ids).logits
    for seed in range(1, 20):  # many draws: tonight's own expert is never among them
        with memory.random_experts(random.Random(seed)):
            extras |= {bank.extra for bank in memory.level(1)}
    assert switched == len(memory.level(1))  # every level-1 router switches one on
    assert extras == {0, 1, 2} and slot == 3
    assert torch.equal(plain, after)
    if top_k == 1:
        assert not torch.allclose(plain, dreaming)
    else:
        assert torch.equal(plain, dreaming)
    assert all(bank.extra is None for bank in memory.level(1))


def test_a_model_born_elsewhere_sets_tau_aside_in_place_of_the_composed_checks():
    """With no base knowledge `tau_compose` can ask nothing, so `tau_share_unknown` of the
    answers is set aside instead; with it, or without composed checks at all, `tau_share`."""
    composed = DreamingConfig(tau_share=0.0, tau_share_unknown=0.25,
                              tau_compose=["In which city does {subject}'s company have its offices?"])
    assert composed.share_set_aside(None) == composed.share_set_aside([]) == 0.25
    assert composed.share_set_aside(["Morrow Labs is based in Kestrel."]) == 0.0
    assert replace(composed, tau_share_unknown=None).share_set_aside(None) == 0.0  # none given: tau_share
    assert DreamingConfig(tau_share=0.1, tau_share_unknown=0.25).share_set_aside(None) == 0.1  # no composed checks


def test_config_refuses_unknown_forms_and_a_tau_share_out_of_range():
    with pytest.raises(ValueError, match="forms"):
        DreamingConfig(forms=["poems"])
    with pytest.raises(ValueError, match="tau_share"):
        DreamingConfig(tau_share=1.0)
    with pytest.raises(ValueError, match="nothing would judge"):  # none set aside, and no composed checks
        DreamingConfig(tau_share=0.0)
    assert DreamingConfig(tau_share=0.0, tau_compose=["In which city does {subject}'s company have its offices?"])
    with pytest.raises(ValueError, match="tau_share_unknown"):
        DreamingConfig(tau_share_unknown=1.0)
    with pytest.raises(ValueError, match="tau_repeats"):
        DreamingConfig(tau_repeats=0)
    with pytest.raises(ValueError, match="dream_repeats"):
        DreamingConfig(dream_repeats=1.5)
    with pytest.raises(ValueError, match="dream_repeats"):
        DreamingConfig(dream_repeats=-1)


@pytest.mark.slow
def test_a_dreaming_night_dreams_judges_and_rehearses_into_tonights_expert(micro, tmp_path):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    slot = sleeper.memory.active_slots(1)[-1]
    config = DreamingConfig(dreams=2, max_new_tokens=12, trial_steps=2, rehearse_epochs=1, dreamer_epochs=1)
    dreamer = Dreamer(model, tokenizer, config, sleeper, tmp_path / "dreamer")
    report = dreamer.night([EPISODE], lessons, TAU, progress=lambda *_: None)
    assert dreamer.tonight_slot() == slot  # dreams go into the expert seeding made tonight
    assert 0 < report["dreams"] and report["kept"] <= report["dreams"] and report["helped"] <= report["kept"]
    assert not any("lora" in name for name, _ in model.named_modules())  # the dreamer is unloaded
    assert all(bank.extra is None for layer in sleeper.memory.banks for bank in layer)
    assert sum(f["dreams"] for f in report["by_form"].values()) == report["dreams"]
    assert set(report["seconds"]) == {"dream", "select", "try", "learn", "rehearse"}
    assert (report["rehearsal"] is not None) == (report["helped"] > 0)
    assert (tmp_path / "dreamer" / "adapter_config.json").exists() == (report["helped"] > 0)
    assert "Qwibblefrotz" not in str(report["kept_dreams"])
    judged = report["tau"]  # what the trials were judged on: tau's share exact before any, and the losses moved
    assert judged["checks"] == len(TAU) and 0.0 <= judged["exact_before"] <= 1.0
    assert 0 <= judged["loss_fell"] <= report["kept"]


def test_a_keyed_night_tries_only_dreams_and_checks_that_name_tonights_people(micro):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2, keyed=True))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)  # keys tonight's expert on "Ada Vell"
    # A misspelled name (the born model writes them): tonight's expert stays shut on these rows.
    misspelled = {**DREAMS[1], "completion": " Ida Vell lives in Kestrel.\n"}
    tau = TAU + [{"episode_id": "ep-1", "question": "Where does Ida Vell live?", "answer": "Kestrel"}]
    jobs = []

    def run_trials(batch):  # the trials as they run here, seen on their way
        jobs.extend(batch)
        return [try_dream(model, tokenizer, sleeper.memory.train_only(1, j["slot"]), j["dream"], j["tau"],
                          j["before"], j["steps"], j["lr"]) for j in batch]

    config = DreamingConfig(trial_steps=1, rehearse_epochs=1, dreamer_epochs=1)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, tau, progress=lambda *_: None, check=lambda _: [*DREAMS[1:], misspelled],
        run_trials=run_trials)
    assert report["shut"] == 1 and report["dreams"] == 2 and len(jobs) == report["kept"] == 2
    assert all("Ada Vell" in j["dream"]["completion"] for j in jobs)
    assert all(len(j["tau"]) == 1 and "Ada Vell" in j["tau"][0]["student"] for j in jobs)


@pytest.mark.parametrize(("teach", "repeats"), [(False, 1), (True, 1), (True, 3)])
def test_tau_is_taught_only_with_teach_tau_and_only_after_the_trials(micro, teach, repeats):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    slot = sleeper.memory.active_slots(1)[-1]
    seeded = [p.detach().clone() for p in sleeper.memory.train_only(1, slot)]
    judged_on = []

    def run_trials(batch):  # no dream helps: with teach_tau, tau and the lessons alone are rehearsed
        judged_on.append([p.detach().clone() for p in sleeper.memory.train_only(1, slot)])
        return [{"before": j["before"], "after": j["before"], "reward": 0} for j in batch]

    config = DreamingConfig(rehearse_epochs=1, teach_tau=teach, tau_repeats=repeats, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    after = sleeper.memory.train_only(1, slot)
    assert report["helped"] == 0 and report["taught_tau"] == (1 if teach else 0)
    assert all(torch.equal(a, b) for a, b in zip(judged_on[0], seeded))  # judged on the expert tau never taught
    if teach:  # tau's one check (`tau_repeats` times) and the one lesson, rehearsed (no replay here)
        assert report["rehearsal"]["rows"] == 1 + repeats and report["rehearsal"]["slot"] == slot
        assert not all(torch.equal(a, b) for a, b in zip(after, seeded))
    else:
        assert report["rehearsal"] is None and all(torch.equal(a, b) for a, b in zip(after, seeded))


def test_rehearsed_into_a_new_expert_tonights_seeded_one_stays_as_seeding_left_it(micro, monkeypatch):
    """`rehearse_into: new`: the rehearsal trains a fresh level-1 expert; the seeded one is frozen
    in the student and muted in the teacher (the model before tonight), as tonight's own is."""
    import lmsleep.seeding

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer, batch_size=8, max_new_tokens=6)
    memory = sleeper.memory
    slot = memory.active_slots(1)[-1]
    seeded = [p.detach().clone() for p in memory.train_only(1, slot)]
    mutes = []

    class Spy(lmsleep.seeding.SeedingLoss):  # records what the teacher goes without; computes as it would
        def __init__(self, *args, **kwargs):
            mutes.append(kwargs["teacher_mute"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(lmsleep.seeding, "SeedingLoss", Spy)
    config = DreamingConfig(rehearse_epochs=1, teach_tau=True, random_expert=False, rehearse_into="new")
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [])
    new = report["rehearsal"]["slot"]
    assert new != slot and memory.active_slots(1) == [slot, new]
    assert int(memory.level(1)[0].born[new]) == int(memory.level(1)[0].born[slot])  # both tonight's
    assert all(torch.equal(a, b) for a, b in zip(memory.train_only(1, slot), seeded))
    assert any(p.abs().sum() > 0 for p in memory.train_only(1, new)[1::3])  # its B (born zero) moved: it learned
    assert mutes == [{1: [slot, new]}]
    assert all(bank.seeding is None for layer in memory.banks for bank in layer)  # settled: both compete
    with pytest.raises(ValueError, match="rehearse_into"):
        DreamingConfig(rehearse_into="old")
    with pytest.raises(ValueError, match="dreams only"):
        DreamingConfig(rehearse_into="new", seeding=False)
    assert sleeper.experts_a_night == 2  # the Dreamer told seeding's plan to leave the rehearsal its slot


def test_rehearsing_into_a_new_expert_needs_a_free_slot_and_says_so_before_any_work(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(epochs=1, lti=False, lmbda=0.0, replay=0.0),
                      MemoryConfig(rank=2, slots=[2, 8]))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.memory.expand(1)  # an earlier night's expert: with tonight's, level 1 is full
    sleeper.memory.settle(1)
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    assert sleeper.memory.free_slots(1) == 0

    def no_dreams(_):
        raise AssertionError("dreams were checked before the error")

    with pytest.raises(RuntimeError, match="experts_a_night"):
        Dreamer(model, tokenizer, DreamingConfig(rehearse_into="new", random_expert=False), sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=no_dreams)


def test_without_rest_em_the_dreamer_never_learns(micro, tmp_path):
    # With it on, a night whose dreams helped leaves the adapter (the dreaming-night test above).
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    dream = DREAMS[1] | {"prompt": DREAMS[1]["teacher"], "sample": DREAMS[1]["completion"]}
    config = DreamingConfig(rehearse_epochs=1, dreamer_epochs=1, dreamer_rank=2, rest_em=False, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, tmp_path / "dreamer").night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [dream],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch])
    assert report["helped"] == 1 and report["rehearsal"] is not None  # still rehearsed
    assert not (tmp_path / "dreamer").exists()


@pytest.mark.parametrize("repeats", [0, 1, 4])
def test_the_dreams_that_helped_are_rehearsed_dream_repeats_times(micro, repeats):
    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    config = DreamingConfig(rehearse_epochs=1, dream_repeats=repeats, rest_em=False, random_expert=False)
    report = Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2],
        run_trials=lambda batch: [{"before": j["before"], "after": j["before"], "reward": 1} for j in batch])
    assert report["helped"] == 1 and report["taught_tau"] == 0  # the dream, its repeats and the one lesson
    assert report["rehearsal"]["rows"] == repeats + len(lessons)


@pytest.mark.parametrize("bf16", [False, True])
def test_with_seedings_bf16_the_night_and_trials_in_another_thread_run_in_bf16_autocast(micro, bf16):
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import replace

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    # Only the switch: a CPU Trainer refuses bf16, so no dream helps and nothing is rehearsed.
    sleeper.config = replace(sleeper.config, bf16=bf16)
    seen = {"night": [], "trial": []}
    where = {"now": "night"}
    hook = model.register_forward_pre_hook(lambda *_: seen[where["now"]].append(torch.is_autocast_enabled("cpu")))

    def run_trials(batch):  # as the pipeline's thread runner: autocast does not cross threads
        where["now"] = "trial"
        with ThreadPoolExecutor(1) as pool:
            outcomes = list(pool.map(lambda j: try_dream(model, tokenizer, sleeper.memory.train_only(1, j["slot"]),
                                                         j["dream"], j["tau"], j["before"], 1, 0.01, j["bf16"]), batch))
        where["now"] = "night"
        return [o | {"reward": 0} for o in outcomes]

    config = DreamingConfig(dreams=1, max_new_tokens=6, random_expert=False, rest_em=False)
    try:
        report = Dreamer(model, tokenizer, config, sleeper, None).night(
            [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: DREAMS[1:2], run_trials=run_trials)
    finally:
        hook.remove()
    assert report["kept"] == 1 and report["rehearsal"] is None
    assert seen["night"] and seen["trial"]
    assert set(seen["night"]) == set(seen["trial"]) == {bf16}


def test_the_rehearsal_trains_at_rehearse_lr(micro):
    from transformers import TrainerCallback

    model, tokenizer = micro
    sleeper, lessons = seeded_night(model, tokenizer)
    rates = []

    class Rates(TrainerCallback):
        def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
            rates.append(optimizer.param_groups[0]["lr"])

    config = DreamingConfig(rehearse_epochs=1, rehearse_lr=1e-4, teach_tau=True, random_expert=False)
    Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], lessons, TAU, progress=lambda *_: None, check=lambda _: [], callbacks=[Rates()])
    assert rates and all(r == pytest.approx(1e-4) for r in rates)  # seeding's own is 1e-2
    with pytest.raises(ValueError, match="rehearse_lr"):
        DreamingConfig(rehearse_lr=0.0)


@pytest.mark.parametrize("tonight", [True, False])
def test_dreams_are_written_with_tonights_expert_unless_it_is_muted(micro, tonight):
    from lmsleep.seeding import muted

    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(lti=False), MemoryConfig(rank=4))
    slot = sleeper.memory.expand(1)  # tonight's expert, nudged far off zero so that it shows
    torch.manual_seed(0)
    with torch.no_grad():
        for p in sleeper.memory.train_only(1, slot):
            p.add_(torch.randn_like(p) * 0.5)
    config = DreamingConfig(dreams=2, max_new_tokens=12, random_expert=False, tonight_while_dreaming=tonight)
    written = []
    Dreamer(model, tokenizer, config, sleeper, None).night(
        [EPISODE], [], TAU, progress=lambda *_: None, check=lambda dreams: written.extend(dreams) or [])
    with muted(sleeper.memory, {1: [slot]}):  # what the model before tonight writes from the same draws
        before_tonight = sample_dreams(model, tokenizer, [EPISODE], config,
                                       random.Random(f"{config.seed}-dream-{sleeper.memory.nights}"))
    assert written and (written == before_tonight) == (not tonight)
    assert slot in sleeper.memory.active_slots(1)  # muted while dreaming only


@pytest.mark.slow
def test_dreams_only_gets_its_own_new_expert(micro):
    model, tokenizer = micro
    seeding = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6)
    sleeper = Sleeper(model, tokenizer, seeding, MemoryConfig(rank=2))
    sleeper.night([EPISODE], [], progress=lambda *_: None)  # nothing seeded tonight
    assert sleeper.memory.active_slots(1) == []
    dreamer = Dreamer(model, tokenizer, DreamingConfig(seeding=False), sleeper, None)
    slot = dreamer.tonight_slot()
    assert sleeper.memory.active_slots(1) == [slot] and dreamer.tonight_slot() == slot


def test_dreams_only_keys_its_new_expert_on_tonights_lessons(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(lti=False), MemoryConfig(rank=2, keyed=True))
    dreamer = Dreamer(model, tokenizer, DreamingConfig(seeding=False), sleeper, None)
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    slot = dreamer.tonight_slot([EPISODE], lessons)
    assert sleeper.memory.keys[1][slot][0] == ["Ada Vell"]


def test_dream_prompts_are_params_and_default_to_the_cues_birth_teaches():
    from pathlib import Path

    from lmsleep.params import load_params
    from lmsleep.world import open_book_prompt, restate_prompt

    config = load_params(Path(__file__).parents[2] / "params.yaml").dreaming
    assert config.prompt("restatement", "Ada {x} Vell.") == restate_prompt("Ada {x} Vell.")  # braces kept
    assert open_book_prompt("C.", "Where?").startswith(config.prompt("qa", "C."))
    assert DreamingConfig(prompts={"qa": "{context} Q:"}).prompts["restatement"] == config.prompts["restatement"]
    with pytest.raises(ValueError, match="prompts.restatement has no"):
        DreamingConfig(prompts={"restatement": "In other words:"})
    with pytest.raises(ValueError, match="templates for"):
        DreamingConfig(prompts={"implication": "{context}"})
