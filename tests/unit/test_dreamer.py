"""lmsleep/dreamer.py: ReST-EM's dreamer learns on its own adapter, and leaves the model as it was."""

import json

import pytest
import torch

from lmsleep.dreamer import dreamer_adapter, dreamer_fit, train_dreamer
from lmsleep.dreaming import DreamingConfig
from lmsleep.memory import Memory, MemoryConfig
from tests.unit.dreaming_fixtures import EPISODE, memory_is_attached


@pytest.mark.slow
def test_the_dreamer_learns_on_its_own_adapter_and_leaves_the_model_as_it_was(micro, tmp_path):
    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))
    ids = tokenizer(["Ada Vell works for"], return_tensors="pt")
    with torch.no_grad():
        plain = model(**ids).logits
    good = [{"prompt": EPISODE["text"] + "\n\nQ:", "sample": " Where does Ada Vell work?\nA: Morrow Labs\n",
             "episode_id": "e0", "form": "qa"}] * 4
    config = DreamingConfig(dreamer_rank=2, dreamer_epochs=1, dreamer_lr=0.05)
    learned = train_dreamer(model, tokenizer, good, tmp_path / "dreamer", config)
    assert (learned["rows"], learned["new"], learned["steps"]) == (4, 4, 1)  # 4 pairs, batch 16, 1 epoch
    assert learned["loss_after"] < learned["loss_before"]
    assert (tmp_path / "dreamer" / "adapter_config.json").exists()
    assert not any("lora" in name for name, _ in model.named_modules())
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, plain)
        with dreamer_adapter(model, tmp_path / "dreamer") as dreaming:
            assert not torch.equal(dreaming(**ids).logits, plain)
        assert torch.equal(model(**ids).logits, plain)
    first = (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes()
    again = train_dreamer(model, tokenizer, good, tmp_path / "dreamer", config)  # the next night goes on from it
    assert (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes() != first
    assert again["loss_before"] == pytest.approx(learned["loss_after"], rel=1e-4)
    assert not (tmp_path / "dreamer" / "helped.jsonl").exists()  # no replay: tonight's dreams only
    assert memory_is_attached(model, memory)


@pytest.mark.slow
def test_with_replay_the_dreamer_learns_every_nights_dreams_on_a_fresh_adapter(micro, tmp_path):
    """`dreamer_replay`: the dreams that helped pile up beside the adapter, and each night's
    M-step starts from a fresh LoRA (its loss before training is the plain model's), as ReST-EM
    fine-tunes the base at each iteration; a night with none that helped leaves it as it was."""
    model, tokenizer = micro
    Memory.attach(model, MemoryConfig(rank=2))
    prompt = EPISODE["text"] + "\n\nQ:"
    night0 = [{"prompt": prompt, "sample": " Where does Ada Vell work?\nA: Morrow Labs\n", "episode_id": "e0",
               "form": "qa"}] * 3
    night1 = [{"prompt": prompt, "sample": " Where was Ada Vell born?\nA: Lune\n", "episode_id": "e1",
               "form": "qa"}] * 2
    config = DreamingConfig(dreamer_rank=2, dreamer_epochs=2, dreamer_lr=0.05, dreamer_batch_size=2,
                            dreamer_replay=True)
    first = train_dreamer(model, tokenizer, night0, tmp_path / "dreamer", config, night=0)
    assert (first["rows"], first["new"], first["steps"]) == (3, 3, 4)  # 2 epochs of 2 batches
    second = train_dreamer(model, tokenizer, night1, tmp_path / "dreamer", config, night=1)
    assert (second["rows"], second["new"], second["steps"]) == (5, 2, 6)
    helped = [json.loads(line) for line in (tmp_path / "dreamer" / "helped.jsonl").read_text().splitlines()]
    assert [h["night"] for h in helped] == [0, 0, 0, 1, 1]
    assert second["loss_after"] < second["loss_before"]
    assert second["loss_before"] == pytest.approx(dreamer_fit(model, tokenizer, helped), rel=1e-4)  # fresh
    adapter = (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes()
    nothing = train_dreamer(model, tokenizer, [], tmp_path / "dreamer", config, night=2)
    assert (nothing["rows"], nothing["steps"], nothing["loss_after"]) == (0, 0, None)
    assert (tmp_path / "dreamer" / "adapter_model.safetensors").read_bytes() == adapter
    assert len((tmp_path / "dreamer" / "helped.jsonl").read_text().splitlines()) == 5
    with pytest.raises(ValueError, match="dreamer_batch_size"):
        DreamingConfig(dreamer_batch_size=0)


def test_a_dreamer_training_that_fails_leaves_no_lora_layers_behind(micro, tmp_path, monkeypatch):
    """A first night's ReST-EM that crashes mid-training (an interrupt, out of memory) must not
    leave the dreamer's LoRA layers inside the model that later stages consolidate into."""
    from trl import SFTTrainer

    model, tokenizer = micro
    memory = Memory.attach(model, MemoryConfig(rank=2))

    def crash(self, *args, **kwargs):  # after TRL has built the trainer around the adapter
        raise KeyboardInterrupt

    monkeypatch.setattr(SFTTrainer, "train", crash)
    good = [{"prompt": EPISODE["text"] + "\n\nQ:", "sample": " Where does Ada Vell work?\nA: Morrow Labs\n",
             "episode_id": "e0", "form": "qa"}] * 4
    with pytest.raises(KeyboardInterrupt):
        train_dreamer(model, tokenizer, good, tmp_path / "dreamer",
                      DreamingConfig(dreamer_rank=2, dreamer_epochs=1, dreamer_lr=0.05))
    assert not any("lora" in name for name, _ in model.named_modules())
    assert not (tmp_path / "dreamer" / "adapter_config.json").exists()
    assert memory_is_attached(model, memory)
