import pytest
import torch

from lmsleep.memory import Memory, MemoryConfig, find_mlps
from lmsleep.schedule import Step, plan, simulate


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def _ids(tokenizer):
    return tokenizer(["Ada Vell works for Morrow Labs.", "Q: Where does Ada Vell work?\nA:"], return_tensors="pt",
                     padding=True)["input_ids"]


def _teach(memory, level, slot, model, ids, steps=3, lr=1e-2):
    """A few real steps that move one expert (a stand-in objective: language modelling)."""
    params = memory.train_only(level, slot)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()


def test_expand_is_function_preserving(micro):
    model, tokenizer = micro
    ids = _ids(tokenizer)
    before = _logits(model, ids)
    memory = Memory.attach(model, MemoryConfig(slots=[3, 2], top_k=[1, 1]))
    assert torch.equal(_logits(model, ids), before)
    slot = memory.expand(1)
    assert torch.equal(_logits(model, ids), before)
    _teach(memory, 1, slot, model, ids)
    memory.settle()
    moved = _logits(model, ids)
    assert not torch.allclose(moved, before)
    # A second expert on a level whose top-k (1) is already taken: the seeding seat keeps the old
    # expert's seat. (Equal up to fp32 rounding: MKL's sums may depend on memory alignment.)
    memory.expand(1)
    assert torch.allclose(_logits(model, ids), moved, rtol=0, atol=1e-6)


def test_only_the_new_expert_changes_in_a_step(micro):
    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig())
    _teach(memory, 1, memory.expand(1), model, ids)
    memory.settle()
    memory.nights = 1
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    new = memory.expand(1)
    _teach(memory, 1, new, model, ids)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    expected = {n for n, _ in model.named_parameters()
                if n.endswith((f".0.A.{new}", f".0.B.{new}", f".0.router.{new}"))}
    assert changed == expected and len(expected) == 3 * len(memory.mlps)


def test_top_k_bounds_the_experts_a_token_uses(micro):
    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig(slots=[4, 2], top_k=[2, 1]))
    for night in range(4):
        memory.nights = night
        _teach(memory, 1, memory.expand(1), model, ids, steps=1)
        memory.settle()
    bank = memory.level(1)[0]
    seen = []
    bank.register_forward_hook(lambda m, a, o: seen.append(a[0]))
    _logits(model, ids)
    x = seen[0].reshape(-1, seen[0].shape[-1])
    # Recompute what the bank should output with only the top-2 experts per token.
    logits = torch.stack([x @ bank.router[i][:-1] + bank.router[i][-1] for i in range(4)], dim=-1)
    top = logits.topk(2, dim=-1).indices
    expected = torch.zeros_like(x)
    for t in range(len(x)):
        for i in top[t].tolist():
            expected[t] += torch.sigmoid(logits[t, i]) * (x[t] @ bank.A[i] @ bank.B[i])
    assert torch.allclose(bank(seen[0]).reshape(-1, x.shape[-1]), expected, atol=1e-6)
    c = memory.counts()
    assert c["active_experts"] == 4 and c["per_token_parameters"] * 2 == c["active_parameters"]


def test_save_load_round_trips_exactly(micro, micro_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig())
    for night in range(3):
        memory.nights = night
        _teach(memory, 1, memory.expand(1), model, ids, steps=1)
        memory.settle()
    memory.nights = 3
    memory.save(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(micro_dir)
    loaded = Memory.load(again, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    assert torch.allclose(_logits(again, ids), _logits(model, ids), rtol=0, atol=1e-6)
    assert loaded.state() == memory.state()
    assert all(not p.requires_grad for p in again.parameters())


def test_reset_and_merge_free_slots(micro):
    model, tokenizer = micro
    ids = _ids(tokenizer)
    before = _logits(model, ids)
    memory = Memory.attach(model, MemoryConfig(slots=[2, 3], top_k=[2, 3], rank=4))
    for night in range(3):
        memory.nights = night
        _teach(memory, 2, memory.expand(2), model, ids, steps=2)
        memory.settle()
    oldest = memory.active_slots(2)
    bank = memory.level(2)[0]
    parts = [(bank.A[i] @ bank.B[i]).clone() for i in oldest[:2]]
    freed = memory.merge_oldest(2)
    assert freed == oldest[1] and memory.free_slots(2) == 1
    merged = bank.A[oldest[0]] @ bank.B[oldest[0]]
    # rank 4 + rank 4 -> rank 4: the best approximation of the sum, no worse than keeping either
    error = torch.linalg.norm(parts[0] + parts[1] - merged)
    assert error <= min(torch.linalg.norm(parts[0]), torch.linalg.norm(parts[1])) + 1e-5
    memory.reset(2)
    assert memory.active_slots(2) == [] and torch.equal(_logits(model, ids), before)


def test_two_experts_of_one_night_start_apart_and_a_nights_first_as_it_always_has(micro):
    """`rehearse_into: new` expands twice a night: the second expert draws its own A. The
    first of a night draws from the seed it always had, so every night measured keeps its init."""
    import math

    model, _ = micro
    memory = Memory.attach(model, MemoryConfig(slots=[3, 2], rank=2))
    memory.nights = 3
    first = memory.expand(1)
    memory.settle(1)
    second = memory.expand(1)
    bank = memory.level(1)[0]
    assert not torch.equal(bank.A[first], bank.A[second])
    g = torch.Generator().manual_seed(memory.config.init_seed * 1_000_003 + 3 * 101 + 1)
    bound = 1 / math.sqrt(bank.A[first].shape[0])
    assert torch.equal(bank.A[first], torch.rand(bank.A[first].shape, generator=g).mul_(2 * bound).sub_(bound))
    memory.nights = 4  # the next night's first draws afresh, whatever the night before held
    third = memory.expand(1)
    assert not torch.equal(bank.A[third], bank.A[first]) and not torch.equal(bank.A[third], bank.A[second])


def test_a_full_level_refuses_to_expand(micro):
    model, _ = micro
    memory = Memory.attach(model, MemoryConfig(slots=[2, 2]))
    memory.expand(1)
    memory.expand(1)
    with pytest.raises(RuntimeError, match="level 1 is full"):
        memory.expand(1)


def test_a_kept_copy_is_the_expert_as_it_was_and_off_until_switched_on(micro):
    from lmsleep.seeding import muted

    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig(slots=[2, 2], rank=4))
    slot = memory.expand(1)
    _teach(memory, 1, slot, model, ids)
    was = _logits(model, ids)
    copy = memory.copy_expert(1, slot)
    assert copy != slot and memory.active_slots(1) == [slot]  # off: the model is unchanged
    assert torch.equal(_logits(model, ids), was)
    _teach(memory, 1, slot, model, ids)
    assert not torch.allclose(_logits(model, ids), was)
    with muted(memory, {1: [slot]}, on={1: [copy]}):
        assert torch.allclose(_logits(model, ids), was, rtol=0, atol=1e-6)
    assert memory.active_slots(1) == [slot]  # the view flips back
    memory.clear(1, copy)
    bank = memory.level(1)[0]
    assert int(bank.born[copy]) == -1 and not any(p.any() for p in bank.expert_parameters(copy))
    with pytest.raises(ValueError, match="no active expert"):
        memory.copy_expert(1, copy)
    memory.expand(1)
    with pytest.raises(RuntimeError, match="level 1 is full"):
        memory.copy_expert(1, slot)


def test_find_mlps_names_the_modules_when_it_finds_none(micro):
    model, _ = micro
    assert len(find_mlps(model)) == model.config.num_hidden_layers
    with pytest.raises(ValueError, match=r"layer modules: \[.*'mlp'.*'self_attn'"):
        find_mlps(model, ["feedforward"])


def test_gpt2_gets_memory_too():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=50, n_positions=32)).eval()
    ids = torch.randint(0, 50, (1, 8))
    before = _logits(model, ids)
    memory = Memory.attach(model)
    memory.expand(1)
    assert [n for n, _ in memory.mlps] == ["transformer.h.0.mlp", "transformer.h.1.mlp"]
    assert torch.equal(_logits(model, ids), before)


def test_generation_keeps_its_kv_cache(micro):
    model, tokenizer = micro
    ids = _ids(tokenizer)[:1]
    memory = Memory.attach(model)
    _teach(memory, 1, memory.expand(1), model, ids)
    out = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=True)
    no_cache = model.generate(ids, max_new_tokens=5, do_sample=False, use_cache=False)
    assert torch.equal(out, no_cache)


def test_config_errors_are_specific():
    with pytest.raises(ValueError, match="one entry per level"):
        MemoryConfig(periods=[1, 4], slots=[4])
    with pytest.raises(ValueError, match="divide"):
        MemoryConfig(periods=[1, 3, 4], slots=[3, 2, 2], top_k=[1, 1, 1])


# -- the schedule ------------------------------------------------------------------------------
def test_twelve_nights_of_two_levels():
    """Level 1 takes each night; every 4th night level 1 moves up first (then is reset)."""
    config = MemoryConfig(periods=[1, 4], slots=[4, 8])
    nights = simulate(12, config)
    assert [n["used"] for n in nights] == [[1, 0], [2, 0], [3, 0], [1, 1], [2, 1], [3, 1], [4, 1], [1, 2],
                                           [2, 2], [3, 2], [4, 2], [1, 3]]
    assert nights[3]["steps"] == [Step("consolidate", 1, 2), Step("consolidate", 0, 1)]
    assert nights[4]["steps"] == [Step("consolidate", 0, 1)]


def test_four_levels_consolidate_slowest_first():
    config = MemoryConfig(periods=[1, 2, 4, 8], slots=[2, 2, 2, 4], top_k=[2, 2, 2, 2])
    steps = plan(8, [1, 1, 1, 0], config)
    assert steps == [Step("consolidate", 3, 4), Step("consolidate", 2, 3), Step("consolidate", 1, 2),
                     Step("consolidate", 0, 1)]


def test_a_night_that_takes_two_level_1_slots_frees_two_first():
    """`experts_tonight` 2 (the dreams rehearsed into a fresh expert): level 1 goes up early when
    only one slot is left, where one expert a night would still fit."""
    config = MemoryConfig(periods=[1, 4], slots=[4, 8], upward="move")
    assert plan(2, [3, 0], config) == [Step("consolidate", 0, 1)]
    assert plan(2, [3, 0], config, experts_tonight=2) == [Step("move", 1, 2), Step("consolidate", 0, 1)]
    assert plan(2, [2, 0], config, experts_tonight=2) == [Step("consolidate", 0, 1)]


def test_overflow_keeps_a_hundred_nights_bounded():
    config = MemoryConfig(periods=[1, 4], slots=[2, 3])
    nights = simulate(100, config)
    assert all(u <= s for n in nights for u, s in zip(n["used"], config.slots))
    kinds = {s.kind for n in nights for s in n["steps"]}
    assert kinds == {"consolidate", "merge"}
    # level 1 (2 slots) overflows before its 4th night: it moves up early
    assert nights[2]["steps"][0] == Step("consolidate", 1, 2)


def test_a_bank_sees_its_active_slots_after_a_state_dict_load():
    """The host-side list of active slots (no device sync per forward) follows a load."""
    from lmsleep.memory import ExpertBank

    torch.manual_seed(0)
    trained, fresh = ExpertBank(8, 3, 2, 2), ExpertBank(8, 3, 2, 2)
    with torch.no_grad():
        trained.set_active(1, True)
        trained.A[1].normal_(), trained.B[1].normal_()
    x = torch.randn(2, 5, 8)
    assert fresh(x) is None  # nothing active: the list is cached as []
    fresh.load_state_dict(trained.state_dict())
    assert fresh.active_slots() == (1,) and torch.equal(fresh(x), trained(x))


def test_condensing_one_expert_upward_keeps_the_function(micro):
    """A level holding one expert, condensed into a new expert of the next level: the student
    (sender muted, new expert on) computes what the teacher (sender on, new expert muted) did."""
    from lmsleep.seeding import muted

    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig(rank=4))
    _teach(memory, 1, memory.expand(1), model, ids, steps=3)
    memory.settle()
    sender = memory.active_slots(1)
    teacher = _logits(model, ids)
    slot = memory.expand(2)
    memory.condense(1, 2, slot)
    with muted(memory, {1: sender}):
        student = _logits(model, ids)
    assert not torch.equal(teacher, _logits_without(model, memory, ids, sender, slot))  # the expert matters
    assert torch.allclose(student, teacher, atol=1e-4)


def _logits_without(model, memory, ids, sender, slot):
    from lmsleep.seeding import muted

    with muted(memory, {1: sender, 2: [slot]}):
        return _logits(model, ids)


@pytest.mark.parametrize("ranks, exact", [([4, 8], True), ([4, 4], False)])
def test_a_receiver_with_the_senders_summed_rank_condenses_exactly(micro, ranks, exact):
    """Two level-1 experts of rank 4 condensed upward: a level 2 of rank 8 starts from their exact
    sum in every layer, one of rank 4 from an approximation (it has to lose something)."""
    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig(rank=ranks))
    for _ in range(2):
        _teach(memory, 1, memory.expand(1), model, ids, steps=3)
        memory.settle()
    senders = memory.active_slots(1)
    slot = memory.expand(2)
    memory.condense(1, 2, slot)
    for layer in memory.banks:
        src, dst = layer[0], layer[1]
        assert dst.A[slot].shape[1] == ranks[1]
        target = sum(src.A[i] @ src.B[i] for i in senders)
        assert torch.allclose(dst.A[slot] @ dst.B[slot], target, atol=1e-5) == exact
    per_layer = {lv: sum(p.numel() for p in memory.level(lv)[0].expert_parameters(0)) for lv in (1, 2)}
    assert memory.counts()["active_parameters"] == len(memory.banks) * (2 * per_layer[1] + per_layer[2])


def test_one_rank_per_level_round_trips(micro, micro_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=[4, 8]))
    _teach(memory, 2, memory.expand(2), model, _ids(tokenizer), steps=2)
    memory.save(tmp_path)
    again = Memory.load(AutoModelForCausalLM.from_pretrained(micro_dir), tmp_path)
    assert again.config.ranks == [4, 8]
    assert torch.equal(_logits(again.model, _ids(tokenizer)), _logits(model, _ids(tokenizer)))
    with pytest.raises(ValueError, match="one number or one per level"):
        MemoryConfig(rank=[4, 8, 16])


def test_moving_a_level_up_keeps_the_function_and_frees_the_sender(micro):
    """`upward: move`: level 1's two experts carried into level 2 as they are: the same logits
    (level 2's top-k seats them both), level 1 empty, their ages kept."""
    model, tokenizer = micro
    ids = _ids(tokenizer)
    memory = Memory.attach(model, MemoryConfig(slots=[2, 4], top_k=[2, 2], rank=4, upward="move"))
    for night in (1, 2):
        memory.nights = night
        _teach(memory, 1, memory.expand(1), model, ids, steps=3)
        memory.settle()
    before = _logits(model, ids)
    assert memory.move_up(1, 2) == [0, 1]
    assert memory.active_slots(1) == [] and memory.active_slots(2) == [0, 1]
    assert memory.level(2)[0].born[:2].tolist() == [1, 2]
    assert torch.equal(_logits(model, ids), before)
    # Two more nights fill level 2 (4 slots); two after them find no room (the schedule merges first).
    for move in (True, False):
        memory.expand(1)
        memory.expand(1)
        memory.settle()
        if move:
            memory.move_up(1, 2)
    with pytest.raises(RuntimeError, match="0 free slots for the 2 experts of level 1"):
        memory.move_up(1, 2)


def test_moving_up_schedules_a_slot_per_expert_and_stays_bounded():
    config = MemoryConfig(periods=[1, 4], slots=[4, 8], upward="move")
    nights = simulate(100, config)
    assert nights[3]["steps"] == [Step("move", 1, 2), Step("consolidate", 0, 1)]
    assert [n["used"] for n in nights[:8]] == [[1, 0], [2, 0], [3, 0], [1, 3], [2, 3], [3, 3], [4, 3], [1, 7]]
    # night 12: level 2 holds 7, 4 come: three merges of its oldest pairs first
    assert nights[11]["steps"] == [Step("merge", None, 2)] * 3 + [Step("move", 1, 2), Step("consolidate", 0, 1)]
    assert all(u <= s for n in nights for u, s in zip(n["used"], config.slots))
    with pytest.raises(ValueError, match="same rank and more slots"):
        MemoryConfig(slots=[4, 4], upward="move")
    with pytest.raises(ValueError, match="same rank and more slots"):
        MemoryConfig(rank=[32, 64], upward="move")
    with pytest.raises(ValueError, match="'distil' or 'move'"):
        MemoryConfig(upward="copy")
