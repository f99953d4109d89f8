"""The ledger's exceptions: one root, a family per kind of refusal.

    LedgerError                      every refusal the ledger makes
    ├── ClaimValidationError         the claim is not clean: every problem listed
    ├── FormatError                  an X12 or FHIR input cannot be read (segment, position)
    ├── DuplicateClaimError          an exact duplicate of a live claim (CARC 18)
    ├── ClaimNotFoundError           no such claim (or not one the caller may see)
    ├── InvalidCursorError           a listing cursor this ledger did not give out
    ├── LifecycleError               the claim's status does not allow that step
    ├── PermissionDeniedError        the caller's role or organisation may not do that
    ├── ContractRevertError          the contract refused a call (custom error decoded)
    ├── ChainUnavailableError        the node cannot be reached; safe to retry later
    ├── ConfigurationError           settings, key files or artifacts are missing or wrong
    ├── KeyringError                 fingerprint or document keys cannot be used
    ├── StoreError                   the SQL store refused or is inconsistent
    │   └── IndexIntegrityError      the index does not match the chain (reorg, tamper)
    └── NodeError                    the local node could not be started or stopped

Each error carries the data a caller needs to answer its user (``code``, ``details``) and
a message that says what failed, on what, and what to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    code: str = "ledger_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


@dataclass(frozen=True)
class FieldProblem:
    """One reason a claim is not clean: where, what value, which rule, in plain words."""

    field: str
    value: Any
    rule: str
    message: str
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "value": self.value, "rule": self.rule, "message": self.message}


class ClaimValidationError(LedgerError, ValueError):
    """The claim is refused before anything is written; ``problems`` lists every one."""

    code = "claim_invalid"

    def __init__(self, problems: list[FieldProblem], *, claim_ref: str | None = None) -> None:
        where = f" {claim_ref}" if claim_ref else ""
        first = problems[0].message if problems else "no detail"
        super().__init__(
            f"claim{where} is not clean: {len(problems)} problem(s), first: {first}",
            details={"problems": [p.to_dict() for p in problems]},
        )
        self.problems = problems


class FormatError(LedgerError, ValueError):
    """An X12 or FHIR input (or the part the standard says falls with the error) cannot be read.

    ``rule`` is a stable id such as ``x12_truncated``, ``x12_se_count``, ``x12_ge_count``,
    ``x12_iea_count``, ``not_utf8``, ``file_too_large``, ``unknown_qualifier``, ``fhir_invalid``;
    ``source`` (a :class:`ledger.formats.SourceRef`) names the segment or element and position.
    Nothing of what the error covers is submitted.
    """

    code = "format_invalid"

    def __init__(self, message: str, *, rule: str, source: Any = None) -> None:
        details: dict[str, Any] = {"rule": rule}
        if source is not None:
            details["source"] = source.to_dict()
        super().__init__(message, details=details)
        self.rule = rule
        self.source = source


class DuplicateClaimError(LedgerError):
    """An exact duplicate of a live claim; names the record already on the ledger."""

    code = "exact_duplicate"

    def __init__(self, message: str, *, existing: dict[str, Any]) -> None:
        super().__init__(message, details={"existing": existing, "carc": "18"})
        self.existing = existing


class InvalidCursorError(LedgerError, ValueError):
    """A listing cursor that this ledger did not give out."""

    code = "cursor_invalid"


class ClaimNotFoundError(LedgerError, LookupError):
    code = "claim_not_found"


class LifecycleError(LedgerError):
    code = "lifecycle_violation"


class PermissionDeniedError(LedgerError, PermissionError):
    code = "permission_denied"


class ContractRevertError(LedgerError):
    """The contract refused the call; ``error`` is the custom error's name, ``args`` its values."""

    code = "contract_revert"

    def __init__(self, error: str, args: dict[str, Any], *, call: str) -> None:
        shown = ", ".join(f"{k}={_short(v)}" for k, v in args.items())
        super().__init__(
            f"{call} refused by the contract: {error}({shown})",
            details={"error": error, "args": {k: _jsonable(v) for k, v in args.items()}, "call": call},
        )
        self.error = error
        self.error_args = args


class ChainUnavailableError(LedgerError, ConnectionError):
    """The node did not answer. Nothing was lost; retry after ``retry_after`` seconds."""

    code = "chain_unavailable"

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class ConfigurationError(LedgerError):
    code = "configuration_error"


class KeyringError(LedgerError):
    code = "keyring_error"


class StoreError(LedgerError):
    code = "store_error"


class IndexIntegrityError(StoreError):
    code = "index_integrity"


class NodeError(LedgerError):
    code = "node_error"


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    shown = _jsonable(value)
    return str(shown)
