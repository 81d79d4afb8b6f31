"""capture: the inbox becomes episodes; bad records go to quarantine with a reason; nothing is lost.

    python -m tasks.capture --data data

For every `data/inbox/*.jsonl` (oldest name first), and every `data/arrivals/*.jsonl` (the
embedded world's days, which stay where they are):
1. each line is parsed against the Episode contract (`lmsleep.episodes`); a bad line gets a
   reason naming the field (`probes.0.answer: Input should be a valid string`);
2. a good episode whose content (text + probes) is already known is a duplicate: it goes to
   quarantine too, naming the episode it repeats, so every line is accounted for;
3. good episodes are written to `data/episodes/<file>-<hash>.jsonl`, the rest to
   `data/quarantine/<file>-<hash>.jsonl` ({file, line, reason, raw}), each by an atomic
   write (temp file + fsync + rename);
4. only then is the inbox file moved to `data/inbox/archive/`.

A crash at any point leaves the inbox file in place; the rerun rewrites the same two outputs
(their names come from the inbox file's content) and archives it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmsleep.episodes import content_hash, parse_record


@dataclass
class CaptureReport:
    files: list[str] = field(default_factory=list)
    good: int = 0  # episodes new to data/episodes
    rewritten: int = 0  # episodes of a file captured before (a rerun, or an arrival), written again alike
    duplicates: int = 0
    bad: int = 0

    @property
    def quarantined(self) -> int:
        return self.duplicates + self.bad


def atomic_write_lines(path: Path, lines: list[str]) -> None:
    """All of `lines` at `path`, or the old file untouched: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def known_hashes(episodes_dir: Path, skip: Path | None = None) -> dict[str, str]:
    """content hash -> episode id, over every captured episode (except the file `skip`)."""
    known: dict[str, str] = {}
    for path in sorted(episodes_dir.glob("*.jsonl")):
        if path == skip:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            episode, _ = parse_record(line)
            if episode is not None:
                known.setdefault(content_hash(episode), episode.id)
    return known


def capture_file(inbox_file: Path, data: Path, report: CaptureReport, archive: bool = True) -> None:
    raw_bytes = inbox_file.read_bytes()
    name = f"{inbox_file.stem}-{hashlib.sha256(raw_bytes).hexdigest()[:10]}.jsonl"
    out, quarantine = data / "episodes" / name, data / "quarantine" / name
    known = known_hashes(data / "episodes", skip=out)
    before = len(out.read_text(encoding="utf-8").splitlines()) if out.exists() else 0
    good, bad = [], []
    text = raw_bytes.decode("utf-8", errors="surrogateescape")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # a blank line is no record
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:
            reason, episode = "invalid UTF-8 bytes in the line", None
        else:
            episode, reason = parse_record(line)
        if episode is not None:
            h = content_hash(episode)
            if h in known:
                reason, episode = f"duplicate of episode {known[h]!r} (same text and probes)", None
                report.duplicates += 1
            else:
                known[h] = episode.id
                good.append(json.dumps(episode.record(), ensure_ascii=False))
                continue
        else:
            report.bad += 1
        raw = line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        bad.append(json.dumps({"file": inbox_file.name, "line": number, "reason": reason, "raw": raw},
                              ensure_ascii=False))
    if good:
        atomic_write_lines(out, good)
    if bad:
        atomic_write_lines(quarantine, bad)
    report.good += len(good) - before
    report.rewritten += before
    report.files.append(inbox_file.name)
    if archive:
        (data / "inbox" / "archive").mkdir(parents=True, exist_ok=True)
        os.replace(inbox_file, data / "inbox" / "archive" / name)  # last: only once both are written


def capture(data: Path = Path("data")) -> CaptureReport:
    """Capture every inbox file under `data/inbox/`."""
    report = CaptureReport()
    (data / "episodes").mkdir(parents=True, exist_ok=True)
    for folder in ("quarantine", "arrivals"):  # empty, they are still the pipeline's outputs
        (data / folder).mkdir(parents=True, exist_ok=True)
    for inbox_file in sorted((data / "inbox").glob("*.jsonl")):
        capture_file(inbox_file, data, report)
    for arrival in sorted((data / "arrivals").glob("*.jsonl")):
        capture_file(arrival, data, report, archive=False)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data"))
    args = ap.parse_args(argv)
    report = capture(args.data)
    print(json.dumps({**asdict(report), "quarantined": report.quarantined}))


if __name__ == "__main__":
    main()
