import json

import torch

from lmsleep.bench_scale import TokenCounter, main


def test_token_counter_splits_passes_with_and_without_gradient(micro):
    model, tokenizer = micro
    counter = TokenCounter(model)
    ids = tokenizer(["Q: Where does Ada Vell work?\nA:"], return_tensors="pt")["input_ids"]
    model(input_ids=ids)  # with gradient: the student
    with torch.no_grad():
        model(input_ids=torch.cat([ids, ids]))  # without: the teacher, two rows
    assert (counter.trained, counter.inferred) == (ids.numel(), 2 * ids.numel())
    counter.handle.remove()
    model(input_ids=ids)
    assert counter.trained == ids.numel()


def test_a_tiny_night_reports_tokens_and_seconds(micro_dir, tmp_path):
    from lmsleep.keys import text_names
    from lmsleep.params import load_params
    from lmsleep.world import World

    episodes = World(load_params("params.yaml").world).day(0)
    # Each lesson names its episode's first person: the default memory is keyed, and an expert
    # stays shut on a row that names none of tonight's people (lmsleep/keys.py).
    lessons = [{"prompt": f"Q: Who is {text_names(ep['text'])[0]}?\nA:", "completion": " someone\n",
                "episode_id": ep["id"]} for ep in episodes]
    (tmp_path / "lessons.json").write_text(json.dumps(lessons))
    out = tmp_path / "scale.json"
    main(["--size", "tiny", "--tokenizer", str(micro_dir), "--lessons", str(tmp_path / "lessons.json"),
          "--out", str(out), "--seeding", "epochs=1", "lti=false", "lmbda=0"])
    report = json.loads(out.read_text())
    assert report["seeding_overrides"] == {"epochs": 1, "lti": False, "lmbda": 0}
    assert report["tokens_trained"] > 0 and report["tokens_inferred"] > 0 and report["seconds"] > 0
    assert report["steps"][0]["rows"] >= len(lessons) and report["mfu"] is None  # no peak known for a CPU
    assert report["day"] == 0 and report["earlier_nights"] == []


def test_a_tiny_sleep_night_dreams_the_written_dreams_and_times_each_stage(micro_dir, tmp_path):
    from lmsleep.dreams import dream_row
    from lmsleep.keys import text_names
    from lmsleep.params import load_params
    from lmsleep.world import World

    episodes = World(load_params("params.yaml").world).day(0)
    names = {ep["id"]: text_names(ep["text"])[0] for ep in episodes}
    # Two answers an episode: tau sets one aside (by answer), seeding teaches the other.
    lessons = [{"prompt": f"Q: {q} {names[ep['id']]}?\nA:", "completion": f" {a}\n", "episode_id": ep["id"]}
               for ep in episodes for q, a in (("Who is", "someone"), ("Where is", "somewhere"))]
    dreams = [dream_row("restatement", "C", f" {names[ep['id']]} is someone.\n", ep["id"], "", "C",
                        f" {names[ep['id']]} is someone.\n") for ep in episodes]
    # A written dream passes the night's guards like a sampled one: about no episode of
    # tonight, tau cannot judge it.
    stray = dream_row("restatement", "C", " Nobody is someone.\n", "no-such-episode", "", "C", " Nobody is someone.\n")
    (tmp_path / "lessons.json").write_text(json.dumps(lessons))
    (tmp_path / "dreams.json").write_text(json.dumps(dreams + [stray]))
    out = tmp_path / "scale.json"
    main(["--size", "tiny", "--tokenizer", str(micro_dir), "--lessons", str(tmp_path / "lessons.json"),
          "--dreams", str(tmp_path / "dreams.json"), "--helped-share", "0.5", "--out", str(out),
          "--seeding", "epochs=1", "--dreaming", "rehearse_epochs=1", "rest_em=false"])
    report = json.loads(out.read_text())
    dreamt = report["dreaming"]
    assert report["lessons"] == len(episodes) and dreamt["tau"] == len(episodes)  # one answer of two set aside
    assert dreamt["overrides"] == {"rehearse_epochs": 1, "rest_em": False}
    assert dreamt["written"] == len(dreams) + 1 and dreamt["dreams"] == len(dreams)  # all but the stray judged
    assert dreamt["kept"] == len(dreams) and dreamt["helped"] == round(0.5 * len(dreams))
    assert set(dreamt["stages"]) == {"dream", "select", "try", "learn", "rehearse"}
    assert dreamt["tokens_trained"] > 0 and dreamt["tokens_inferred"] > 0 and dreamt["rehearsal"]["steps"] > 0
    assert report["night_over_seeding"] > 1 and dreamt["peak_memory_gib"] is None  # no GPU here


def test_the_dreams_file_is_written_again_for_another_sampling(tmp_path, monkeypatch):
    from dataclasses import replace

    from lmsleep import bench_scale
    from lmsleep.dreaming import DreamingConfig

    calls = []
    monkeypatch.setattr("lmsleep.dreams.sample_dreams", lambda *a: calls.append(a[3].temperature) or [{"n": 1}])
    monkeypatch.setattr(bench_scale, "born_model", lambda path: None)  # no model loads: the sampler is stubbed
    path, born = tmp_path / "dreams.json", tmp_path / "born"
    assert bench_scale.written_dreams(path, born, None, [], DreamingConfig()) == [{"n": 1}]
    assert bench_scale.written_dreams(path, born, None, [], DreamingConfig()) == [{"n": 1}] and len(calls) == 1
    bench_scale.written_dreams(path, born, None, [], replace(DreamingConfig(), temperature=0.9))
    assert calls == [DreamingConfig().temperature, 0.9]  # another sampling: written again
    path.write_text(json.dumps([{"mine": True}]))  # a plain list of one's own: taken as it is
    mine = bench_scale.written_dreams(path, born, None, [], replace(DreamingConfig(), temperature=0.1))
    assert mine == [{"mine": True}]


def test_two_nights_report_the_last_after_a_shortened_first(micro_dir, tmp_path, monkeypatch):
    import math
    from pathlib import Path

    from lmsleep import dreaming
    from lmsleep.dreams import dream_row
    from lmsleep.keys import text_names
    from lmsleep.params import load_params
    from lmsleep.world import World

    world = World(load_params("params.yaml").world)
    for day in (0, 1):
        episodes = world.day(day)
        names = {ep["id"]: text_names(ep["text"])[0] for ep in episodes}
        lessons = [{"prompt": f"Q: {q} {names[ep['id']]}?\nA:", "completion": f" {a}\n", "episode_id": ep["id"]}
                   for ep in episodes for q, a in (("Who is", "someone"), ("Where is", "somewhere"))]
        dreams = [dream_row("restatement", "C", f" {names[ep['id']]} is someone.\n", ep["id"], "", "C",
                            f" {names[ep['id']]} is someone.\n") for ep in episodes]
        (tmp_path / f"lessons{day}.json").write_text(json.dumps(lessons))
        (tmp_path / f"dreams{day}.json").write_text(json.dumps(dreams))
    adapter_there, adapter = [], dreaming.dreamer_adapter

    def watched(model, path):
        adapter_there.append((Path(path) / "adapter_config.json").exists())
        return adapter(model, path)

    monkeypatch.setattr(dreaming, "dreamer_adapter", watched)
    out = tmp_path / "scale.json"
    main(["--size", "tiny", "--tokenizer", str(micro_dir), "--lessons", str(tmp_path / "lessons{day}.json"),
          "--dreams", str(tmp_path / "dreams{day}.json"), "--helped-share", "1", "--out", str(out), "--nights", "2",
          "--seeding", "epochs=2", "--dreaming", "rehearse_epochs=2",
          "--warmup", "seeding.epochs=1", "dreaming.rehearse_epochs=1"])
    report = json.loads(out.read_text())
    first, = report["earlier_nights"]
    assert (first["day"], report["day"]) == (0, 1) and report["warmup"] == {}
    assert first["warmup"] == {"seeding": {"epochs": 1}, "dreaming": {"rehearse_epochs": 1}}
    assert (first["seeding_overrides"], report["seeding_overrides"]) == ({"epochs": 1}, {"epochs": 2})
    batch = load_params("params.yaml").seeding.batch_size
    for part in (lambda r: r["steps"][0], lambda r: r["dreaming"]["rehearsal"]):  # seeding, then the rehearsal
        assert (part(first)["steps"], part(report)["steps"]) == (math.ceil(part(first)["rows"] / batch),
                                                                 2 * math.ceil(part(report)["rows"] / batch))
    assert report["counts"]["active_experts"] > first["counts"]["active_experts"]  # night 0's expert stays
    assert adapter_there == [False, True]  # night 1 dreams with what ReST-EM taught on night 0


def test_more_nights_need_a_file_a_day_and_warmups_name_their_section(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        main(["--nights", "2", "--lessons", str(tmp_path / "lessons.json")])
    assert "put {day} in the path" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--nights", "2", "--warmup", "epochs=1"])
    assert "name the section" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--warmup", "seeding.epochs=1"])
    assert "give --nights 2 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--nights", "2", "--warmup", "dreaming.rehearse_epochs=1"])
    assert "without --dreaming" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--nights", "2", "--warmup", "seeding.gamma=2"])
    assert "the reward is built once" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a misspelled key fails before anything loads
        main(["--nights", "2", "--tokenizer", str(tmp_path / "none"), "--warmup", "seeding.epoch=1"])
    assert "epoch" in capsys.readouterr().err


def test_a_night_that_dies_while_dreaming_leaves_its_seeding_in_the_report(micro_dir, tmp_path, monkeypatch):
    import pytest

    from lmsleep.dreaming import Dreamer
    from lmsleep.keys import text_names
    from lmsleep.params import load_params
    from lmsleep.world import World

    episodes = World(load_params("params.yaml").world).day(0)
    lessons = [{"prompt": f"Q: {q} {text_names(ep['text'])[0]}?\nA:", "completion": f" {a}\n", "episode_id": ep["id"]}
               for ep in episodes for q, a in (("Who is", "someone"), ("Where is", "somewhere"))]
    (tmp_path / "lessons.json").write_text(json.dumps(lessons))
    (tmp_path / "dreams.json").write_text("[]")

    def dies(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(Dreamer, "night", dies)
    out = tmp_path / "scale.json"
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["--size", "tiny", "--tokenizer", str(micro_dir), "--lessons", str(tmp_path / "lessons.json"),
              "--dreams", str(tmp_path / "dreams.json"), "--out", str(out), "--dreaming",
              "--seeding", "epochs=1", "lti=false", "lmbda=0"])
    report = json.loads(out.read_text())
    assert report["seconds"] > 0 and report["steps"][0]["steps"] > 0 and report["earlier_nights"] == []
    assert "dreaming" not in report
