"""The night's schedule of consolidations between memory levels (PAPER.md section 2).

    for step in plan(night=8, used=[3, 1], config=MemoryConfig()):
        ...  # Step("consolidate", 1, 2), then Step("consolidate", 0, 1)

Every night level 0 (the episodes, in the teacher's context) is consolidated into a new level-1
expert; every `periods[l]` nights level l is consolidated into a new level-(l+1) expert and
then reset. Slower levels go first, so tonight's episodes land in a level 1 that has just
been emptied upward, and recent knowledge stays in the fast level.

Overflow: a level with no free slot is consolidated upward early; the top level merges its
two oldest experts instead (`Memory.merge_oldest`). So memory stays bounded (`simulate`).
"""

from __future__ import annotations

from dataclasses import dataclass

from lmsleep.memory import MemoryConfig


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
