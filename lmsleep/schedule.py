"""The night's schedule of consolidations between memory levels (PAPER.md section 2).

    for step in plan(night=8, used=[3, 1], config=MemoryConfig()):
        ...  # Step("consolidate", 1, 2), then Step("consolidate", 0, 1)

Every night level 0 (the episodes, in the teacher's context) is consolidated into a new level-1
expert; every `periods[l]` nights level l is consolidated into a new level-(l+1) expert and
then reset. Slower levels go first, so tonight's episodes land in a level 1 that has just
been emptied upward, and recent knowledge stays in the fast level.

Overflow: a level with no free slot is consolidated upward early; the top level merges its
two oldest experts instead (`Memory.merge_oldest`). So memory stays bounded (`simulate`).
With `upward: move` a level's experts go up as they are (a "move" step, no training), so the
receiver needs a slot for each; the top level merges its oldest pairs until they fit.

`MemoryConfig` (the shape of the levels) lives here, free of torch, so reading params.yaml
does not load it; `lmsleep.memory` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# A brain directory's memory file, and the safetensors metadata key that holds its state (config,
# active slots, keys). Named once, here and torch-free: lmsleep/memory.py writes them, and
# lmsleep/brain.py reads the config from the header without loading torch.
MEMORY_FILE = "memory.safetensors"
MEMORY_META = "lmsleep_memory"


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
    # Rank of every expert: one for all levels, or one per level (level 1 first). A receiver level
    # with the sum of its sender's ranks starts an upward consolidation from the sender's experts'
    # exact sum (Memory.condense); at one rank for all it starts from their best rank-r approximation.
    rank: int | list[int] = 32
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
    # How a level goes up (level l -> l+1; level 0 -> 1 is always Knowledge Seeding): "distil",
    # the paper's, into one new expert of the receiver; or "move", its experts carried up as they
    # are, each into a slot of its own (no training: the receiver needs the same rank and room for
    # them all, and the top level merges its oldest pairs as it fills). Under keys one expert for
    # several nights' names loses what their separate gates kept apart (days 0-2 at night 4:
    # recall .27 .30 .23 -> .19 .21 .14 distilled; docs/knowledge-seeding.md, keyed memory), moving loses nothing.
    upward: str = "distil"

    def __post_init__(self):
        n = len(self.periods)
        if n < 1 or len(self.slots) != n or len(self.top_k) != n:
            raise ValueError(f"memory.periods, slots and top_k need one entry per level; got {self.periods}, "
                             f"{self.slots}, {self.top_k}")
        if self.periods[0] != 1 or any(b % a for a, b in zip(self.periods, self.periods[1:])):
            raise ValueError(f"memory.periods must start at 1 and each divide the next, got {self.periods}")
        if isinstance(self.rank, list) and len(self.rank) != n:
            raise ValueError(f"memory.rank is one number or one per level; got {self.rank} for {n} levels")
        if min(self.slots) < 2 or min(self.top_k) < 1 or min(self.ranks) < 1:
            raise ValueError(f"memory needs slots >= 2, top_k >= 1 and rank >= 1 (slots {self.slots}, "
                             f"top_k {self.top_k}, rank {self.rank})")
        if self.upward not in ("distil", "move"):
            raise ValueError(f"memory.upward must be 'distil' or 'move', got {self.upward!r}")
        growing = all(a < b for a, b in zip(self.slots, self.slots[1:]))
        if self.upward == "move" and (len(set(self.ranks)) > 1 or not growing):
            raise ValueError(f"memory.upward: move carries experts up as they are: every level needs the same rank "
                             f"and more slots than the level below (rank {self.rank}, slots {self.slots})")

    @property
    def levels(self) -> int:
        return len(self.periods)

    @property
    def ranks(self) -> list[int]:
        """The rank of each level's experts, level 1 first."""
        return list(self.rank) if isinstance(self.rank, list) else [self.rank] * len(self.periods)


@dataclass(frozen=True)
class Step:
    # "consolidate" (sender -> a new expert of the receiver), "move" (the sender's experts carried
    # up, memory.upward: move) or "merge" (the receiver's two oldest experts)
    kind: str
    sender: int | None
    receiver: int


def plan(night: int, used: list[int], config: MemoryConfig, experts_tonight: int = 1) -> list[Step]:
    """Tonight's steps, given the active experts per level (`used`, level 1 first). `night`
    counts from 1; `experts_tonight`: the level-1 slots tonight takes (2 when the dreams are
    rehearsed into a fresh expert beside the seeded one: `dreaming.rehearse_into: new`)."""
    if night < 1:
        raise ValueError(f"nights count from 1, got {night}")
    used = list(used)
    steps: list[Step] = []
    moving = config.upward == "move"

    def incoming(sender: int) -> int:
        """Slots a consolidation of `sender` takes in the level above."""
        return used[sender - 1] if sender and moving else 1

    def room(level: int, need: int = 1) -> None:
        """Free `need` slots in `level`: the level goes up early, or (the top) merges its oldest."""
        if level < config.levels and used[level - 1] + need > config.slots[level - 1]:
            room(level + 1, incoming(level))
            move(level, level + 1)
        while used[level - 1] + need > config.slots[level - 1]:
            steps.append(Step("merge", None, level))
            used[level - 1] -= 1

    def move(sender: int, receiver: int) -> None:
        steps.append(Step("move" if sender and moving else "consolidate", sender, receiver))
        used[receiver - 1] += incoming(sender)
        if sender:
            used[sender - 1] = 0

    for receiver in range(config.levels, 1, -1):
        if night % config.periods[receiver - 1] == 0 and used[receiver - 2] > 0:
            room(receiver, incoming(receiver - 1))
            move(receiver - 1, receiver)
    room(1, experts_tonight)
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
                used[s.receiver - 1] += used[s.sender - 1] if s.kind == "move" else 1
                if s.sender:
                    used[s.sender - 1] = 0
        out.append({"night": night, "used": list(used), "steps": steps})
    return out
