"""Memory levels: banks of low-rank experts beside the MLP block of every decoder layer.

    memory = Memory.attach(model, MemoryConfig())     # any HF causal LM; the base stays frozen
    slot = memory.expand(1)                           # level 1's next expert, B = 0: nothing changes yet
    memory.train_only(1, slot)                        # only that expert and its router row learn
    ... a night of Knowledge Seeding (lmsleep/seeding.py) ...
    memory.settle(1)                                  # it now competes for the router's top-k seats
    memory.save("models/brain"); Memory.load(model, "models/brain")

PAPER.md section 2. Level 0 is the context window; levels 1..L are banks here. In every layer,
each level has `slots` pre-allocated experts (A: d x r, B: r x d), masked until a night activates
one, and a router (one row per slot) whose sigmoid gates weigh the experts it picks: the top-k
active experts per token, so the parameters active per token stay bounded however many nights
have been slept. The MLP's output becomes

    mlp(x) + sum over levels, over the picked experts e of  sigmoid(router_e . [x, 1]) * (x A_e) B_e

Why a module of our own: PEFT's X-LoRA mixes a fixed set of adapters with two forward passes and
no KV cache, and plain multi-adapter LoRA sums adapters with no per-token gate. The banks hang on
forward hooks of the MLP modules, so the model stays the same `PreTrainedModel` (TRL, accelerate
and `generate` with its KV cache accept it) and its own weights are never touched.

Seeding seat: while a night trains an expert, it sits in an extra seat of its level (always
picked), so `expand` is exactly function-preserving (B = 0 adds nothing and displaces no one).
`settle` ends the night: the expert then competes with the rest for the top-k seats. Where a
level has no more active experts than `top_k`, settling changes nothing either (the default's
level 1); on a fuller level the least-gated experts of a token may lose their seat to it.

Keyed memory (opt-in, `MemoryConfig.keyed`, lmsleep/keys.py): each expert's gate is also 0 on
every token before a name its night asked about; a key-shut expert takes no top-k seat.

When a level's slots run out, `plan` consolidates it upward early; the top level instead merges
its two oldest experts into one (`merge_oldest`: the best rank-r approximation of their sum,
lossy), so a hundred nights run in bounded memory (`simulate`). With `upward: move` a level goes
up as its experts (`move_up`, exact), not distilled into one new expert.
"""

from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

# Torch-free: params.py reads the shape, brain.py the file's name and metadata key.
from lmsleep.schedule import MEMORY_FILE, MEMORY_META, MemoryConfig

MLP_NAMES = ("mlp", "feed_forward", "ffn", "block_sparse_moe")  # Llama/Qwen/Mistral/GPT-2, Falcon/OPT-like, Mixtral


class ExpertBank(nn.Module):
    """One level's experts in one layer: `slots` low-rank experts and their router rows.

    Each slot is its own parameter, so freezing all but one expert is `requires_grad`, and an
    optimizer never sees (or decays) the rest."""

    def __init__(self, d: int, slots: int, rank: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.A = nn.ParameterList([nn.Parameter(torch.zeros(d, rank)) for _ in range(slots)])
        self.B = nn.ParameterList([nn.Parameter(torch.zeros(rank, d)) for _ in range(slots)])
        self.router = nn.ParameterList([nn.Parameter(torch.zeros(d + 1)) for _ in range(slots)])  # weight, bias
        self.register_buffer("active", torch.zeros(slots, dtype=torch.bool))
        self.register_buffer("born", torch.full((slots,), -1, dtype=torch.long))  # night activated: age order
        self.seeding: int | None = None  # the slot in tonight's extra seat
        self.extra: int | None = None  # a dreaming night's random extra expert (Memory.random_experts)
        self.key_mask: torch.Tensor | None = None  # keyed memory: [B, T, slots], set per forward (lmsleep/keys.py)
        # The active slots as a host-side list, so that a forward pass on a GPU never waits for a
        # device-to-host copy (one per layer and level made generation launch-bound). Every
        # change goes through `set_active`; a state-dict load drops it.
        self._active: tuple[int, ...] | None = None
        self.register_load_state_dict_post_hook(lambda module, _: module.set_active())

    def set_active(self, slot: int | None = None, on: bool = True) -> None:
        """Switch `slot` on or off (no slot: the buffer changed some other way)."""
        if slot is not None:
            self.active[slot] = on
        self._active = None

    def active_slots(self) -> tuple[int, ...]:
        if self._active is None:
            self._active = tuple(self.active.nonzero().flatten().tolist())
        return self._active

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        idx = self.active_slots()
        if not idx:
            return None
        flat = x.reshape(-1, x.shape[-1])
        # One product per expert, not one matrix for all: an expert's logit must not depend (even
        # in rounding) on how many others are active, or `expand` would not be exact.
        logits = torch.stack([flat @ self.router[i][:-1] + self.router[i][-1] for i in idx], dim=-1)
        shut = None
        if self.key_mask is not None:  # a keyed expert is shut until its names appear (lmsleep/keys.py)
            if self.key_mask.shape[:2] != x.shape[:2]:
                raise RuntimeError(f"keyed memory: a mask for {tuple(self.key_mask.shape[:2])} tokens, an input of "
                                   f"{tuple(x.shape[:2])}: the banks run only inside the model's forward")
            shut = ~self.key_mask.reshape(-1, self.key_mask.shape[-1])[:, list(idx)]
        # Seated outside the top-k competition: tonight's seeded expert and a dream's random extra
        # one (a muted view may have switched either off).
        seats = {idx.index(i) for i in (self.seeding, self.extra) if i in idx}
        competing = [j for j in range(len(idx)) if j not in seats]
        everyone = len(competing) <= self.top_k
        if not everyone:
            # A shut expert takes no seat from an open one.
            ranked = logits[:, competing] if shut is None else logits[:, competing].masked_fill(shut[:, competing],
                                                                                                -torch.inf)
            top = ranked.topk(self.top_k, dim=-1).indices
            # Out of place: under `torch.func.vmap` (dreaming's per-sample gradients) `top` is
            # batched and a fresh tensor is not, and an in-place write into it cannot be.
            at = torch.as_tensor(competing, device=x.device)[top]  # the picks' positions in idx
            picked = torch.zeros_like(logits, dtype=torch.bool).scatter(1, at, True)
        gates = torch.sigmoid(logits)
        if shut is not None:
            gates = gates.masked_fill(shut, 0.0)
        out = torch.zeros_like(flat)
        for j, i in enumerate(idx):
            # Dense, masked: a gather of the picked tokens needs their count on the host (a
            # sync per expert on a GPU); at rank r an expert costs ~4dr per token, little.
            gate = gates[:, j:j + 1] if everyone or j in seats else gates[:, j:j + 1] * picked[:, j:j + 1]
            out = out + gate * ((flat @ self.A[i]) @ self.B[i])
        return out.reshape(x.shape)

    def expert_parameters(self, slot: int) -> list[nn.Parameter]:
        return [self.A[slot], self.B[slot], self.router[slot]]


class _MemoryHook:
    """Adds a layer's banks to its MLP's output (a forward hook: the model's code is untouched)."""

    def __init__(self, banks: nn.ModuleList):
        self.banks = banks

    def __call__(self, module, args, output):
        for bank in self.banks:
            y = bank(args[0])
            if y is not None:
                output = output + y
        return output


def find_mlps(model, names: list[str] | None = None) -> list[tuple[str, nn.Module]]:
    """The MLP block of every decoder layer: modules named one of `names` (default MLP_NAMES)
    that sit in a layer of a ModuleList. A clear error, listing a layer's modules, otherwise."""
    wanted = tuple(names or MLP_NAMES)
    modules = dict(model.named_modules())
    found = []
    for name, module in modules.items():
        parent, _, last = name.rpartition(".")
        grand, _, index = parent.rpartition(".")
        if last in wanted and index.isdigit() and isinstance(modules.get(grand), nn.ModuleList):
            found.append((name, module))
    if not found:
        layers = [n for n, m in modules.items() if isinstance(m, nn.ModuleList)]
        first = f"{layers[0]}.0" if layers else ""
        children = sorted({n[len(first) + 1:].split(".")[0] for n in modules if first and n.startswith(first + ".")})
        raise ValueError(f"no MLP block named {list(wanted)} in the layers of {type(model).__name__} "
                         f"(layer modules: {children or sorted(modules)[:20]}); set memory.modules in "
                         "params.yaml to the name of its MLP block")
    return found


def _hidden_size(model) -> int:
    c = model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        if isinstance(getattr(c, key, None), int):
            return getattr(c, key)
    raise ValueError(f"cannot tell the hidden size of {type(model).__name__} from its config")


def _set_low_rank(bank: ExpertBank, slot: int, delta: torch.Tensor) -> None:
    """Expert `slot` := the best rank-r approximation (SVD) of the d x d `delta`."""
    r = bank.A[slot].shape[1]
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    root = s[:r].sqrt()
    bank.A[slot].copy_((u[:, :r] * root).to(bank.A[slot]))
    bank.B[slot].copy_((root[:, None] * vh[:r]).to(bank.B[slot]))


class Memory:
    """The memory levels attached to one model (see the module docstring)."""

    FILE = MEMORY_FILE

    def __init__(self, model, config: MemoryConfig, mlps: list[tuple[str, nn.Module]], banks: list[nn.ModuleList]):
        self.model, self.config, self.mlps, self.banks = model, config, mlps, banks
        self.nights = 0  # the clock of `born` (ages for merging); saved and loaded with the memory
        # Keyed memory (config.keyed): {level: {slot: (names, their token ids)}} (lmsleep/keys.py).
        self.keys: dict[int, dict[int, tuple[list[str], list[list[int]]]]] = {}
        # The token ids of a blank line, where a key's passage ends (lmsleep.keys.passage_breaks);
        # None: keys stay open to the end of the text (a memory saved before passages existed).
        self.breaks: dict[str, list[int]] | None = None

    @classmethod
    def attach(cls, model, config: MemoryConfig | None = None) -> Memory:
        """Put empty banks beside every MLP block of `model` and freeze the model's own weights."""
        config = config or MemoryConfig()
        if getattr(model, "lmsleep_memory", None) is not None:
            raise ValueError("this model already carries memory levels")
        mlps = find_mlps(model, config.modules)
        d = _hidden_size(model)
        banks = []
        for name, mlp in mlps:
            p = next(mlp.parameters(), None)  # per layer: a sharded model spans devices
            p = p if p is not None else next(model.parameters())
            layer_banks = nn.ModuleList(ExpertBank(d, s, r, k)
                                        for s, r, k in zip(config.slots, config.ranks, config.top_k, strict=True))
            layer_banks.to(device=p.device, dtype=p.dtype)
            mlp.add_module("memory_levels", layer_banks)
            mlp.register_forward_hook(_MemoryHook(layer_banks))
            banks.append(layer_banks)
        for param in model.parameters():
            param.requires_grad_(False)
        memory = cls(model, config, mlps, banks)
        model.lmsleep_memory = memory
        if config.keyed:
            from lmsleep.keys import KeyHook

            model.register_forward_pre_hook(KeyHook(memory), with_kwargs=True)
        return memory

    # -- the banks of one level, across layers --------------------------------------------------
    def level(self, level: int) -> list[ExpertBank]:
        if not 1 <= level <= self.config.levels:
            raise ValueError(f"level {level} does not exist: this memory has levels 1..{self.config.levels}")
        return [layer[level - 1] for layer in self.banks]

    def active_slots(self, level: int) -> list[int]:
        """Active slots of a level, oldest first."""
        bank = self.level(level)[0]
        born = bank.born.tolist()
        return sorted(bank.active_slots(), key=lambda i: (born[i], i))

    def free_slots(self, level: int) -> int:
        return self.config.slots[level - 1] - len(self.active_slots(level))

    # -- operations ---------------------------------------------------------------------------
    @torch.no_grad()
    def expand(self, level: int) -> int:
        """Activate the level's next free slot in the seeding seat; B = 0, so the model computes
        exactly what it did. Returns the slot. A full level is an error: `plan` frees room first."""
        banks = self.level(level)
        slot = self._free_slot(level, "consolidate it upward or merge its oldest experts first (memory.plan)")
        # A second expert of one level and night (`dreaming.rehearse_into: new`) draws its own A:
        # the seed counts tonight's experts already there (0 for the first, which draws as ever).
        tonight = sum(int(banks[0].born[s]) == self.nights for s in banks[0].active_slots())
        g = torch.Generator().manual_seed(self.config.init_seed * 1_000_003 + self.nights * 101 + level
                                          + tonight * 7_919)
        self._drop_keys(level, slot)
        for bank in banks:
            self._clear(bank, slot)
            a = bank.A[slot]
            # LoRA's A initialization (Kaiming-uniform); zero B keeps the function.
            bound = 1 / math.sqrt(a.shape[0])
            a.copy_(torch.rand(a.shape, generator=g, dtype=torch.float32).mul_(2 * bound).sub_(bound).to(a))
            bank.router[slot][-1].fill_(self.config.router_bias)
            bank.set_active(slot, True)
            bank.born[slot] = self.nights
            bank.seeding = slot
        return slot

    def _free_slot(self, level: int, hint: str) -> int:
        """The level's first inactive slot; a full level is an error (`hint`: what to do)."""
        active = self.level(level)[0].active_slots()
        free = [i for i in range(self.config.slots[level - 1]) if i not in active]
        if not free:
            raise RuntimeError(f"memory level {level} is full ({self.config.slots[level - 1]} slots): {hint}")
        return free[0]

    def settle(self, level: int | None = None) -> None:
        """The seeded expert (of `level`, or every level) leaves the extra seat and competes."""
        for lv in ([level] if level else range(1, self.config.levels + 1)):
            for bank in self.level(lv):
                bank.seeding = None

    @contextmanager
    def random_experts(self, rng):
        """While dreaming (PAPER.md section 4), every router also switches on one random extra
        expert of its level, mixing unrelated knowledge into the dream: one of an earlier night,
        never tonight's own, seated whatever the top-k, at its own router's gate (as any picked
        expert). Where a level's experts all fit in its top-k (the defaults' level 1), every one
        is on already and the switch changes nothing. A fully open gate (1) was tried and
        measured: after one sleep night, 10 of 32 qa dreams parsed and none grounded, against
        27 and 25 without it (0.5: 20 and 8), as the routers had learned to keep the expert
        nearly shut on these tokens (docs/dreaming.md). Yields how many routers switched one on
        (a level with no earlier night's expert has none to)."""
        changed = 0
        banks = [bank for layer in self.banks for bank in layer]
        for bank in banks:
            born = bank.born.tolist()
            idx = [i for i in bank.active_slots() if i != bank.seeding and born[i] != self.nights]
            if idx:
                bank.extra = rng.choice(idx)
                changed += 1
        try:
            yield changed
        finally:
            for bank in banks:
                bank.extra = None

    @torch.no_grad()
    def reset(self, level: int) -> None:
        """Synaptic pruning: the level's experts are cleared and its slots freed."""
        for bank in self.level(level):
            for slot in range(len(bank.A)):
                self._clear(bank, slot)
            bank.seeding = None
        self.keys.pop(level, None)

    @torch.no_grad()
    def merge_oldest(self, level: int) -> int:
        """Merge the level's two oldest experts into the older slot: the best rank-r approximation
        (SVD) of A1 B1 + A2 B2, their router rows averaged. Lossy: the top level's overflow rule.
        Returns the freed slot."""
        oldest = self.active_slots(level)
        if len(oldest) < 2:
            raise RuntimeError(f"memory level {level} has fewer than two experts to merge")
        keep, gone = oldest[:2]
        self._join_keys(level, keep, [(level, keep), (level, gone)])
        self._drop_keys(level, gone)
        for bank in self.level(level):
            _set_low_rank(bank, keep, bank.A[keep] @ bank.B[keep] + bank.A[gone] @ bank.B[gone])
            bank.router[keep].copy_((bank.router[keep] + bank.router[gone]) / 2)
            self._clear(bank, gone)
        return gone

    @torch.no_grad()
    def condense(self, sender: int, receiver: int, slot: int) -> None:
        """Start the receiver's expert `slot` as the sender level condensed: the best rank-r
        approximation of the sum of its experts' A B (their exact sum where the receiver's rank is
        at least their ranks summed: `MemoryConfig.rank` per level), the mean of their router
        rows. An upward consolidation then starts near its teacher instead of from B = 0
        (distillation mends the rest: the sender's experts had a gate each, the new one has one)."""
        idx = self.active_slots(sender)
        if not idx:
            return
        self._join_keys(receiver, slot, [(sender, i) for i in idx])
        for layer in self.banks:
            src, dst = layer[sender - 1], layer[receiver - 1]
            _set_low_rank(dst, slot, sum(src.A[i] @ src.B[i] for i in idx))
            dst.router[slot].copy_(torch.stack([src.router[i] for i in idx]).mean(0))

    @torch.no_grad()
    def move_up(self, sender: int, receiver: int) -> list[int]:
        """Carry the sender level's experts (A, B, router row, age, keys) into free slots of the
        receiver as they are, oldest first, and reset the sender (`MemoryConfig.upward: move`):
        the model computes what it did, except where the receiver's top-k now has more to choose
        from. Returns the receiver's new slots."""
        idx = self.active_slots(sender)
        if len(idx) > self.free_slots(receiver):
            raise RuntimeError(f"memory level {receiver} has {self.free_slots(receiver)} free slots for the "
                               f"{len(idx)} experts of level {sender}: merge its oldest first (memory.plan)")
        slots = []
        for i in idx:
            slot = self._free_slot(receiver, "")
            self._join_keys(receiver, slot, [(sender, i)])
            for layer in self.banks:
                self._copy(layer[sender - 1], i, layer[receiver - 1], slot, active=True)
            slots.append(slot)
        self.reset(sender)
        return slots

    @torch.no_grad()
    def copy_expert(self, level: int, slot: int) -> int:
        """A copy of expert `slot` (A, B, router row, age) in a free slot of the level, switched
        off: the expert as it is now, kept aside (without expansion, the teacher's view of the
        expert a night trains in place). Returns the copy's slot; free it with `clear`."""
        banks = self.level(level)
        if slot not in banks[0].active_slots():
            raise ValueError(f"memory level {level} has no active expert {slot} to copy "
                             f"(active: {self.active_slots(level)})")
        copy = self._free_slot(level, f"no room to keep expert {slot} as it was")
        self._join_keys(level, copy, [(level, slot)])
        for bank in banks:
            self._copy(bank, slot, bank, copy, active=False)
        return copy

    @torch.no_grad()
    def clear(self, level: int, slot: int) -> None:
        """Expert `slot` of the level zeroed and its slot freed."""
        for bank in self.level(level):
            self._clear(bank, slot)
        self._drop_keys(level, slot)

    # -- keys (keyed memory, lmsleep/keys.py) -------------------------------------------------------
    def set_keys(self, level: int, slot: int, names: list[str], ids: list[list[int]]) -> None:
        """Key expert `slot` of `level` on `names` (token ids `ids`, lmsleep.keys.key_ids): shut on
        every token before one of them appears. Only with `config.keyed`."""
        if not self.config.keyed:
            raise ValueError("set_keys needs memory.keyed: true (this memory's experts are not keyed)")
        self.keys.setdefault(level, {})[slot] = (sorted(names), [list(i) for i in ids])

    def _join_keys(self, level: int, slot: int, sources: list[tuple[int, int]]) -> None:
        """Expert `slot` keyed on the union of the keys of `sources` ((level, slot) pairs)."""
        names, ids = set(), []
        for lv, i in sources:
            n, k = self.keys.get(lv, {}).get(i, ((), ()))
            names.update(n)
            ids += [x for x in k if x not in ids]
        if names:
            self.keys.setdefault(level, {})[slot] = (sorted(names), ids)

    def _drop_keys(self, level: int, slot: int) -> None:
        self.keys.get(level, {}).pop(slot, None)

    @staticmethod
    def _copy(src: ExpertBank, i: int, dst: ExpertBank, slot: int, active: bool) -> None:
        """Expert `i` of `src` (A, B, router row, age) into `slot` of `dst`, switched on or off."""
        for a, b in zip(dst.expert_parameters(slot), src.expert_parameters(i), strict=True):
            a.copy_(b)
        dst.set_active(slot, active)
        dst.born[slot] = src.born[i]

    @staticmethod
    def _clear(bank: ExpertBank, slot: int) -> None:
        for p in bank.expert_parameters(slot):
            p.zero_()
        bank.set_active(slot, False)
        bank.born[slot] = -1
        if bank.seeding == slot:
            bank.seeding = None

    def train_only(self, level: int, slot: int) -> list[nn.Parameter]:
        """Freeze everything but one expert (A, B) and its router row in every layer; returns
        those parameters (what an optimizer should get)."""
        for p in self.model.parameters():
            p.requires_grad_(False)
        params = [p for bank in self.level(level) for p in bank.expert_parameters(slot)]
        for p in params:
            p.requires_grad_(True)
        return params

    # -- counts -------------------------------------------------------------------------------
    def counts(self) -> dict:
        """Parameters: the model's own, the memory's (all slots), the active experts', and the
        most a token uses (top-k per level plus a seeding seat)."""
        levels = range(1, self.config.levels + 1)
        # An expert's parameters in all layers, per level (levels may differ in rank).
        per_expert = {lv: sum(p.numel() for bank in self.level(lv) for p in bank.expert_parameters(0)) for lv in levels}
        active = {lv: len(self.active_slots(lv)) for lv in levels}
        per_token = {lv: min(k + (1 if self.level(lv)[0].seeding is not None else 0), active[lv])
                     for lv, k in zip(levels, self.config.top_k)}
        memory = sum(p.numel() for layer in self.banks for p in layer.parameters())
        return {"model": sum(p.numel() for p in self.model.parameters()) - memory, "memory": memory,
                "active_experts": sum(active.values()),
                "active_parameters": sum(active[lv] * per_expert[lv] for lv in levels),
                "per_token_parameters": sum(per_token[lv] * per_expert[lv] for lv in levels)}

    # -- save / load --------------------------------------------------------------------------
    def state(self) -> dict:
        return {"config": asdict(self.config), "nights": self.nights,
                "keys": {str(lv): {str(i): [n, k] for i, (n, k) in by.items()} for lv, by in self.keys.items() if by},
                "breaks": self.breaks,
                # No seeding seat: a saved memory is loaded settled (the seat is a night's own).
                "levels": [{"active": self.level(lv)[0].active.tolist(), "born": self.level(lv)[0].born.tolist()}
                           for lv in range(1, self.config.levels + 1)],
                "layers": [name for name, _ in self.mlps]}

    def save(self, path: str | Path) -> Path:
        """`<path>/memory.safetensors`: every bank's tensors, with the layout (config, which slots
        are active, their ages) in its metadata. No pickle."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{key}": t.detach().contiguous().cpu()
                   for (name, _), layer in zip(self.mlps, self.banks) for key, t in layer.state_dict().items()}
        file = path / self.FILE
        save_file(tensors, file, metadata={MEMORY_META: json.dumps(self.state())})
        return file

    @classmethod
    def load(cls, model, path: str | Path) -> Memory:
        """Attach the memory saved at `path` to `model` (the same base model it grew on)."""
        from safetensors import safe_open

        file = Path(path) / cls.FILE
        if not file.exists():
            raise FileNotFoundError(f"no memory at {file}")
        with safe_open(str(file), "pt") as f:
            state = json.loads(f.metadata()[MEMORY_META])
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no items())
        memory = cls.attach(model, MemoryConfig(**state["config"]))
        names = [name for name, _ in memory.mlps]
        if names != state["layers"]:
            raise ValueError(f"{file} was saved on a model with MLP blocks {state['layers'][:3]}..., this one has "
                             f"{names[:3]}...: load it on the base model it grew on")
        for (name, _), layer in zip(memory.mlps, memory.banks):
            layer.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")})
        # The seeding seat is not restored: a loaded memory is settled (a seat is a night's own).
        memory.nights = state["nights"]
        memory.keys = {int(lv): {int(i): (n, k) for i, (n, k) in by.items()} for lv, by in state.get("keys", {}).items()}
        memory.breaks = state.get("breaks")
        return memory


def memory_of(model) -> Memory | None:
    """The memory attached to `model` (or to the model a PEFT/DDP wrapper holds), if any."""
    for m in (model, getattr(model, "module", None), getattr(model, "base_model", None)):
        if m is not None and getattr(m, "lmsleep_memory", None) is not None:
            return m.lmsleep_memory
    return None
