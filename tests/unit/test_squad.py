import json
from pathlib import Path

import pytest

from lmsleep.episodes import parse_record
from lmsleep.squad import import_squad, main

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad_val.json"


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/squad_val.json is not beside the checkout")
def test_all_of_squad_val_imports_as_valid_episodes():
    episodes, errors = import_squad(SHARED)
    assert errors == []
    assert len(episodes) == 2067 and sum(len(e["probes"]) for e in episodes) == 10570
    assert len({e["id"] for e in episodes}) == len(episodes)
    for ep in episodes:
        episode, reason = parse_record(json.dumps({k: v for k, v in ep.items() if v is not None}))
        assert reason is None, (ep["id"], reason)


def test_malformed_passages_are_named_and_skipped(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([
        {"title": "Ok", "context": "A passage.", "questions": [{"question": "What?", "answer": "A"}]},
        {"title": "No context", "questions": []},
        {"title": "Bad q", "context": "B.", "questions": [{"question": "Q?"}]},
        "not a passage",
    ]))
    episodes, errors = import_squad(path)
    assert [e["id"] for e in episodes] == ["squad-00000-ok"]
    assert errors == ["passage 1: 'context' must be a non-empty string",
                      "passage 2: questions[0] needs string 'question' and 'answer'",
                      "passage 3: expected an object, got str"]


def test_cli_writes_an_inbox_file(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps([{"title": "T", "context": "C.", "questions": []}]))
    main([str(path), "--out", str(tmp_path / "inbox" / "s.jsonl")])
    line = (tmp_path / "inbox" / "s.jsonl").read_text().splitlines()
    assert len(line) == 1 and "probes" not in json.loads(line[0])
    assert "wrote 1 episodes" in capsys.readouterr().out

