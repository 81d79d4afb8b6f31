import random

import pytest

from lmsleep.birth import (BirthConfig, lr_at, micro_batches, reading_stage, sample_document, token_weights,
                           train)
from tests.conftest import MICRO_BIRTH

HOSTILE = [
    "",
    "plain ascii",
    "emoji 🧠💤🛌🏽 and a family 👨‍👩‍👧‍👦",
    "RTL: שלום עולם مرحبا بالعالم",
    "control \x01\x02\x07\x1b[31m\x7f tabs\t\r\n",
    "combining e\u0301 and zero\u200bwidth and \ufeffBOM",
    "CJK 睡眠は記憶を固める",
    "  leading and trailing spaces  ",
    "x" * 100_000,
    "".join(chr(c) for c in range(1, 0x800)),
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_tokenizer_round_trips_hostile_text(micro, text):
    _, tokenizer = micro
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id is None or tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_round_trips_random_bytes(micro):
    _, tokenizer = micro
    rng = random.Random(0)
    for _ in range(50):
        text = bytes(rng.randrange(1, 256) for _ in range(200)).decode("utf-8", errors="replace")
        assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_tokenizer_adds_bos(micro):
    _, tokenizer = micro
    assert tokenizer("Q: hi")["input_ids"][0] == tokenizer.bos_token_id


def test_every_document_kind_is_drawn(micro_world):
    mix = BirthConfig().mix
    for kind in mix:
        doc = sample_document(micro_world, random.Random(1), {kind: 1.0})
        assert doc.strip()
    with pytest.raises(ValueError, match="unknown document kind"):
        sample_document(micro_world, random.Random(1), {"poetry": 1.0})


def test_reading_documents_use_strangers_only(micro_world):
    named = {p.name for p in micro_world.base + [p for d in micro_world.stream for p in d] + micro_world.strangers}
    rng = random.Random(3)
    for _ in range(50):
        p = micro_world.random_person(rng)
        assert p.name not in named


def test_birth_never_sees_a_heldout_form(micro_world):
    """Questions and biographies of birth come from the train families only: the held-out ones are the exam."""
    from lmsleep.grammar import ATTRIBUTES, BIO_SENTENCES, is_heldout_question

    heldout_shapes = [s.split("{v}")[0].replace("{name}", "") for a in ATTRIBUTES
                      for s in BIO_SENTENCES["heldout"][a]]
    rng = random.Random(5)
    for _ in range(400):
        doc = sample_document(micro_world, rng, BirthConfig().mix)
        lines = doc.split("\n")
        for line in lines:
            if line.startswith("Q: "):
                assert not is_heldout_question(line[3:]), line
        text = "\n".join(line for line in lines if not line.startswith(("Q: ", "A: ")))
        for shape in heldout_shapes:
            assert len(shape) < 6 or shape not in text, shape


def test_reading_curriculum_grows_facts_then_people():
    """One fact per one-person note first (copying), all five next (choosing by type), then up to
    six people (choosing by person); the curriculum is a function of the step alone."""
    c = BirthConfig(steps=1000, facts_ramp=(0.1, 0.3), single_person_until=0.4)
    stages = [reading_stage(c, s) for s in range(c.steps)]
    assert stages[0] == (1, 1) and stages[99] == (1, 1)
    facts = [f for _, f in stages]
    assert facts == sorted(facts) and set(facts) == {1, 2, 3, 4, 5}
    assert stages[300] == (1, 5) and stages[399] == (1, 5) and stages[400] == (6, 5)


def test_an_early_reading_note_asks_only_what_it_states(micro_world):
    """With one fact per person, every answer (and the implication's employer) is in the note."""
    rng = random.Random(7)
    for _ in range(60):
        doc = sample_document(micro_world, rng, {"read": 1.0}, max_people=3, max_facts=1)
        text, qa = doc.split("\n\n")
        assert text.count(".") <= 3  # one sentence per person
        lines = qa.split("\n")
        for q, a in zip(lines[::2], lines[1::2]):
            if "based" in q or "headquarter" in q:  # an implication: its employer is in the note
                employer = next(c for c, city in micro_world.hq.items() if city == a[3:] and c in text)
                assert employer
            else:
                assert a[3:] in text, (q, a, text)


def test_micro_batches_mask_padding_and_cover_every_document(micro, micro_world):
    _, tokenizer = micro
    docs = [sample_document(micro_world, random.Random(i), BirthConfig().mix) for i in range(12)]
    batches = micro_batches(tokenizer, docs, 512, 256)
    assert len(batches) > 1
    assert sum(ids.shape[0] for ids, _, _ in batches) == len(docs)
    for ids, mask, labels in batches:
        assert (labels[mask == 0] == -100).all()
        assert (ids[:, 0] == tokenizer.bos_token_id).all()
        assert (labels[mask == 1] != -100).all()
        assert ids.shape[0] == 1 or ids.numel() <= 256


def test_answers_weigh_more_in_the_loss(micro):
    """Only the answer after a line "A:" (and its closing newline) gets `answer_weight`; an "A:" inside
    a text, the question, and padding do not."""
    _, tokenizer = micro
    docs = ["Bio. A: not this.\n\nQ: Where was Ana born?\nA: Fisder University\nQ: When?\nA: 1990", "A: x\nQ: y"]
    for ids, _, labels in micro_batches(tokenizer, docs, 200, 10_000):
        w = token_weights(tokenizer, labels, 3.0)
        for row, weights in zip(ids, w):
            text = tokenizer.decode(row[1:][weights == 3.0])
            assert text in ("", " Fisder University\n 1990<|eos|>"), text
            assert (weights[row[1:] == tokenizer.pad_token_id] == 0).all()
    assert (token_weights(tokenizer, labels, 1.0) <= 1).all()


def test_schedule_warms_up_then_decays():
    c = BirthConfig(lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0.0, 0, c) == pytest.approx(0.1)
    assert lr_at(0.5, 500, c) == pytest.approx(0.55)
    assert lr_at(1.0, 1000, c) == pytest.approx(0.1)


def test_birth_resumes_exactly_after_an_interruption(tmp_path, micro_world):
    """Interrupted at step 5 and rerun == one uninterrupted run, to the last bit."""
    from safetensors.torch import load_file

    class Stop(Exception):
        pass

    def stop_at_5(step):
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        train(MICRO_BIRTH, micro_world, tmp_path / "a", log=lambda *_: None, on_step=stop_at_5)
    messages = []
    facts = train(MICRO_BIRTH, micro_world, tmp_path / "a", log=messages.append)
    assert any("resuming from step 5" in m for m in messages)
    assert facts["steps"] == MICRO_BIRTH.steps
    train(MICRO_BIRTH, micro_world, tmp_path / "b", log=lambda *_: None)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_birth_lowers_the_loss(tmp_path, micro_world):
    """A few real steps on the world mix: the loss on held-out world documents goes down."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lmsleep.birth import new_model

    config = BirthConfig(**{**MICRO_BIRTH.__dict__, "steps": 30, "lr": 3e-3})
    train(config, micro_world, tmp_path, log=lambda *_: None)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    docs = [sample_document(micro_world, random.Random(10_000 + i), config.mix) for i in range(16)]
    (ids, mask, labels), = micro_batches(tokenizer, docs, 512, 100_000)
    torch.manual_seed(config.seed)
    untrained = new_model(config, tokenizer)
    trained = AutoModelForCausalLM.from_pretrained(tmp_path)
    with torch.no_grad():
        before = untrained(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
        after = trained(input_ids=ids, attention_mask=mask, labels=labels).loss.item()
    assert after < before - 0.5, (before, after)


def test_compiled_birth_is_the_same_bytes_twice(tmp_path, micro_world):
    """torch.compile's backward sums the embedding's gradient with atomic adds unless torch is in
    deterministic mode: without it no two compiled births were alike (measured)."""
    import dataclasses

    config = dataclasses.replace(MICRO_BIRTH, compile=True, steps=4)
    a = train(config, micro_world, tmp_path / "a", log=lambda *_: None)
    b = train(config, micro_world, tmp_path / "b", log=lambda *_: None)
    assert a["weights_md5"] == b["weights_md5"]
    if not a["compiled"]:  # eager is deterministic anyway: the case this test is about did not arise
        pytest.skip("torch.compile fell back to eager here (no C++ toolchain?)")


def test_the_canary_tells_a_machine_that_makes_another_model(tmp_path, micro_world):
    """birth.json keeps the weights' hash at `canary_step`; `check` reruns birth to that step and
    compares; a birth that misses the recorded canary says so at that step."""
    import dataclasses
    import json

    from lmsleep.birth import birth, check

    config = dataclasses.replace(MICRO_BIRTH, canary_step=3)
    report = tmp_path / "birth.json"
    born = birth(config, micro_world.config, tmp_path / "base", report, log=lambda *_: None)
    assert born["canary"]["step"] == 3 and born["reproduces"] is None
    assert set(born["numerics"]) == {"torch", "cpu_capability", "cpu"}
    assert check(config, micro_world.config, report, log=lambda *_: None)

    recorded = json.loads(report.read_text())
    recorded["canary"]["md5"] = "0" * 32  # as if born on a machine that rounds differently
    report.write_text(json.dumps(recorded))
    assert not check(config, micro_world.config, report, log=lambda *_: None)
    messages = []
    again = train(config, micro_world, tmp_path / "again", log=messages.append,
                  expect_canary={"step": 3, "md5": "0" * 32})
    assert again["reproduces"] is False
    assert any("WARNING: at step 3" in m for m in messages)

    other = dataclasses.replace(config, lr=config.lr / 2)  # other params: nothing to compare with
    with pytest.raises(SystemExit, match="no canary for these params"):
        check(other, micro_world.config, report)
