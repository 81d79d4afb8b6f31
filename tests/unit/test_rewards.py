import pytest

from lmsleep.rewards import SemanticJudge, imitation_reward, r_abs


def test_r_abs_on_hand_made_pairs():
    assert r_abs("Morrow Labs", "Morrow Labs") == 1.0
    assert r_abs("", "") == 1.0
    assert r_abs("abc", "abd") == pytest.approx(2 / 3)  # one edit over three characters
    assert r_abs("ab", "abcd") == pytest.approx(0.5)  # normalized by the longer string
    assert r_abs("ab", "abcd") == r_abs("abcd", "ab")  # symmetric
    assert r_abs("abc", "xyz") == 0.0  # beyond z0 = 0.5 of the longer


def test_r_abs_threshold_is_inclusive():
    # "abcd" vs "abxy": two edits of four = exactly z0 = 0.5: still rewarded
    assert r_abs("abcd", "abxy", z0=0.5) == pytest.approx(0.5)
    assert r_abs("abcd", "abxy", z0=0.49) == 0.0


def test_semantic_judge_with_a_pluggable_encoder():
    import torch

    vectors = {"same": [1.0, 0.0], "also same": [0.9, 0.1], "other": [0.0, 1.0]}
    judge = SemanticJudge(lambda texts: torch.tensor([vectors[t] for t in texts]), threshold=0.8)
    assert judge(["same", "same"], ["also same", "other"]) == [1.0, 0.0]


def test_imitation_reward_has_the_grpo_shape():
    judge = SemanticJudge(lambda texts: __import__("torch").ones(len(texts), 2))  # everything "means the same"
    reward = imitation_reward(gamma=0.5, z0=0.5, judge=judge)
    out = reward(prompts=["Q: x\nA:"] * 2, completions=["Morrow Labs", "zzz"], reference=["Morrow Labs"] * 2)
    assert out == [pytest.approx(1.0), pytest.approx(0.5)]
    assert imitation_reward(gamma=0.0)(["p"], ["abc"], reference=["abd"]) == [pytest.approx(2 / 3)]
    with pytest.raises(ValueError, match="gamma"):
        imitation_reward(gamma=1.5)


def test_the_default_encoder_loads_offline_and_judges():
    judge = SemanticJudge(threshold=0.8)
    same, other = judge(["Ada Vell works for Morrow Labs.", "Ada Vell works for Morrow Labs."],
                        ["Ada Vell works for Morrow Labs.", "The weather in Paris was rainy all week."])
    assert (same, other) == (1.0, 0.0)
