import json

from lmsleep import jsonl

BREAKS = "a\u2028b\u2029c\u0085d"


def test_dumps_writes_one_line_for_every_line_splitter():
    line = jsonl.dumps({"text": BREAKS, "rtl": "שלום", "emoji": "🌙", "ctl": "x\x0by\x1cz"})
    assert len(line.splitlines()) == 1 and "\n" not in line
    assert json.loads(line) == {"text": BREAKS, "rtl": "שלום", "emoji": "🌙", "ctl": "x\x0by\x1cz"}
    assert "שלום" in line  # non-ASCII text stays readable


def test_lines_split_on_newline_only():
    raw_separator_inside = '{"text": "one\u2028two"}'  # legal JSON: U+2028 raw inside a string
    text = jsonl.BOM + raw_separator_inside + "\r\n" + '{"b": 2}' + "\n\n" + '{"c": 3}'
    assert jsonl.lines(text) == [raw_separator_inside, '{"b": 2}', "", '{"c": 3}']
    assert json.loads(jsonl.lines(text)[0])["text"] == "one\u2028two"
    assert jsonl.lines("") == [] and jsonl.lines("x\n") == ["x"]


def test_write_then_read_round_trips_a_file_and_a_directory(tmp_path):
    records = [{"id": i, "text": BREAKS * i} for i in range(3)]
    jsonl.write(tmp_path / "b.jsonl", records)
    jsonl.write(tmp_path / "a.jsonl", records[:1])
    assert jsonl.read(tmp_path / "b.jsonl") == records
    assert jsonl.read(tmp_path) == records[:1] + records  # by file name
    assert jsonl.read(tmp_path / "missing.jsonl") == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl"]  # no temp file left
