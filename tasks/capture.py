"""capture: the inbox becomes episodes; bad records go to quarantine with a reason; nothing is lost.

    python -m tasks.capture --data data

For every `data/inbox/*.jsonl` (oldest name first), and every `data/arrivals/*.jsonl` (the
embedded world's days, which stay where they are):
1. the file is split on "\\n" only (a trailing "\\r" and a byte-order mark dropped;
   `lmsleep.jsonl`), so a raw U+2028 inside a record stays in it; each line is parsed against
   the Episode contract (`lmsleep.episodes`, with its bounds on a line, a text, the probes and
   `meta`); a bad line gets a reason naming the field (`probes.0.answer: Input should be a
   valid string`);
2. a good episode whose content (text + probes) is already known is a duplicate, and one whose
   id already names another content is an id conflict: both go to quarantine too, naming the
   episode they collide with. An episode is never replaced: a correction comes under a new id
   (an old episode may already be in the weights; silently swapping it would leave the stick
   measuring one text and the brain holding another);
3. good episodes are written to `data/episodes/<file>-<hash>.jsonl`, the rest to
   `data/quarantine/<file>-<hash>.jsonl` ({file, line, reason, raw}), each by an atomic
   write, in JSONL that every line splitter reads back;
4. only then is the inbox file moved to `data/inbox/archive/`.

Writers put a file into the inbox whole: write `name.jsonl.tmp`, then rename it to
`name.jsonl` (only `*.jsonl` is read, so a file being written is never captured half-read).
A symbolic link (or anything not a regular file) is refused: it is moved to the archive
unread, with a quarantine record saying why (a link could make capture read any file).
A crash at any point leaves the inbox file in place; the rerun rewrites the same two outputs
(their names come from the inbox file's content) and archives it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lmsleep import jsonl
from lmsleep.episodes import Episode, content_hash, parse_record
from tasks.common import crash_point
from tasks.lock import night_lock


@dataclass
class CaptureReport:
    files: list[str] = field(default_factory=list)
    good: int = 0  # episodes new to data/episodes
    rewritten: int = 0  # episodes of a file captured before (a rerun, or an arrival), written again alike
    duplicates: int = 0
    id_conflicts: int = 0
    bad: int = 0
    refused: list[str] = field(default_factory=list)  # inbox entries not read: links, not regular files

    @property
    def quarantined(self) -> int:
        return self.duplicates + self.id_conflicts + self.bad


class EpisodeIndex:
    """The captured episodes by content hash and by id, with the file each came from; built
    once per capture and kept up to date as files are captured."""

    def __init__(self):
        self.by_hash: dict[str, tuple[str, str]] = {}  # hash -> (id, file)
        self.by_id: dict[str, tuple[str, str]] = {}  # id -> (hash, file)

    @classmethod
    def build(cls, episodes_dir: Path) -> EpisodeIndex:
        index = cls()
        for path in sorted(episodes_dir.glob("*.jsonl")):
            for line in jsonl.lines(path.read_text(encoding="utf-8")):
                episode, _ = parse_record(line)
                if episode is not None:
                    index.add(episode, content_hash(episode), path.name)
        return index

    def add(self, episode: Episode, h: str, file: str) -> None:
        self.by_hash.setdefault(h, (episode.id, file))
        self.by_id.setdefault(episode.id, (h, file))

    def merge(self, other: EpisodeIndex) -> None:
        for h, (eid, file) in other.by_hash.items():
            self.by_hash.setdefault(h, (eid, file))
            self.by_id.setdefault(eid, (h, file))

    def collision(self, episode: Episode, h: str, ignore: str) -> tuple[str, str] | None:
        """(kind, reason) where `episode` repeats a known content or reuses a known id; entries
        of the file `ignore` (the one being rewritten by a rerun) do not count."""
        same = self.by_hash.get(h)
        if same and same[1] != ignore:
            return "duplicates", f"duplicate of episode {same[0]!r} (same text and probes)"
        named = self.by_id.get(episode.id)
        if named and named[1] != ignore and named[0] != h:
            return "id_conflicts", (f"id {episode.id!r} already names another episode (captured in {named[1]}); "
                                    "episodes are never replaced: send the corrected one under a new id")
        return None


def capture_file(inbox_file: Path, data: Path, report: CaptureReport, index: EpisodeIndex,
                 archive: bool = True) -> None:
    raw_bytes = inbox_file.read_bytes()
    name = f"{inbox_file.stem}-{hashlib.sha256(raw_bytes).hexdigest()[:10]}.jsonl"
    out, quarantine = data / "episodes" / name, data / "quarantine" / name
    before = len(jsonl.lines(out.read_text(encoding="utf-8"))) if out.exists() else 0
    mine = EpisodeIndex()  # this file's own earlier lines
    good, bad = [], []
    text = raw_bytes.decode("utf-8", errors="surrogateescape")
    for number, line in enumerate(jsonl.lines(text), start=1):
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
            hit = mine.collision(episode, h, ignore="") or index.collision(episode, h, ignore=name)
            if hit is None:
                mine.add(episode, h, name)
                good.append(jsonl.dumps(episode.record()))
                continue
            kind, reason = hit
            setattr(report, kind, getattr(report, kind) + 1)
        else:
            report.bad += 1
        raw = line.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")
        bad.append(jsonl.dumps({"file": inbox_file.name, "line": number, "reason": reason, "raw": raw}))
    if good:
        jsonl.write_lines(out, good)
    crash_point("capture")  # between the two outputs, before archiving
    if bad:
        jsonl.write_lines(quarantine, bad)
    index.merge(mine)  # only once this file's episodes are written
    report.good += len(good) - before
    report.rewritten += before
    report.files.append(inbox_file.name)
    if archive:
        (data / "inbox" / "archive").mkdir(parents=True, exist_ok=True)
        os.replace(inbox_file, data / "inbox" / "archive" / name)  # last: only once both are written


def refuse(entry: Path, data: Path, report: CaptureReport) -> None:
    """An inbox entry that is not a regular file: moved to the archive unread (a link is moved,
    never followed), with a quarantine record saying why."""
    what = "a symbolic link" if entry.is_symlink() else "not a regular file"
    reason = f"{what}: refused unread (put the file itself into the inbox)"
    target = os.readlink(entry) if entry.is_symlink() else ""
    tag = hashlib.sha256(f"{entry.name}\0{target}\0{entry.lstat().st_mtime_ns}".encode()).hexdigest()[:10]
    jsonl.write(data / "quarantine" / f"{entry.stem}-refused-{tag}.jsonl",
                [{"file": entry.name, "line": None, "reason": reason, "raw": target}])
    (data / "inbox" / "archive").mkdir(parents=True, exist_ok=True)
    os.replace(entry, data / "inbox" / "archive" / f"{entry.stem}-refused-{tag}{entry.suffix}")
    report.refused.append(entry.name)


def capture(data: Path = Path("data")) -> CaptureReport:
    """Capture every inbox file under `data/inbox/`, then the arrivals."""
    report = CaptureReport()
    (data / "episodes").mkdir(parents=True, exist_ok=True)
    for folder in ("quarantine", "arrivals"):  # empty, they are still the pipeline's outputs
        (data / folder).mkdir(parents=True, exist_ok=True)
    index = EpisodeIndex.build(data / "episodes")
    for entry in sorted((data / "inbox").glob("*.jsonl")):
        if entry.is_symlink() or not entry.is_file():
            refuse(entry, data, report)
        else:
            capture_file(entry, data, report, index)
    for arrival in sorted((data / "arrivals").glob("*.jsonl")):
        capture_file(arrival, data, report, index, archive=False)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("data"))
    args = ap.parse_args(argv)
    with night_lock(what="the capture stage"):
        report = capture(args.data)
    print(json.dumps({**asdict(report), "quarantined": report.quarantined}))


if __name__ == "__main__":
    main()
