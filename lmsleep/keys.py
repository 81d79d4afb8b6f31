"""Keyed experts: an expert that acts only once the text has named whom it is about (opt-in).

    memory = Memory.attach(model, MemoryConfig(keyed=True))
    keys = night_keys(rows)                       # the names tonight's own questions ask about
    memory.set_keys(1, slot, keys, key_ids(tokenizer, keys))
    # now expert `slot` of level 1 is gated shut on every token until one of `keys` has appeared

Why: a per-token linear router on a small model does not know whom a question is about. After a
night its new expert answered base people's questions in tonight's forms with tonight's values,
two router losses closed the gate everywhere or opened it on everyone's answers, and the inputs of
tonight's people lie no further outside the base activations' subspace than other base people's
(docs/knowledge-seeding.md). A key says it symbolically: each expert keeps the names its night's
questions asked about (their token ids), and its gate is multiplied by 0 on every token before the
first occurrence of one of them in the sequence (causal: a token sees only what came before), by 1
after. The learned router still weighs the expert where it is open.

A key is a name of two or more capitalized words (question words left out, name particles inside
kept: "Ana van Drosk"), as a question states it, found in the teacher's prompt (the episode):
so a name the model misspelled keys nothing. One word alone ("Lin") is left out: a key is a
token prefix, and one short word opens on every longer word it begins ("Lintrulou"). Token ids
are matched in both spellings a BPE tokenizer gives a word (after a space, and at a line's start).

A key opens its expert for the rest of its passage only: a blank line shuts it again
(`passage_breaks`). A note that mentions a keyed company ("Sur is employed by Gaimgux Bank") would
otherwise open that night's expert on the question after it, about someone else: after ten
nights, 69 of 115 and 81 of 100 of the reading test's questions after a note that opened an
expert were answered wrong (seeds 0 and 1, docs/knowledge-seeding.md). A question names whom it asks about itself.

Generation keeps its KV cache: the model's pre-forward hook keeps each sequence's ids so far (a
call whose cache is empty starts anew) and matches keys over them.
"""

from __future__ import annotations

import re

from lmsleep.world import QUESTION_WORDS

_WORD = re.compile(r"[\w'-]+")
# Lowercase words that stand inside a name ("Ana van Drosk"): a list, as "in", "and" or "at" are
# as short and stand between two names ("Morrow Labs in Fiamrel") without joining them.
PARTICLES = frozenset("van von de der den da di du del della la le al el bin ibn ten ter".split())


def name_runs(text: str) -> list[str]:
    """Runs of capitalized words (not question words), name particles between two of them kept:
    "Where was Ana van Drosk born?" -> ["Ana van Drosk"]."""
    runs, run, gap = [], [], []
    for word in _WORD.findall(text):
        if len(word) > 1 and word[0].isupper() and word.lower() not in QUESTION_WORDS:
            run += gap + [word]
            gap = []
        elif run and word in PARTICLES and not gap:
            gap = [word]  # a particle, kept only if a capitalized word follows
        else:
            if run:
                runs.append(" ".join(run))
            run, gap = [], []
    if run:
        runs.append(" ".join(run))
    return runs


def text_names(text: str) -> list[str]:
    """The names of two or more words a text states, in order, each once: `name_runs` within
    punctuation (in running text "Morrow Labs. Ben Kay" is two names, not one; a question seldom
    has that problem, its runs are `name_runs` as they are)."""
    runs = (n for part in re.split(r"[^\w\s'-]+", text) for n in name_runs(part))
    return list(dict.fromkeys(n for n in runs if " " in n))


def night_keys(rows: list[dict]) -> list[str]:
    """The keys of tonight's expert: the names (`text_names`: two words or more) of tonight's
    closed-book questions (rows other than replay) that the teacher's prompt spells the same way.
    Never reads a probe."""
    keys = set()
    for r in rows:
        if r.get("kind") == "replay" or r["student"] == r["teacher"]:
            continue
        context = r["teacher"][: -len(r["student"]) or None]
        keys.update(k for k in text_names(r["student"]) if mentions(context, [k]))
    return sorted(keys)


def mentions(text: str, keys: list[str]) -> bool:
    """Whether `text` names one of `keys` as a whole word run (a key's expert opens there; the
    token match of `seen` also opens on a longer word with the same first tokens)."""
    return any(re.search(rf"(?<![\w-]){re.escape(k)}(?![\w-])", text) for k in keys)


def key_expert(memory, tokenizer, level: int, slot: int, rows: list[dict]) -> list[str]:
    """Key expert `slot` of `level` on tonight's names in `rows` (`night_keys`), beside the names
    it is keyed on already (a night that trains it further: dreams rehearsed, no expansion).
    Returns its names."""
    names = sorted(set(night_keys(rows)) | set(memory.keys.get(level, {}).get(slot, ((), ()))[0]))
    memory.set_keys(level, slot, names, key_ids(tokenizer, names))
    if memory.breaks is None:
        memory.breaks = passage_breaks(tokenizer)
    return names


def key_ids(tokenizer, keys: list[str]) -> list[list[int]]:
    """Each key's token ids, in both spellings (after a space; at a line's start), deduplicated."""
    out = []
    for k in keys:
        for text in (" " + k, k):
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            if ids and ids not in out:
                out.append(ids)
    return out


def passage_breaks(tokenizer) -> dict[str, list[int]]:
    """The token ids that make a blank line, which ends a key's passage: `blank`, the ids whose text
    holds one ("\n\n" in a GPT-2 vocabulary), and the pairs that make one across two tokens, an id
    whose text `ends` a line followed by one whose text `starts` with a newline ("\n", "\n" in a
    vocabulary that keeps newlines apart, as ours does). One pass over the vocabulary (15 ms for
    our 2,048 ids), once per memory: saved with it."""
    texts = [tokenizer.decode([i]) for i in range(len(tokenizer))]
    return {"blank": [i for i, t in enumerate(texts) if "\n\n" in t],
            "ends": [i for i, t in enumerate(texts) if t.endswith("\n")],
            "starts": [i for i, t in enumerate(texts) if t.startswith("\n")]}


def breaks_at(history, breaks: dict[str, list[int]]):
    """[B, T] bool: whether a blank line ends at each position of `history` (`passage_breaks`)."""
    import torch

    def among(ids, name):
        return torch.isin(ids, torch.tensor(breaks[name], dtype=ids.dtype, device=ids.device))

    ended = among(history[:, :-1], "ends")
    pairs = among(history, "starts") & torch.cat([ended.new_zeros(ended.shape[0], 1), ended], dim=1)
    return among(history, "blank") | pairs


# Token windows are matched by a double hash (two primes below 2^31: the code is exact in int64
# and a collision is ~1e-18 per pair): a per-token comparison of every window with every key cost
# 30-75 ms a forward pass per expert, and generation pays it at every token.
_P1, _P2, _C1, _C2 = 2_147_483_629, 2_147_483_587, 1_000_003, 999_983


def _codes(windows):
    """[..., n] token ids -> [...] int64 codes."""
    import torch

    h1 = windows.new_zeros(windows.shape[:-1], dtype=torch.long)
    h2 = h1.clone()
    for i in range(windows.shape[-1]):
        x = windows[..., i].long()
        h1 = (h1 * _C1 + x) % _P1
        h2 = (h2 * _C2 + x) % _P2
    return h1 * _P2 + h2


def seen(history, keys: list[list[int]], codes: dict | None = None, breaks: dict[str, list[int]] | None = None):
    """[B, T] bool: whether one of `keys` (token id lists) has ended at or before each position of
    `history` ([B, T] token ids); with `breaks` (`passage_breaks`), after the last blank line
    before it. `codes`: the history's window codes by length (and its blank lines), shared between
    calls on the same history (one per expert)."""
    import torch

    codes = {} if codes is None else codes
    B, T = history.shape
    hit = history.new_zeros(B, T, dtype=torch.bool)
    by_len: dict[int, list[list[int]]] = {}
    for k in keys:
        by_len.setdefault(len(k), []).append(k)
    for n, group in by_len.items():
        if n > T:
            continue
        if n not in codes:
            codes[n] = _codes(history.unfold(1, n, 1))  # [B, T - n + 1]
        ended = torch.isin(codes[n], _codes(torch.tensor(group, device=history.device)))
        # Out of place, not `hit[:, n - 1:] |= ended`: under torch.func.vmap (dreaming's per-dream
        # gradients) `ended` is batched, and an in-place write of it into a plain tensor fails.
        hit = hit | torch.cat([ended.new_zeros(B, n - 1), ended], dim=1)
    if breaks is None:
        return hit.int().cummax(dim=1).values.bool()
    if "breaks" not in codes:
        codes["breaks"] = _last(breaks_at(history, breaks))
    return _last(hit) > codes["breaks"]


def _last(flags):
    """[B, T] bool -> [B, T] long: the last position at or before each one where `flags` holds (-1: none)."""
    import torch

    at = torch.arange(flags.shape[1], device=flags.device)
    return torch.where(flags, at, -1).cummax(dim=1).values


class KeyHook:
    """A pre-forward hook of the model: keeps the ids of each sequence so far and, before every
    forward pass, sets each bank's `key_mask` ([B, T, slots] bool)."""

    def __init__(self, memory):
        self.memory = memory
        self.history = None

    def __call__(self, module, args, kwargs):
        import torch

        memory = self.memory
        if not memory.config.keyed:
            return None
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            raise ValueError("keyed memory needs input_ids (it matches names by token); got inputs_embeds only")
        past = kwargs.get("past_key_values", kwargs.get("cache"))  # transformers 5 passes `cache`
        start = past.get_seq_length() if past is not None and hasattr(past, "get_seq_length") else 0
        if start and self.history is not None and self.history.shape == (ids.shape[0], start):
            self.history = torch.cat([self.history, ids], dim=1)
        else:  # a new sequence (an empty cache), or one this hook did not see begin: from its ids
            self.history = ids
        T = ids.shape[1]
        codes: dict = {}  # the history's window codes, shared by every expert
        for lv in range(1, memory.config.levels + 1):
            # An expert with no keys (yet) is shut everywhere: a keyed memory never acts unasked.
            columns = [ids.new_zeros(ids.shape[0], T, dtype=torch.bool)] * memory.config.slots[lv - 1]
            for slot, (_, ids_of_slot) in memory.keys.get(lv, {}).items():
                columns[slot] = seen(self.history, ids_of_slot, codes, memory.breaks)[:, -T:]
            masks = torch.stack(columns, dim=-1)  # stacked, not written in place: vmap-safe (`seen`)
            for bank in memory.level(lv):
                bank.key_mask = masks
        return None
