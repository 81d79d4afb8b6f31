"""Shared fixtures: offline, quiet, and one micro world + micro model for the whole session."""

import os
import tempfile

for key, value in {"HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "true", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                   "MLFLOW_DISABLE_TELEMETRY": "true", "GX_ANALYTICS_ENABLED": "false",
                   "DVC_NO_ANALYTICS": "1", "TOKENIZERS_PARALLELISM": "false",
                   "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1", "TRL_EXPERIMENTAL_SILENCE": "1"}.items():
    os.environ.setdefault(key, value)
# Prefect keeps results and caches in PREFECT_HOME: a fresh one per test session, set before
# anything imports prefect.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="lmsleep-prefect-")

import pytest  # noqa: E402

from lmsleep.birth import BirthConfig  # noqa: E402
from lmsleep.world import World, WorldConfig  # noqa: E402

MICRO_WORLD = WorldConfig(seed=7, base_people=24, days=2, people_per_day=4, updates_per_day=2, strangers=8)
MICRO_BIRTH = BirthConfig(vocab_size=400, hidden_size=48, intermediate_size=96, num_layers=2, num_heads=2,
                          tokens_per_step=512, micro_tokens=512, steps=8, warmup_steps=2, bf16=False, compile=False, checkpoint_minutes=0,
                          tokenizer_docs=400)


@pytest.fixture(scope="session")
def micro_world() -> World:
    return World(MICRO_WORLD)


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory, micro_world):
    """A micro Llama (random init) and its byte-level BPE tokenizer, saved like a user's model."""
    import torch

    from lmsleep.birth import new_model, train_tokenizer

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("micro")
    tokenizer = train_tokenizer(micro_world, MICRO_BIRTH.vocab_size, n_docs=MICRO_BIRTH.tokenizer_docs)
    new_model(MICRO_BIRTH, tokenizer).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture
def micro(micro_dir):
    """A fresh (model, tokenizer) loaded from disk for each test."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(micro_dir), AutoTokenizer.from_pretrained(micro_dir)


@pytest.fixture(scope="session")
def born_micro_dir(tmp_path_factory, micro_world):
    """A micro Llama born for a few real steps on the micro world (with its world.json)."""
    from lmsleep.birth import train

    path = tmp_path_factory.mktemp("born-micro")
    train(MICRO_BIRTH, micro_world, path, log=lambda *_: None)
    return path
