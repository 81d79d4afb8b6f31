import torch

from lmsleep.keys import breaks_at, key_ids, name_runs, night_keys, passage_breaks, seen, text_names
from lmsleep.memory import Memory, MemoryConfig


def test_name_runs_keep_particles_inside_names_and_leave_question_words_out():
    assert name_runs("Where was Ana van Drosk born?") == ["Ana van Drosk"]
    assert name_runs("Quick question: Which company does Bo Vell-Tor work for?") == ["Bo Vell-Tor"]
    assert name_runs("Ada Vell works at Morrow Labs in Fiamrel.") == ["Ada Vell", "Morrow Labs", "Fiamrel"]
    assert name_runs("Is Ada the one?") == ["Ada"]  # a particle needs a name after it


def test_night_keys_are_tonight_questions_names_as_the_text_spells_them():
    text = "Ada Vell was born in Fiamrel."
    rows = [{"student": "Q: Where was Ada Vell born?\nA:", "teacher": f"{text}\n\nQ: Where was Ada Vell born?\nA:",
             "completion": " Fiamrel\n", "kind": "question"},
            # misspelled by the model: keys nothing
            {"student": "Q: Where was Ada Vel born?\nA:", "teacher": f"{text}\n\nQ: Where was Ada Vel born?\nA:",
             "completion": " Fiamrel\n", "kind": "question"},
            # replay: someone else's question keys nothing
            {"student": "Q: Where was Kor Dun born?\nA:", "teacher": "Q: Where was Kor Dun born?\nA:",
             "completion": " Bivur\n", "kind": "replay"},
            # one word alone keys nothing: as a token prefix "Ada" would open on "Adamsky" too
            {"student": "Q: Where was Ada born?\nA:", "teacher": f"{text}\n\nQ: Where was Ada born?\nA:",
             "completion": " Fiamrel\n", "kind": "question"}]
    assert night_keys(rows) == ["Ada Vell"]


def test_seen_is_causal_and_matches_either_spelling(micro):
    _, tokenizer = micro
    keys = key_ids(tokenizer, ["Ada Vell"])
    for text in ("Q: Where was Ada Vell born?", "Ada Vell was born here."):
        ids = tokenizer(text, return_tensors="pt")["input_ids"]
        mask = seen(ids, keys)[0].tolist()
        first = mask.index(True)  # the key's last token, and every token after it
        assert not any(mask[:first]) and all(mask[first:])
        assert tokenizer.decode(ids[0, : first + 1]).endswith("Ada Vell")
    other = tokenizer("Q: Where was Kor Dun born?", return_tensors="pt")["input_ids"]
    assert not seen(other, keys).any()


def test_a_blank_line_ends_a_passage_in_either_kind_of_vocabulary(micro):
    _, tokenizer = micro
    breaks = passage_breaks(tokenizer)
    for text, blank_after in (("A note.\n\nQ: Who?", "A note.\n\n"), ("One\ntwo\nthree", None)):
        ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        at = breaks_at(ids, breaks)[0].tolist()
        want = [tokenizer.decode(ids[0, : t + 1]) == blank_after for t in range(ids.shape[1])]
        assert at == want
    # A vocabulary with one token for a blank line (GPT-2's "\n\n") and one ending a line (".\n").
    gpt2 = {"blank": [7], "ends": [5], "starts": [6]}
    history = torch.tensor([[1, 5, 6, 2, 7, 3, 6, 4]])  # "x.\n" "\n" ... "\n\n" ... a lone "\n"
    assert breaks_at(history, gpt2)[0].tolist() == [False, False, True, False, True, False, False, False]


def test_a_key_opens_its_passage_only(micro):
    """A note that names a keyed name opens the expert until the blank line before the question; a
    question that names it opens it again."""
    _, tokenizer = micro
    keys, breaks = key_ids(tokenizer, ["Morrow Labs"]), passage_breaks(tokenizer)
    note, question = "Ana Vell works at Morrow Labs.", "\n\nQ: Where does Ana Vell work?\nA:"
    for asked, opens_again in ((question, False), (question.replace("Ana Vell", "Morrow Labs"), True)):
        ids = tokenizer(note + asked, add_special_tokens=False, return_tensors="pt")["input_ids"]
        open_, scoped = seen(ids, keys)[0].tolist(), seen(ids, keys, breaks=breaks)[0].tolist()
        first = open_.index(True)
        blank = next(t for t in range(ids.shape[1]) if tokenizer.decode(ids[0, : t + 1]).endswith("\n\n"))
        assert all(open_[first:])  # without passages: open to the end
        assert scoped[:blank] == open_[:blank] and not any(scoped[blank:blank + 3])
        assert scoped[-1] == opens_again


def test_seen_equals_a_window_by_window_search():
    import random

    rng = random.Random(0)
    history = torch.randint(0, 6, (8, 50), generator=torch.Generator().manual_seed(0))
    keys = [[rng.randrange(6) for _ in range(rng.randint(1, 4))] for _ in range(5)]
    want = torch.tensor([[any(t + 1 >= len(k) and row[t + 1 - len(k):t + 1] == k for k in keys) for t in range(50)]
                         for row in history.tolist()])
    assert torch.equal(seen(history, keys), want.int().cummax(dim=1).values.bool())


def _teach(memory, slot, model, ids, steps=3):
    params = memory.train_only(1, slot)
    opt = torch.optim.AdamW(params, lr=1e-2)
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()


def _keyed(micro):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(keyed=True))
    slot = memory.expand(1)
    memory.set_keys(1, slot, ["Ada Vell"], key_ids(tokenizer, ["Ada Vell"]))
    memory.breaks = passage_breaks(tokenizer)
    ids = tokenizer("Ada Vell works for Morrow Labs.", return_tensors="pt")["input_ids"]
    _teach(memory, slot, model, ids)
    memory.settle()
    return model, tokenizer, memory


def test_a_keyed_expert_acts_only_after_its_names(micro):
    model, tokenizer = micro
    plain = {}
    texts = {"other": "Q: Where does Kor Dun work?\nA:", "named": "Q: Where does Ada Vell work?\nA:"}
    for k, t in texts.items():
        with torch.no_grad():
            plain[k] = model(**tokenizer(t, return_tensors="pt")).logits
    model, tokenizer, memory = _keyed((model, tokenizer))
    with torch.no_grad():
        other = model(**tokenizer(texts["other"], return_tensors="pt")).logits
        ids = tokenizer(texts["named"], return_tensors="pt")["input_ids"]
        named = model(input_ids=ids).logits
    assert torch.equal(other, plain["other"])  # shut: exactly the model without memory
    first = seen(ids, memory.keys[1][0][1])[0].tolist().index(True)
    assert torch.equal(named[:, :first], plain["named"][:, :first])  # before the name: shut
    assert not torch.allclose(named[:, first:], plain["named"][:, first:])  # from it on: open


def test_keyed_generation_keeps_its_kv_cache(micro):
    model, tokenizer, _ = _keyed(micro)
    tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    enc = tokenizer(["Q: Where does Ada Vell work?\nA:", "Q: Who?\nA:"], return_tensors="pt", padding=True)
    kw = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    assert torch.equal(model.generate(**enc, use_cache=True, **kw), model.generate(**enc, use_cache=False, **kw))


def test_keys_survive_save_load_merge_and_condense(micro, micro_dir, tmp_path):
    model, tokenizer, memory = _keyed(micro)
    memory.save(tmp_path)
    ids = tokenizer("Q: Where does Ada Vell work?\nA:", return_tensors="pt")["input_ids"]
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(micro_dir)
    loaded = Memory.load(again, tmp_path)
    assert loaded.keys == memory.keys and loaded.breaks == memory.breaks
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)
    memory.nights = 1
    second = memory.expand(1)
    memory.set_keys(1, second, ["Kor Dun"], key_ids(tokenizer, ["Kor Dun"]))
    memory.settle()
    gone = memory.merge_oldest(1)  # the two into the older slot: keyed on both
    assert list(memory.keys[1]) == [next(i for i in (0, second) if i != gone)]
    assert next(iter(memory.keys[1].values()))[0] == ["Ada Vell", "Kor Dun"]
    up = memory.expand(2)
    memory.condense(1, 2, up)
    assert memory.keys[2][up][0] == ["Ada Vell", "Kor Dun"]
    memory.reset(1)
    assert 1 not in memory.keys


def test_a_shut_expert_takes_no_top_k_seat(micro):
    from lmsleep.seeding import muted

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(slots=[3, 2], top_k=[1, 1], keyed=True))
    text = tokenizer("Kor Dun works for Morrow Labs.", return_tensors="pt")["input_ids"]
    slots = []
    for night, name in enumerate(["Ada Vell", "Kor Dun"]):
        memory.nights = night
        slot = memory.expand(1)
        memory.set_keys(1, slot, [name], key_ids(tokenizer, [name]))
        _teach(memory, slot, model, text)
        memory.settle()
        slots.append(slot)
    with torch.no_grad():
        both = model(input_ids=text).logits
        with muted(memory, {1: [slots[0]]}):
            alone = model(input_ids=text).logits
        with muted(memory, {1: slots}):
            none = model(input_ids=text).logits
    # Ada Vell's expert is shut on this text: Kor Dun's holds the one seat wherever it is open (a
    # seat taken by the shut expert moves the logits by ~1; fp32 rounding of the two paths ~1e-7).
    assert torch.allclose(both, alone, rtol=0, atol=1e-6) and not torch.allclose(both, none, rtol=0, atol=1e-2)


def test_a_text_s_names_stop_at_punctuation():
    """In running text a name ends at a full stop or a colon; one capitalized word alone is not one."""
    text = "Update: Drilzail is employed by Durkmux Foods. Drethras Brabian-Zourkpu was born in 1955."
    assert text_names(text) == ["Durkmux Foods", "Drethras Brabian-Zourkpu"]
    assert name_runs(text)[0] == "Update Drilzail"  # what name_runs alone would say
