"""The Episode contract (DESIGN.md): what the day hands the night.

    {id, ts, source, text, probes?: [{question, answer}], meta?}

`parse_record` turns one raw JSONL line into an `Episode` or a readable reason that names the
field, so capture can quarantine the record and go on. `content_hash` identifies an episode by
what it says (text and probes), not by its id: the same passage sent twice is one episode.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator

# Bounds on what one record may hold: a day's episode is a passage, not a book (SQuAD's longest
# context is ~4k characters); anything larger is quarantined with the bound it broke.
MAX_LINE_BYTES = 1 << 20
MAX_TEXT_CHARS = 200_000
MAX_PROBES = 200
MAX_META_CHARS = 10_000  # meta as JSON


class Probe(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, max_length=2_000)
    answer: str = Field(min_length=1, max_length=2_000)


class Episode(BaseModel):
    """One thing read by day. Probes are optional: the teacher writes them where missing."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=200)
    ts: datetime
    source: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    probes: list[Probe] | None = Field(default=None, max_length=MAX_PROBES)
    meta: dict[str, Any] | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _iso_string(cls, v):
        # strict mode refuses strings for datetimes; the contract's ts is an ISO 8601 string
        if isinstance(v, str):
            return datetime.fromisoformat(v)
        return v

    @field_serializer("ts")
    def _iso_out(self, v: datetime) -> str:
        return v.isoformat()  # as written ("+00:00"), not pydantic's "Z"

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text is only whitespace")
        return v

    @field_validator("meta")
    @classmethod
    def _meta_bounded(cls, v):
        size = len(json.dumps(v, ensure_ascii=False)) if v is not None else 0
        if size > MAX_META_CHARS:
            raise ValueError(f"{size:,} characters as JSON, over the {MAX_META_CHARS:,} bound")
        return v

    def record(self) -> dict:
        """The JSON-ready dict, ts back as the ISO string."""
        return self.model_dump(mode="json", exclude_none=True)


def content_hash(episode: Episode) -> str:
    probes = [(p.question, p.answer) for p in episode.probes or []]
    blob = json.dumps([episode.text, probes], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _reason(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "record"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def parse_record(line: str) -> tuple[Episode | None, str | None]:
    """(episode, None) for a good line, (None, reason) for a bad one. Never raises on data."""
    size = len(line.encode("utf-8", errors="surrogateescape"))
    if size > MAX_LINE_BYTES:
        return None, f"line: {size:,} bytes, over the {MAX_LINE_BYTES:,}-byte bound"
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} at column {e.colno}"
    if not isinstance(raw, dict):
        return None, f"record: expected a JSON object, got {type(raw).__name__}"
    try:
        return Episode.model_validate(raw), None
    except ValidationError as e:
        return None, _reason(e)
