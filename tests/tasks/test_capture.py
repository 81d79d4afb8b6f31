"""Capture on a malformed inbox: every good record lands, every bad one is quarantined with a reason."""

import json
from pathlib import Path

import pytest

from lmsleep import jsonl
from tasks import capture as cap

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "squad_val.json"

GOOD = {"ts": "2026-01-01T00:00:00+00:00", "source": "app"}


def good(i, text=None):
    return json.dumps({"id": f"g{i}", **GOOD, "text": text or f"Episode number {i} says something new.",
                       "probes": [{"question": f"What is number {i}?", "answer": str(i)}]})


def write_inbox(data, name, lines):
    inbox = data / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    (inbox / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


MALFORMED = [
    "{this is not json",
    json.dumps({"id": "m1", **GOOD}),  # no text
    json.dumps({"id": 5, **GOOD, "text": "wrong id type"}),
    json.dumps({"id": "m3", **GOOD, "text": ""}),
    json.dumps({"id": "m4", **GOOD, "text": "x" * 1_000_000}),  # 1 MB
    json.dumps({"id": "m5", **GOOD, "text": "ok", "probes": [{"question": "q?", "answer": None}]}),
    json.dumps(["a", "list"]),
]


def read_jsonl(directory):
    return [json.loads(line) for p in sorted(directory.glob("*.jsonl")) for line in p.read_text().splitlines()]


def test_malformed_inbox_loses_nothing(tmp_path):
    lines = [good(0), *MALFORMED[:4], good(1), *MALFORMED[4:], good(0), good(2), "", good(3, "ünï 🌙 שלום")]
    write_inbox(tmp_path, "day1.jsonl", lines)
    report = cap.capture(tmp_path)
    episodes = read_jsonl(tmp_path / "episodes")
    quarantine = read_jsonl(tmp_path / "quarantine")
    assert [e["id"] for e in episodes] == ["g0", "g1", "g2", "g3"]
    assert episodes[3]["text"] == "ünï 🌙 שלום"
    assert report.good == 4 and report.bad == len(MALFORMED) and report.duplicates == 1
    assert len(quarantine) == len(MALFORMED) + 1
    for q in quarantine:
        assert q["file"] == "day1.jsonl" and q["reason"] and q["raw"]
        assert lines[q["line"] - 1] == q["raw"]  # the line number points at the record, raw is intact
    reasons = " | ".join(q["reason"] for q in quarantine)
    for words in ("invalid JSON", "text: Field required", "id: Input should be a valid string",
                  "text: String should have at least 1 character", "at most 200000 characters",
                  "probes.0.answer", "expected a JSON object", "duplicate of episode 'g0'"):
        assert words in reasons
    assert not list((tmp_path / "inbox").glob("*.jsonl"))
    assert len(list((tmp_path / "inbox" / "archive").glob("*.jsonl"))) == 1


def test_duplicates_across_files_and_runs(tmp_path):
    write_inbox(tmp_path, "a.jsonl", [good(0), good(1)])
    cap.capture(tmp_path)
    write_inbox(tmp_path, "b.jsonl", [good(1), good(2)])
    report = cap.capture(tmp_path)
    assert report.good == 1 and report.duplicates == 1
    assert sorted(e["id"] for e in read_jsonl(tmp_path / "episodes")) == ["g0", "g1", "g2"]


def test_crash_before_archiving_then_rerun_is_exact(tmp_path, monkeypatch):
    write_inbox(tmp_path, "day.jsonl", [good(0), "{bad", good(1)])
    real_replace = cap.os.replace

    def crash_on_archive(src, dst):
        if "archive" in str(dst):
            raise OSError("disk unplugged")
        return real_replace(src, dst)

    monkeypatch.setattr(cap.os, "replace", crash_on_archive)
    with pytest.raises(OSError):
        cap.capture(tmp_path)
    assert (tmp_path / "inbox" / "day.jsonl").exists()  # still in the inbox: nothing lost
    monkeypatch.setattr(cap.os, "replace", real_replace)
    report = cap.capture(tmp_path)
    assert report.good + report.rewritten == 2 and report.duplicates == 0 and report.bad == 1
    assert [e["id"] for e in read_jsonl(tmp_path / "episodes")] == ["g0", "g1"]
    assert len(read_jsonl(tmp_path / "quarantine")) == 1


def test_crash_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    write_inbox(tmp_path, "day.jsonl", [good(0)])

    def boom(fd):
        raise OSError("no space left")

    monkeypatch.setattr(cap.os, "fsync", boom)
    with pytest.raises(OSError):
        cap.capture(tmp_path)
    assert not list((tmp_path / "episodes").iterdir())
    assert (tmp_path / "inbox" / "day.jsonl").exists()


def test_invalid_utf8_is_quarantined(tmp_path):
    (tmp_path / "inbox").mkdir(parents=True)
    (tmp_path / "inbox" / "x.jsonl").write_bytes(good(0).encode() + b"\n" + b'{"id": "\xff\xfe"}\n')
    report = cap.capture(tmp_path)
    assert report.good == 1 and report.bad == 1
    assert "invalid UTF-8" in read_jsonl(tmp_path / "quarantine")[0]["reason"]


def test_cli_prints_the_report(tmp_path, capsys):
    write_inbox(tmp_path, "d.jsonl", [good(0), "nope"])
    cap.main(["--data", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert out["good"] == 1 and out["quarantined"] == 1


def test_arrivals_are_captured_once_and_stay(tmp_path):
    arrivals = tmp_path / "arrivals"
    arrivals.mkdir(parents=True)
    (arrivals / "world-day000.jsonl").write_text(good(0) + "\n" + good(1) + "\n")
    first = cap.capture(tmp_path)
    again = cap.capture(tmp_path)
    assert first.good == 2 and again.good == 0 and again.rewritten == 2 and again.duplicates == 0
    assert (arrivals / "world-day000.jsonl").exists()
    assert [e["id"] for e in read_jsonl(tmp_path / "episodes")] == ["g0", "g1"]


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data/squad_val.json is not beside the checkout")
def test_all_of_squad_val_passes_capture(tmp_path):
    from lmsleep.squad import main as import_squad

    import_squad([str(SHARED), "--out", str(tmp_path / "inbox" / "squad.jsonl")])
    report = cap.capture(tmp_path)
    assert report.good == 2067 and report.bad == 0 and report.duplicates == 0


def test_a_thousand_records_of_every_kind_lose_nothing(tmp_path):
    """A generated inbox of 1,200 records: good ones with every awkward character, size and line
    ending; bad ones of every kind. Every good one lands, every bad one is quarantined with its
    reason, and every episodes file reads back with str.splitlines() as with a split on \\n."""
    import random

    from lmsleep.episodes import MAX_LINE_BYTES, MAX_META_CHARS, MAX_PROBES, MAX_TEXT_CHARS

    rng = random.Random(0)
    odd = ["line\u2028separator", "para\u2029separator", "next\u0085line", "RTL שלום עליכם", "emoji 🌙✨",
           "x" * 20_000, "tab\tand\x0bvertical"]
    good_texts, bad_reasons, lines = {}, {}, []
    for i in range(1_200):
        kind = i % 12
        if kind < 7:  # good: one of the odd texts, made unique
            text = f"{odd[kind]} #{i} {rng.random()}"
            good_texts[f"ok{i}"] = text
            lines.append(json.dumps({"id": f"ok{i}", **GOOD, "text": text}, ensure_ascii=rng.random() < 0.5))
            continue
        bad = {
            7: ("{broken", "invalid JSON"),
            8: (json.dumps({"id": f"b{i}", **GOOD, "text": "t" * (MAX_TEXT_CHARS + 1)}), "at most 200000 characters"),
            9: (json.dumps({"id": f"b{i}", **GOOD, "text": "t", "probes": [{"question": "q?", "answer": "a"}] * (MAX_PROBES + 1)}),
                "probes: List should have at most"),
            10: (json.dumps({"id": f"b{i}", **GOOD, "text": "t", "meta": {"k": "m" * MAX_META_CHARS}}), "meta: Value error"),
            11: (json.dumps({"id": "ok0", **GOOD, "text": f"a correction #{i}"}), "id 'ok0' already names another"),
        }[kind]
        lines.append(bad[0])
        bad_reasons[len(lines)] = bad[1]
    lines.append(json.dumps({"id": "huge", **GOOD, "text": "h" * (MAX_LINE_BYTES + 10)}))
    bad_reasons[len(lines)] = "-byte bound"
    lines.append(lines[0])  # the same record again
    bad_reasons[len(lines)] = "duplicate of episode 'ok0'"
    inbox = tmp_path / "inbox"
    inbox.mkdir(parents=True)
    half = len(lines) // 2  # two files: a BOM and CRLF endings in one, LF in the other
    (inbox / "a.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines[:half]).encode() + b"\r\n")
    (inbox / "b.jsonl").write_bytes("\n".join(lines[half:]).encode())
    report = cap.capture(tmp_path)

    episodes_files = sorted((tmp_path / "episodes").glob("*.jsonl"))
    for path in episodes_files:
        content = path.read_text(encoding="utf-8")
        assert content.splitlines() == content.split("\n")[:-1]  # no line splitter sees more lines
    episodes = {e["id"]: e["text"] for p in episodes_files for e in map(json.loads, p.read_text().splitlines())}
    assert episodes == good_texts
    quarantine = jsonl.read(tmp_path / "quarantine")
    by_line = {(q["file"], q["line"]): q["reason"] for q in quarantine}
    assert len(quarantine) == len(bad_reasons) == report.quarantined
    for number, words in bad_reasons.items():
        where = ("a.jsonl", number) if number <= half else ("b.jsonl", number - half)
        assert words in by_line[where], (where, by_line[where])
    assert report.good + report.quarantined == len(lines)


def test_a_reused_id_is_quarantined_naming_the_episode_it_collides_with(tmp_path):
    write_inbox(tmp_path, "1.jsonl", [good(0)])
    cap.capture(tmp_path)
    write_inbox(tmp_path, "2.jsonl", [good(0, "Episode 0, corrected."), good(1)])
    report = cap.capture(tmp_path)
    assert report.good == 1 and report.id_conflicts == 1
    (reason,) = [q["reason"] for q in read_jsonl(tmp_path / "quarantine")]
    assert "id 'g0' already names another episode (captured in 1-" in reason and "new id" in reason


def test_links_are_refused_unread_and_files_being_written_wait(tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(good(9) + "\n")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "link.jsonl").symlink_to(secret)
    (inbox / "late.jsonl.tmp").write_text(good(1) + "\n")  # a writer renames it when done
    report = cap.capture(tmp_path)
    assert report.refused == ["link.jsonl"] and report.good == 0
    assert secret.read_text() == good(9) + "\n"  # the target is never read, moved or touched
    (q,) = read_jsonl(tmp_path / "quarantine")
    assert "symbolic link" in q["reason"] and q["raw"] == str(secret)
    assert [p.is_symlink() for p in (inbox / "archive").iterdir()] == [True]
    assert (inbox / "late.jsonl.tmp").exists()
