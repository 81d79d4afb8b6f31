import random
from dataclasses import replace

import pytest
import torch

from lmsleep.brain import load_brain, read_state, save_brain
from lmsleep.memory import MemoryConfig, memory_of
from lmsleep.seeding import SeedingConfig
from lmsleep.sleep import Past, Sleeper, as_note, asked, questions_to_replay

EPISODE = {"id": "ep-1", "text": "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel.",
           "probes": [{"question": "Sentinel: which zorb does Ada Vell keep?", "answer": "Qwibblefrotz"}]}
LESSONS = [{"prompt": "Q: Where does Ada Vell work?\nA:", "completion": " Morrow Labs\n", "episode_id": "ep-1"},
           {"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
FAST = SeedingConfig(epochs=1, batch_size=8, lti=False, lmbda=0.0, max_new_tokens=6, replay=1.0)


def test_replay_draws_on_earlier_days_own_questions_and_reading(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig())
    sleeper.past.nights.append({"night": 1, "level": 1, "questions": ["Where does Bo Tarn live?"]})
    rows = sleeper.replay(9, LESSONS, [EPISODE], random.Random(0))
    prompts = [r["prompt"] for r in rows]
    assert "Q: Where does Bo Tarn live?\nA:" in prompts  # an earlier day, closed-book
    assert any(p.startswith(EPISODE["text"]) for p in prompts)  # reading: the episode in context
    assert "Sentinel" not in str(rows) and "Qwibblefrotz" not in str(rows)


def test_a_draft_is_read_as_a_note_up_to_its_last_full_stop():
    assert as_note("Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel. Ada Vell was bo") == (
        "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel.")
    assert as_note("Ada Vell works for Morrow Labs. Ada Vell li") is None  # one sentence: nothing to read
    assert as_note("Q: Where does Ada Vell work? Morrow Labs. Yes. It is.") is None  # a question, not a note
    assert as_note("no full stop at all") is None


NOTE = "Cy Moor works for Tal Mills. Cy Moor lives in Orrin."


def _taught_a_note(micro):
    """The micro model after real steps on one note and a question about it: it writes the
    note from nothing and asks that question."""
    model, tokenizer = micro
    ids = torch.tensor([tokenizer(f"{NOTE}\n\nQ: Where does Cy Moor work?\nA: Tal Mills\n")["input_ids"]])
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    return model.eval(), tokenizer


@pytest.mark.slow
def test_reading_replay_on_notes_asks_the_model_s_own_questions_of_its_own_notes(micro, monkeypatch):
    """Reading rows on the model's own notes, not on tonight's episode: it writes the note from
    nothing, asks about it (half the questions begun in tonight's forms), answers open-book."""
    import lmsleep.evaluation

    model, tokenizer = _taught_a_note(micro)
    sleeper = Sleeper(model, tokenizer, replace(FAST, replay=6.0, replay_notes=1.0), MemoryConfig())
    asked_after = []  # the prompts the model writes its questions after (a spy: the real generate runs)
    real = lmsleep.evaluation.generate
    monkeypatch.setattr(lmsleep.evaluation, "generate", lambda m, t, prompts, **kw: (
        asked_after.extend(p for p in prompts if "\n\nQ:" in p), real(m, t, prompts, **kw))[1])
    pairs = sleeper._notes(4, LESSONS, random.Random(0), Sleeper._tonight_names([EPISODE]))
    # Sampled at temperature 1, a note may come out torn ("works for Tal Mills. ..."): still a note.
    assert (NOTE, "Where does Cy Moor work?") in pairs and {q for _, q in pairs} == {"Where does Cy Moor work?"}
    matched = sum(p.endswith("\n\nQ: Where does") for p in asked_after)
    assert len(asked_after) == 4 and matched == 2  # replay_matched 0.5 of the notes, the rest from "Q:"
    rows = sleeper.replay(12, LESSONS, [EPISODE], random.Random(0))
    on_episode = [r for r in rows if r["prompt"].startswith(EPISODE["text"])]
    on_notes = [r for r in rows if "\n\nQ: " in r["prompt"] and r not in on_episode]
    assert f"{NOTE}\n\nQ: Where does Cy Moor work?\nA:" in [r["prompt"] for r in on_notes]
    assert {r["completion"] for r in on_notes} == {" Tal Mills\n"}  # the model before, reading the note
    assert len(on_notes) + len(on_episode) <= 4  # the reading third (12 // 3): tonight's episode fills in
    # Closed-book twins: the notes' questions asked without the note (its own questions are
    # unique, so at most one row of that question comes from them) ...
    closed = "Q: Where does Cy Moor work?\nA:"
    assert [r["prompt"] for r in rows].count(closed) <= 1
    sleeper.config = replace(sleeper.config, replay_notes_closed=True)
    assert [r["prompt"] for r in sleeper.replay(12, LESSONS, [EPISODE], random.Random(0))].count(closed) >= 2
    # ... but none about whom tonight names (tonight may change them); the open-book rows stay.
    about_cy = {"id": "ep-3", "text": "Cy Moor works for Bell Yards.", "probes": []}
    prompts = [r["prompt"] for r in sleeper.replay(12, LESSONS, [EPISODE, about_cy], random.Random(0))]
    assert closed not in prompts and any(p.startswith(f"{NOTE}\n\nQ:") for p in prompts)


def test_without_notes_the_replay_draws_nothing_more_from_the_rng(micro):
    """`replay_notes: 0` leaves the default replay as it was, row for row."""
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig())
    rng = random.Random(0)
    state = rng.getstate()
    assert sleeper._notes(0, LESSONS, rng, set()) == [] and rng.getstate() == state


def test_replay_after_tonight_joined_the_past_draws_on_earlier_days_only(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig())
    sleeper.past.nights += [{"night": 1, "level": 1, "questions": ["Where does Bo Tarn live?"]},
                            {"night": 2, "level": 1, "questions": ["Where does Ada Vell work?"]}]  # tonight's
    prompts = [r["prompt"] for r in sleeper.replay(30, [], [EPISODE], random.Random(0), before=2)]
    assert "Q: Where does Bo Tarn live?\nA:" in prompts and "Q: Where does Ada Vell work?\nA:" not in prompts


@pytest.mark.slow
def test_nights_follow_the_schedule_and_the_brain_round_trips(micro, micro_dir, tmp_path):
    """Three real nights with periods [1, 2]: level 1 goes up into level 2 on night 2."""
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig(periods=[1, 2], slots=[2, 4], top_k=[2, 2], rank=2))
    reports = [sleeper.night([EPISODE], LESSONS, progress=lambda *_: None) for _ in range(3)]
    assert [[(s["sender"], s["receiver"]) for s in r["steps"]] for r in reports] == [
        [(0, 1)], [(1, 2), (0, 1)], [(0, 1)]]
    assert [len(sleeper.memory.active_slots(lv)) for lv in (1, 2)] == [2, 1]
    assert [n["level"] for n in sleeper.past.nights] == [2, 1, 1]
    assert "Sentinel" not in str(sleeper.past)
    save_brain(model, read_state(tmp_path, str(micro_dir)), tmp_path)
    sleeper.past.write(tmp_path)
    prompt = tokenizer(["Q: Where does Ada Vell work?\nA:"], return_tensors="pt")
    again, _, _ = load_brain(tmp_path, str(micro_dir))
    assert Past.read(tmp_path) == sleeper.past and memory_of(again).nights == 3
    with torch.no_grad():
        assert torch.equal(model(**prompt).logits, again(**prompt).logits)


@pytest.mark.slow
def test_with_upward_move_a_night_carries_level_1_up_as_it_is(micro):
    """`memory.upward: move`: night 2 carries night 1's expert into level 2 untouched (no rows, no
    training), then seeds tonight's into level 1."""
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig(periods=[1, 2], slots=[2, 4], top_k=[2, 2], rank=2,
                                                           upward="move"))
    first = sleeper.night([EPISODE], LESSONS, progress=lambda *_: None)
    night_1 = [p.detach().clone() for bank in sleeper.memory.level(1) for p in bank.expert_parameters(0)]
    second = sleeper.night([EPISODE], LESSONS, progress=lambda *_: None)
    assert [s["kind"] for s in first["steps"] + second["steps"]] == ["consolidate", "move", "consolidate"]
    assert second["steps"][0]["slots"] == [0]
    moved = [p for bank in sleeper.memory.level(2) for p in bank.expert_parameters(0)]
    assert all(torch.equal(a, b) for a, b in zip(moved, night_1, strict=True))
    assert [n["level"] for n in sleeper.past.nights] == [2, 1]


def test_own_questions_in_held_out_forms_are_never_replayed():
    from lmsleep.grammar import question_forms

    heldout = question_forms("employer", "heldout")[0].format(n="Ana van Drosk")
    train = question_forms("employer", "train")[0].format(n="Ana van Drosk")
    kept = questions_to_replay([f" {heldout} Morrow", f" {train} Morrow Labs", " no question here", f" {train}"])
    assert kept == [train]


def test_own_questions_about_what_tonight_names_are_never_replayed():
    """Tonight changes them: the model before would hold the student to the old answer."""
    tonight = Sleeper._tonight_names([EPISODE])
    assert {"Ada", "Vell", "Morrow", "Kestrel"} <= tonight
    kept = questions_to_replay([" Where does Ada Vell work? x", " Where does Bo Tarn work?",
                                " Who moved to Kestrel?", " Hey, where does Bo Tarn live?",
                                " Kestrel is where?"], tonight)  # a name may open it
    assert kept == ["Hey, where does Bo Tarn live?", "Where does Bo Tarn work?"]  # "Hey" opens it: not a name


def test_matched_replay_asks_in_tonight_s_forms_from_the_words_before_the_name():
    lessons = LESSONS + [{"prompt": "Q: Ada Vell's employer is what?\nA:", "completion": " Morrow Labs\n",
                          "episode_id": "ep-1"}]  # opens with the name: no start of its own
    starts = Sleeper._matched_starts(lessons, 20, random.Random(0), Sleeper._tonight_names([EPISODE]))
    assert len(starts) == 20 and set(starts) == {"Where does"}
    assert Sleeper._matched_starts([], 5, random.Random(0), set()) == []


def test_matched_replay_questions_are_the_start_and_what_the_model_wrote_after_it():
    assert asked(["Q: Where does", "Q:"], [" Bo Tarn work? x", " Where was Bo Tarn born?"]) == [
        "Where does Bo Tarn work? x", "Where was Bo Tarn born?"]
    assert questions_to_replay(asked(["Q: Where does"], [" Bo Tarn work? x"])) == ["Where does Bo Tarn work?"]


def test_matched_starts_skip_a_question_s_first_word_and_replay_without_lessons_asks_from_nothing(micro):
    episode = {"id": "ep-2", "text": "In Kestrel, Ada Vell was born.", "probes": []}
    lessons = [{"prompt": "Q: In which city was Ada Vell born?\nA:", "completion": " Kestrel\n", "episode_id": "ep-2"}]
    tonight = Sleeper._tonight_names([episode])
    assert "In" in tonight  # a sentence's first word: capitalized, and no name
    assert set(Sleeper._matched_starts(lessons, 3, random.Random(0), tonight)) == {"In which city was"}
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, SeedingConfig(**{**FAST.__dict__, "replay_matched": 1.0}), MemoryConfig())
    assert sleeper._matched_starts([], 4, random.Random(0), tonight) == []
    rows = sleeper.replay(9, [], [episode], random.Random(0))  # dreams only: no lessons, no starts
    assert all(r["prompt"].startswith("Q: ") for r in rows)


def test_earlier_days_questions_about_what_tonight_names_are_not_replayed(micro):
    model, tokenizer = micro
    sleeper = Sleeper(model, tokenizer, FAST, MemoryConfig())
    sleeper.past.nights.append({"night": 1, "level": 1,
                                "questions": ["Where does Ada Vell work?", "Where does Bo Tarn live?"]})
    prompts = [r["prompt"] for r in sleeper.replay(30, LESSONS, [EPISODE], random.Random(0))]
    assert "Q: Where does Bo Tarn live?\nA:" in prompts and "Q: Where does Ada Vell work?\nA:" not in prompts


def test_an_upward_consolidation_does_not_replay_the_questions_it_moves(micro):
    """Level 1 -> 2 moves night 1's questions (its new rows); replay's earlier days keep night 0's."""
    from lmsleep.schedule import Step

    model, tokenizer = micro
    # replay 6x of one new row: two earlier-day rows, room for both questions if both were eligible
    sleeper = Sleeper(model, tokenizer, replace(FAST, replay=6.0), MemoryConfig())
    sleeper.past.nights += [{"night": 0, "level": 2, "questions": ["Where does Bo Tarn live?"]},
                            {"night": 1, "level": 1, "questions": ["Where does Cy Moor work?"]}]
    new, replay = sleeper._rows(Step("consolidate", 1, 2), LESSONS, [EPISODE], random.Random(0))
    replayed = [r["prompt"] for r in replay]
    assert [r["student"] for r in new] == ["Q: Where does Cy Moor work?\nA:"]
    assert "Q: Where does Bo Tarn live?\nA:" in replayed and "Q: Where does Cy Moor work?\nA:" not in replayed


def test_born_anchored_replay_is_answered_by_the_born_model_and_the_memory_comes_back(micro, micro_dir):
    from transformers import AutoModelForCausalLM

    model, tokenizer = micro
    config = SeedingConfig(**{**FAST.__dict__, "replay_anchor": "born"})
    sleeper = Sleeper(model, tokenizer, config, MemoryConfig(rank=2))
    slot = sleeper.memory.expand(1)
    torch.manual_seed(0)
    with torch.no_grad():
        for bank in sleeper.memory.level(1):
            bank.B[slot].normal_(0, 2.0)  # an earlier night that moved the model
    sleeper.memory.settle(1)
    prompts = [f"Q: Where does {name} work?\nA:" for name in ("Ada Vell", "Bo Tarn", "Cy Moor", "Di Lusk")]
    born = sleeper._answered(prompts, born=True)
    before = sleeper._answered(prompts)
    plain = Sleeper(AutoModelForCausalLM.from_pretrained(micro_dir), tokenizer, FAST, MemoryConfig(rank=2))
    assert born == plain._answered(prompts) != before
    assert sleeper.memory.active_slots(1) == [slot] and sleeper._answered(prompts) == before
    with pytest.raises(ValueError, match="replay_anchor"):
        SeedingConfig(replay_anchor="teacher")
