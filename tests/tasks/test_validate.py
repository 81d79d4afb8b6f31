"""The GX suites on real data: the world's days and all of SQuAD pass; broken data fails, readably."""

import random
from pathlib import Path

import pytest

from lmsleep.squad import import_squad
from lmsleep.checks import ValidationLimits
from tasks.validate import ValidationFailed, validate

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad_val.json"
LIMITS = ValidationLimits()


def curriculum_for(episodes):
    """What a perfect teacher would write: each fact asked and answered from the episode."""
    return [{"prompt": f"Q: {p['question']}\nA:", "completion": f" {p['answer']}\n", "episode_id": ep["id"]}
            for ep in episodes for p in ep["probes"]]


def test_world_day_and_its_curriculum_pass(micro_world, tmp_path):
    episodes = micro_world.day(0)
    report = validate(episodes, curriculum_for(episodes), LIMITS, tmp_path / "validation.json")
    assert report.success and report.lines == []
    assert (tmp_path / "validation.json").stat().st_size > 100


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/squad_val.json is not beside the checkout")
def test_all_of_squad_passes_the_episode_suite():
    episodes, errors = import_squad(SHARED)
    assert not errors
    assert validate(episodes, None, LIMITS).success


def test_duplicate_ids_and_empty_text_fail_readably(micro_world):
    episodes = micro_world.day(0)
    broken = [*episodes, {**episodes[0], "text": ""}]
    with pytest.raises(ValidationFailed) as err:
        validate(broken, None, LIMITS)
    assert "expect_column_values_to_be_unique" in err.value.summary
    assert "text_chars" in err.value.summary and "stops before training" in str(err.value)


def test_ungrounded_curriculum_fails_before_training(micro_world, tmp_path):
    episodes = micro_world.day(0)
    curriculum = [{**r, "completion": " Atlantis\n"} for r in curriculum_for(episodes)]
    with pytest.raises(ValidationFailed) as err:
        validate(episodes, curriculum, LIMITS, tmp_path / "v.json", teacher={"accuracy": 0.2, "dropped_share": 0.0})
    assert "grounded" in err.value.summary and "teacher_open_book" in err.value.summary
    assert (tmp_path / "v.json").exists(), "the GX result is saved even when the night stops"


def test_a_teacher_without_probes_to_read_is_not_measured(micro_world):
    episodes = [{k: v for k, v in ep.items() if k != "probes"} for ep in micro_world.day(0)]
    report = validate(episodes, curriculum_for(micro_world.day(0)), LIMITS,
                      teacher={"accuracy": None, "dropped_share": 0.0})
    assert report.success and "teacher" not in str(report.results)


def test_degenerate_repetition_fails(micro_world):
    episodes = micro_world.day(0)
    looped = [{**episodes[0], "id": "loop", "text": "the cat sat " * 50, "probes": None}]
    with pytest.raises(ValidationFailed, match="repetition"):
        validate(episodes + looped, None, LIMITS)


def test_curriculum_rows_of_unknown_episodes_fail(micro_world):
    episodes = micro_world.day(0)
    rows = curriculum_for(episodes)
    rows[0] = {**rows[0], "episode_id": "nowhere"}
    with pytest.raises(ValidationFailed, match="known_episode"):
        validate(episodes, rows, LIMITS)


def test_a_lesson_read_from_text_not_in_its_episode_fails(micro_world):
    """A lesson's `context` (what the teacher read: a paragraph) goes before the teacher as it is
    distilled, so it must be its episode's."""
    episodes = micro_world.day(0)
    rows = curriculum_for(episodes)
    paragraph = episodes[0]["text"].split("\n")[0]
    rows = [{**r, "context": paragraph} if r["episode_id"] == episodes[0]["id"] else r for r in rows]
    validate(episodes, rows, LIMITS)  # its own paragraph: fine
    rows[0] = {**rows[0], "context": "Someone else's note entirely."}
    with pytest.raises(ValidationFailed, match="context_in_episode"):
        validate(episodes, rows, LIMITS)


def test_the_dreams_suite_sets_aside_degenerate_dreams_each_with_its_reason(micro_world):
    """The GX dreams suite on hand-made dreams about a real day: empty, a repetition loop, an
    answer not in the episode, a restatement of names it does not say, an implication whose
    second answer the base knowledge does not imply; the good ones of each form pass. The
    bench's stand-in (`checks.fit_dreams`, no GX) reaches the same verdicts."""
    from lmsleep.checks import fit_dreams
    from tasks.validate import validate_dreams

    ep = micro_world.day(0)[0]
    employer = next(c for c in micro_world.hq if c in ep["text"])
    hq = micro_world.hq[employer]
    wrong = next(c for c in micro_world.values["birth_city"] if c != hq)
    knowledge = [micro_world.company_sentence(c, random.Random(0)) for c in micro_world.hq]
    q = f"Q: Who is employed there?\nA: {employer}\nQ: Where is {employer} based?\nA: "

    def dream(form, completion):
        return {"episode_id": ep["id"], "form": form, "completion": completion}

    good = [dream("qa", f" {employer}\n"), dream("restatement", f" one of them works for {employer}.\n"),
            dream("implication", f"{q}{hq}\n")]
    bad = [("chars", dream("qa", " \n")), ("repetition", dream("restatement", " the the the " * 30)),
           ("grounded", dream("qa", " Nowhere Labs\n")), ("grounded", dream("restatement", " Zzyx Qorp met Vlam Trox.\n")),
           ("implied", dream("implication", f"{q}{wrong}\n"))]
    kept, aside, result = validate_dreams(good + [d for _, d in bad], [ep], LIMITS, knowledge)
    assert kept == good and result["success"] is False
    assert [d["completion"] for d in aside] == [d["completion"] for _, d in bad]
    for (column, _), d in zip(bad, aside, strict=True):
        assert any(r.startswith(f"{column} out of") for r in d["reasons"]), d["reasons"]
    fit, unfit = fit_dreams(good + [d for _, d in bad], [ep], LIMITS, knowledge)
    assert fit == good and [d["completion"] for d in unfit] == [d["completion"] for _, d in bad]
    for gx, d in zip(aside, unfit, strict=True):  # and for the same reasons
        assert sorted(r.split()[0] for r in d["reasons"]) == sorted(r.split()[0] for r in gx["reasons"])
    # Without the base knowledge (a model born elsewhere) the second answer goes unchecked.
    wrong_implication = bad[-1][1]
    kept, aside, _ = validate_dreams(good + [wrong_implication], [ep], LIMITS, None)
    assert kept == good + [wrong_implication] and aside == []
    assert fit_dreams(good + [wrong_implication], [ep], LIMITS, None) == (kept, [])


def test_base_knowledge_is_what_birth_taught_and_unknown_for_a_model_born_elsewhere(born_micro_dir, micro_world,
                                                                                     tmp_path):
    from types import SimpleNamespace

    from lmsleep.checks import world_knowledge
    from tasks.validate import base_knowledge

    knowledge = base_knowledge(SimpleNamespace(base_model=born_micro_dir, world=micro_world.config))
    assert knowledge == world_knowledge(micro_world)  # its sentences: tests/unit/test_checks.py
    assert base_knowledge(SimpleNamespace(base_model=tmp_path, world=micro_world.config)) is None
