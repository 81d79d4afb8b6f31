"""One Knowledge Seeding run on the micro model, for test_seeding's DDP test.

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/unit/ddp_seeding.py \
        MODEL_DIR OUT BATCH_PER_PROCESS

Writes the seeded expert's tensors (rank 0) to OUT (safetensors)."""

import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from lmsleep.memory import Memory, MemoryConfig
from lmsleep.seeding import SeedingConfig, knowledge_seeding

TEXT = "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel."
PEOPLE = ["Ada Vell", "Bo Tarn", "Cy Lund", "Di Mors", "Ed Quill", "Fa Rhee", "Gi Sorn", "Ha Vent"]


def main(model_dir: str, out: str, batch: int) -> None:
    torch.manual_seed(0)
    model, tokenizer = AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    memory = Memory.attach(model, MemoryConfig())
    # Every completion the same, so each process's per-token mean weighs its rows as one process would.
    rows = [{"student": f"Q: Where does {p} live?\nA:", "teacher": f"{TEXT}\n\nQ: Where does {p} live?\nA:",
             "completion": " Kestrel\n", "kind": "question"} for p in PEOPLE]
    config = SeedingConfig(epochs=2, batch_size=batch, lmbda=0.0, lti=False, optim="sgd", learning_rate=0.5,
                           logging_steps=1)
    done = knowledge_seeding(model, tokenizer, memory, rows, config)
    if int(os.environ.get("RANK", "0")) == 0:
        save_file({f"{i}.{k}": p.detach().contiguous() for i, bank in enumerate(memory.level(1))
                   for k, p in zip("ABr", bank.expert_parameters(done["slot"]))}, out,
                  metadata={"world_size": os.environ.get("WORLD_SIZE", "1"), "steps": str(done["steps"])})


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
