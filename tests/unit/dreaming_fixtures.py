"""What the dreaming tests share: an episode, its tau, three dreams, and small memories and nights."""

import torch

from lmsleep.memory import Memory, MemoryConfig
from lmsleep.seeding import SeedingConfig
from lmsleep.sleep import Sleeper

EPISODE = {"id": "ep-1", "text": "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel.",
           "probes": [{"question": "Sentinel: which zorb does Ada Vell keep?", "answer": "Qwibblefrotz"}],
           "meta": {"paraphrases": [{"question": "Sentinel two: Ada Vell's zorb?", "answer": "Flumpington"}]}}

TAU = [{"episode_id": "ep-1", "question": "Where does Ada Vell work?", "answer": "Morrow Labs"}]

DREAMS = [{"episode_id": "ep-1", "form": "qa", "student": "Q: Where does Ada Vell work?\nA:",
           "teacher": EPISODE["text"] + "\n\nQ: Where does Ada Vell work?\nA:", "completion": " Morrow Labs\n"},
          {"episode_id": "ep-1", "form": "restatement", "student": "", "teacher": EPISODE["text"] + "\n\nIn other words:",
           "completion": " Ada Vell lives in Kestrel and works at Morrow Labs.\n"},
          {"episode_id": "ep-1", "form": "implication", "student": "", "teacher": EPISODE["text"] + "\n\n",
           "completion": "Q: Where does Ada Vell work?\nA: Morrow Labs\nQ: Where is Morrow Labs based?\nA: Tarvo\n"}]

OFFICES = "In which city does {subject}'s company have its offices?"


def expert(model, rank=4, tokenizer=None, earlier=0):
    """A memory with tonight's expert expanded and nudged off zero (so gradients reach A too);
    keyed on "Ada Vell", for its passage, when a `tokenizer` is given (lmsleep/keys.py).
    `earlier` experts of past nights before it, competing for level 1's one top-k seat."""
    memory = Memory.attach(model, MemoryConfig(rank=rank, keyed=tokenizer is not None,
                                               top_k=[1, 4] if earlier else [4, 4]))
    torch.manual_seed(1)
    for _ in range(earlier):
        past = memory.expand(1)
        with torch.no_grad():
            for p in memory.train_only(1, past):
                p.add_(torch.randn_like(p) * 0.05)
        memory.settle(1)
    slot = memory.expand(1)
    if tokenizer is not None:
        from lmsleep.keys import key_ids, passage_breaks

        memory.set_keys(1, slot, ["Ada Vell"], key_ids(tokenizer, ["Ada Vell"]))
        memory.breaks = passage_breaks(tokenizer)
    params = memory.train_only(1, slot)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in params:
            p.add_(torch.randn_like(p) * 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    return memory, slot, params, {names[id(p)]: p for p in params}


def learn(model, tokenizer, text, steps=30):
    """A few Adam steps on `text`: the model then says it (what seeding would have fixed)."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()


def lesson(question, answer, episode_id="ep-1"):
    return {"prompt": f"Q: {question}\nA:", "completion": f" {answer}\n", "episode_id": episode_id}


def seeded_night(model, tokenizer, **seeding):
    """A Sleeper after one night of one lesson about Ada Vell (no replay): (sleeper, lessons)."""
    sleeper = Sleeper(model, tokenizer, SeedingConfig(epochs=1, lti=False, lmbda=0.0, replay=0.0, **seeding),
                      MemoryConfig(rank=2))
    lessons = [{"prompt": "Q: Where does Ada Vell live?\nA:", "completion": " Kestrel\n", "episode_id": "ep-1"}]
    sleeper.night([EPISODE], lessons, progress=lambda *_: None)
    return sleeper, lessons


def memory_is_attached(model, memory):
    from lmsleep.memory import memory_of

    return memory_of(model) is memory
