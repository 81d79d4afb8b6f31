import pytest
import torch

from lmsleep import seeding
from lmsleep.memory import Memory, MemoryConfig
from lmsleep.seeding import (SeedingConfig, SeedingLoss, completion_logits, divergence, knowledge_seeding, muted,
                             seeding_rows)

EPISODE = {"id": "ep-1", "text": "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel."}
LESSONS = [{"prompt": "Q: Where does Ada Vell work?\nA:", "completion": " Morrow Labs\n", "episode_id": "ep-1"},
           {"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]


def _jsd_by_hand(s_logits, t_logits, beta):
    p_s, p_t = s_logits.softmax(-1), t_logits.softmax(-1)
    m = beta * p_t + (1 - beta) * p_s
    kl = lambda p, q: (p * (p.log() - q.log())).sum(-1)  # noqa: E731
    return beta * kl(p_t, m) + (1 - beta) * kl(p_s, m)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_divergence_is_trl_generalized_jsd(beta):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    labels = torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 7, 8]])
    per_token = _jsd_by_hand(s, t, beta)[labels != -100]
    assert divergence(s, t, labels, beta).item() == pytest.approx(per_token.mean().item(), rel=1e-5)


def test_rows_never_carry_probes():
    episode = {**EPISODE, "probes": [{"question": "Sentinel: which zorb?", "answer": "Qwib"}]}
    rows = seeding_rows(LESSONS, [episode], continuations=True)
    assert {r["kind"] for r in rows} == {"question", "continuation"}
    assert "Sentinel" not in str(rows) and "Qwib" not in str(rows)
    question = next(r for r in rows if r["kind"] == "question")
    assert question["teacher"].startswith(EPISODE["text"]) and question["student"].startswith("Q:")


def test_the_teacher_reads_what_the_lesson_was_read_from():
    """A lesson read from one paragraph (`context`) puts that paragraph, not the whole episode,
    in front of the teacher."""
    lesson = {**LESSONS[0], "context": "Ada Vell works for Morrow Labs."}
    row = seeding_rows([lesson], [EPISODE])[0]
    assert row["teacher"] == f"Ada Vell works for Morrow Labs.\n\n{LESSONS[0]['prompt']}"
    assert row["student"] == LESSONS[0]["prompt"]


def test_the_teacher_view_is_the_model_before_the_night(micro):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig())
    ids = [tokenizer(" Morrow Labs\n", add_special_tokens=False)["input_ids"]]
    with torch.no_grad():
        before, _ = completion_logits(model, tokenizer, [LESSONS[0]["prompt"]], ids)
        slot = memory.expand(1)
        for bank in memory.level(1):
            bank.B[slot].normal_()
        after, _ = completion_logits(model, tokenizer, [LESSONS[0]["prompt"]], ids)
        with muted(memory, {1: [slot]}):
            teacher, _ = completion_logits(model, tokenizer, [LESSONS[0]["prompt"]], ids)
    assert not torch.allclose(after, before)
    assert torch.allclose(teacher, before, rtol=0, atol=1e-6)
    assert bool(memory.level(1)[0].active[slot])  # the view flips back


def _gap(model, tokenizer, memory, rows):
    """Mean divergence between the teacher's view (context, no new expert) and the student's."""
    with torch.no_grad():
        comp = [tokenizer(r["completion"], add_special_tokens=False)["input_ids"] for r in rows]
        s, labels = completion_logits(model, tokenizer, [r["student"] for r in rows], comp)
        with muted(memory, {1: memory.active_slots(1)}):
            t, _ = completion_logits(model, tokenizer, [r["teacher"] for r in rows], comp)
        return divergence(s, t, labels, 0.5).item()


def test_the_divergence_is_logged_on_tonight_s_rows_and_on_the_replay_apart(micro):
    """A new expert (B = 0) has not moved the old yet: zero on the replay, where both views
    see the same prompt; tonight's rows differ by the episode in the teacher's context."""
    from lmsleep.seeding import same_prompt_rows

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig())
    slot = memory.expand(1)
    replay = same_prompt_rows([{"prompt": "Q: Where does Bo Tarn live?\nA:", "completion": " Orrin\n"}], "replay")
    loss = SeedingLoss(tokenizer, memory, SeedingConfig(lmbda=0.0, lti=False), teacher_mute={1: [slot]},
                       student_mute={})
    with torch.no_grad():
        loss(model, seeding_rows(LESSONS, [EPISODE]) + replay, step=0)
    logs = loss.pop_logs()
    assert logs["divergence_replay"] == pytest.approx(0.0, abs=1e-6) and logs["divergence_new"] > 1e-4
    loss(model, replay, step=0)  # replay alone: the mean is the replay's, nothing split
    assert set(loss.pop_logs()) == {"divergence"}


@pytest.mark.parametrize("share", [0.0, 0.9, 1.0])  # far from tonight's share of the tokens (~0.3 here)
def test_new_share_weighs_tonight_s_rows_against_the_replay(micro, share):
    """With `new_share` the loss is share x tonight's divergence + (1 - share) x the replay's,
    whatever their token counts; the gradient flows through both parts."""
    from lmsleep.seeding import same_prompt_rows

    model, tokenizer = micro
    torch.manual_seed(0)  # the expert's draws below, whatever ran before
    memory = Memory.attach(model, MemoryConfig())
    slot = memory.expand(1)
    for bank in memory.level(1):  # the new expert moved, so the replay's divergence is not 0
        bank.B[slot].data.normal_(std=0.5)
    memory.train_only(1, slot)
    replay = same_prompt_rows([{"prompt": f"Q: Where does Bo Tarn{i} live?\nA:", "completion": " Orrin\n"}
                               for i in range(5)], "replay")
    loss = SeedingLoss(tokenizer, memory, SeedingConfig(lmbda=0.0, lti=False, new_share=share),
                       teacher_mute={1: [slot]}, student_mute={})
    value = loss(model, seeding_rows(LESSONS, [EPISODE]) + replay, step=0)
    logs = loss.pop_logs()
    assert logs["divergence_new"] > 1e-3 and logs["divergence_replay"] > 1e-3
    want = share * logs["divergence_new"] + (1 - share) * logs["divergence_replay"]
    assert value.item() == pytest.approx(want, rel=1e-5) and value.requires_grad
    assert value.item() != pytest.approx(logs["divergence"], rel=1e-3)  # not TRL's pooled mean


def test_learning_to_imitate_can_leave_the_replay_out(micro):
    import random

    from lmsleep.seeding import same_prompt_rows

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig())
    replay = same_prompt_rows([{"prompt": "Q: Where does Bo Tarn live?\nA:", "completion": " Orrin\n"}], "replay")
    rows = seeding_rows(LESSONS, [EPISODE]) + replay
    picked = {}
    for lti_replay in (True, False):
        loss = SeedingLoss(tokenizer, memory, SeedingConfig(lti_rows=3, lti_replay=lti_replay), teacher_mute={},
                           student_mute={})
        picked[lti_replay] = [p for step in range(8) for p in loss._imitation_prompts(rows, random.Random(step))[0]]
    assert any(p.startswith(replay[0]["student"]) for p in picked[True])
    assert picked[False] and not any(p.startswith(replay[0]["student"]) for p in picked[False])


@pytest.mark.slow
def test_distillation_moves_the_student_toward_the_teacher(micro):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=8))
    config = SeedingConfig(epochs=8, batch_size=4, lmbda=0.0, lti=False, replay=0.0, learning_rate=1e-2)
    rows = seeding_rows(LESSONS, [EPISODE], continuations=True)
    start = _gap(model, tokenizer, memory, rows)
    knowledge_seeding(model, tokenizer, memory, rows, config)
    assert _gap(model, tokenizer, memory, rows) < 0.5 * start


@pytest.mark.slow
def test_a_night_of_seeding_changes_only_the_new_expert(micro):
    """The full objective (on-policy batches, learning to imitate with its reward) on real steps."""
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig())
    config = SeedingConfig(epochs=2, batch_size=4, lti_rows=1, lti_group=2, max_new_tokens=6, replay=0.0,
                           gamma=0.0, logging_steps=1)
    rows = seeding_rows(LESSONS, [EPISODE])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = knowledge_seeding(model, tokenizer, memory, rows, config)
    assert out["steps"] == 2 * -(-len(rows) // 4)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    slot = out["slot"]
    assert changed == {n for n in before if n.endswith((f"0.A.{slot}", f"0.B.{slot}", f"0.router.{slot}"))}
    assert memory.level(1)[0].seeding is None  # settled: it competes from now on


def test_a_keyed_night_keys_its_expert_on_tonights_names_and_moves_nothing_else(micro):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2, keyed=True))
    other = tokenizer("Q: Where does Kor Dun work?\nA:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(input_ids=other).logits
    config = SeedingConfig(epochs=1, batch_size=4, lti=False, lmbda=0.0, replay=0.0)
    slot = knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config)["slot"]
    assert memory.keys[1][slot][0] == ["Ada Vell"] and memory.breaks["starts"]  # and its passages' ends
    assert memory.level(1)[0].B[slot].abs().sum() > 0  # it learned ...
    with torch.no_grad():
        assert torch.equal(model(input_ids=other).logits, before)  # ... and says nothing new about others


def test_resume_trains_tonights_expert_further_against_the_model_before_it(micro, monkeypatch):
    """Dreams are rehearsed into tonight's expert (`resume`): no new slot, and the teacher still
    has that expert muted (a teacher that is the expert being trained would chase itself)."""
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))
    config = SeedingConfig(epochs=1, batch_size=4, lti=False, lmbda=0.0, replay=0.0)
    slot = knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config)["slot"]
    trained = memory.level(1)[0].B[slot].detach().clone()
    mutes = []
    real = SeedingLoss.__init__

    def spy(self, *args, teacher_mute, **kwargs):
        mutes.append(teacher_mute)
        real(self, *args, teacher_mute=teacher_mute, **kwargs)

    monkeypatch.setattr(SeedingLoss, "__init__", spy)
    again = knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config, resume=slot)
    assert again["slot"] == slot and memory.active_slots(1) == [slot]
    assert mutes == [{1: [slot]}]
    assert not torch.equal(memory.level(1)[0].B[slot], trained)
    assert memory.level(1)[0].seeding is None


def test_without_expansion_the_expert_trains_in_place_against_itself_as_it_was(micro, monkeypatch):
    """`expansion: false`: no new slot; at every step the teacher's view is the model before
    tonight (the trained expert's copy, switched on there only), and the copy's slot is free
    again after the night."""
    from dataclasses import replace

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))
    config = SeedingConfig(epochs=1, batch_size=4, lti=False, lmbda=0.0, replay=0.0)
    slot = knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config)["slot"]
    banks = memory.level(1)
    kept = [[p.detach().clone() for p in bank.expert_parameters(slot)] for bank in banks]
    teacher_views, real = [], seeding.completion_logits

    def spy(model_, tokenizer_, prompts, completions):  # the teacher's pass is the one without gradients
        logits, labels = real(model_, tokenizer_, prompts, completions)
        if not torch.is_grad_enabled():
            teacher_views.append((prompts, completions, logits.clone()))
        return logits, labels

    monkeypatch.setattr(seeding, "completion_logits", spy)
    rows = seeding_rows(LESSONS, [EPISODE])
    out = knowledge_seeding(model, tokenizer, memory, rows,
                            replace(config, expansion=False, epochs=3, learning_rate=0.05))
    assert out["slot"] == slot and memory.active_slots(1) == [slot]
    assert not torch.equal(banks[0].B[slot], kept[0][1])  # trained in place
    assert all(not torch.any(p) for i in range(len(banks[0].A)) if i != slot for p in banks[0].expert_parameters(i))
    assert len(teacher_views) == out["steps"] > 1
    with torch.no_grad():
        live = [real(model, tokenizer, p, c)[0] for p, c, _ in teacher_views]
        for bank, params in zip(banks, kept, strict=True):  # the expert as it was before tonight
            for p, k in zip(bank.expert_parameters(slot), params, strict=True):
                p.copy_(k)
        before = [real(model, tokenizer, p, c)[0] for p, c, _ in teacher_views]
    # At every step, after the first update too, the teacher saw the model before tonight.
    assert all(torch.allclose(v, b, rtol=0, atol=1e-5) for (_, _, v), b in zip(teacher_views, before, strict=True))
    assert not all(torch.allclose(v, b, rtol=0, atol=1e-5) for (_, _, v), b in zip(teacher_views, live, strict=True))


def test_without_expansion_a_failed_night_leaves_no_copy_behind(micro, monkeypatch):
    """The teacher's copy of the expert is freed whatever fails after it is made, before
    training too (here: building the loss)."""
    from dataclasses import replace

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))
    config = SeedingConfig(epochs=1, batch_size=4, lti=False, lmbda=0.0, replay=0.0)
    slot = knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config)["slot"]

    def broken(*args, **kwargs):
        raise RuntimeError("the loss could not be built")

    monkeypatch.setattr(seeding, "SeedingLoss", broken)
    with pytest.raises(RuntimeError, match="could not be built"):
        knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), replace(config, expansion=False))
    banks = memory.level(1)
    assert memory.active_slots(1) == [slot]
    free = [i for i in range(len(banks[0].A)) if i != slot]  # the copy's slot among them, zeroed and free
    assert all(not torch.any(p) and bank.born[i] == -1 for bank in banks for i in free for p in bank.expert_parameters(i))

@pytest.mark.slow
def test_ddp_over_two_processes_matches_one(micro_dir, tmp_path):
    """DDP over gloo on CPU, 2 processes x 4 rows a step, against one process with 8: the same
    expert within float tolerance.

    `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's multi-CPU path
    needs MPI, `--mpirun_hostfile`); torchrun's launcher (`--multi_gpu`) with ACCELERATE_USE_CPU=1
    starts two, and the Trainer then runs DDP with the gloo backend."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors import safe_open
    from safetensors.torch import load_file

    script = Path(__file__).with_name("ddp_seeding.py")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    for n, batch in ((2, 4), (1, 8)):
        how = ["--multi_gpu", "--num_processes", "2"] if n == 2 else ["--num_processes", "1"]
        done = subprocess.run([*launch, *how, "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                               "no", str(script), str(micro_dir), str(tmp_path / f"{n}.safetensors"), str(batch)],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    with safe_open(tmp_path / "2.safetensors", "pt") as f:
        assert f.metadata() == {"world_size": "2", "steps": "2"}, "two processes, one step per epoch each"
    two, one = load_file(tmp_path / "2.safetensors"), load_file(tmp_path / "1.safetensors")
    assert any(t.abs().sum() > 0 for k, t in one.items() if k.endswith(".B")), "the expert learned nothing"
    for k in one:
        assert torch.allclose(two[k], one[k], rtol=1e-4, atol=1e-6), k


def test_imitation_cuts_leave_an_answer_to_write_and_may_give_none_of_it(micro):
    """Learning to imitate cuts the teacher's answer anywhere from its first token to its last
    (never after it: a rest of "" would be rewarded 1 for nothing)."""
    import random

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig())
    loss = SeedingLoss(tokenizer, memory, SeedingConfig(lti_rows=2), teacher_mute={}, student_mute={})
    rows = seeding_rows(LESSONS, [EPISODE])
    seen = [pair for step in range(12) for pair in zip(*loss._imitation_prompts(rows, random.Random(step)))]
    students = {r["student"] for r in rows}
    assert len(seen) == 24 and all(ref.strip() for _, ref in seen)
    assert any(p in students for p, _ in seen)  # cut at 0: the whole answer from the prompt alone
    assert any(p not in students for p, _ in seen)  # and cuts inside it
    for prompt, ref in seen:  # prefix + rest is the teacher's answer
        row = next(r for r in rows if prompt.startswith(r["student"]))
        assert (prompt[len(row["student"]):] + ref).strip() == row["completion"].strip()


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_the_learning_rate_follows_the_configured_schedule(micro, schedule):
    from transformers import TrainerCallback

    class Rates(TrainerCallback):
        def __init__(self):
            self.seen = []

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "learning_rate" in logs:
                self.seen.append(float(logs["learning_rate"]))

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=4))
    config = SeedingConfig(epochs=2, batch_size=1, lmbda=0.0, lti=False, replay=0.0, logging_steps=1,
                           learning_rate=1e-2, lr_scheduler=schedule)
    rates = Rates()
    knowledge_seeding(model, tokenizer, memory, seeding_rows(LESSONS, [EPISODE]), config, callbacks=[rates])
    assert len(rates.seen) == 4
    if schedule == "constant":
        assert rates.seen == [1e-2] * 4
    else:  # decays linearly towards 0 over the run
        assert all(a > b for a, b in zip(rates.seen, rates.seen[1:])) and rates.seen[-1] < 0.5e-2
    with pytest.raises(ValueError, match="seeding.lr_scheduler must be one of"):
        SeedingConfig(lr_scheduler="linnear")
