import json
import random
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


@pytest.mark.slow
def test_knowledge_seeding_reads_with_its_own_curriculum(tmp_path, monkeypatch, born_micro_dir):
    """params.yaml's `curriculum:` is Knowledge Seeding's: with `window: paragraph` its teacher
    reads each note alone (its lessons carry the note read); a baseline's night keeps
    `baselines:` (the whole episode, no `context`)."""
    import yaml

    from tasks.common import load_pipeline
    from tasks.curriculum import curriculum
    from tasks.wake import wake

    monkeypatch.chdir(tmp_path)
    write_params(born_micro_dir)
    raw = yaml.safe_load(Path("params.yaml").read_text())
    text = "Ada Vell works for Morrow Labs. Ada Vell lives in Kestrel.\nBo Kern studied at Tarn College."
    jsonl.write(Path("data/episodes/inbox.jsonl"), [{"id": "two-notes", **GOOD, "text": text}])
    wake(load_pipeline("params.yaml"))
    read = {}
    for consolidation in ("knowledge_seeding", "context_distillation"):
        Path("params.yaml").write_text(yaml.safe_dump({**raw, "consolidation": consolidation,
                                                       "curriculum": {"window": "paragraph"}}))
        curriculum(load_pipeline("params.yaml"))
        lessons = jsonl.read("data/curriculum/curriculum.jsonl")
        assert lessons, "the micro teacher wrote no lesson"
        read[consolidation] = {r.get("context") for r in lessons}
    assert read["knowledge_seeding"] <= set(text.split("\n")) and None not in read["knowledge_seeding"]
    assert read["context_distillation"] == {None}


@pytest.mark.slow
def test_tau_is_set_aside_only_for_a_model_born_elsewhere(tmp_path, monkeypatch, born_micro_dir, micro_world):
    """With `tau_share: 0` the composed checks judge the dreams and tau.jsonl is empty; a model
    born elsewhere (no world.json beside it: no base knowledge to ask them from) gets
    `tau_share_unknown` of its answers set aside instead, untaught."""
    import shutil

    import yaml

    from tasks.common import load_pipeline
    from tasks.curriculum import curriculum
    from tasks.wake import wake

    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "born-elsewhere"
    shutil.copytree(born_micro_dir, elsewhere, ignore=shutil.ignore_patterns("world.json"))
    # Notes in the world's words, which the micro teacher was born on: it asks several questions.
    text = " ".join(f"Note {i}: {micro_world.bio(micro_world.strangers[0], random.Random(i))}" for i in range(4))
    jsonl.write(Path("data/episodes/inbox.jsonl"), [{"id": "notes", **GOOD, "text": text}])
    tau_of = {}
    for model in (born_micro_dir, elsewhere):
        write_params(model)
        raw = yaml.safe_load(Path("params.yaml").read_text())
        raw["dreaming"] |= {"tau_share": 0.0, "tau_share_unknown": 0.5, "tau_by_answer": False,
                            "tau_compose": ["In which city does {subject}'s company have its offices?"]}
        Path("params.yaml").write_text(yaml.safe_dump(raw))
        shutil.rmtree("models", ignore_errors=True)
        wake(load_pipeline("params.yaml"))
        curriculum(load_pipeline("params.yaml"))
        taught = {r["prompt"] for r in jsonl.read("data/curriculum/curriculum.jsonl")}
        tau_of[model] = jsonl.read("data/curriculum/tau.jsonl")
        assert not {f"Q: {t['question']}\nA:" for t in tau_of[model]} & taught
    assert tau_of[born_micro_dir] == [] and tau_of[elsewhere]
