import json

import pytest

from tasks.dream import _with_outcomes


def test_every_dream_is_written_with_its_trial_where_it_was_kept():
    dreams = [{"episode_id": "e", "form": "qa", "completion": c} for c in (" A\n", " B\n", " C\n")]
    kept = [dreams[1] | {"score": 0.5, "trial": {"reward": 1, "worker": 4242}}]
    out = _with_outcomes(dreams, kept)
    assert [d["kept"] for d in out] == [False, True, False]
    assert out[1]["trial"] == {"reward": 1} and "trial" not in out[0]  # no pid: the same night, the same bytes


def test_the_pipeline_refuses_the_dreams_only_ablation(tmp_path):
    from tasks.common import load_pipeline

    (tmp_path / "params.yaml").write_text(json.dumps({"dreaming": {"seeding": False}}))
    with pytest.raises(ValueError, match="dreams_only ablation"):
        load_pipeline(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text(json.dumps({"dream": False, "dreaming": {"seeding": False}}))
    assert load_pipeline(tmp_path / "params.yaml").params.dream is False
