"""Claims read from standard formats (X12 837, FHIR Claim), submitted as the JSON path submits them.

A reader (:mod:`ledger.formats.x837`, :mod:`ledger.formats.fhir`) gives
:class:`~ledger.formats.ImportedClaim` items; :func:`submit_imported` sends the readable ones
through :meth:`ClaimLedgerService.submit` in batches (one validation, one set of rules, one
answer shape whatever the format) and answers per item, in file order, with where it came
from. An item the reader could not map is answered ``invalid`` with its format problems and
never reaches the chain. :class:`ImportSummary` counts what a billing clerk asks first:
recorded, exact duplicates, suspects, invalid (with reasons), failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledger.errors import FormatError
from ledger.formats import ImportedClaim, SourceRef
from ledger.service import ClaimLedgerService, ClaimOutcome, Member

DEFAULT_IMPORT_BATCH = 1000
"""Claims per :meth:`ClaimLedgerService.submit` call: the pipeline's largest batch."""


@dataclass(frozen=True)
class ImportedOutcome:
    """One item of an import: where it was in the file, and what the ledger answered."""

    source: SourceRef
    outcome: ClaimOutcome


@dataclass
class ImportSummary:
    """Counts over one or more imported files."""

    recorded: int = 0
    duplicates: int = 0
    suspects: int = 0
    invalid: int = 0
    failed: int = 0
    voided: int = 0
    rejected_parts: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    def add(self, outcomes: Sequence[ImportedOutcome], rejected: Sequence[FormatError] = ()) -> None:
        for item in outcomes:
            o = item.outcome
            if o.status == "recorded":
                self.recorded += 1
                if o.suspects:
                    self.suspects += 1
            elif o.status == "duplicate":
                self.duplicates += 1
            elif o.status == "voided":
                self.voided += 1
            elif o.status == "invalid":
                self.invalid += 1
                self.reasons.update(p["rule"] for p in o.problems)
            else:
                self.failed += 1
                if o.error:
                    self.reasons[str(o.error.get("code", "failed"))] += 1
        self.rejected_parts += len(rejected)
        self.reasons.update(e.rule for e in rejected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "duplicates": self.duplicates,
            "suspects": self.suspects,
            "invalid": self.invalid,
            "failed": self.failed,
            "voided": self.voided,
            "rejected_parts": self.rejected_parts,
            "reasons": dict(self.reasons.most_common()),
        }


def submit_imported(
    service: ClaimLedgerService,
    member: Member,
    items: Sequence[ImportedClaim],
    *,
    batch: int = DEFAULT_IMPORT_BATCH,
) -> list[ImportedOutcome]:
    """Submit the readable items for provider ``member``; one outcome per item, in order."""
    outcomes: list[ImportedOutcome | None] = [None] * len(items)
    readable: list[int] = []
    for i, item in enumerate(items):
        if item.data is None:
            problems = [p.to_dict() for p in item.problems]
            outcomes[i] = ImportedOutcome(item.source, ClaimOutcome("invalid", item.claim_id, problems=problems))
        else:
            readable.append(i)
    for start in range(0, len(readable), batch):
        chunk = readable[start : start + batch]
        answers = service.submit(member, [items[i].data or {} for i in chunk])
        for i, answer in zip(chunk, answers, strict=True):
            outcomes[i] = ImportedOutcome(items[i].source, answer)
    return [o for o in outcomes if o is not None]
