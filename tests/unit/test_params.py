import pytest

from lmsleep.params import load_params


def test_defaults_without_a_file(tmp_path):
    params = load_params(tmp_path / "absent.yaml")
    assert params.base_model == "models/base" and params.bench.days == 10 and params.birth.minutes is None


def test_repo_params_load():
    params = load_params("params.yaml")
    assert params.world.base_people > 0 and params.birth.steps > 0


def test_unknown_key_names_section_and_key(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("birth:\n  layers: 4\n")
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['layers'\] under 'birth'"):
        load_params(path)
