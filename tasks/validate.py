"""validate: Great Expectations guards the night's data before any training starts.

    python -m tasks.validate --episodes data/episodes --curriculum data/curriculum/curriculum.jsonl

Two suites (GX Core 1.x, an ephemeral context: the suites are code, reviewed like code):
- `episodes`: ids unique and present, text length in bounds, probes' answers grounded in their
  episode text (SQuAD answers are spans; the world's are values in the biography), no
  degenerate repetition.
- `curriculum`: what the teacher wrote: every row belongs to a known episode, answers non-empty
  and short, grounded in the episode text, no degenerate repetition; and the teacher itself:
  its open-book accuracy on the episodes' probes above a floor (reading the exam open-book
  trains nothing; skipped, "not measured", where episodes bring no probes), and the share of
  its lessons the curriculum stage had to drop as ungrounded below a bound.

A failing suite raises `ValidationFailed` with a readable summary; the full GX result is
written as JSON beside the reports (an artifact of the night).

A third suite, `dreams`, runs inside the `dream` stage on what the model wrote before any of it
is used: length in bounds, no degenerate repetition, grounded (a qa or implication dream's
answer read from the episode is in it; a restatement's names, its capitalized words, are mostly
the episode's) and, where the base knowledge is known (a model born on this world: what birth
taught it, `base_knowledge`), an implication's second answer implied by it (a sentence of that
knowledge says both answers: "Morrow Labs is based in Qelton"). It does not stop the night: a
dream that fails is set aside with the failed expectations (`data/dreams/set_aside.jsonl`),
the rest go on.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from lmsleep import jsonl
from lmsleep.checks import ValidationLimits, dream_bounds, dream_measures, repetition, world_knowledge
from lmsleep.evaluation import grounded
from tasks.common import crash_point, read_tonight


class ValidationFailed(RuntimeError):
    def __init__(self, summary: str, results: dict):
        super().__init__(summary)
        self.summary, self.results = summary, results


def episode_frame(episodes: list[dict]):
    import pandas as pd

    rows = []
    for ep in episodes:
        probes = ep.get("probes") or []
        rows.append({"id": ep.get("id"), "text_chars": len(ep.get("text") or ""),
                     "grounded": all(grounded(p["answer"], ep["text"]) for p in probes),
                     "repetition": repetition(ep.get("text") or "")})
    return pd.DataFrame(rows, columns=["id", "text_chars", "grounded", "repetition"])


def curriculum_frame(curriculum: list[dict], episodes: list[dict]):
    import pandas as pd

    texts = {ep["id"]: ep["text"] for ep in episodes}
    rows = []
    for r in curriculum:
        answer, text = r["completion"].strip(), texts.get(r["episode_id"], "")
        rows.append({"episode_id": r["episode_id"], "known_episode": r["episode_id"] in texts,
                     # a lesson read from a paragraph (`baselines.window`) puts it before the teacher
                     "context_in_episode": r.get("context") is None or r["context"] in text,
                     "answer_chars": len(answer), "grounded": grounded(answer, text),
                     "repetition": repetition(answer, n=2)})
    return pd.DataFrame(rows, columns=["episode_id", "known_episode", "context_in_episode", "answer_chars",
                                       "grounded", "repetition"])


def base_knowledge(params) -> list[str] | None:
    """What the born model was taught about the world, as sentences (`checks.world_knowledge`),
    when it was born on this world (`world.json` beside it); None for a model born elsewhere,
    whose knowledge we cannot read."""
    from lmsleep.world import World

    if not (Path(params.base_model) / "world.json").exists():
        return None
    return world_knowledge(World(params.world))


def dream_frame(dreams: list[dict], episodes: list[dict], knowledge: list[str] | None = None):
    import pandas as pd

    return pd.DataFrame(dream_measures(dreams, episodes, knowledge),
                        columns=["chars", "repetition", "grounded", "implied"])


def validate_dreams(dreams: list[dict], episodes: list[dict], limits: ValidationLimits,
                    knowledge: list[str] | None = None) -> tuple[list, list, dict]:
    """The dreams suite (module docstring): (dreams that pass, dreams set aside with `reasons`,
    the GX result). `knowledge`: the base knowledge (`base_knowledge`), None where unknown."""
    import great_expectations.expectations as gxe

    if not dreams:
        return [], [], {}
    expectations = [gxe.ExpectColumnValuesToBeBetween(column=column, **({"min_value": lo} if lo is not None else {}),
                                                      **({"max_value": hi} if hi is not None else {}))
                    for column, (lo, hi) in dream_bounds(limits).items()]
    result = _run("dreams", dream_frame(dreams, episodes, knowledge), expectations, result_format="COMPLETE")
    reasons: dict[int, list[str]] = {}
    for r in result["results"]:
        cfg = r["expectation_config"]
        for i in r.get("result", {}).get("unexpected_index_list") or []:
            bounds = {k: v for k, v in cfg["kwargs"].items() if k not in ("batch_id", "column")}
            reasons.setdefault(int(i), []).append(f"{cfg['kwargs']['column']} out of {bounds}")
    good = [d for i, d in enumerate(dreams) if i not in reasons]
    bad = [d | {"reasons": reasons[i]} for i, d in enumerate(dreams) if i in reasons]
    return good, bad, result


def _run(name: str, frame, expectations: list, result_format: str = "SUMMARY") -> dict:
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name=name)
             .add_batch_definition_whole_dataframe("night").get_batch(batch_parameters={"dataframe": frame}))
    suite = gx.ExpectationSuite(name=name)
    for e in expectations:
        suite.add_expectation(e)
    return batch.validate(context.suites.add(suite), result_format=result_format).to_json_dict()


def summarize(result: dict) -> list[str]:
    """One line per failed expectation: what, where, and a few offending values."""
    lines = []
    for r in result["results"]:
        if r["success"]:
            continue
        cfg, res = r["expectation_config"], r.get("result", {})
        kwargs = {k: v for k, v in cfg["kwargs"].items() if k != "batch_id"}
        sample = res.get("partial_unexpected_list") or res.get("observed_value")
        count = res.get("unexpected_count")
        lines.append(f"{result['suite_name']}: {cfg['type']} {kwargs} failed"
                     + (f" on {count} rows" if count is not None else "") + f"; e.g. {sample}")
    return lines


def validate_episodes(episodes: list[dict], limits: ValidationLimits) -> dict:
    import great_expectations.expectations as gxe

    return _run("episodes", episode_frame(episodes), [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="id"),
        gxe.ExpectColumnValuesToBeUnique(column="id"),
        gxe.ExpectColumnValuesToBeBetween(column="text_chars", min_value=1, max_value=limits.max_text_chars),
        gxe.ExpectColumnValuesToBeInSet(column="grounded", value_set=[True], mostly=limits.min_grounded),
        gxe.ExpectColumnValuesToBeBetween(column="repetition", max_value=limits.max_repetition),
    ])


def validate_curriculum(curriculum: list[dict], episodes: list[dict], limits: ValidationLimits,
                        teacher: dict | None = None) -> dict:
    """`teacher`: {accuracy, dropped_share} from the curriculum stage (accuracy: the teacher's
    open-book score on the episodes' probes, None where they have none; the share of lessons
    it dropped as ungrounded). Without it, only the rows are checked."""
    import great_expectations.expectations as gxe
    import pandas as pd

    result = _run("curriculum", curriculum_frame(curriculum, episodes), [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeInSet(column="known_episode", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="context_in_episode", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="answer_chars", min_value=1, max_value=limits.max_answer_chars),
        gxe.ExpectColumnValuesToBeInSet(column="grounded", value_set=[True], mostly=limits.min_grounded),
        gxe.ExpectColumnValuesToBeBetween(column="repetition", max_value=limits.max_repetition),
    ])
    if teacher is not None and teacher["accuracy"] is not None:
        floor = _run("teacher", pd.DataFrame({"teacher_open_book": [teacher["accuracy"]],
                                              "dropped_share": [teacher["dropped_share"]]}), [
            gxe.ExpectColumnValuesToBeBetween(column="teacher_open_book", min_value=limits.teacher_floor),
            gxe.ExpectColumnValuesToBeBetween(column="dropped_share", max_value=limits.max_dropped)])
        result["results"] += floor["results"]
        result["success"] = result["success"] and floor["success"]
    return result


@dataclass
class ValidationReport:
    success: bool
    lines: list[str] = field(default_factory=list)
    results: dict = field(default_factory=dict)


def validate(episodes: list[dict], curriculum: list[dict] | None, limits: ValidationLimits,
             out: Path | None = None, teacher: dict | None = None) -> ValidationReport:
    """Run both suites; write the GX results to `out` (JSON); raise ValidationFailed on failure."""
    results = {"episodes": validate_episodes(episodes, limits)}
    if curriculum is not None:
        results["curriculum"] = validate_curriculum(curriculum, episodes, limits, teacher)
    lines = [line for r in results.values() for line in summarize(r)]
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=str))
    report = ValidationReport(all(r["success"] for r in results.values()), lines, results)
    if not report.success:
        raise ValidationFailed("data validation failed, the night stops before training:\n  "
                               + "\n  ".join(lines), results)
    return report


def validate_tonight(pipe) -> ValidationReport:
    """The night's check: tonight's episodes and their curriculum, result in reports/validation.json."""
    crash_point("validate")
    tonight, episodes = read_tonight(pipe)
    teacher = {"accuracy": tonight["teacher_accuracy"], "dropped_share": tonight["dropped_share"]}
    return validate(episodes, jsonl.read(pipe.paths.curriculum), pipe.limits,
                    pipe.paths.reports / "validation.json", teacher)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"),
                    help="validate tonight's episodes and curriculum (the pipeline stage)")
    ap.add_argument("--episodes", type=Path, help="instead: validate these episodes (a JSONL file or folder)")
    args = ap.parse_args(argv)
    from tasks.common import load_pipeline

    from tasks.lock import night_lock

    pipe = load_pipeline(args.params)
    try:
        with night_lock(what="the validate stage"):  # it writes reports/validation.json
            if args.episodes:
                validate(jsonl.read(args.episodes), None, pipe.limits, pipe.paths.reports / "validation.json")
            else:
                validate_tonight(pipe)
    except ValidationFailed as e:
        raise SystemExit(e.summary) from None
    print("validation passed")


if __name__ == "__main__":
    main()
