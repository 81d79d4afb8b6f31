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


def test_bench_variants_override_seeding_and_memory():
    from lmsleep.bench import method_configs

    params = load_params("params.yaml")
    assert method_configs("sft_text", params) == {}
    default = method_configs("knowledge_seeding", params)
    assert default["seeding"] == params.seeding and default["memory"] == params.memory
    assert method_configs("ks_no_lti", params)["seeding"].lti is False
    assert method_configs("ks_4_levels", params)["memory"].levels == 4
    assert "config" not in default  # the curriculum of params.yaml's baselines:
    with pytest.raises(SystemExit, match="unknown method 'ks_typo'"):
        method_configs("ks_typo", params)


def test_a_variant_may_change_the_curriculum(tmp_path):
    from lmsleep.bench import method_configs

    path = tmp_path / "params.yaml"
    path.write_text("bench:\n  variants:\n    ks_x: {baselines: {window: paragraph}, seeding: {beta: 0.0}}\n")
    configs = method_configs("ks_x", load_params(path))
    assert configs["config"].window == "paragraph" and configs["config"].self_questions == 2.0
    assert configs["seeding"].beta == 0.0
    path.write_text("bench:\n  variants:\n    ks_x: {baselines: {window: sentence}}\n")
    with pytest.raises(ValueError, match="baselines.window"):
        method_configs("ks_x", load_params(path))


def test_a_variant_with_an_unknown_knob_names_it(tmp_path):
    from lmsleep.bench import method_configs

    path = tmp_path / "params.yaml"
    path.write_text("bench:\n  variants:\n    ks_x: {seeding: {lamda: 0.1}}\n")
    with pytest.raises(ValueError, match=r"\['lamda'\] under 'bench.variants.ks_x.seeding'"):
        method_configs("ks_x", load_params(path))
