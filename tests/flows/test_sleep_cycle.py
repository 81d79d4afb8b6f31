"""The real night: Prefect (test harness server), MLflow (SQLite in a temp dir), GX, real training.

Micro models cannot read yet, so the data bounds and gates here are loosened where a test is
not about them; the tests that are about them use the real defaults.
"""

import json
from pathlib import Path

import pytest
import yaml

from lmsleep import jsonl
from tests.conftest import MICRO_WORLD

LOOSE_LIMITS = {"min_grounded": 0.0, "teacher_floor": 0.0, "max_repetition": 1.0, "drop_ungrounded": False}
OPEN_GATES = {"min_learned": 0.0, "max_retention_drop": 1.0, "min_reading": 0.0}
BASELINES = {"lora_r": 4, "lora_alpha": 8, "learning_rate": 0.01, "epochs": 2, "batch_size": 8, "self_questions": 4}
# Knowledge Seeding, the default `seed` stage: the full objective, short.
SEEDING = {"epochs": 1, "batch_size": 8, "lti_group": 2, "max_new_tokens": 8, "learning_rate": 0.01}
MEMORY = {"periods": [1, 2], "slots": [2, 4], "top_k": [2, 2], "rank": 4}
# Dreaming after seeding, the default `dream` stage (tau taught after the trials): every step,
# short. Tau by question: the micro model's lessons about an episode mostly share one answer, and
# set aside by answer an episode needs two (lmsleep/baselines.py set_aside_checks). A quarter set
# aside, not params.yaml's composed checks: the micro model knows no bridge to compose them from.
# Every knob dvc.yaml's stages read is named (DVC refuses a stage whose params are missing).
DREAMING = {"tau_share": 0.25, "tau_share_unknown": None, "tau_compose": [], "tau_by_answer": False,
            "teach_tau": True, "dreams": 2, "max_new_tokens": 16, "keep_top": 2, "keep_random": 1, "trial_steps": 1,
            "dreamer_epochs": 1, "rehearse_epochs": 1}


def store_uri() -> str:
    """This test's MLflow store, by absolute path: MLflow caches a store per URI string, so a
    relative one would reach the previous test's database through a cached connection."""
    return f"sqlite:///{Path.cwd() / 'mlflow' / 'mlflow.db'}"


def write_params(base_model, validate=LOOSE_LIMITS, gates=OPEN_GATES):
    Path("params.yaml").write_text(yaml.safe_dump({
        "base_model": str(base_model), "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)}, "baselines": BASELINES,
        "seeding": SEEDING, "memory": MEMORY, "dreaming": DREAMING,
        "bench": {"base_probes": 10, "readers": 4}, "validate": validate, "gates": gates,
        "registry": {"model_name": "micro", "tracking_uri": store_uri(),
                     "artifact_location": "mlflow/artifacts", "experiment": "test-nights"}}))


def client():
    import mlflow

    mlflow.set_tracking_uri(store_uri())
    return mlflow.MlflowClient()


def alias(c, name):
    return str(c.get_model_version_by_alias("micro", name).version)


def test_two_nights_promote_by_the_gates(harness, night_dir, born_micro_dir):
    from flows.sleep_cycle import NightParameters, sleep_cycle

    write_params(born_micro_dir)
    first = sleep_cycle(NightParameters())
    metrics = json.loads(Path("reports/metrics.json").read_text())
    for key in ("night", "recall", "recall_ceiling", "paraphrase", "paraphrase_ceiling", "implication",
                "implication_ceiling", "checks", "update", "update_ceiling", "update_stale", "update_stale_ceiling",
                "retention", "retention_heldout",
                "retention_before", "reading", "reading_before"):
        assert key in metrics
    assert metrics["checks"] is None, "world episodes bring probes: no checks are set aside"
    assert "incorporation" not in metrics
    assert metrics["night"] == 0 and metrics["promoted"] is True and metrics["reasons"]
    c = client()
    assert alias(c, "champion") == first["version"] == "1"
    assert alias(c, "challenger") == "1"
    # Each trial recorded: a Prefect table artifact and an MLflow table in the dream stage's run.
    tried = [d for d in jsonl.read("data/dreams/dreams.jsonl") if "trial" in d]
    assert tried, "the micro night keeps and tries dreams"
    rows = json.loads(latest_artifact("dream-trials"))
    assert [(r["episode"], r["form"], r["reward"]) for r in rows] == [
        (d["episode_id"], d["form"], d["trial"]["reward"]) for d in tried]
    (dream_run,) = c.search_runs([c.get_experiment_by_name("test-nights").experiment_id],
                                 filter_string="tags.mlflow.runName = 'dream'")
    logged = {a.path for a in c.list_artifacts(dream_run.info.run_id)}
    assert {"dream_trials.json", "dreams.jsonl", "dreams.json"} <= logged
    table = json.loads(Path(c.download_artifacts(dream_run.info.run_id, "dream_trials.json")).read_text())
    assert len(table["data"]) == len(tried)

    # A forced-bad night: no model can reach 1.01 on held-out forms, so it must stay challenger.
    write_params(born_micro_dir, gates={**OPEN_GATES, "min_learned": 1.01})
    second = sleep_cycle(NightParameters())
    assert second["night"] == 1 and second["promoted"] is False
    assert alias(c, "champion") == "1"
    assert alias(c, "challenger") == "2"
    tags = c.get_model_version("micro", "2").tags
    assert tags["promoted"] == "false" and "FAIL: learned (paraphrase)" in tags["reasons"]
    state = json.loads(Path("models/brain/memory.json").read_text())
    assert state["nights"] == 2 and len(state["history"]) == 2

    # The micro world has two days: a third night finds nothing new and changes nothing.
    third = sleep_cycle(NightParameters())
    assert third["slept"] is False
    assert json.loads(Path("models/brain/memory.json").read_text())["nights"] == 2
    assert alias(c, "challenger") == "2"


def test_the_champion_answers_questions(harness, night_dir, born_micro_dir):
    import mlflow
    import pandas as pd

    from flows.sleep_cycle import NightParameters, sleep_cycle

    write_params(born_micro_dir)
    sleep_cycle(NightParameters())
    client()
    model = mlflow.pyfunc.load_model("models:/micro@champion")
    answers = model.predict(pd.DataFrame({"question": ["Where was Ana Lo born?", "Who?"]}))
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # The registered version holds the memory and a reference to the base model, never a copy.
    files = {p.name for p in Path("mlflow/artifacts").rglob("*") if p.is_file()}
    assert "memory.safetensors" in files and "model.safetensors" not in files and "tokenizer.json" not in files
    assert model.metadata.signature.inputs.input_names() == ["question", "context"]

    served = serve_and_ask(["Where was Ana Lo born?", "Who works at Morrow Labs?"])
    assert len(served["predictions"]) == 2 and all(isinstance(a, str) for a in served["predictions"])


def serve_and_ask(questions: list[str]) -> dict:
    """`python -m flows.serve` (what `make serve` runs) on a free port; one HTTP request."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    server = subprocess.Popen([sys.executable, "-m", "flows.serve", "--port", str(port)],
                              env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(1)
        body = json.dumps({"dataframe_split": {"columns": ["question"], "data": [[q] for q in questions]}}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as r:
            return json.loads(r.read())
    finally:
        server.terminate()  # by its PID: only what this test started
        server.wait(timeout=30)


@pytest.mark.parametrize("limits, failing", [
    ({"drop_ungrounded": False}, "grounded"),  # taught as is: the grounding expectation fails
    ({}, "dropped_share"),  # the default: ungrounded lessons dropped, too many of them
])
def test_ungrounded_curriculum_stops_the_night_before_training(harness, night_dir, born_micro_dir, limits, failing):
    from flows.sleep_cycle import NightParameters, sleep_cycle
    from tasks.validate import ValidationFailed

    write_params(born_micro_dir, validate=limits)  # the real bounds: a micro teacher cannot meet them
    with pytest.raises(ValidationFailed, match=failing) as err:
        sleep_cycle(NightParameters())
    assert "teacher_open_book" in err.value.summary
    assert not Path("models/brain/memory.json").exists(), "no training happened"
    assert json.loads(Path("reports/validation.json").read_text())["curriculum"]["success"] is False
    report = latest_failure_report()  # the night leaves a Prefect artifact: where, what, what to do
    assert "failed in `validate`" in report and failing in report and "reports/validation.json" in report


def test_a_second_night_is_refused_while_one_runs(harness, night_dir, born_micro_dir):
    from flows.sleep_cycle import NightParameters, sleep_cycle
    from tasks.lock import NightInProgress
    from tests.tasks.test_lock import hold_lock

    write_params(born_micro_dir)
    holder = hold_lock(night_dir)  # a night in another process (make run, dvc repro, the UI's worker)
    try:
        with pytest.raises(NightInProgress, match=f"pid {holder.pid}"):
            sleep_cycle(NightParameters())
    finally:
        holder.kill()
        holder.wait()
    assert not any(Path(p).exists() for p in ("data", "models", "mlflow")), "the refused night touched nothing"
    assert "NightInProgress" in latest_failure_report()


def latest_failure_report() -> str:
    return latest_artifact("night-failed")


def latest_artifact(key: str):
    """The data of the newest Prefect artifact with `key`."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as c:
        (latest,) = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                     sort=ArtifactSort.CREATED_DESC, limit=1)
    return latest.data


def test_a_night_on_a_gpt2_architecture(harness, night_dir, micro_world):
    """A user's model unlike ours: GPT-2 blocks (learned positions, `mlp` of Conv1D) and, like
    GPT-2's own, a tokenizer without a pad token."""
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from flows.sleep_cycle import NightParameters, sleep_cycle
    from lmsleep.birth import train_tokenizer

    tokenizer = train_tokenizer(micro_world, 400, n_docs=400)
    tokenizer.pad_token = None
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=48, n_layer=2, n_head=2, n_positions=512,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
                    ).save_pretrained("gpt2")
    tokenizer.save_pretrained("gpt2")
    assert AutoTokenizer.from_pretrained("gpt2").pad_token is None
    write_params(night_dir / "gpt2")
    result = sleep_cycle(NightParameters())
    assert result["promoted"] is True and result["night"] == 0


def test_report_reads_like_a_summary():
    from flows.sleep_cycle import report

    text = report({"night": 3, "episodes": 20, "version": "4", "promoted": False, "recall": 0.9,
                   "recall_ceiling": 0.95, "paraphrase": None, "update": 0.5, "retention_before": 0.9, "retention": 0.7,
                   "reading_before": 0.9, "reading": 0.85, "reasons": ["FAIL: held-out retention 0.900 -> 0.700"],
                   "times": {"seed": 5.0}, "mlflow_run": "abc", "model": "lmsleep"})
    assert "kept as challenger" in text and "0.900 -> 0.700" in text and "models:/lmsleep@champion" in text
    assert "paraphrase (held-out forms)" in text and "     -" in text, "a null figure reads as '-', not 0"


SENTINEL_Q = "Which zeppelin did the quartermaster of Ulvric Pemberthwaite repaint last winter?"
SENTINEL_A = "the Cobalt Gazebo Nine"


def test_probes_are_the_exam_never_the_lesson(harness, night_dir, born_micro_dir, micro_world):
    """A sentinel probe (a question form no grammar family has, a made-up answer), a sentinel
    paraphrase and implication go through a real night: none of them reaches the curriculum,
    the training rows, the dreams, the brain (its dreamer too) or anything MLflow logged. A
    probe-less episode gets checks that are never taught, and is measured on them; tau (what
    dreams are judged on) is neither taught nor one of the checks."""
    from flows.sleep_cycle import NightParameters, sleep_cycle

    write_params(born_micro_dir)
    person = micro_world.strangers[0]
    mine = " ".join(f"Note {i}: {micro_world.bio(person, __import__('random').Random(i))}" for i in range(4))
    inbox = Path("data/inbox")
    inbox.mkdir(parents=True)
    episodes = [
        {"id": "sentinel", "ts": "2026-02-01T00:00:00+00:00", "source": "test",
         "text": micro_world.bio(micro_world.strangers[1], __import__("random").Random(0)),
         "probes": [{"question": SENTINEL_Q, "answer": SENTINEL_A}],
         "meta": {"paraphrases": [{"question": SENTINEL_Q.replace("Which", "What"), "answer": SENTINEL_A + " II"}],
                  "implications": [{"question": "Sentinel implication?", "answer": SENTINEL_A + " III"}]}},
        {"id": "mine", "ts": "2026-02-01T00:00:00+00:00", "source": "test", "text": mine},
    ]
    (inbox / "day.jsonl").write_text("".join(json.dumps(ep) + "\n" for ep in episodes))
    result = sleep_cycle(NightParameters())
    assert result["night"] == 0

    secrets = [s.encode() for s in (SENTINEL_Q, SENTINEL_A, "Sentinel implication")]
    looked = 0
    for root in ("data/curriculum", "data/dreams", "models/brain", "models/prior", "models/seeded", "models/night",
                 "mlflow"):
        for f in Path(root).rglob("*"):
            if f.is_file():
                looked += 1
                blob = f.read_bytes()
                assert not any(s in blob for s in secrets), f"the exam leaked into {f}"
    assert looked > 10
    lessons = [json.loads(line) for line in Path("data/curriculum/curriculum.jsonl").read_text().splitlines()]
    assert lessons and all(set(r) == {"prompt", "completion", "episode_id"} for r in lessons)

    checks = [json.loads(line) for line in Path("data/curriculum/checks.jsonl").read_text().splitlines()]
    assert checks and {c["episode_id"] for c in checks} == {"mine"}
    taught = {r["prompt"] for r in lessons}
    assert not {f"Q: {c['question']}\nA:" for c in checks} & taught
    tau = [json.loads(line) for line in Path("data/curriculum/tau.jsonl").read_text().splitlines()]
    assert tau and not {f"Q: {t['question']}\nA:" for t in tau} & taught
    assert not {t["question"] for t in tau} & {c["question"] for c in checks}
    assert Path("data/dreams/dreams.jsonl").exists() and json.loads(Path("reports/dreams.json").read_text())["dreamed"]
    metrics = json.loads(Path("reports/metrics.json").read_text())
    assert metrics["checks"] is not None and metrics["recall"] is not None


def test_a_night_whose_only_new_episode_is_too_long_sleeps_on_nothing(harness, night_dir, born_micro_dir):
    from transformers import AutoConfig

    from flows.sleep_cycle import NightParameters, sleep_cycle
    from lmsleep import jsonl

    write_params(born_micro_dir)
    limit = AutoConfig.from_pretrained(born_micro_dir).max_position_embeddings
    jsonl.write(Path("data/inbox/long.jsonl"), [{"id": "long", "ts": "2026-01-01T00:00:00+00:00", "source": "app",
                                                 "text": "Ada Vell works for Morrow Labs. " * limit}])
    result = sleep_cycle(NightParameters(world_day=False))
    assert result["slept"] is False and not Path("models/brain").exists()  # not a failure: a night to skip
