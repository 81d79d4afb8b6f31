import json
from pathlib import Path

import pytest

from lmsleep import jsonl
from tests.flows.test_sleep_cycle import write_params

GOOD = {"ts": "2026-01-01T00:00:00+00:00", "source": "app"}


@pytest.mark.slow
def test_an_episode_too_long_for_the_model_is_set_aside_with_its_reason(tmp_path, monkeypatch, born_micro_dir):
    from transformers import AutoConfig

    from tasks.common import load_pipeline
    from tasks.curriculum import NothingToSleepOn, curriculum
    from tasks.wake import wake

    monkeypatch.chdir(tmp_path)
    write_params(born_micro_dir)
    limit = AutoConfig.from_pretrained(born_micro_dir).max_position_embeddings
    long = {"id": "long", **GOOD, "text": "Ada Vell works for Morrow Labs. " * limit}
    short = {"id": "short", **GOOD, "text": "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel."}
    jsonl.write(Path("data/episodes/inbox.jsonl"), [long, short])
    wake(load_pipeline("params.yaml"))  # the brain before the night: none yet
    tonight = curriculum(load_pipeline("params.yaml"))
    assert tonight["episodes"] == ["short"] and tonight["too_long"] == ["long"]
    (reason,) = [r["reason"] for r in jsonl.read("data/curriculum/dropped.jsonl") if r["episode_id"] == "long"]
    assert f"{limit:,} positions" in reason and "split it" in reason
    assert json.loads(Path("data/curriculum/tonight.json").read_text())["too_long"] == ["long"]

    jsonl.write(Path("data/episodes/inbox.jsonl"), [long])
    with pytest.raises(NothingToSleepOn, match="too long for the model"):
        curriculum(load_pipeline("params.yaml"))
