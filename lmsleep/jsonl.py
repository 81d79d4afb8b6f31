"""JSON Lines, one way for the whole project: what it writes, any line-splitting reader reads back.

    jsonl.write(path, records)      # atomic: all of it or the old file untouched
    jsonl.read(path)                # a file, or every *.jsonl of a directory (by name)
    jsonl.lines(text)               # the lines of a JSONL text, split on "\\n" only

Why by hand: `str.splitlines()` splits on more than "\\n" (U+2028, U+2029, U+0085 and a few
control characters), and `json.dumps(ensure_ascii=False)` escapes the control characters but
writes those three raw. A text holding a LINE SEPARATOR (common in text pasted from web pages)
was written as one line and read back as two broken ones, which halted every later reader.
`dumps` escapes them (the JSON stays the same JSON); `lines` splits on "\\n" only, drops a
trailing "\\r" (CRLF files) and a byte-order mark, so a raw U+2028 inside an inbox line (legal
JSON) stays in its record.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# Characters that str.splitlines() breaks on and json.dumps(ensure_ascii=False) leaves raw.
_RAW_BREAKS = {"\u2028": "\\u2028", "\u2029": "\\u2029", "\u0085": "\\u0085"}
BOM = "\ufeff"


def dumps(record) -> str:
    """One record as one line, safe for every line splitter (non-ASCII text stays readable)."""
    line = json.dumps(record, ensure_ascii=False)
    for raw, escaped in _RAW_BREAKS.items():
        if raw in line:  # only inside strings: JSON's own syntax is ASCII
            line = line.replace(raw, escaped)
    return line


def lines(text: str) -> list[str]:
    """The lines of a JSONL text: split on "\\n" only, a trailing "\\r" and a leading BOM dropped."""
    out = text.removeprefix(BOM).split("\n")
    if out and out[-1] == "":
        out.pop()  # the newline that ends the last line
    return [line.removesuffix("\r") for line in out]


def read(path: str | Path) -> list[dict]:
    """Every record of a JSONL file, or of every *.jsonl in a directory (sorted by name); none
    where the path does not exist. Blank lines are no records."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path] if path.exists() else []
    return [json.loads(line) for f in files for line in lines(f.read_text(encoding="utf-8")) if line.strip()]


def write(path: str | Path, records: Iterable) -> None:
    """`records` at `path` (see `write_lines`)."""
    write_lines(path, [dumps(r) for r in records])


def write_lines(path: str | Path, encoded: list[str]) -> None:
    """Lines already encoded by `dumps` at `path`, atomically (temp file, fsync, rename): all
    of them, or the old file untouched, never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.writelines(line + "\n" for line in encoded)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
