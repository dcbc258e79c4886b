"""CSV uploads for sources without an API: staff upload a file, a job imports it through
the same path as a signed batch (ingest_batch, so the same checks, duplicates, controls,
rules and ledger), a batch at a time, and writes a per-row report.

Columns: external_ref, card_kind, card_number, type, occurred_at, attributes (optional:
a JSON object). The header names them, in any order. Rows are numbered as a spreadsheet
shows them: the header is row 1. A malformed row is reported with the reason and
changes nothing; the other rows still count."""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..csvfile import csv_text
from ..models import Action, Source, utcnow
from ..models.source import SourceImport, SourceImportRow
from ..reasons import Refused
from .controls import HELD
from .ingest import ingest_batch

log = logging.getLogger("rewards.actions.csv")

REQUIRED_COLUMNS = ("external_ref", "card_kind", "card_number", "type", "occurred_at")
COLUMNS = (*REQUIRED_COLUMNS, "attributes")
EXAMPLE_HEADER = ",".join(COLUMNS)
# A field longer than this is not one of ours (csv's own limit is 128 kB).
MAX_FIELD = 10_000
REPORT_HEADER = ("row", "external_ref", "status", "reason", "action_id")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class UploadRefused(Refused):
    """The file as a whole cannot be imported (said to staff as 413 or 422)."""


def _text(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")  # spreadsheets often start with a BOM
    except UnicodeDecodeError as error:
        raise UploadRefused(422, f"The file is not UTF-8 text (byte {error.start} cannot "
                                 "be read); save it as CSV UTF-8.") from None


def _reader(text: str) -> Any:
    return csv.reader(io.StringIO(text, newline=""), strict=True)


def check_upload(content: bytes, max_rows: int) -> int:
    """The number of data rows, if the file can be imported at all; UploadRefused if
    not (not UTF-8, no header, a column missing or unknown, too many rows)."""
    text = _text(content)
    rows = _reader(text)
    try:
        header = next(rows, None)
        if header is None or not any(cell.strip() for cell in header):
            raise UploadRefused(422, f"The file is empty: the first row must be the header "
                                     f"{EXAMPLE_HEADER}.")
        names = [cell.strip().lower() for cell in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        unknown = [name for name in names if name not in COLUMNS]
        if missing or unknown or len(set(names)) != len(names):
            problems = []
            if missing:
                problems.append(f"missing {', '.join(missing)}")
            if unknown:
                problems.append(f"unknown {', '.join(repr(n) for n in unknown)}")
            if len(set(names)) != len(names):
                problems.append("a column is named twice")
            raise UploadRefused(422, f"The header row does not name the columns "
                                     f"({'; '.join(problems)}); it must be {EXAMPLE_HEADER} "
                                     "(attributes is optional).")
        count = 0
        for row in rows:
            if any(cell.strip() for cell in row):
                count += 1
                if count > max_rows:
                    raise UploadRefused(413, f"A file carries at most {max_rows} rows; "
                                             "split it into several uploads.")
    except csv.Error:
        # A broken quote can swallow the rest of the file: say so now, not row by row.
        raise UploadRefused(422, f"The file is not valid CSV near line {rows.line_num}: "
                                 "check its quotes.") from None
    if count == 0:
        raise UploadRefused(422, "The file has a header but no rows.")
    return count


@dataclass(frozen=True)
class Row:
    number: int  # as a spreadsheet numbers it: the header is 1
    external_ref: str | None
    item: dict[str, Any] | None  # a batch item, when the row could be read
    problem: str | None = None


def parse_rows(content: bytes) -> list[Row]:
    """Every data row of an upload that passed check_upload, as batch items or problems.
    Decides only: what the scheme makes of an item (types, times, cards) is ingest's."""
    rows = _reader(_text(content))
    names = [cell.strip().lower() for cell in next(rows)]
    width = len(names)
    parsed: list[Row] = []
    for number, cells in enumerate(rows, start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank lines carry nothing
        values = dict(zip(names, (cell.strip() for cell in cells), strict=False))
        ref = values.get("external_ref") or None
        if len(cells) != width:
            parsed.append(Row(number, ref, None, f"the row has {len(cells)} fields; the "
                                                 f"header has {width}"))
            continue
        if any(len(cell) > MAX_FIELD for cell in cells):
            parsed.append(Row(number, ref if ref and len(ref) <= 200 else None, None,
                              f"a field is longer than {MAX_FIELD} characters"))
            continue
        empty = [name for name in REQUIRED_COLUMNS if not values.get(name)]
        if empty:
            parsed.append(Row(number, ref, None, f"{', '.join(empty)} "
                                                 f"{'is' if len(empty) == 1 else 'are'} empty"))
            continue
        attributes: Any = {}
        if values.get("attributes"):
            try:
                attributes = json.loads(values["attributes"])
            except (ValueError, RecursionError) as error:
                parsed.append(Row(number, ref, None, f"attributes is not valid JSON ({error}); "
                                                     'write a JSON object, e.g. '
                                                     '{"distance_km": 3.2}'))
                continue
            if not isinstance(attributes, dict):
                parsed.append(Row(number, ref, None, "attributes must be a JSON object, e.g. "
                                                     '{"distance_km": 3.2}'))
                continue
        parsed.append(Row(number, ref, {
            "external_ref": values["external_ref"],
            "member": {"kind": values["card_kind"], "number": values["card_number"]},
            "type": values["type"],
            "occurred_at": values["occurred_at"],
            "attributes": attributes,
        }))
    return parsed


@dataclass
class Tally:
    accepted: int = 0
    held: int = 0
    duplicate: int = 0
    rejected: int = 0
    points: int = 0


def _report_rows(import_id: uuid.UUID, rows: Sequence[Row],
                 results: Sequence[dict[str, Any] | None], tally: Tally) -> list[dict]:
    now = utcnow()
    out = []
    for row, result in zip(rows, results, strict=True):
        if result is None:
            status, reason, action_id, ref = "rejected", row.problem, None, row.external_ref
        else:
            status, reason = result["status"], result.get("reason")
            action_id = uuid.UUID(result["action_id"]) if result.get("action_id") else None
            ref = result.get("external_ref") or row.external_ref
        if ref is not None and len(ref) > 200:
            ref = None
        # A row's own text (a ref with a NUL in it, which ingest rejects) must still be
        # storable in the report.
        ref = _UNSTORABLE.sub("\ufffd", ref) if ref else ref
        reason = _UNSTORABLE.sub("\ufffd", reason) if reason else reason
        if status == "accepted":
            tally.accepted += 1
            tally.points += (result or {}).get("points") or 0
            if reason and reason.startswith(HELD):
                tally.held += 1
        elif status == "duplicate":
            tally.duplicate += 1
        else:
            tally.rejected += 1
        out.append({"import_id": import_id, "row_number": row.number, "external_ref": ref,
                    "status": status, "reason": reason, "action_id": action_id,
                    "created_at": now})
    return out


def run_import(session: Session, import_id: uuid.UUID, batch_size: int | None = None) -> str:
    """Import an upload, a batch at a time. Each batch is committed by ingest, then its
    report rows and the running counts in a second transaction; a rerun after a crash
    goes on from the last batch reported (a batch recorded but not yet reported shows
    its rows as duplicates of what was recorded, with their action ids)."""
    upload = session.get(SourceImport, import_id)
    if upload is None:
        return "missing"
    if upload.status in ("done", "failed"):
        return upload.status
    source = session.get(Source, upload.source_id)
    content = upload.content
    if source is None or content is None:
        upload.status, upload.error = "failed", "the upload's file is gone"
        session.commit()
        return upload.status
    upload.status = "running"
    upload.started_at = upload.started_at or utcnow()
    session.commit()
    rows = parse_rows(content)
    size = batch_size or current_app.config["MAX_BATCH_ITEMS"]
    for start in range(upload.rows_done, len(rows), size):
        chunk = rows[start:start + size]
        items = [row.item for row in chunk if row.item is not None]
        # Awarded inline whatever AWARDING says: the import's report counts its points.
        outcome = ingest_batch(session, source, items, awarding="inline") if items else None
        answers = iter(outcome.results if outcome else ())
        results = [next(answers) if row.item is not None else None for row in chunk]
        tally = Tally()
        report = _report_rows(upload.id, chunk, results, tally)
        session.execute(insert(SourceImportRow), report)
        accepted_ids = [r["action_id"] for r in report
                        if r["status"] == "accepted" and r["action_id"]]
        for at in range(0, len(accepted_ids), 500):
            session.execute(update(Action).where(Action.id.in_(accepted_ids[at:at + 500]))
                            .values(origin="csv"))
        session.execute(update(SourceImport).where(SourceImport.id == upload.id).values(
            rows_done=start + len(chunk),
            accepted=SourceImport.accepted + tally.accepted,
            held=SourceImport.held + tally.held,
            duplicate=SourceImport.duplicate + tally.duplicate,
            rejected=SourceImport.rejected + tally.rejected,
            points=SourceImport.points + tally.points,
        ))
        session.commit()
    # Done: the file held card numbers in clear, so it goes; the report stays.
    session.execute(update(SourceImport).where(SourceImport.id == upload.id).values(
        status="done", finished_at=utcnow(), content=None, error=None))
    session.commit()
    return "done"


def fail_import(session: Session, import_id: uuid.UUID, error: str) -> None:
    session.execute(update(SourceImport).where(SourceImport.id == import_id).values(
        status="failed", finished_at=utcnow(), content=None, error=error[:2000]))
    session.commit()


def report_rows(session: Session, import_id: uuid.UUID) -> Iterator[SourceImportRow]:
    return iter(session.scalars(select(SourceImportRow)
                                .where(SourceImportRow.import_id == import_id)
                                .order_by(SourceImportRow.row_number)))


def report_csv(rows: Iterator[SourceImportRow]) -> str:
    return csv_text(REPORT_HEADER, ([row.row_number, row.external_ref, row.status,
                                     row.reason, row.action_id or ""] for row in rows))
