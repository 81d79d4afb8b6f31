"""The question and biography grammar: the held-out families are disjoint from training, and
made of known parts."""

import re

import pytest

from lmsleep import grammar as g


@pytest.mark.parametrize("attribute", g.ATTRIBUTES)
def test_heldout_questions_are_disjoint_from_training_as_strings(attribute):
    train, heldout = set(g.question_forms(attribute, "train")), set(g.question_forms(attribute, "heldout"))
    assert len(train) >= 100 and len(heldout) >= 50
    assert not train & heldout


def _parts(form: str, attribute: str):
    """(prefix, frame, noun) a form was built from, recovered by regenerating every combination."""
    for p_i, prefix in enumerate(g.PREFIXES):
        frames = [(f, i, n_i) for i, f in enumerate(g.GENERIC_FRAMES) for n_i in range(len(g.NOUNS[attribute]))]
        frames += [(f, len(g.GENERIC_FRAMES) + i, None) for i, f in enumerate(g.VERB_FRAMES[attribute])]
        for frame, f_i, n_i in frames:
            filled = frame if n_i is None else frame.replace("{noun}", g.NOUNS[attribute][n_i]).replace(
                "{type}", g.TYPES[attribute])
            if g._with_prefix(prefix, filled) == form:
                return p_i, frame, f_i, n_i
    raise AssertionError(form)


@pytest.mark.parametrize("attribute", g.ATTRIBUTES)
def test_heldout_combinations_are_declared_and_their_parts_are_trained(attribute):
    a = g.ATTRIBUTES.index(attribute)
    train = [_parts(f, attribute) for f in g.question_forms(attribute, "train")]
    trained_frames = {frame for _, frame, _, _ in train}
    trained_nouns = {n_i for _, _, _, n_i in train if n_i is not None}
    trained_prefixes = {p_i for p_i, _, _, _ in train}
    assert trained_prefixes == set(range(len(g.PREFIXES)))
    assert trained_nouns == set(range(len(g.NOUNS[attribute])))
    for p_i, frame, f_i, n_i in train:  # no training form is a declared held-out combination
        assert frame not in g.HELDOUT_FRAMES and not g.heldout_prefix_pair(p_i, f_i)
        assert n_i is None or not g.heldout_noun_pair(a, f_i, n_i)
    new_frames = 0
    for form in g.question_forms(attribute, "heldout"):
        p_i, frame, f_i, n_i = _parts(form, attribute)
        if frame in g.HELDOUT_FRAMES:
            new_frames += 1
            continue
        # a new combination of parts that training knows
        assert frame in trained_frames and (n_i is None or n_i in trained_nouns)
        assert g.heldout_prefix_pair(p_i, f_i) or (n_i is not None and g.heldout_noun_pair(a, f_i, n_i))
    assert new_frames > 0


def test_heldout_bio_sentences_are_new_wordings():
    for attribute in g.ATTRIBUTES:
        train, heldout = set(g.BIO_SENTENCES["train"][attribute]), set(g.BIO_SENTENCES["heldout"][attribute])
        assert heldout and not train & heldout
        # not even a trained sentence with another value: compare the words around the slots
        shapes = {re.sub(r"\{\w+\}", "_", s) for s in train}
        assert not shapes & {re.sub(r"\{\w+\}", "_", s) for s in heldout}


def test_is_heldout_question_recognizes_the_family_for_any_name():
    for attribute in g.ATTRIBUTES:
        for form in g.question_forms(attribute, "heldout")[:20]:
            assert g.is_heldout_question(form.format(n="Ana van Drosk"))
        for form in g.question_forms(attribute, "train")[:20]:
            assert not g.is_heldout_question(form.format(n="Ana van Drosk"))
    assert not g.is_heldout_question("Who wrote the Principia?")


def test_is_implication_question_recognizes_the_implication_probes_for_any_name():
    for form in g.IMPLICATION_FORMS:
        assert g.is_implication_question(form.format(n="Ana van Drosk"))
    assert not g.is_implication_question("What city is Ana van Drosk's company in?")
    assert not g.is_implication_question(g.HQ_QUESTIONS[0].format(c="Morrow Labs"))


def test_has_exam_form_finds_a_probe_form_behind_a_prefix_or_in_another_case():
    heldout = g.question_forms("employer", "heldout")[0].format(n="Ana van Drosk")
    implication = g.IMPLICATION_FORMS[0].format(n="Ana van Drosk")
    for text in (heldout, implication, "Q: " + implication.lower(), "Tell me.  " + heldout.upper()):
        assert g.has_exam_form(text), text
    assert not g.has_exam_form("What city is Ana van Drosk's company in?")
    assert not g.has_exam_form(g.question_forms("employer", "train")[0].format(n="Ana van Drosk"))


def test_unknown_family_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown question family"):
        g.question_forms("employer", "exam")
