"""`make run` and `make bench`, end to end on a micro world: birth when no model exists, a night,
the bench table and its files. Real training steps throughout."""

import json

import yaml

from tests.conftest import MICRO_BIRTH, MICRO_WORLD

BASELINES = {"lora_r": 4, "lora_alpha": 8, "learning_rate": 0.01, "epochs": 2, "batch_size": 8,
             "self_questions": 1}


def write_params(path, base_model, **extra):
    birth = {k: getattr(MICRO_BIRTH, k) for k in ("vocab_size", "hidden_size", "intermediate_size", "num_layers",
                                                   "num_heads", "tokens_per_step", "micro_tokens", "steps", "warmup_steps", "bf16", "compile",
                                                   "tokenizer_docs")}
    path.write_text(yaml.safe_dump({"base_model": str(base_model), "world": {**MICRO_WORLD.__dict__, "episode_people": list(MICRO_WORLD.episode_people)}, "birth": birth,
                                    "baselines": BASELINES, **extra}))
    return path


def test_night_gives_birth_first_then_reports(tmp_path, monkeypatch, capsys):
    from lmsleep import night

    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "params.yaml", tmp_path / "models" / "base")
    # sft_text: a micro model born in 8 steps cannot read, so its teacher has nothing grounded to teach
    night.main(["--params", str(params), "--day", "1", "--method", "sft_text"])
    born = json.loads((tmp_path / "reports" / "birth.json").read_text())
    scores = ("open_book", "open_book_heldout", "open_book_multi", "open_book_implication", "open_book_heldout_bio",
              "closed_book_base", "closed_book_base_heldout", "closed_book_unseen", "restatement")
    assert set(scores) | {"minutes", "steps", "tokens_per_second", "clock_capped", "params", "mfu"} <= set(born)
    assert all(0.0 <= born[k] <= 1.0 for k in scores)
    assert born["steps"] == MICRO_BIRTH.steps and born["clock_capped"] is False and born["tokens_per_second"] > 0
    report = json.loads((tmp_path / "reports" / "night.json").read_text())
    assert report["day"] == 1 and report["method"] == "sft_text"
    assert set(report["before"]) == set(report["after"]) == {"recall", "paraphrase", "implication", "update", "base",
                                                              "base_heldout", "reading"}
    assert {"recall_ceiling", "paraphrase_ceiling", "implication_ceiling"} <= set(report)
    assert (tmp_path / "models" / "nights" / "day001-sft_text" / "adapter_config.json").exists()
    out = capsys.readouterr().out
    assert "ceiling" in out and "paraphrase (held-out forms)" in out and "implication" in out


def test_bench_writes_the_table_json_and_heatmaps(tmp_path, micro_dir, capsys):
    from lmsleep import bench

    params = write_params(tmp_path / "params.yaml", micro_dir,
                          bench={"days": 2, "seeds": [0, 1], "base_probes": 10, "readers": 4, "workers": 2,
                                 "methods": ["none", "sft_text", "context_distillation", "sequential_merge",
                                             "knowledge_seeding", "sleep"]})
    bench.main(["--params", str(params), "--out", str(tmp_path / "reports")])
    report = json.loads((tmp_path / "reports" / "bench.json").read_text())
    assert report["days"] == 2 and report["world_seed"] == MICRO_WORLD.seed and report["seeds"] == [0, 1]
    keys = {"recall", "recall_ceiling", "paraphrase", "paraphrase_ceiling", "implication", "implication_ceiling",
            "acc", "bwt", "forgetting", "acc_paraphrase", "bwt_paraphrase", "forgetting_paraphrase", "base_retention",
            "base_retention_heldout", "update", "update_ceiling", "update_stale", "update_stale_ceiling", "reading",
            "seconds_per_night", "seeds"}
    assert set(report["methods"]) == {"none", "sft_text", "context_distillation", "sequential_merge", "knowledge_seeding",
                                      "sleep"}
    for name, m in report["methods"].items():
        assert keys <= set(m), name
        assert {k + "_std" for k in ("recall", "paraphrase", "implication")} <= set(m)
        assert len(m["seeds"]) == (1 if name == "none" else 2)
        for run in m["seeds"]:
            assert len(run["R"]) == 2 and all(len(row) == 2 for row in run["R"] + run["R_paraphrase"])
        assert (tmp_path / "reports" / f"bench_R_{name}.png").stat().st_size > 1000
    assert set(report["born"]) >= {"base", "base_heldout", "reading", "recall", "paraphrase", "implication"}
    assert report["methods"]["none"]["seconds_per_night"] < report["methods"]["sft_text"]["seconds_per_night"]
    sleep = report["methods"]["sleep"]["seeds"][0]
    assert len(sleep["dream_success"]) == 2 and {"dreams", "kept", "helped", "quality"} <= set(sleep["nights"][0]["dreams"])
    assert "all_dreams" not in sleep["nights"][0]["dreams"]  # texts are not kept in the report
    night = sleep["nights"][0]["dreams"]  # the dreams suite's bounds guarded them (lmsleep/checks.py)
    assert night["sampled"] >= night["set_aside"] + night["shut"] + night["dreams"]
    summary = json.loads((tmp_path / "reports" / "bench_summary.json").read_text())  # the table's columns
    assert summary.keys() == report["methods"].keys()
    assert all(summary[n][k] == m[k] for n, m in report["methods"].items() for k in ("recall", "recall_std", "reading"))
    out = capsys.readouterr().out
    assert "paraphr" in out and "implic" in out and "sequential_merge" in out


def test_bench_writes_each_run_as_it_ends_and_resumes_only_what_matches(tmp_path, micro_dir, capsys):
    from lmsleep import bench

    bench_params = {"days": 1, "seeds": [0], "base_probes": 4, "readers": 2, "workers": 1, "methods": ["sft_text"]}
    out = ["--out", str(tmp_path / "reports")]
    bench.main(["--params", str(write_params(tmp_path / "params.yaml", micro_dir, bench=bench_params))] + out)
    first = json.loads((tmp_path / "reports" / "bench_runs" / "sft_text-seed0.json").read_text())
    assert first["seed"] == 0 and first["result"]["nights"][0]["night"] == 0
    # One more seed, resumed: seed 0 is taken from its file, only seed 1 runs.
    bench.main(["--params", str(write_params(tmp_path / "params.yaml", micro_dir, bench={**bench_params, "seeds": [0, 1]})),
                "--resume"] + out)
    printed = capsys.readouterr().out
    assert "resumed sft_text seed 0" in printed and "1 runs (sft_text; seeds [0, 1])" in printed
    report = json.loads((tmp_path / "reports" / "bench.json").read_text())
    assert report["methods"]["sft_text"]["seeds"][0] == first["result"]
    assert (tmp_path / "reports" / "bench_runs" / "sft_text-seed1.json").exists()
    # Other settings, or a file cut short by a session's end: not resumed, and said why.
    saved, said = bench.SavedRuns(tmp_path / "reports" / "bench_runs", str(micro_dir)), []
    job = ("sft_text", 0, {"base_model": str(micro_dir), "epochs": 2})
    saved.save(job, {"recall": 0.5})
    assert saved.load(job, said.append) == {"recall": 0.5}
    assert saved.load(("sft_text", 0, {"base_model": str(micro_dir), "epochs": 1}), said.append) is None
    saved.file("sft_text", 0).write_text('{"method": "sft_')
    assert saved.load(job, said.append) is None
    assert "other settings" in said[1] and "unreadable" in said[2]


def test_bench_refuses_a_missing_model(tmp_path):
    import pytest

    from lmsleep import bench

    params = write_params(tmp_path / "params.yaml", tmp_path / "nothing")
    with pytest.raises(SystemExit, match="no model at"):
        bench.main(["--params", str(params)])
    with pytest.raises(SystemExit, match="no params file at"):  # a typo, not every default
        bench.main(["--params", str(tmp_path / "params.yml")])
