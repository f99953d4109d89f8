"""Standard claim formats in and out: X12 837P/837I and 835, FHIR R4 Claim and ClaimResponse.

Every reader turns a file into *items* the ledger already knows how to take, each with where
it came from, so that a refusal can name the segment and position:

- :class:`SourceRef`: where an item (or a problem) is in the file;
- :class:`ImportedClaim`: one claim of an 837 or a FHIR ``Claim``, as the mapping
  :func:`ledger.claim.parse_claim` takes (``data``), or the format problems that kept it from
  becoming one (``problems``; then ``data`` is ``None`` and nothing of it is submitted);
- :class:`FormatError`: the whole input (or the part of it the standard says falls with the
  error, e.g. one transaction set) cannot be read.

The readers check form only (segments, qualifiers, counts, numbers). Whether a claim is clean
is :mod:`ledger.validation`, after the mapping, exactly as for a claim posted as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ledger.errors import FieldProblem, FormatError

__all__ = ["FormatError", "ImportedClaim", "SourceRef"]


@dataclass(frozen=True)
class SourceRef:
    """Where something is in an input file.

    ``segment`` is the segment id (``CLM``, ``SV1``, ``CLP``...) or a FHIR element path;
    ``position`` the 1-based ordinal of that segment in the file (0 when not applicable);
    ``control`` the envelope it belongs to (``{"ISA13": ..., "GS06": ..., "ST02": ...}``).
    """

    file: str | None
    segment: str
    position: int
    control: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "segment": self.segment, "position": self.position, "control": dict(self.control)}

    def describe(self) -> str:
        where = f"{self.file}: " if self.file else ""
        if self.position:
            return f"{where}segment {self.segment} at position {self.position}"
        return f"{where}{self.segment}"


@dataclass(frozen=True)
class ImportedClaim:
    """One claim read from a file: the claim's mapping, or why it could not be read."""

    source: SourceRef
    claim_id: str | None
    data: dict[str, Any] | None
    problems: tuple[FieldProblem, ...] = ()
