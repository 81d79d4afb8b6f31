"""Each baseline really trains a micro model (TRL/PEFT, no mocks) and moves its closed-book loss."""

import pytest

from lmsleep import baselines as bl
from lmsleep.keys import text_names
from lmsleep.world import closed_book_prompt, question_of

CONFIG = bl.BaselineConfig(lora_r=8, lora_alpha=16, learning_rate=1e-2, epochs=20, batch_size=8,
                           self_questions=4.0, seed=0)  # a random micro teacher asks few well-formed questions


def completion_loss(model, tokenizer, rows) -> float:
    """Mean loss of `completion` given `prompt` (no context): what the weights hold."""
    import torch

    total = 0.0
    model.eval()
    with torch.no_grad():
        for r in rows:
            prompt = tokenizer(r["prompt"])["input_ids"]
            ids = tokenizer(r["prompt"] + r["completion"])["input_ids"]
            labels = [-100] * len(prompt) + ids[len(prompt):]
            total += model(input_ids=torch.tensor([ids]), labels=torch.tensor([labels])).loss.item()
    return total / len(rows)


def new_facts(episodes):
    """The facts as closed-book lessons: a stand-in for a perfect teacher (and the loss's yardstick).
    Tests only: no training path in lmsleep builds lessons from probes."""
    return [{"prompt": closed_book_prompt(p["question"]), "completion": f" {p['answer']}\n"}
            for ep in episodes for p in ep["probes"]]


def fact_gain(train, model, tokenizer, world):
    """Closed-book loss drop on day 0's facts (trained on) and on day 1's (a control)."""
    new, control = new_facts(world.day(0)), new_facts(world.day(1))
    before = completion_loss(model, tokenizer, new), completion_loss(model, tokenizer, control)
    model = train(model, tokenizer, world.day(0), CONFIG)
    return before[0] - completion_loss(model, tokenizer, new), before[1] - completion_loss(model, tokenizer, control)


def test_sft_text_lowers_closed_book_loss_on_new_facts(micro, micro_world):
    # Raw text is not Q/A, so a random micro model learns the facts' values only a little; the
    # control day shows the drop is about these facts, not the answer format.
    new, control = fact_gain(bl.sft_text, *micro, micro_world)
    assert new > 0.1 and new > control + 0.05, (new, control)


def test_teacher_curriculum_is_answered_in_context_and_asked_without(micro, micro_world):
    model, tokenizer = micro
    episodes = micro_world.day(0)
    rows, dropped = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    ids = {ep["id"] for ep in episodes}
    assert rows and all(r["episode_id"] in ids for r in rows)
    for r in rows:
        assert r["prompt"].startswith("Q: ") and r["prompt"].endswith("\nA:")
        assert not any(ep["text"] in r["prompt"] for ep in episodes)
        assert r["completion"].startswith(" ") and r["completion"].endswith("\n")
    assert all(d["reason"] for d in dropped)


def test_teacher_curriculum_drops_questions_that_misname_the_episode_s_people(micro, micro_world):
    """Same seed, same questions: with `drop_misnamed` the lessons are those whose names the
    episode spells so, and the rest are dropped with the reason."""
    from dataclasses import replace

    from lmsleep.world import misnamed, question_of

    model, tokenizer = micro
    episodes = micro_world.day(0)
    text = {ep["id"]: ep["text"] for ep in episodes}
    every, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    kept, dropped = bl.teacher_curriculum(model, tokenizer, episodes, replace(CONFIG, drop_misnamed=True),
                                          drop_ungrounded=False)
    said = {(r["episode_id"], r["prompt"]) for r in every if not misnamed(question_of(r["prompt"]), text[r["episode_id"]])}
    assert {(r["episode_id"], r["prompt"]) for r in kept} == said
    misnamed_rows = [d for d in dropped if d["reason"].startswith("question names")]
    assert len(misnamed_rows) == len(every) - len(kept) > 0


def test_windows_are_the_episode_or_its_paragraphs():
    text = "Ada Vell works for Morrow Labs. Bo Tarn lives in Kestrel.\n\nBo Tarn studied law.\n"
    assert bl.windows(text) == [text]
    assert bl.windows(text, "paragraph") == ["Ada Vell works for Morrow Labs. Bo Tarn lives in Kestrel.",
                                             "Bo Tarn studied law."]
    assert bl.windows("One line only.", "paragraph") == ["One line only."]
    with pytest.raises(ValueError, match="baselines.window"):
        bl.BaselineConfig(window="sentence")


def test_a_paragraph_window_asks_and_answers_from_the_paragraph(micro, micro_world):
    """With `window: paragraph` each lesson's context is one paragraph of its episode (what the
    teacher read when it asked and answered), and an episode of several paragraphs is read in parts."""
    from dataclasses import replace

    model, tokenizer = micro
    episodes = micro_world.day(0)
    assert any("\n" in ep["text"] for ep in episodes)  # the micro world's day has multi-paragraph episodes
    text = {ep["id"]: ep["text"] for ep in episodes}
    whole, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    assert whole and not any("context" in r for r in whole)  # the episode: what seeding's teacher reads anyway
    parts, _ = bl.teacher_curriculum(model, tokenizer, episodes, replace(CONFIG, window="paragraph"),
                                     drop_ungrounded=False)
    read = [r for r in parts if "context" in r]
    assert read and all(r["context"] in bl.windows(text[r["episode_id"]], "paragraph") for r in read)
    assert all(r["context"] != text[r["episode_id"]] for r in read)
    many = {ep["id"] for ep in episodes if "\n" in ep["text"].strip()}
    assert all(r["episode_id"] in many for r in read)
    assert all(r["episode_id"] not in many or "context" in r for r in parts)


def test_an_episode_s_questions_are_shared_among_its_paragraphs():
    """Paragraph windows ask as many questions of an episode as the whole does (2 per sentence
    here), each paragraph by its sentences, and the episode's cap of 64 still holds."""
    text = "A b. C d. E f.\nG h.\n"
    config = bl.BaselineConfig(self_questions=2.0, window="paragraph")
    assert bl._asks(text, config) == [("A b. C d. E f.", 6), ("G h.", 2)]
    assert bl._asks(text, bl.BaselineConfig(self_questions=2.0)) == [(text, 8)]
    long = "\n".join(["One. Two."] * 40)  # 80 sentences: 160 questions, capped at 64
    assert [n for _, n in bl._asks(long, config)] == [1] * 40


def test_teacher_curriculum_never_reads_probes(micro, micro_world):
    """The same episodes with their probes and meta stripped give the very same lessons."""
    model, tokenizer = micro
    episodes = micro_world.day(0)
    bare = [{k: v for k, v in ep.items() if k not in ("probes", "meta")} for ep in episodes]
    with_exam = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    without = bl.teacher_curriculum(model, tokenizer, bare, CONFIG, drop_ungrounded=False)
    assert with_exam == without


def test_checks_are_set_aside_for_probe_less_episodes_only():
    lessons = [{"prompt": f"Q: q{i}?\nA:", "completion": f" a{i}\n", "episode_id": "mine" if i < 8 else "world"}
               for i in range(12)]
    taught, checks = bl.set_aside_checks(lessons, {"mine"}, 0.25, seed=0)
    assert len(checks) == 2 and all(c["episode_id"] == "mine" for c in checks)
    assert {c["question"] for c in checks} <= {f"q{i}?" for i in range(8)}
    assert not {f"Q: {c['question']}\nA:" for c in checks} & {r["prompt"] for r in taught}
    assert len(taught) == 10 and sum(r["episode_id"] == "world" for r in taught) == 4
    assert bl.set_aside_checks(lessons, {"mine"}, 0.25, seed=0) == (taught, checks)
    assert bl.set_aside_checks(lessons, {"mine"}, 0.0, seed=0) == (lessons, [])  # a share of 0 sets none aside


def test_checks_set_aside_by_answer_take_every_lesson_with_that_answer():
    """Three answers asked three ways each: by answer, a whole answer goes (no lesson teaches
    a held-out check's answer); by question, some held-out answer is still taught."""
    lessons = [{"prompt": f"Q: q{a}-{w}?\nA:", "completion": f" A{a}\n", "episode_id": "ep"}
               for a in range(4) for w in range(3)]
    taught, checks = bl.set_aside_checks(lessons, {"ep"}, 0.25, seed=0, by_answer=True)
    assert len(checks) == 3 and len({c["answer"] for c in checks}) == 1
    assert not {c["answer"] for c in checks} & {r["completion"].strip() for r in taught}
    assert len(taught) == 9
    leaked = [bl.set_aside_checks(lessons, {"ep"}, 0.25, seed=s)[0:2] for s in range(5)]
    assert any({c["answer"] for c in ch} & {r["completion"].strip() for r in ta} for ta, ch in leaked)


def test_context_distillation_lowers_closed_book_loss_on_new_facts(micro, micro_world):
    # A random micro model is no reader, so the teacher here is a perfect one: the true answers.
    def distil(model, tokenizer, episodes, config):
        return bl.context_distillation(model, tokenizer, episodes, config, curriculum=new_facts(episodes))

    new, control = fact_gain(distil, *micro, micro_world)
    assert new > 0.5 and new > control + 0.3, (new, control)


def test_context_distillation_lowers_closed_book_loss_on_the_teachers_facts(micro, micro_world):
    model, tokenizer = micro
    episodes = micro_world.day(0)
    curriculum, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    before = completion_loss(model, tokenizer, curriculum)
    assert curriculum, "the micro teacher asked nothing"
    model = bl.context_distillation(model, tokenizer, episodes, CONFIG, curriculum=curriculum)
    after = completion_loss(model, tokenizer, curriculum)
    assert after < before - 0.1, (before, after)


def test_context_distillation_keeps_training_one_adapter(micro, micro_world):
    from peft import PeftModel

    model, tokenizer = micro
    model = bl.context_distillation(model, tokenizer, micro_world.day(0), CONFIG, curriculum=new_facts(micro_world.day(0)))
    assert isinstance(model, PeftModel)
    model = bl.context_distillation(model, tokenizer, micro_world.day(1), CONFIG, curriculum=new_facts(micro_world.day(1)))
    assert list(model.peft_config) == ["default"]


def test_sequential_merge_leaves_plain_weights_that_learned(micro, micro_world):
    from peft import PeftModel

    model, tokenizer = micro
    episodes = micro_world.day(0)
    curriculum, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    before = completion_loss(model, tokenizer, curriculum)
    n_params = sum(p.numel() for p in model.parameters())
    merged = bl.sequential_merge(model, tokenizer, episodes, CONFIG, curriculum)
    assert not isinstance(merged, PeftModel)
    assert sum(p.numel() for p in merged.parameters()) == n_params
    assert completion_loss(merged, tokenizer, curriculum) < before - 0.1


def test_none_sleeps_without_learning_and_unknown_methods_fail(micro, micro_world):
    model, tokenizer = micro
    assert bl.consolidate("none", model, tokenizer, micro_world.day(0), CONFIG) is model
    with pytest.raises(ValueError, match="unknown consolidation method 'dream'"):
        bl.consolidate("dream", model, tokenizer, micro_world.day(0), CONFIG)


def test_missing_target_modules_is_a_clear_error(micro, micro_world):
    model, tokenizer = micro
    config = bl.BaselineConfig(target_modules=["nope"])
    with pytest.raises(ValueError, match="target_modules"):
        bl.sft_text(model, tokenizer, micro_world.day(0), config)


def test_baselines_run_on_gpt2_architecture(tmp_path, micro_world):
    """A second HF architecture: the same night on a micro GPT-2."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from lmsleep.birth import train_tokenizer

    tokenizer = train_tokenizer(micro_world, 400, n_docs=400)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=48, n_layer=2, n_head=2,
                                       n_positions=512, bos_token_id=tokenizer.bos_token_id,
                                       eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    episodes = micro_world.day(0)
    curriculum, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    before = completion_loss(model, tokenizer, curriculum)
    merged = bl.sequential_merge(model, tokenizer, episodes, CONFIG, curriculum)
    assert isinstance(merged, GPT2LMHeadModel)
    assert completion_loss(merged, tokenizer, curriculum) < before - 0.2


def test_checks_go_back_to_the_lessons_they_were_set_aside_from():
    lessons = [{"prompt": f"Q: Where does Ada Vell work {i}?\nA:", "completion": f" Morrow {i}\n", "episode_id": "ep-1"}
               | ({"context": f"paragraph {i}"} if i % 2 else {}) for i in range(8)]
    taught, checks = bl.set_aside_checks(lessons, {"ep-1"}, 0.5, seed=0)
    assert len(checks) == 4 and sorted(map(str, taught + bl.checks_as_lessons(checks))) == sorted(map(str, lessons))
    # and lessons as the checks they would be: the closed-book question, the answer
    assert [(c["question"], c["answer"]) for c in bl.lessons_as_checks(lessons[:2])] == [
        ("Where does Ada Vell work 0?", "Morrow 0"), ("Where does Ada Vell work 1?", "Morrow 1")]
    assert sorted(map(str, bl.checks_as_lessons(bl.lessons_as_checks(lessons)))) == sorted(map(str, lessons))
    assert bl.lessons_as_checks([{"prompt": "In other words:", "completion": " x\n", "episode_id": "ep-1"}]) == []


def test_every_name_a_window_states_is_owed_its_questions():
    """`ask_each_name`: each name of two or more words in a window is asked about at least that
    often; one word alone ("Update") is not a name here."""
    ep = {"id": "e"}
    text = "Update: Ana van Drosk left Morrow Labs. Ben Kay was born in 1980."
    owners = [(ep, text)] * 3
    questions = [(ep, text, "Where does Ana van Drosk work?"), (ep, "another window", "Who is Ben Kay?")]
    owed = bl.unasked_names(owners, questions, 2)
    assert [name for _, _, name in owed] == ["Ana van Drosk", "Morrow Labs", "Morrow Labs", "Ben Kay", "Ben Kay"]
    assert all(t == text for _, t, _ in owed)
    assert bl.unasked_names(owners, questions, 0) == []
    values = bl.unasked_names(owners, questions, 2, answers=[" Morrow Labs\n"])  # an answer: a value, not a subject
    assert [name for _, _, name in values] == ["Ana van Drosk", "Ben Kay", "Ben Kay"]


def test_owed_by_distinct_answers_counts_the_facts_taught():
    """`ask_distinct`: a name is owed until its lessons give that many different answers; three
    lessons with one answer teach one fact."""
    ep = {"id": "e"}
    text = "Ana van Drosk was born in 1980 in Fiamrel."
    questions = [(ep, text, "When was Ana van Drosk born?"), (ep, text, "Ana van Drosk's birth year is what?"),
                 (ep, text, "Which year is Ana van Drosk's natal year?")]
    answers = [" 1980\n", " 1980\n", " 1980.\n"]  # compared normalized
    assert bl.unasked_names([(ep, text)], questions, 3, answers) == []
    owed = bl.unasked_names([(ep, text)], questions, 3, answers, distinct=True)
    assert [name for _, _, name in owed] == ["Ana van Drosk"] * 2
    assert bl.unasked_names([(ep, text)], questions[:1] + [(ep, text, "Where was Ana van Drosk born?")], 2,
                            [" 1980\n", " Fiamrel\n"], distinct=True) == []


def test_respell_gives_a_question_the_names_as_the_episode_spells_them():
    text = ("The birthplace of Chexzol Korkdeir-Rarbreir is Bonheindzo. Chexzol works at Korkzeith Motors. "
            "Ana Vell was born in 1980.")
    assert bl.respell("I wonder, Chexzol Korkdeir-Rarza's home town is what?", text) == (
        "I wonder, Chexzol Korkdeir-Rarbreir's home town is what?")  # a syllable changed
    assert bl.respell("Where does Chexzol work?", text) == "Where does Chexzol Korkdeir-Rarbreir work?"  # one word
    assert bl.respell("Where is Korkzeith based?", text) == "Where is Korkzeith Motors based?"
    for same in ("What is Chexzol Korkdeir-Rarbreir's firm?",  # spelled as the text does
                 "Who is Brairk Vlouthpil?"):  # close to no one
        assert bl.respell(same, text) == same
    # Ambiguous, left as they are: one word two names begin with, a name as close to two people.
    assert bl.respell("Where does Ana work?", text + " Ana Kay was born in 1981.") == "Where does Ana work?"
    assert bl.respell("Who is Ana Vel?", text + " Ana Vela was born in 1981.") == "Who is Ana Vel?"


def test_an_owed_question_asks_about_its_name_alone():
    """Begun with a company, the teacher asks about a relation ("Morrow Labs employs Ana Vell?"):
    dropped, it would key tonight's expert on the company."""
    assert bl.about_alone("Ana van Drosk works at which company?", "Ana van Drosk")
    assert bl.about_alone("Ana van Drosk's birth year is what?", "Ana van Drosk")
    assert not bl.about_alone("Morrow Labs employs Ana Vell?", "Morrow Labs")
    assert not bl.about_alone("Ana Vell left Morrow Labs for which company?", "Ana Vell")
    assert not bl.about_alone("Ana Vell works with Ben?", "Ana Vell")  # one capitalized word is someone too


def test_the_teacher_asks_about_the_names_it_skipped(micro, micro_world):
    """The free questions are sampled as before; the owed ones are begun with the name."""
    from dataclasses import replace

    model, tokenizer = micro
    episodes = micro_world.day(0)
    free, _ = bl.teacher_curriculum(model, tokenizer, episodes, CONFIG, drop_ungrounded=False)
    named, _ = bl.teacher_curriculum(model, tokenizer, episodes, replace(CONFIG, ask_each_name=3),
                                     drop_ungrounded=False)
    assert named[:len(free)] == free
    extra = named[len(free):]
    assert extra, "a random micro teacher still ends some name-begun samples with a question mark"
    text = {ep["id"]: ep["text"] for ep in episodes}
    assert all(any(r["prompt"].startswith(f"Q: {n}") and bl.about_alone(question_of(r["prompt"]), n)
                   for n in text_names(text[r["episode_id"]])) for r in extra)
    with pytest.raises(ValueError, match="ask_each_name"):
        bl.BaselineConfig(ask_each_name=-1)
    with pytest.raises(ValueError, match="ask_rounds"):
        bl.BaselineConfig(ask_rounds=0)


def test_more_rounds_ask_again_what_the_first_left_owed(micro, micro_world):
    """`ask_rounds`: a round after the first asks again, begun with the name, what is still owed;
    what the first round taught and dropped stays as it was. (A random micro teacher's answers
    are one string, so every name stays owed, and most of its questions are dropped.)"""
    from dataclasses import replace

    model, tokenizer = micro
    episodes = micro_world.day(0)
    config = replace(CONFIG, ask_each_name=3, ask_distinct=True)
    one, gone_one = bl.teacher_curriculum(model, tokenizer, episodes, config, drop_ungrounded=False)
    three, gone_three = bl.teacher_curriculum(model, tokenizer, episodes, replace(config, ask_rounds=3),
                                              drop_ungrounded=False)
    assert three[:len(one)] == one and gone_three[:len(gone_one)] == gone_one
    later = three[len(one):] + gone_three[len(gone_one):]
    assert later, "the later rounds asked nothing"
    text = {ep["id"]: ep["text"] for ep in episodes}
    assert all(any(r["prompt"].startswith(f"Q: {n}") for n in text_names(text[r["episode_id"]])) for r in later)
