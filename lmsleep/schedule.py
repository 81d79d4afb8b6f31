"""The night's schedule of consolidations between memory levels (PAPER.md section 2).

    for step in plan(night=8, used=[3, 1], config=MemoryConfig()):
        ...  # Step("consolidate", 1, 2), then Step("consolidate", 0, 1)

Every night level 0 (the episodes, in the teacher's context) is consolidated into a new level-1
expert; every `periods[l]` nights level l is consolidated into a new level-(l+1) expert and
then reset. Slower levels go first, so tonight's episodes land in a level 1 that has just
been emptied upward, and recent knowledge stays in the fast level.

Overflow: a level with no free slot is consolidated upward early; the top level merges its
two oldest experts instead (`Memory.merge_oldest`). So memory stays bounded (`simulate`).

`MemoryConfig` (the shape of the levels) lives here, free of torch, so reading params.yaml
does not load it; `lmsleep.memory` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MemoryConfig:
    """Shape of the memory (params.yaml `memory:`). One entry per level in each list, level 1 first."""

    # Nights between two consolidations into a level: level 1 takes each night's episodes, level 2
    # takes level 1 every 4th night (PAPER.md section 2). Four levels: e.g. [1, 2, 4, 8].
    periods: list[int] = field(default_factory=lambda: [1, 4])
    # Pre-allocated experts per level and layer. Level l holds at most periods[l]/periods[l-1]
    # experts between two consolidations upward; the top level fills up and then merges.
    slots: list[int] = field(default_factory=lambda: [4, 8])
    # Experts a token may use per level (plus the one being seeded tonight).
    top_k: list[int] = field(default_factory=lambda: [4, 4])
    rank: int = 32
    # A new expert's router bias: its gate starts at sigmoid(router_bias) on every token, so the
    # router has to learn where it belongs rather than where it does not (B = 0 keeps expand exact
    # whatever the gate).
    router_bias: float = 0.0
    # Names of the MLP modules (last path component) to put memory beside; None: by architecture.
    modules: list[str] | None = None
    init_seed: int = 0  # A's initialization (B starts at zero)
    # Keyed experts (lmsleep/keys.py): each expert shut on every token until a name its night's
    # questions asked about has appeared; a symbolic router beside the learned one. Opt-in.
    keyed: bool = False

    def __post_init__(self):
        n = len(self.periods)
        if n < 1 or len(self.slots) != n or len(self.top_k) != n:
            raise ValueError(f"memory.periods, slots and top_k need one entry per level; got {self.periods}, "
                             f"{self.slots}, {self.top_k}")
        if self.periods[0] != 1 or any(b % a for a, b in zip(self.periods, self.periods[1:])):
            raise ValueError(f"memory.periods must start at 1 and each divide the next, got {self.periods}")
        if min(self.slots) < 2 or min(self.top_k) < 1 or self.rank < 1:
            raise ValueError(f"memory needs slots >= 2, top_k >= 1 and rank >= 1 (slots {self.slots}, "
                             f"top_k {self.top_k}, rank {self.rank})")

    @property
    def levels(self) -> int:
        return len(self.periods)


@dataclass(frozen=True)
class Step:
    kind: str  # "consolidate" (sender -> receiver) or "merge" (the receiver's two oldest experts)
    sender: int | None
    receiver: int


def plan(night: int, used: list[int], config: MemoryConfig) -> list[Step]:
    """Tonight's steps, given the active experts per level (`used`, level 1 first). `night`
    counts from 1."""
    if night < 1:
        raise ValueError(f"nights count from 1, got {night}")
    used = list(used)
    steps: list[Step] = []

    def room(level: int) -> None:
        if used[level - 1] < config.slots[level - 1]:
            return
        if level < config.levels:
            room(level + 1)
            move(level, level + 1)
        else:
            steps.append(Step("merge", None, level))
            used[level - 1] -= 1

    def move(sender: int, receiver: int) -> None:
        steps.append(Step("consolidate", sender, receiver))
        used[receiver - 1] += 1
        if sender:
            used[sender - 1] = 0

    for receiver in range(config.levels, 1, -1):
        if night % config.periods[receiver - 1] == 0 and used[receiver - 2] > 0:
            room(receiver)
            move(receiver - 1, receiver)
    room(1)
    move(0, 1)
    return steps


def simulate(nights: int, config: MemoryConfig) -> list[dict]:
    """Experts per level after each of `nights` nights, and the steps each night ran."""
    used, out = [0] * config.levels, []
    for night in range(1, nights + 1):
        steps = plan(night, used, config)
        for s in steps:
            if s.kind == "merge":
                used[s.receiver - 1] -= 1
            else:
                used[s.receiver - 1] += 1
                if s.sender:
                    used[s.sender - 1] = 0
        out.append({"night": night, "used": list(used), "steps": steps})
    return out
