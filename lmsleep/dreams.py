"""Dreaming's first step: the dreams themselves (PAPER.md section 4; lmsleep/dreaming.py runs the night).

    dreams = sample_dreams(model, tokenizer, episodes, DreamingConfig(), random.Random(0))
    dreams = judgeable(dreams, tau)          # none asking tau's own questions

For each episode (C), `DreamingConfig.dreams` samples of each form, written by the model with C
in context:
- restatement: C in other words (the form birth teaches);
- qa: a question the model asks itself about C and its open-book answer (grounded in C, never in
  a held-out question form: those are the exam's);
- implication: a qa dream whose answer is then asked about closed-book through each `bridges`
  template ("Where is {answer} based?"): what C implies with what the model knew; with
  `compose`, the dream also carries that implication asked in one hop ("What city is
  {subject}'s company in?"), the student closed-book, the teacher reading C and the chain.

A dream is a row (`dream_row`): what the dreamer saw and wrote (ReST-EM learns `prompt ->
sample`), and the `student` / `teacher` / `completion` row that trains on it. Also here: the
checks of two hops asked in one (`composed_checks`), which judge the dreams and are never taught.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from lmsleep.grammar import is_heldout_question
from lmsleep.world import closed_book_prompt, first_question, open_book_prompt, question_of, subject

if TYPE_CHECKING:
    from lmsleep.dreaming import DreamingConfig


def _question(sample: str) -> str | None:
    """The question a dream asks about C, unless it is in a held-out form (the exam's)."""
    q = first_question(sample)
    return q if q and not is_heldout_question(q) else None


def dream_row(form: str, prompt: str, sample: str, episode_id: str, student: str, teacher: str,
              completion: str, question: str | None = None) -> dict:
    """A dream: what the dreamer saw (`prompt`) and wrote (`sample`, what ReST-EM learns), and
    the row that trains on it: the student without C, the teacher with it, the `completion`;
    `question`: the question the model asked itself about C (qa, implication)."""
    return {"episode_id": episode_id, "form": form, "prompt": prompt, "sample": sample, "question": question,
            "student": student, "teacher": teacher, "completion": completion}


def dream_rows(dream: dict) -> list[dict]:
    """The rows a dream trains: its own, and the one-hop questions it carries (`compose`)."""
    return [dream] + dream.get("composed", [])


def composed_rows(templates: list[str], question: str, answer: str, implied: str, chain: str,
                  context: str) -> list[dict]:
    """The one-hop rows an implication dream carries (`DreamingConfig.compose`): each template
    asked about the person the dream's `question` names (`world.subject`), closed-book for the
    student, after C and the `chain` for the teacher; none where the question names no one
    person of C, or the person is the answer."""
    who = subject(question, context)
    if not templates or who is None or who in answer:
        return []
    asked = [closed_book_prompt(t.format(subject=who)) for t in templates]
    return [{"student": q, "teacher": f"{context}\n\n{chain}{q}", "completion": f" {implied}\n"} for q in asked]


def sample_dreams(model, tokenizer, episodes: list[dict], config: DreamingConfig, rng: random.Random) -> list[dict]:
    """Dreams of every form about each episode (see the module docstring), sampled with C in
    context; the ones that say nothing usable (no question, an ungrounded answer) are dropped."""
    import torch

    from lmsleep.evaluation import answer, generate, grounded

    torch.manual_seed(rng.randrange(2**31))
    m, dreams = config.dreams, []
    sample = dict(do_sample=True, top_k=0, temperature=config.temperature)
    if "restatement" in config.forms:
        prompts = [config.prompt("restatement", ep["text"]) for ep in episodes for _ in range(m)]
        texts = generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens, **sample)
        for ep, p, t in zip([ep for ep in episodes for _ in range(m)], prompts, texts, strict=True):
            t = t.split("Q:")[0].strip()
            if len(t) > 8:
                dreams.append(dream_row("restatement", p, f" {t}\n", ep["id"], "", p, f" {t}\n"))
    if {"qa", "implication"} & set(config.forms):
        owners = [ep for ep in episodes for _ in range(m)]
        asked = generate(model, tokenizer, [config.prompt("qa", ep["text"]) for ep in owners], max_new_tokens=40,
                         **sample)
        pairs = [(ep, q) for ep, q in zip(owners, map(_question, asked), strict=True) if q]
        answers = answer(model, tokenizer, [q for _, q in pairs], [ep["text"] for ep, _ in pairs], max_new_tokens=24)
        qa = [(ep, q, a) for (ep, q), a in zip(pairs, answers, strict=True) if a and grounded(a, ep["text"])]
        if "qa" in config.forms:
            dreams += [dream_row("qa", config.prompt("qa", ep["text"]), f" {q}\nA: {a}\n", ep["id"],
                                 closed_book_prompt(q), open_book_prompt(ep["text"], q), f" {a}\n", q)
                       for ep, q, a in qa]
        if "implication" in config.forms and config.bridges:
            chains = [(ep, q, a, b.format(answer=a)) for ep, q, a in qa for b in config.bridges]
            # Closed-book: what the model itself knows about the answer.
            implied = answer(model, tokenizer, [b for *_, b in chains], max_new_tokens=24)
            for (ep, q, a, b), i in zip(chains, implied, strict=True):
                if i:
                    chain = f"Q: {q}\nA: {a}\nQ: {b}\nA: {i}\n"
                    dream = dream_row("implication", config.prompt("qa", ep["text"]), f" {q}\nA: {a}\n", ep["id"],
                                      "", f"{ep['text']}\n\n", chain, q)
                    composed = composed_rows(config.compose, q, a, i, chain, ep["text"])
                    if composed:
                        dream["composed"] = composed
                    dreams.append(dream)
    unique = {(d["episode_id"], d["form"], d["completion"]): d for d in dreams}  # one trial and one vote each
    return list(unique.values())


def judgeable(dreams: list[dict], tau: list[dict]) -> list[dict]:
    """The dreams tau can judge: about an episode that has tau, and not asking one of its
    questions, in the dream or in a one-hop row it carries (such a dream would be judged on
    what it teaches: tau taught after all, and rewarded for it)."""
    from lmsleep.evaluation import normalize

    episodes = {t["episode_id"] for t in tau}
    asked = {(t["episode_id"], normalize(t["question"])) for t in tau}

    def teaches(d):
        return [d.get("question") or ""] + [question_of(r["student"]) for r in d.get("composed", [])]

    return [d for d in dreams if d["episode_id"] in episodes
            and not any((d["episode_id"], normalize(q)) in asked for q in teaches(d))]


def composed_checks(facts: list[dict], episodes: list[dict], templates: list[str], bridges: list[str], ask,
                    knowledge: list[str] | None) -> list[dict]:
    """Checks of two hops asked in one (`DreamingConfig.tau_compose`). For each of tonight's
    `facts` (checks, `{episode_id, question, answer}`) that asks about one name of its episode
    (`world.subject`, not in the answer), the model's own closed-book answer through each bridge
    (`ask(questions) -> answers`: "Where is Morrow Labs based?") is kept where a sentence of
    birth's `knowledge` says it with the fact's answer (the dreams suite's `implied`), neither
    inside the other ("Morrow" for "Morrow Labs" is no hop), and asked per template about that
    name. None without knowledge (`[]`): a bridge asked of a city answers anything. A question that
    would get two answers (an old employer and a new one) is dropped. Not checked: which relation
    the fact is (a fact answered by a person of birth's world, "Who works for Morrow Labs?", can
    pass with that person's birth city, asked about "Morrow Labs's company")."""
    from lmsleep.checks import implied, known_sentences
    from lmsleep.evaluation import normalize

    if not templates or not knowledge:
        return []
    texts = {ep["id"]: ep["text"] for ep in episodes}
    asked = [(t, subject(t["question"], texts.get(t["episode_id"], ""))) for t in facts]
    asked = [(t, who) for t, who in asked if who is not None and who not in t["answer"]]
    chains = [(t, who, b.format(answer=t["answer"])) for t, who in asked for b in bridges]
    known, found = known_sentences(knowledge), {}
    for (t, who, _), said in zip(chains, ask([b for *_, b in chains]), strict=True):
        a, i = normalize(t["answer"]), normalize(said)
        if i and i not in a and a not in i and implied(a, i, known):
            for template in templates:  # answers told apart as normalized ("Tarvo." is "Tarvo")
                found.setdefault((t["episode_id"], template.format(subject=who)), {}).setdefault(i, said.strip())
    return [{"episode_id": eid, "question": q, "answer": next(iter(said.values())), "composed": True}
            for (eid, q), said in found.items() if len(said) == 1]
