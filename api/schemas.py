"""Request and response schemas, split by purpose (``ClaimResult``, ``ClaimPublic``, ``ClaimsPage``, ...).

Claim documents themselves are not modelled here: the gateway takes them as JSON objects and
``ledger.claim`` parses them (its normal form, and every problem listed in its own terms).
The OpenAPI schema documents them with the ledger's ``Claim`` model (see ``api.main``).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

REF_PATTERN = r"^0x[0-9a-fA-F]{64}:[1-9][0-9]{0,9}$"
REF_EXAMPLE = "0x5f0c3bd1c1e44b1f9c1b9e3c0c1c67f1a0c6f7c3d6f1d0a9b0e1f2a3b4c5d6e7:1"

CLAIM_EXAMPLE: dict[str, Any] = {
    "claim_id": "CLM-0001",
    "frequency": "1",
    "billing_npi": "1234567893",
    "rendering_npi": "1245319599",
    "payer_id": "PAYER-ACME",
    "responsibility": "P",
    "member_id": "MBR100200300",
    "patient_birth_date": "1980-04-12",
    "place_of_service": "11",
    "diagnoses": ["E11.9", "I10"],
    "service_lines": [
        {
            "service_date_from": "2025-06-02",
            "procedure_code": "99213",
            "modifiers": [],
            "units": 1,
            "charge_cents": 12500,
            "diagnosis_pointers": [1],
        }
    ],
    "total_charge_cents": 12500,
}
REPLACEMENT_EXAMPLE: dict[str, Any] = {
    **CLAIM_EXAMPLE,
    "frequency": "7",
    "original_claim_id": REF_EXAMPLE,
    "service_lines": [{**CLAIM_EXAMPLE["service_lines"][0], "units": 2, "charge_cents": 25000}],
    "total_charge_cents": 25000,
}
CLAIM_EXAMPLES = {
    "original": {"summary": "An original claim (frequency 1)", "value": CLAIM_EXAMPLE},
    "replacement": {
        "summary": "A replacement (frequency 7) naming the ledger claim it replaces",
        "value": REPLACEMENT_EXAMPLE,
    },
}


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. exact_duplicate, claim_invalid.")
    message: str = Field(description="What failed, on what, and what to do.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "exact_duplicate",
                        "message": "claim CLM-0001 is an exact duplicate of ledger claim "
                        f"{REF_EXAMPLE} (CARC 18): it was not recorded",
                        "details": {
                            "existing": {"ref": REF_EXAMPLE, "exact_key": REF_EXAMPLE[:66], "version": 1},
                            "carc": "18",
                        },
                    }
                }
            ]
        }
    )

    error: ErrorDetail


class Problem(BaseModel):
    field: str
    value: Any = None
    rule: str
    message: str


class ClaimPointer(BaseModel):
    """A ledger claim: ``ref`` is ``0x<exact key>:<version>``."""

    ref: str | None
    exact_key: str
    version: int | None


class SuspectMatch(BaseModel):
    line_index: int = Field(description="The flagged service line (canonical order, from 0).")
    earlier: ClaimPointer = Field(description="The live claim whose line it matches.")


class ClaimResult(BaseModel):
    """What the ledger did with one submitted claim."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "recorded",
                    "http_status": 201,
                    "claim_id": "CLM-0001",
                    "ref": REF_EXAMPLE,
                    "exact_key": REF_EXAMPLE[:66],
                    "version": 1,
                    "document_hash": "0x" + "ab" * 32,
                    "tx_hash": "0x" + "cd" * 32,
                    "block_number": 42,
                    "suspect": False,
                    "suspects": [],
                    "replaced": None,
                    "existing": None,
                    "problems": [],
                    "error": None,
                }
            ]
        }
    )

    status: Literal["recorded", "duplicate", "voided", "invalid", "failed"]
    http_status: int = Field(description="The status this claim alone would have been answered with.")
    claim_id: str | None = Field(description="The provider's claim id (CLM01), echoed.")
    ref: str | None = None
    exact_key: str | None = None
    version: int | None = None
    document_hash: str | None = None
    tx_hash: str | None = None
    block_number: int | None = None
    suspect: bool = Field(default=False, description="Recorded, but a line matches a line of another live claim.")
    suspects: list[SuspectMatch] = Field(default_factory=list)
    replaced: ClaimPointer | None = Field(default=None, description="For a replacement: the claim it replaced.")
    existing: ClaimPointer | None = Field(
        default=None, description="For an exact duplicate: the record already on the ledger."
    )
    problems: list[Problem] = Field(default_factory=list, description="For an invalid claim: every problem.")
    error: ErrorDetail | None = None


class BatchIn(BaseModel):
    claims: list[dict[str, Any]] = Field(min_length=1, description="Claim documents, answered in the same order.")


class BatchResult(BaseModel):
    results: list[ClaimResult]
    summary: dict[str, int] = Field(description="How many claims ended in each status.")


class SourceOut(BaseModel):
    """Where an item was in an imported file."""

    file: str | None = None
    segment: str = Field(description="The X12 segment id (CLM, CLP...) or the FHIR element path.")
    position: int = Field(description="The segment's 1-based position in the file (0 when not applicable).")
    control: dict[str, str] = Field(default_factory=dict, description="Envelope control numbers: ISA13, GS06, ST02.")


class ImportedClaimResult(ClaimResult):
    source: SourceOut


class ImportAnswer(BaseModel):
    format: str = Field(description="837P, 837I or FHIR.")
    file: str | None = None
    results: list[ImportedClaimResult] = Field(description="One per claim of the file, in file order.")
    rejected: list[ErrorDetail] = Field(
        default_factory=list,
        description="Parts of the file refused whole (e.g. a transaction set with a wrong SE01); the rest was taken.",
    )
    summary: dict[str, int] = Field(description="How many claims ended in each status, suspects, rejected parts.")


class PostingResult(BaseModel):
    source: SourceOut
    claim_id: str = Field(description="CLP01, the provider's claim id.")
    payer_claim_control: str | None = Field(default=None, description="CLP07.")
    status: str = Field(
        description="posted, already_posted, not_found, ambiguous, invalid, unsupported_status, payer_mismatch, refused"
    )
    ref: str | None = None
    steps: list[str] = Field(default_factory=list, description="The payer steps taken, in order.")
    claim_status: str | None = None
    error: ErrorDetail | None = None


class RemittanceOut(BaseModel):
    """One 835 transaction set: who paid, under which trace, how much, and the hash kept on chain."""

    source: SourceOut
    payer_id: str = Field(description="N1*PR: the payer the 835 is from.")
    payee_npi: str | None = Field(default=None, description="N1*PE (XX).")
    trace_number: str = Field(description="TRN02: the check or EFT trace number.")
    payment_cents: int = Field(description="BPR02: the total paid.")
    payment_date: date | None = Field(default=None, description="BPR16.")
    remittance_hash: str = Field(description="SHA-256 of the transaction set (ST..SE), recorded with each payment.")
    claims: int = Field(description="How many CLPs it carries.")


class RemittanceAnswer(BaseModel):
    file: str | None = None
    remittances: list[RemittanceOut] = Field(default_factory=list, description="The 835's transaction sets.")
    results: list[PostingResult] = Field(description="One per CLP of the file, in file order.")
    rejected: list[ErrorDetail] = Field(default_factory=list)
    summary: dict[str, Any]


class ClaimPublic(BaseModel):
    """A ledger claim as the index holds it (no PHI: the document stays encrypted off chain)."""

    ref: str
    exact_key: str
    version: int
    status: str
    frequency: int
    suspect: bool
    provider: str | None
    provider_org: int
    payer: str | None
    payer_org: int
    total_charge_cents: int
    line_count: int
    key_id: int
    document_hash: str
    replaces: str | None = Field(default=None, description="The ref of the claim this one replaced.")
    outcome: str | None = None
    allowed_cents: int | None = None
    paid_cents: int | None = None
    submitted_at: datetime
    submitted_block: int
    submitted_tx: str
    paid_at: datetime | None = None
    days_to_payment: float | None = Field(default=None, description="From submission to payment, from the record.")


class ClaimsPage(BaseModel):
    items: list[ClaimPublic]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class EventActor(BaseModel):
    organisation: str | None
    org_index: int | None
    account: str | None = None


class HistoryEvent(BaseModel):
    event: str = Field(description="The contract event, e.g. ClaimSubmitted, DuplicateRefused, ClaimPaid.")
    who: EventActor
    what: dict[str, Any]
    when: datetime
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int


class ClaimHistory(BaseModel):
    ref: str
    claim: ClaimPublic
    events: list[HistoryEvent]


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"accepted": True, "reason": "A2:20"}]})

    accepted: bool
    reason: str = Field(
        default="",
        max_length=8,
        pattern=r"^[\x20-\x7e]*$",
        description="277CA category:status, e.g. A2:20 accepted, A3:21 rejected.",
    )


class AdjudicateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"outcome": "partly_approved", "allowed_cents": 9000, "carc_codes": ["CO45"]}]},
    )

    outcome: Literal["approved", "partly_approved", "denied"]
    allowed_cents: int = Field(ge=0)
    carc_codes: list[str] = Field(
        default_factory=list, max_length=5, description="Claim adjustment reason codes with their group, e.g. CO45."
    )

    @model_validator(mode="after")
    def _codes_fit(self) -> AdjudicateIn:
        for code in self.carc_codes:
            if not (1 <= len(code) <= 4 and code.isascii() and code.isalnum()):
                raise ValueError(f"CARC code {code!r} must be 1 to 4 letters and digits, e.g. CO45")
        return self


class PaymentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"paid_cents": 9000, "trace": "EFT-20250630-000123"}]}
    )

    paid_cents: int = Field(ge=0)
    remittance_hash: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{64}$", description="A hash of the 835 remittance advice."
    )
    trace: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description="The EFT / check trace number (TRN02); the ledger keeps its SHA-256.",
    )

    @model_validator(mode="after")
    def _one_reference(self) -> PaymentIn:
        if (self.remittance_hash is None) == (self.trace is None):
            raise ValueError("give exactly one of remittance_hash and trace")
        return self


class ReversalIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"trace": "EFT-20250715-000456"}]})

    remittance_hash: str | None = Field(
        default=None, pattern=r"^0x[0-9a-fA-F]{64}$", description="A hash of the 835 carrying the reversal."
    )
    trace: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description="The trace number (TRN02) of the 835 carrying the reversal; the ledger keeps its SHA-256.",
    )

    @model_validator(mode="after")
    def _one_reference(self) -> ReversalIn:
        if (self.remittance_hash is None) == (self.trace is None):
            raise ValueError("give exactly one of remittance_hash and trace")
        return self


class ClaimAction(BaseModel):
    ref: str
    status: str
    tx_hash: str | None
    block_number: int | None
    claim: ClaimPublic


class VerifyResult(BaseModel):
    matches: bool = Field(description="Whether the document is one recorded on the ledger (among claims you may see).")
    ref: str | None = None
    exact_key: str | None = None
    version: int | None = None
    status: str | None = None
    key_id: int | None = None


class MemberPublic(BaseModel):
    organisation: str
    role: str
    org_index: int
    address: str


class OrganisationIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "PROV-B", "role": "provider"}]})

    name: str = Field(min_length=1, max_length=32)
    role: Literal["provider", "payer", "auditor"]


class OrganisationPublic(BaseModel):
    name: str
    role: str
    chain_index: int | None
    address: str
    status: str
    created_at: datetime


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    label: str | None = Field(default=None, max_length=64)


class ApiKeyIssued(BaseModel):
    key: str = Field(description="The API key. Shown this once: only its hash is stored.")
    prefix: str = Field(description="Names the key to revoke it.")
    organisation: str
    created_at: datetime


class ApiKeyPublic(BaseModel):
    prefix: str
    organisation: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


class OrganisationCreated(BaseModel):
    organisation: OrganisationPublic
    api_key: ApiKeyIssued


class DuplicatesRow(BaseModel):
    provider: str | None
    provider_org: int
    claims_recorded: int
    suspect_flagged: int
    duplicates_refused: int


class PayerRow(BaseModel):
    payer: str | None
    payer_org: int
    claims: int
    adjudicated: int
    denied: int
    denial_rate: float | None
    paid: int
    days_to_payment_mean: float | None
    days_to_payment_median: float | None
    days_to_payment_max: float | None


class DuplicatesReport(BaseModel):
    period_from: datetime
    period_to: datetime
    rows: list[DuplicatesRow]


class PayersReport(BaseModel):
    period_from: datetime
    period_to: datetime
    rows: list[PayerRow]


class AccessEntry(BaseModel):
    seq: int
    at: datetime
    actor: str
    org: str
    role: str
    action: str
    claim: str | None
    request_id: str
    outcome: str
    prev_hash: str
    entry_hash: str


class AccessLogPage(BaseModel):
    entries: list[AccessEntry]
    next_after: int | None


class AnchorCheck(BaseModel):
    seq: int
    head: str
    tx_hash: str
    block_number: int
    holds: bool


class AccessLogVerification(BaseModel):
    ok: bool
    entries: int
    head: str
    first_broken: int | None
    reason: str | None
    anchors: list[AnchorCheck]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
