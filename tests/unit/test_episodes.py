import json

import pytest

from lmsleep.episodes import MAX_TEXT_CHARS, Episode, content_hash, parse_record

GOOD = {"id": "e1", "ts": "2026-01-01T00:00:00+00:00", "source": "app", "text": "Ana was born in Lisbon.",
        "probes": [{"question": "Where was Ana born?", "answer": "Lisbon"}], "meta": {"day": 0}}


def test_good_record_round_trips():
    episode, reason = parse_record(json.dumps(GOOD))
    assert reason is None and episode.record() == GOOD


def test_probes_and_meta_are_optional():
    episode, reason = parse_record(json.dumps({k: GOOD[k] for k in ("id", "ts", "source", "text")}))
    assert reason is None and episode.probes is None


@pytest.mark.parametrize("change, field", [
    ({"text": ""}, "text"),
    ({"text": "   \n "}, "text"),
    ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "text"),
    ({"id": 7}, "id"),
    ({"ts": "yesterday"}, "ts"),
    ({"probes": [{"question": "Q?", "answer": 3}]}, "probes.0.answer"),
    ({"probes": [{"question": "Q?"}]}, "probes.0.answer"),
    ({"probes": "none"}, "probes"),
    ({"colour": "red"}, "colour"),
])
def test_bad_fields_are_named(change, field):
    episode, reason = parse_record(json.dumps({**GOOD, **change}))
    assert episode is None and reason.startswith(f"{field}:"), reason


@pytest.mark.parametrize("line, words", [("{not json", "invalid JSON"), ("[1, 2]", "expected a JSON object"),
                                         ('{"id": "e"}', "text: Field required")])
def test_malformed_lines_have_reasons(line, words):
    episode, reason = parse_record(line)
    assert episode is None and words in reason


def test_missing_fields_are_all_listed():
    _, reason = parse_record("{}")
    for name in ("id", "ts", "source", "text"):
        assert f"{name}: Field required" in reason


def test_content_hash_ignores_id_and_time():
    a = Episode.model_validate(GOOD)
    b = Episode.model_validate({**GOOD, "id": "other", "ts": "2026-02-02T00:00:00+00:00"})
    c = Episode.model_validate({**GOOD, "text": GOOD["text"] + " "})
    assert content_hash(a) == content_hash(b) != content_hash(c)
