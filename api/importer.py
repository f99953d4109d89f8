"""``claimledger import``: files and folders of X12 837 / 835 and FHIR Claims, posted to a running gateway.

The command is a client of the gateway (the same endpoints a clearinghouse would call), so it
works against the embedded default and a remote gateway alike, with the caller's API key and
role: a provider's key imports 837s and FHIR Claims, a payer's key posts 835s. Each file's kind
is read from its content: an X12 interchange (``ISA``) says 837 or 835 in its ``ST`` segment,
and JSON is FHIR. A refused request (node unreachable, 503) is retried with the same
Idempotency-Key after its Retry-After, so a retry never submits a file twice.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

X12_SUFFIXES = frozenset({".x12", ".edi", ".837", ".835", ".txt", ".dat"})
FHIR_SUFFIXES = frozenset({".json"})
ENDPOINTS = {"837": "/v1/imports/837", "835": "/v1/imports/835", "fhir": "/v1/imports/fhir"}
CONTENT_TYPES = {"837": "application/edi-x12", "835": "application/edi-x12", "fhir": "application/fhir+json"}
MAX_ATTEMPTS = 5
REQUEST_TIMEOUT_S = 600.0


class ImportFileError(Exception):
    """A file the command cannot send (unknown kind, unreadable)."""


def detect_kind(data: bytes) -> str:
    """``837``, ``835`` or ``fhir`` from a file's first bytes; ImportFileError when it is none of them."""
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"ISA") and len(head) > 106:
        element, terminator = head[3:4], head[105:106]
        for segment in head.split(terminator):
            fields = segment.strip().split(element)
            if fields and fields[0] == b"ST" and len(fields) > 1:
                kind = fields[1].decode("ascii", "replace")
                if kind in ("837", "835"):
                    return kind
                raise ImportFileError(f"an X12 {kind} transaction set: only 837 and 835 are imported")
        raise ImportFileError("an X12 interchange without an ST segment in its first 4 KB")
    if head.startswith(b"{"):
        return "fhir"
    raise ImportFileError("neither an X12 interchange (ISA...) nor FHIR JSON ({...})")


def files_in(paths: Iterable[Path]) -> list[Path]:
    """The files named, and those in the folders named (recursively, X12 and JSON suffixes), sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in X12_SUFFIXES | FHIR_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise ImportFileError(f"{path}: no such file or folder")
    return found


@dataclass
class FileAnswer:
    path: Path
    kind: str | None
    status: int | None
    body: dict[str, Any] | None
    error: str | None = None


@dataclass
class Totals:
    """What the files added up to, for the summary a billing clerk reads."""

    files: int = 0
    files_refused: int = 0
    claims: Counter[str] = field(default_factory=Counter)
    postings: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    rejected_parts: int = 0

    def add(self, answer: FileAnswer) -> None:
        self.files += 1
        body = answer.body or {}
        if answer.error is not None or answer.status not in (200, 207):
            self.files_refused += 1
            error = body.get("error", {}) if isinstance(body, dict) else {}
            rule = (error.get("details") or {}).get("rule") or error.get("code") or "refused"
            self.reasons[str(rule)] += 1
            return
        self.rejected_parts += len(body.get("rejected", []))
        for part in body.get("rejected", []):
            self.reasons[str((part.get("details") or {}).get("rule", part.get("code")))] += 1
        for result in body.get("results", []):
            if answer.kind == "835":
                self.postings[result["status"]] += 1
                if result.get("error"):
                    self.reasons[str(result["error"].get("code"))] += 1
                continue
            self.claims[result["status"]] += 1
            if result.get("suspect"):
                self.claims["suspect"] += 1
            for problem in result.get("problems") or []:
                self.reasons[str(problem["rule"])] += 1
            if result.get("error"):
                self.reasons[str(result["error"].get("code"))] += 1

    def lines(self) -> Iterator[str]:
        yield f"files         {self.files} ({self.files_refused} refused whole)"
        if self.claims or not self.postings:
            c = self.claims
            yield (
                f"claims        {c['recorded']} recorded ({c['suspect']} suspect), {c['duplicate']} exact duplicates, "
                f"{c['invalid']} invalid, {c['failed']} failed, {c['voided']} voided"
            )
        if self.postings:
            p = self.postings
            refused = sum(n for s, n in p.items() if s not in ("posted", "already_posted"))
            yield f"payments      {p['posted']} posted, {p['already_posted']} already posted, {refused} refused"
        if self.rejected_parts:
            yield f"rejected      {self.rejected_parts} transaction sets or groups refused by the envelope checks"
        for reason, n in self.reasons.most_common():
            yield f"  {n:>6}  {reason}"


def send_file(client: httpx.Client, path: Path, *, run_id: str, sleep: Any = time.sleep) -> FileAnswer:
    """POST one file to its import endpoint; retries 503 with the same Idempotency-Key."""
    try:
        data = path.read_bytes()
        kind = detect_kind(data)
    except (OSError, ImportFileError) as exc:
        return FileAnswer(path, None, None, None, error=str(exc))
    headers = {"Content-Type": CONTENT_TYPES[kind], "Idempotency-Key": f"import-{run_id}-{path.name}"[:200]}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            response = client.post(ENDPOINTS[kind], content=data, headers=headers, params={"file": path.name})
        except httpx.TransportError as exc:
            if attempt == MAX_ATTEMPTS:
                return FileAnswer(path, kind, None, None, error=f"the gateway did not answer: {exc}")
            sleep(min(2.0**attempt, 30.0))
            continue
        if response.status_code == 503 and attempt < MAX_ATTEMPTS:
            sleep(float(response.headers.get("Retry-After", "2")))
            continue
        try:
            body = response.json()
        except ValueError:
            body = None
        error = None
        if response.status_code not in (200, 207):
            shown = (body or {}).get("error", {}).get("message") if isinstance(body, dict) else response.text[:200]
            error = f"HTTP {response.status_code}: {shown}"
        return FileAnswer(path, kind, response.status_code, body, error=error)
    raise AssertionError("unreachable: the loop returns on its last attempt")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]
