"""The measuring stick: how much of a day moved into the weights, and how much old knowledge stayed.

Works for any Hugging Face causal LM and its tokenizer. Answers are decoded greedily and scored
by normalized exact match (SQuAD's normalization: lowercase, no punctuation, no articles).

**Probes are the exam, never the lesson.** This module (with `world.py`, which writes them)
is where an episode's `probes` and its `meta` probe families are read; no training path
reads them. The families, each scored closed-book against its open-book ceiling (the same
probes with the episode in context, asked of the model before the night):
- recall: `probes` (the train question forms);
- paraphrase: `meta.paraphrases` (held-out question forms nothing was trained on);
- implication: `meta.implications` (follows from the text plus what the model knew before);
- update: the new value answered, the old one (`meta.old_answer`) no longer;
- checks: for episodes without probes, the teacher's own grounded Q/A set aside and never
  taught; scored as agreement with the open-book teacher;
- retention (earlier days and the base population, train and held-out forms) and reading
  (open-book on people nobody trained on).
A figure with nothing to measure is None (null in JSON), never 0.0.

- closed-book: `Q: ...\\nA:` alone;  open-book: the episode text, then the same prompt.
- R matrix: R[i][j] = closed-book accuracy on day j's probes after night i (PAPER.md section 6).
- ACC, BWT, forgetting as PAPER.md defines them (0-based: T is the last night).
- restatement: the model rewrites a biography in its own words; we grade the facts it states.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence

from lmsleep.grammar import ATTRIBUTES, FAMILIES, question_forms
from lmsleep.world import Person, World, closed_book_prompt, open_book_prompt, restate_prompt

FAMILY_KEYS = {"recall": "probes", "paraphrase": "paraphrases", "implication": "implications"}


def normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answer: str) -> bool:
    return normalize(prediction) == normalize(answer)


def grounded(answer: str, text: str) -> bool:
    """The answer (normalized, non-empty) is said in the text: a lesson the text supports."""
    return bool(normalize(answer)) and normalize(answer) in normalize(text)


def _newline_stop(tokenizer):
    """A stopping criterion ending each row at its first newline: answers are one line, and most
    are done long before `max_new_tokens` (the stick runs thousands of them a night)."""
    import torch
    from transformers import StoppingCriteria

    cache = getattr(tokenizer, "_lmsleep_newline_ids", None)
    if cache is None:
        vocab = range(len(tokenizer))
        cache = torch.tensor(["\n" in tokenizer.decode([i]) for i in vocab], dtype=torch.bool)
        tokenizer._lmsleep_newline_ids = cache

    class StopAtNewline(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return cache.to(input_ids.device)[input_ids[:, -1]]

    return StopAtNewline()


def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 12,
             batch_size: int = 64, stop_at_newline: bool = True, **gen_kwargs) -> list[str]:
    """Continuations of `prompts` (greedy unless `do_sample=True` is passed), batched with left
    padding, cut at the first newline. Prompts are batched in order of length (then put back in
    their order), so a batch pads to its own longest prompt, not the longest of all."""
    import torch
    from transformers import StoppingCriteriaList

    if tokenizer.pad_token_id is None:  # GPT-2-style tokenizers have none; EOS is the usual stand-in
        tokenizer.pad_token = tokenizer.eos_token
    was_training = model.training
    model.eval()
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # decoder-only generation must see the prompt's end aligned
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = []
    try:
        with torch.inference_mode():
            for i in range(0, len(prompts), batch_size):
                chunk = [prompts[k] for k in order[i:i + batch_size]]
                enc = tokenizer(chunk, return_tensors="pt", padding=True).to(model.device)
                stop = StoppingCriteriaList([_newline_stop(tokenizer)]) if stop_at_newline else None
                out = model.generate(**enc, max_new_tokens=max_new_tokens, stopping_criteria=stop,
                                     **{"do_sample": False, **gen_kwargs},
                                     pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
                texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
                outputs.extend(t.split("\n")[0] if stop_at_newline else t for t in texts)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    back = [""] * len(prompts)
    for k, text in zip(order, outputs):
        back[k] = text
    return back


def answer(model, tokenizer, questions: Sequence[str], contexts: Sequence[str] | None = None,
           **kw) -> list[str]:
    """Answers to `questions`, closed-book, or open-book with `contexts[i]` before question i."""
    if contexts is None:
        prompts = [closed_book_prompt(q) for q in questions]
    else:
        prompts = [open_book_prompt(c, q) for c, q in zip(contexts, questions, strict=True)]
    return [a.strip() for a in generate(model, tokenizer, prompts, **kw)]


def answer_budget(tokenizer, probes: Sequence[dict], floor: int = 12) -> int:
    """Tokens to generate for `probes`: room for the longest expected answer (a SQuAD answer
    can run past the 12 tokens that fit our world's), plus a margin for how its first token
    merges with the space before it."""
    longest = max((len(tokenizer(" " + p["answer"], add_special_tokens=False)["input_ids"]) for p in probes), default=0)
    return max(floor, longest + 2)


def accuracy(model, tokenizer, probes: Sequence[dict], contexts: Sequence[str] | None = None,
             **kw) -> float | None:
    """Share of probes ({question, answer}) answered exactly; None (not measured) for no probes.
    The generation budget fits the longest answer (`answer_budget`) unless given."""
    if not probes:
        return None
    kw.setdefault("max_new_tokens", answer_budget(tokenizer, probes))
    if contexts is not None:  # long prompts pad more per row: 16 rows measured 20% faster than 64 (1 thread)
        kw.setdefault("batch_size", 16)
    preds = answer(model, tokenizer, [p["question"] for p in probes], contexts, **kw)
    return sum(exact_match(p, q["answer"]) for p, q in zip(preds, probes)) / len(probes)


# Room a night's prompts need beyond an episode's text (tokens): the prompt template, the
# question the teacher asks itself and the longest answer it writes.
PROMPT_ROOM = 128


def context_limit(model) -> int | None:
    """The most positions `model` reads (None where its config does not say)."""
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        v = getattr(model.config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def too_long(tokenizer, episodes: Sequence[dict], limit: int | None) -> list[dict]:
    """`{episode_id, reason}` for each episode whose text leaves the model less than
    `PROMPT_ROOM` of its `limit` positions: read in context, it would not fit (a model with
    learned positions fails outright, a rotary one reads past what it was trained on)."""
    if limit is None:
        return []
    out = []
    for ep in episodes:
        n = len(tokenizer(ep["text"])["input_ids"])
        if n + PROMPT_ROOM > limit:
            out.append({"episode_id": ep["id"], "reason": f"episode {ep['id']!r} is {n:,} tokens; with "
                        f"{PROMPT_ROOM} for the question and answer that is over the model's {limit:,} positions: "
                        "split it into shorter episodes"})
    return out


def has_probes(episode: dict) -> bool:
    """Whether an episode brings its own exam (else the curriculum sets checks aside for it)."""
    return bool(episode.get("probes"))


def episode_probes(episodes: Sequence[dict], key: str = "probes") -> tuple[list[dict], list[str]]:
    """All probes of `episodes` (or `meta[key]`: "paraphrases", "implications"), each with its
    episode text."""
    probes, contexts = [], []
    for ep in episodes:
        items = ep.get("probes") if key == "probes" else (ep.get("meta") or {}).get(key)
        for p in items or []:
            probes.append(p)
            contexts.append(ep["text"])
    return probes, contexts


def closed_book(model, tokenizer, episodes: Sequence[dict], key: str = "probes") -> float | None:
    """Closed-book accuracy on the episodes' probes (or a `meta` family): what the weights hold."""
    return accuracy(model, tokenizer, episode_probes(episodes, key)[0])


def open_book(model, tokenizer, episodes: Sequence[dict], key: str = "probes") -> float | None:
    """Open-book accuracy, each probe after its episode's text: the ceiling a night distils from."""
    probes, contexts = episode_probes(episodes, key)
    return accuracy(model, tokenizer, probes, contexts)


def ceilings(model, tokenizer, episodes: Sequence[dict]) -> dict[str, float | None]:
    """The open-book ceiling of each probe family, and of the update test: asked of the teacher
    (the model before the night). A night distils what the teacher says; where the teacher,
    reading "X left A and now works at B", still answers A, the night is taught A."""
    update = update_test(model, tokenizer, episodes, in_context=True)
    return {**{f"{family}_ceiling": open_book(model, tokenizer, episodes, key) for family, key in FAMILY_KEYS.items()},
            "update_ceiling": update["new"], "update_stale_ceiling": update["old"]}


def update_test(model, tokenizer, episodes: Sequence[dict], in_context: bool = False) -> dict:
    """On episodes with an update: share answering the new value, share still answering the old
    (closed-book; `in_context`: each question after its episode's text, open-book)."""
    updates = [ep for ep in episodes if (ep.get("meta") or {}).get("old_answer")]
    if not updates:
        return {"new": None, "old": None, "n": 0}
    probes = []
    for ep in updates:
        asked = ep["meta"].get("update_question")
        probes.append(next((p for p in ep["probes"] if p["question"] == asked), ep["probes"][0]))
    preds = answer(model, tokenizer, [p["question"] for p in probes],
                   [ep["text"] for ep in updates] if in_context else None)
    new = sum(exact_match(a, p["answer"]) for a, p in zip(preds, probes))
    old = sum(exact_match(a, ep["meta"]["old_answer"]) for a, ep in zip(preds, updates))
    return {"new": new / len(updates), "old": old / len(updates), "n": len(updates)}


def after_night(model, tokenizer, tonight: Sequence[dict], kept: dict[str, Sequence[dict]],
                readers: Sequence[dict], checks: Sequence[dict] = ()) -> dict:
    """What a night is judged by, in one place for the bench, `make day` and the pipeline.

    recall / paraphrase / implication: closed-book on tonight's probe families (None where the
    episodes carry none); checks: closed-book agreement with the teacher on the checks set
    aside for probe-less episodes; update: new and old values; `kept[name]`: closed-book on
    each set of probes that should have stayed (e.g. "retention", "retention_heldout");
    reading: open-book on never-seen people."""
    return {
        **{family: closed_book(model, tokenizer, tonight, key) for family, key in FAMILY_KEYS.items()},
        "checks": accuracy(model, tokenizer, list(checks)),
        "update": update_test(model, tokenizer, tonight),
        **{name: accuracy(model, tokenizer, probes) for name, probes in kept.items()},
        "reading": open_book(model, tokenizer, readers),
    }


def per_attribute_accuracy(model, tokenizer, probes: Sequence[dict], attributes: Sequence[str],
                           contexts: Sequence[str] | None = None) -> dict[str, float]:
    """Accuracy split by attribute: where reading fails, it fails per value shape."""
    preds = answer(model, tokenizer, [p["question"] for p in probes], contexts)
    out: dict[str, list[bool]] = {}
    for pred, probe, attr in zip(preds, probes, attributes, strict=True):
        out.setdefault(attr, []).append(exact_match(pred, probe["answer"]))
    return {a: sum(v) / len(v) for a, v in sorted(out.items())}


def restatement(model, tokenizer, world: World, people: Sequence[Person], rng_seed: int = 0,
                max_new_tokens: int = 96) -> dict[str, float]:
    """The model restates each person's biography; we find every fact it states.

    precision: share of stated facts (a value of some attribute's pool) that are the person's;
    coverage: share of the person's facts that are stated correctly. `precision` is what the
    brief calls the restatement score; coverage keeps a model that says nothing from scoring 1.
    """
    rng = random.Random(rng_seed)
    prompts = [restate_prompt(world.bio(p, rng)) for p in people]
    texts = generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop_at_newline=False,
                     batch_size=32)
    stated = correct = 0
    patterns = {a: world.value_pattern(a) for a in ATTRIBUTES}
    for person, text in zip(people, texts):
        text = text.split("Q:")[0]
        for a, pat in patterns.items():
            found = set(pat.findall(text))
            stated += len(found)
            correct += person.facts[a] in found
    return {"precision": correct / stated if stated else 0.0,
            "coverage": correct / (len(people) * len(ATTRIBUTES)) if people else 0.0}


def self_questions(model, tokenizer, world: World, people: Sequence[Person], seed: int = 0) -> dict[str, float]:
    """The model poses a question about a biography in its context, then answers it there.

    posed: share of sampled questions that ask about one of the person's attributes in a known
    question form (either family); answered: share of those the model then answers correctly.
    This is the other half of what dreams sample (the first is restatement).
    """
    import torch

    rng = random.Random(seed)
    contexts = [world.bio(p, rng) for p in people]
    torch.manual_seed(seed)
    asked = [q.strip() for q in generate(model, tokenizer, [f"{c}\n\nQ:" for c in contexts],
                                         max_new_tokens=32, do_sample=True, top_k=0)]
    posed = []  # (context, question, true answer)
    for person, context, q in zip(people, contexts, asked):
        for attr in ATTRIBUTES:
            forms = {t.format(n=person.name) for fam in FAMILIES for t in question_forms(attr, fam)}
            if q in forms:
                posed.append((context, q, person.facts[attr]))
                break
    if not posed:
        return {"posed": 0.0, "answered": 0.0}
    preds = answer(model, tokenizer, [q for _, q, _ in posed], [c for c, _, _ in posed])
    right = sum(exact_match(p, a) for p, (_, _, a) in zip(preds, posed))
    return {"posed": len(posed) / len(people), "answered": right / len(posed)}


def dream_quality(world: World, episodes: Sequence[dict], dreams: Sequence[dict]) -> dict[str, float | None]:
    """How right each form of dream is, graded with the world's truth (the stick's side: nothing
    trains on this). restatement: share of the facts it states (any attribute's value) that its
    episode says; qa: share of answers said in the episode (sampling keeps only those: 1.0 by
    construction, reported as a check); implication: share whose bridged answer is the truth (the
    headquarters of the company answered). None for a form with no dreams."""
    text = {ep["id"]: normalize(ep["text"]) for ep in episodes}
    patterns = [world.value_pattern(a) for a in ATTRIBUTES]
    right: dict[str, list[bool]] = {"restatement": [], "qa": [], "implication": []}
    for d in dreams:
        if d["form"] == "restatement":
            right["restatement"] += [normalize(v) in text[d["episode_id"]] for pat in patterns
                                     for v in set(pat.findall(d["completion"]))]
        elif d["form"] == "qa":
            right["qa"].append(normalize(d["completion"]) in text[d["episode_id"]])
        else:
            answers = re.findall(r"^A: (.*)$", d["completion"], flags=re.M)
            if len(answers) == 2:
                right["implication"].append(exact_match(answers[1], world.hq.get(answers[0].strip(), "\0")))
    return {form: (sum(v) / len(v) if v else None) for form, v in right.items()}


# -- fixed probe sets: what birth taught, and people nobody taught -----------------------------


def reader_episodes(world: World, n: int) -> list[dict]:
    """Strangers as episodes: their bio in context, all attributes asked. Never trained on."""
    rng = random.Random("bench-readers")
    return [{"id": p.id, "text": world.bio(p, rng),
             "probes": [pr.as_dict() for pr in world.probes(p, rng)]} for p in world.strangers[:n]]


def base_probe_set(world: World, n: int, family: str = "train") -> list[dict]:
    """One question each about `n` base people who are never updated: what birth taught, asked
    in the train question forms or in the held-out ones (the same person and attribute)."""
    rng = random.Random("bench-base")
    people = rng.sample(world.stable_base, min(n, len(world.stable_base)))
    attrs = [rng.choice(ATTRIBUTES) for _ in people]
    rng = random.Random(f"bench-base-{family}")
    return [world.probes(p, rng, family, (a,))[0].as_dict() for p, a in zip(people, attrs)]


# -- continual-learning metrics over the R matrix ------------------------------------------------
def acc(R: Sequence[Sequence[float]]) -> float:
    """Mean accuracy over all days after the last night: mean_j R[T][j]."""
    T = len(R) - 1
    return sum(R[T][: T + 1]) / (T + 1)


def bwt(R: Sequence[Sequence[float]]) -> float | None:
    """Backward transfer: mean_{j<T} (R[T][j] - R[j][j]). None with a single night."""
    T = len(R) - 1
    if T == 0:
        return None
    return sum(R[T][j] - R[j][j] for j in range(T)) / T


def forgetting(R: Sequence[Sequence[float]]) -> float | None:
    """mean_{j<T} (max_{j<=l<T} R[l][j] - R[T][j]): the drop from the best a day was known since
    its night. None with a single night. Only R[i][j] for j <= i is read: the bench leaves days
    after the next one unmeasured (None)."""
    T = len(R) - 1
    if T == 0:
        return None
    return sum(max(R[l][j] for l in range(j, T)) - R[T][j] for j in range(T)) / T
