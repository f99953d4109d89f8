"""837P/837I reader: every mapped field, the envelope's refusals (rule, segment, position), round trips.

Positions are checked against a plain split of the bytes on ``~`` (:func:`position_of`), not
against the reader's own count. x12sdk's transaction models (its own reader, independent of
ours) are the oracle for files x12sdk generates.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from x12sdk.generate import generate_837i, generate_837p
from x12sdk.io import X12ModelReader

from ledger.claim import parse_claim
from ledger.errors import FieldProblem, FormatError
from ledger.fingerprint import FingerprintKey, fingerprint
from ledger.formats import ImportedClaim
from ledger.formats.x12 import MAX_X12_BYTES, money_cents, parse_date_value, whole_number
from ledger.formats.x837 import X12ClaimFile, read_837
from ledger.formats.x837_write import claim_segments, write_837i, write_837p, write_interchange
from ledger.validation import find_problems
from tests.factories import TODAY, make_claim_data, make_line_data

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "samples" / "x12"
CREATED = datetime(2025, 7, 1, 9, 30)
KEY = FingerprintKey.from_secret(bytes(range(32)))


def positions(data: bytes) -> list[str]:
    """The file's segments as the standard numbers them (ISA is 1): a plain split, not the reader."""
    return [part.strip().decode("latin-1") for part in data.split(b"~") if part.strip()]


def position_of(data: bytes, prefix: str, nth: int = 1) -> int:
    hits = [number for number, segment in enumerate(positions(data), start=1) if segment.startswith(prefix)]
    assert len(hits) >= nth, f"{prefix!r} is not in the file {nth} time(s)"
    return hits[nth - 1]


def body_of(claims: list[dict[str, Any]], *, kind: str = "837P", dependents: set[int] | None = None) -> list[str]:
    return claim_segments(claims, kind=kind, sender="PROV-A", receiver="PAYER-ACME", created=CREATED,
                          dependents=dependents or set())  # fmt: skip


def file_of(*groups: list[list[str]], kind: str = "837P", control: int = 1) -> bytes:
    version = "005010X222A1" if kind == "837P" else "005010X223A2"
    return write_interchange(
        list(groups),
        transaction_code="837",
        version=version,
        sender="PROV-A",
        receiver="PAYER-ACME",
        created=CREATED,
        control_number=control,
    )


def two_claims() -> list[dict[str, Any]]:
    return [
        make_claim_data(claim_id="C1", lines=2),
        make_claim_data(claim_id="C2", member_id="MBR2", service_lines=[make_line_data(procedure_code="85025")]),
    ]


def with_segment(body: list[str], prefix: str, new: str | None, nth: int = 1) -> list[str]:
    """``body`` with its ``nth`` segment starting with ``prefix`` replaced by ``new`` (``None``: removed)."""
    hits = [i for i, segment in enumerate(body) if segment.startswith(prefix)]
    index = hits[nth - 1]
    return body[:index] + ([] if new is None else [new]) + body[index + 1 :]


def only_problem(claim: ImportedClaim) -> FieldProblem:
    assert claim.data is None
    assert len(claim.problems) == 1, claim.problems
    return claim.problems[0]


def first_claim_problem(body: list[str], kind: str = "837P") -> tuple[bytes, FieldProblem]:
    """Read a two-claim file whose first claim was spoiled: its one problem, the second claim still read."""
    data = file_of([body], kind=kind)
    result = read_837(data)
    assert [c.claim_id for c in result.claims] == ["C1", "C2"]
    assert result.claims[1].data is not None and not result.claims[1].problems
    return data, only_problem(result.claims[0])


# --- every field, from hand-written files ---------------------------------------------------

LITERAL_837P = """\
ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*PAYERACME      *250701*1200*^*00501*000000905*0*P*:~
GS*HC*CLEARINGHOUSE*PAYERACME*20250701*1200*905*X*005010X222A1~
ST*837*0905*005010X222A1~
BHT*0019*00*REF905*20250701*1200*CH~
NM1*41*2*SUBMITTER CO*****46*S905~
PER*IC*DESK*TE*5555550100~
NM1*40*2*RECEIVER CO*****46*R905~
HL*1**20*1~
PRV*BI*PXC*207Q00000X~
NM1*85*2*NORTH CLINIC*****XX*1234567893~
N3*1 MAIN ST~
N4*SPRINGFIELD*IL*62701~
REF*EI*990000001~
HL*2*1*22*1~
SBR*S**GRP1******CI~
NM1*IL*1*ROE*SAM****MI*MBR777~
DMG*D8*19650301*F~
NM1*PR*2*ACME PLAN*****PI*PAYER-ACME~
HL*3*2*23*0~
PAT*19~
NM1*QC*1*ROE*KID~
DMG*D8*20150704*M~
CLM*PCN-1*305.50***22:B:7*Y*A*Y*Y~
DTP*431*D8*20250601~
REF*F8*PCN-0~
REF*G1*PRIORAUTH~
HI*ABK:E119*ABF:I10*ABF:J069~
HI*BG:01~
NM1*DN*1*REFER*ING****XX*1111111112~
NM1*82*1*RENDER*ING****XX*1245319599~
PRV*PE*PXC*207Q00000X~
SBR*P*18*******CI~
NM1*IL*1*ROE*SAM****MI*OTHERMEMBER~
NM1*PR*2*BETA PLAN*****PI*PAYER-BETA~
REF*F8*OTHERREF~
LX*1~
SV1*HC:99213:RT:25*125*UN*1*11**1:2~
DTP*472*D8*20250602~
NM1*82*1*LINE*PROV****XX*1999999992~
LX*2~
SV1*HC:97110:GP*180.5*UN*3***3~
DTP*472*RD8*20250602-20250604~
HL*4*1*22*0~
SBR*P*18*******CI~
NM1*IL*1*POE*JO****MI*MBR888~
DMG*D8*19800412*U~
NM1*PR*2*ACME PLAN*****PI*PAYER-ACME~
CLM*PCN-2*99***11:B:1*Y*A*Y*Y~
HI*BK:4019~
LX*1~
SV1*HC:G0008*99*UN*1***1~
DTP*472*D8*20250610~
SE*51*0905~
GE*1*905~
IEA*1*000000905~
"""


def test_837p_every_field_is_mapped() -> None:
    result = read_837(LITERAL_837P.encode(), file="literal.837")
    assert result.kind == "837P" and result.rejected == []
    first, second = result.claims
    assert first.problems == () and second.problems == ()
    assert first.data == {
        "claim_id": "PCN-1",
        "total_charge_cents": 30550,
        "place_of_service": "22",
        "frequency": "7",
        "original_claim_id": "PCN-0",  # the claim's REF*F8, not the other payer's (2330B)
        "billing_npi": "1234567893",
        "rendering_npi": "1245319599",  # 2310B, not the referring (DN) nor the line's own (2420A)
        "payer_id": "PAYER-ACME",  # 2010BB, not the other payer of 2330B
        "responsibility": "S",  # 2000B SBR01, not the other payer's SBR of 2320
        "member_id": "MBR777",
        "patient_birth_date": "2015-07-04",  # the dependent's (2010CA), not the subscriber's
        "diagnoses": ["E119", "I10", "J069"],  # HI*BG (condition codes) passed over
        "service_lines": [
            {
                "procedure_code": "99213",
                "modifiers": ["RT", "25"],
                "charge_cents": 12500,
                "units": 1,
                "place_of_service": "11",
                "diagnosis_pointers": [1, 2],
                "service_date_from": "2025-06-02",
                "service_date_to": "2025-06-02",
            },
            {
                "procedure_code": "97110",
                "modifiers": ["GP"],
                "charge_cents": 18050,
                "units": 3,
                "diagnosis_pointers": [3],
                "service_date_from": "2025-06-02",
                "service_date_to": "2025-06-04",
            },
        ],
    }
    assert second.data == {
        "claim_id": "PCN-2",
        "total_charge_cents": 9900,
        "place_of_service": "11",
        "frequency": "1",
        "original_claim_id": None,
        "billing_npi": "1234567893",
        "rendering_npi": None,
        "payer_id": "PAYER-ACME",
        "responsibility": "P",
        "member_id": "MBR888",
        "patient_birth_date": "1980-04-12",  # no patient loop: the subscriber's DMG (2010BA)
        "diagnoses": ["4019"],  # BK: an ICD-9 principal diagnosis, as given (validation refuses it)
        "service_lines": [
            {
                "procedure_code": "G0008",
                "modifiers": [],
                "charge_cents": 9900,
                "units": 1,
                "diagnosis_pointers": [1],
                "service_date_from": "2025-06-10",
                "service_date_to": "2025-06-10",
            }
        ],
    }
    parsed = parse_claim(first.data)
    assert parsed.service_lines[0].place_of_service == "11" and parsed.service_lines[0].modifiers == ("25", "RT")


def test_837p_claims_name_their_clm_segment_and_envelope() -> None:
    data = LITERAL_837P.encode()
    first, second = read_837(data, file="literal.837").claims
    assert first.source.file == "literal.837"
    assert (first.source.segment, first.source.position) == ("CLM", position_of(data, "CLM*PCN-1*"))
    assert second.source.position == position_of(data, "CLM*PCN-2*") == 48
    assert first.source.control == {"ISA13": "000000905", "GS06": "905", "ST02": "0905"}
    assert first.claim_id == "PCN-1"


LITERAL_837I = """\
ISA*00*          *00*          *ZZ*CLEARINGHOUSE  *ZZ*PAYERACME      *250701*1200*^*00501*000000906*0*P*:~
GS*HC*CLEARINGHOUSE*PAYERACME*20250701*1200*906*X*005010X223A2~
ST*837*0906*005010X223A2~
BHT*0019*00*REF906*20250701*1200*CH~
NM1*41*2*SUBMITTER CO*****46*S906~
PER*IC*DESK*TE*5555550100~
NM1*40*2*RECEIVER CO*****46*R906~
HL*1**20*1~
NM1*85*2*GENERAL HOSPITAL*****XX*1234567893~
N3*1 HOSPITAL WAY~
N4*SPRINGFIELD*IL*62701~
REF*EI*990000002~
HL*2*1*22*0~
SBR*P*18*******CI~
NM1*IL*1*DOE*ALEX****MI*MBR901~
DMG*D8*19720214*F~
NM1*PR*2*ACME PLAN*****PI*PAYER-ACME~
CLM*INST-1*755***13:A:1**A*Y*Y~
DTP*434*RD8*20250604-20250605~
CL1*3*1*01~
HI*ABK:R079~
HI*ABJ:R079*APR:R079~
HI*ABF:I10*ABF:E119~
HI*BE:80:::100~
NM1*71*1*ATTEND*ING****XX*1245319599~
NM1*82*1*RENDER*ING****XX*1999999992~
LX*1~
SV2*0450*HC:99283:25*480*UN*1~
DTP*472*D8*20250604~
LX*2~
SV2*0120*HC:G0008*275*DA*2~
HL*3*1*22*0~
SBR*P*18*******CI~
NM1*IL*1*DOE*BEA****MI*MBR902~
DMG*D8*19900823*F~
NM1*PR*2*ACME PLAN*****PI*PAYER-ACME~
CLM*INST-2*65***13:A:8**A*Y*Y~
DTP*434*D8*20250606~
CL1*3*1*01~
REF*F8*INST-0~
HI*BK:7865~
NM1*82*1*RENDER*ING****XX*1999999992~
LX*1~
SV2*0300*HC:85025*65*UN*1~
SE*43*0906~
GE*1*906~
IEA*1*000000906~
"""


def test_837i_every_field_is_mapped() -> None:
    result = read_837(LITERAL_837I.encode())
    assert result.kind == "837I" and result.rejected == []
    first, second = result.claims
    assert first.problems == () and second.problems == ()
    assert first.data == {
        "claim_id": "INST-1",
        "total_charge_cents": 75500,
        "place_of_service": "13",  # CLM05-1: the facility type code
        "frequency": "1",
        "original_claim_id": None,
        "billing_npi": "1234567893",
        "rendering_npi": "1245319599",  # the attending (2310A), ahead of the rendering provider (2310D)
        "payer_id": "PAYER-ACME",
        "responsibility": "P",
        "member_id": "MBR901",
        "patient_birth_date": "1972-02-14",
        "diagnoses": ["R079", "I10", "E119"],  # admitting (ABJ), reason for visit (APR), value code passed over
        "service_lines": [
            {
                "procedure_code": "99283",
                "modifiers": ["25"],
                "charge_cents": 48000,
                "units": 1,
                "diagnosis_pointers": [1],  # an institutional line points at the principal diagnosis
                "service_date_from": "2025-06-04",
                "service_date_to": "2025-06-04",
            },
            {
                "procedure_code": "G0008",
                "modifiers": [],
                "charge_cents": 27500,
                "units": 2,  # DA: days
                "diagnosis_pointers": [1],
                "service_date_from": "2025-06-04",  # no DTP*472: the statement period (DTP*434)
                "service_date_to": "2025-06-05",
            },
        ],
    }
    assert second.data is not None
    assert second.data["rendering_npi"] == "1999999992"  # no attending: the rendering provider
    assert (second.data["frequency"], second.data["original_claim_id"]) == ("8", "INST-0")
    assert second.data["diagnoses"] == ["7865"]
    line = second.data["service_lines"][0]
    assert (line["service_date_from"], line["service_date_to"]) == ("2025-06-06", "2025-06-06")


@pytest.mark.parametrize(
    ("literal", "old", "new", "kind"),
    [
        (LITERAL_837P, "005010X222A1", "005010X222A2", "837P"),
        (LITERAL_837P, "005010X222A1", "005010X222", "837P"),
        (LITERAL_837I, "005010X223A2", "005010X223A3", "837I"),
        (LITERAL_837I, "005010X223A2", "005010X223A1", "837I"),
    ],
)
def test_837_versions_around_the_hipaa_ones_are_read(literal: str, old: str, new: str, kind: str) -> None:
    result = read_837(literal.replace(old, new).encode())
    assert result.kind == kind and result.rejected == [] and all(c.data is not None for c in result.claims)


def test_837_of_another_version_is_refused() -> None:
    data = LITERAL_837P.replace("005010X222A1", "004010X098A1").encode()
    with pytest.raises(FormatError) as caught:
        read_837(data)
    assert caught.value.rule == "x12_version"
    assert (caught.value.source.segment, caught.value.source.position) == ("GS", 2)
    assert "004010X098A1" in caught.value.message


def test_837_set_whose_st03_is_of_another_kind_is_refused() -> None:
    data = LITERAL_837P.replace("ST*837*0905*005010X222A1", "ST*837*0905*005010X223A2").encode()
    result = read_837(data)
    assert result.claims == []
    (error,) = result.rejected
    assert (error.rule, error.source.segment, error.source.position) == ("x12_version", "ST", 3)


def test_a_group_of_the_other_kind_is_refused_and_the_rest_read() -> None:
    professional = body_of(two_claims())
    institutional = body_of([make_claim_data(claim_id="I1", place_of_service="13")], kind="837I")
    data = file_of([professional], [institutional])
    data = data.replace(b"*2*X*005010X222A1~", b"*2*X*005010X223A2~").replace(
        b"ST*837*0002*005010X222A1", b"ST*837*0002*005010X223A2"
    )
    result = read_837(data)
    assert result.kind == "837P" and [c.claim_id for c in result.claims] == ["C1", "C2"]
    (error,) = result.rejected
    assert error.rule == "x12_version"
    assert (error.source.segment, error.source.position) == ("GS", position_of(data, "GS*", 2))


# --- x12sdk's generator and models as an independent oracle ---------------------------------


def _oracle_claims(text: str) -> list[dict[str, Any]]:
    out = []
    with X12ModelReader(text) as reader:
        models: list[Any] = list(reader.models())  # x12sdk types them as the base class
        for model in models:
            for claim in model.claims():
                clm = claim.claim.clm_segment
                place, _, frequency = clm.health_care_service_location_information.split(":")
                hi = claim.claim.hi_segment
                his = hi if isinstance(hi, list) else [hi]
                codes = [
                    value[1]
                    for segment in his
                    for name, value in segment.model_dump().items()
                    if name.startswith("health_care_code_") and value
                ]
                charges = []
                for line in claim.service_lines:
                    service = getattr(line, "sv1_segment", None) or line.sv2_segment
                    charges.append(int(service.line_item_charge_amount * 100))
                out.append(
                    {
                        "claim_id": clm.patient_control_number,
                        "total_charge_cents": int(clm.total_claim_charge_amount * Decimal(100)),
                        "place_of_service": place,
                        "frequency": frequency,
                        "member_id": claim.member_id,
                        "billing_npi": claim.billing_provider_npi,
                        "patient_birth_date": claim.patient.dmg_segment.date_time_period.isoformat(),
                        "diagnoses": codes,
                        "charges": charges,
                        "dependent": claim.is_dependent,
                    }
                )
    return out


@pytest.mark.parametrize("generate", [generate_837p, generate_837i])
def test_x12sdk_generated_files_read_as_x12sdk_reads_them(generate: Any) -> None:
    text = generate(seed=11, claims=30)  # subscribers and dependents, 1 to 3 lines
    expected = _oracle_claims(text)
    result = read_837(text.encode())
    assert result.rejected == [] and len(result.claims) == len(expected) == 30
    for claim, oracle in zip(result.claims, expected, strict=True):
        assert claim.data is not None, claim.problems
        fields = [name for name in oracle if name not in ("charges", "dependent")]
        assert {name: claim.data[name] for name in fields} == {name: oracle[name] for name in fields}
        assert [line["charge_cents"] for line in claim.data["service_lines"]] == oracle["charges"]
    assert {oracle["dependent"] for oracle in expected} == {True, False}  # both patient loops were read


# --- round trip -----------------------------------------------------------------------------

ROUND_TRIP = [
    make_claim_data(),
    make_claim_data(claim_id="RT-3", lines=3),
    make_claim_data(claim_id="RT-10", lines=10, diagnoses=["E119", "I10", "J069", "M5450", "Z0000", "R079"]),
    make_claim_data(
        claim_id="RT-MOD",
        service_lines=[
            make_line_data(procedure_code="97110", modifiers=["gp", "59", "XU", "rt"], units=4, charge_cents=36000),
            make_line_data(procedure_code="85025", place_of_service="22", diagnosis_pointers=[2, 1]),
        ],
    ),
    make_claim_data(claim_id="RT-SEC", responsibility="S", payer_id="PAYER-BETA", rendering_npi=None),
    make_claim_data(claim_id="RT-REP", frequency="7", original_claim_id="CLM-0001"),
    make_claim_data(claim_id="RT-VOID", frequency="8", original_claim_id="CLM-0002", member_id="mbr-100-200"),
    make_claim_data(claim_id="RT-RANGE", service_lines=[make_line_data(service_date_to="2025-06-06", units=5)]),
    make_claim_data(
        claim_id="RT-ORDER",  # submitted out of canonical order: the file keeps the submitted order
        diagnoses=["E11.9", "I10"],
        service_lines=[make_line_data(procedure_code="99214"), make_line_data(procedure_code="36415")],
    ),
]


def _same_claim(read: ImportedClaim, sent: dict[str, Any]) -> None:
    assert read.data is not None, read.problems
    mine, theirs = parse_claim(read.data), parse_claim(sent)
    assert mine == theirs
    assert fingerprint(mine, KEY) == fingerprint(theirs, KEY)  # exact key, line keys, document hash
    assert mine.submitted_order == theirs.submitted_order


def test_837p_round_trip_over_factory_claims() -> None:
    data = write_837p(ROUND_TRIP, sender="PROV-A", receiver="PAYER-ACME", dependents={2, 5})
    result = read_837(data)
    assert result.kind == "837P" and result.rejected == [] and len(result.claims) == len(ROUND_TRIP)
    for read, sent in zip(result.claims, ROUND_TRIP, strict=True):
        _same_claim(read, sent)
        assert read.claim_id == sent["claim_id"]
    assert find_problems(parse_claim(result.claims[0].data or {}), today=TODAY) == []
    order = result.claims[-1].data
    assert order is not None and [line["procedure_code"] for line in order["service_lines"]] == ["99214", "36415"]


def test_837p_round_trip_of_many_claims_keeps_file_order() -> None:
    claims = [make_claim_data(claim_id=f"CLM-{n:05d}", member_id=f"MBR{n:06d}", lines=1 + n % 3) for n in range(200)]
    result = read_837(write_837p(claims, sender="PROV-A", receiver="PAYER-ACME", dependents=set(range(0, 200, 3))))
    assert [c.claim_id for c in result.claims] == [c["claim_id"] for c in claims]
    for read, sent in zip(result.claims, claims, strict=True):
        _same_claim(read, sent)


def test_837i_round_trip_over_factory_claims() -> None:
    claims = [
        make_claim_data(claim_id="I-1", place_of_service="13"),
        make_claim_data(claim_id="I-3", place_of_service="13", lines=3, responsibility="T"),
        make_claim_data(
            claim_id="I-RANGE",
            place_of_service="11",
            frequency="7",
            original_claim_id="I-0",
            service_lines=[make_line_data(service_date_to="2025-06-04", units=3, modifiers=["25"])],
        ),
    ]
    data = write_837i(claims, sender="PROV-A", receiver="PAYER-ACME", dependents={1})
    result = read_837(data)
    assert result.kind == "837I" and result.rejected == []
    for read, sent in zip(result.claims, claims, strict=True):
        _same_claim(read, sent)
    assert b"NM1*71*" in data and b"SV2*0510*HC:99213*125.00*UN*1~" in data


def test_writer_refuses_what_an_837_cannot_say() -> None:
    with pytest.raises(ValueError, match="837I line has no diagnosis pointers"):
        write_837i([make_claim_data(lines=[make_line_data(diagnosis_pointers=[2])])], sender="PA", receiver="PB")
    with pytest.raises(ValueError, match="delimiter"):
        write_837p([make_claim_data(claim_id="A*B")], sender="PA", receiver="PB")
    with pytest.raises(ValueError, match="2 to 15"):
        write_837p([make_claim_data()], sender="A-SENDER-FAR-TOO-LONG", receiver="PB")


# --- the envelope: samples with one fault each -----------------------------------------------


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_sample_of_ten_claims_reads_clean() -> None:
    result = read_837(sample("837p-10-claims.x12"), file="837p-10-claims.x12")
    assert result.rejected == [] and len(result.claims) == 10
    for claim in result.claims:
        assert claim.data is not None, claim.problems
        assert find_problems(parse_claim(claim.data), today=TODAY) == []
    assert {c.data["responsibility"] for c in result.claims if c.data} == {"P", "S"}


def test_truncated_interchange_refuses_the_whole_file() -> None:
    data = sample("bad-truncated.x12")
    with pytest.raises(FormatError) as caught:
        read_837(data, file="bad-truncated.x12")
    error = caught.value
    assert error.rule == "x12_truncated"
    assert (error.source.segment, error.source.position) == ("SV1", len(positions(data)))
    assert error.source.file == "bad-truncated.x12"
    assert "cut short" in error.message and "no IEA" in error.message


def test_wrong_se01_refuses_that_transaction_set_only() -> None:
    data = sample("bad-se-count.x12")
    result = read_837(data)
    (error,) = result.rejected
    assert error.rule == "x12_se_count"
    assert (error.source.segment, error.source.position) == ("SE", position_of(data, "SE*", 1))
    assert error.source.control["ST02"] == "0001"
    assert "none of its 2 claims is taken" in error.message
    assert [c.claim_id for c in result.claims] == ["X12-TEN-0002", "X12-TEN-0003"]  # the second set
    assert all(c.data is not None for c in result.claims)


def test_wrong_ge01_refuses_that_group_only() -> None:
    data = sample("bad-ge-count.x12")
    result = read_837(data)
    (error,) = result.rejected
    assert error.rule == "x12_ge_count"
    assert (error.source.segment, error.source.position) == ("GE", position_of(data, "GE*", 1))
    assert error.source.control["GS06"] == "30"
    assert [c.claim_id for c in result.claims] == ["X12-TEN-0002", "X12-TEN-0003"]  # the second group


def test_wrong_iea01_refuses_the_whole_file() -> None:
    data = sample("bad-iea-count.x12")
    with pytest.raises(FormatError) as caught:
        read_837(data)
    assert caught.value.rule == "x12_iea_count"
    assert (caught.value.source.segment, caught.value.source.position) == ("IEA", len(positions(data)))
    assert "says it holds 2 functional groups" in caught.value.message


def test_claim_without_service_lines_is_refused_and_the_others_read() -> None:
    data = sample("bad-no-service-lines.x12")
    result = read_837(data)
    assert result.rejected == []
    first, bad, third = result.claims
    clm = position_of(data, "CLM*X12-TEN-0001*")
    assert bad.claim_id == "X12-TEN-0001" and bad.source.position == clm
    problem = only_problem(bad)
    assert (problem.field, problem.rule, problem.value) == (f"CLM[{clm}]", "service_lines_missing", "X12-TEN-0001")
    assert "no service lines" in problem.message
    assert first.data is not None and third.data is not None


def test_unknown_hi_qualifier_is_a_problem_of_that_claim() -> None:
    data = sample("bad-hi-qualifier.x12")
    first, second = read_837(data).claims
    problem = only_problem(first)
    clm, hi = position_of(data, "CLM*X12-TEN-0000*"), position_of(data, "HI*ABK:")
    assert (problem.field, problem.value, problem.rule) == (f"CLM[{clm}].HI[{hi}]-02-1", "ZZZ", "unknown_qualifier")
    assert second.data is not None


def test_non_utf8_bytes_refuse_the_file_naming_the_offset() -> None:
    data = sample("bad-not-utf8.x12")
    offset = data.index(b"\xc9")
    with pytest.raises(FormatError) as caught:
        read_837(data)
    error = caught.value
    assert error.rule == "not_utf8" and error.details["offset"] == offset
    assert f"offset {offset}" in error.message and "0xC9" in error.message
    assert (error.source.segment, error.source.position) == ("NM1", data[:offset].count(b"~") + 1)


def test_utf16_is_refused_as_not_utf8() -> None:
    text = LITERAL_837P
    with pytest.raises(FormatError) as caught:
        read_837(text.encode("utf-16-le"))
    assert caught.value.rule == "not_utf8" and caught.value.details["offset"] == 1  # "I\x00S\x00..."
    with pytest.raises(FormatError) as caught:
        read_837(text.encode("utf-16"))
    assert caught.value.rule == "not_utf8" and caught.value.details["offset"] == 0
    assert "byte order mark" in caught.value.message


def test_utf8_text_and_a_byte_order_mark_are_read() -> None:
    data = LITERAL_837P.replace("ROE*KID", "ROÉ*KID").encode("utf-8")
    assert len(read_837(b"\xef\xbb\xbf" + data).claims) == 2


def test_a_100_mb_file_is_refused_before_it_is_read() -> None:
    data = bytes(100 * 1024 * 1024)  # NUL bytes: decoding it at all would be a not_utf8 refusal
    started = time.perf_counter()
    with pytest.raises(FormatError) as caught:
        read_837(data, file="huge.x12")
    assert time.perf_counter() - started < 0.5
    assert caught.value.rule == "file_too_large"
    assert "100.0 MiB" in caught.value.message and "64.0 MiB" in caught.value.message


def test_size_limit_is_a_keyword_and_inclusive() -> None:
    data = LITERAL_837P.encode()
    assert len(read_837(data, max_bytes=len(data)).claims) == 2
    with pytest.raises(FormatError) as caught:
        read_837(data, max_bytes=len(data) - 1)
    assert caught.value.rule == "file_too_large"
    assert MAX_X12_BYTES == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("old", "new", "rule", "segment"),
    [
        ("SE*51*0905~", "SE*51*0906~", "x12_control_mismatch", "SE"),  # SE02 is not ST02: the set falls
        ("GE*1*905~", "GE*1*906~", "x12_control_mismatch", "GE"),  # GE02 is not GS06: the group falls
    ],
)
def test_wrong_control_numbers_refuse_their_envelope(old: str, new: str, rule: str, segment: str) -> None:
    data = LITERAL_837P.replace(old, new).encode()
    result = read_837(data)
    assert result.claims == []
    (error,) = result.rejected
    assert (error.rule, error.source.segment, error.source.position) == (
        rule,
        segment,
        position_of(data, segment + "*"),
    )


def test_wrong_iea02_refuses_the_whole_file() -> None:
    with pytest.raises(FormatError) as caught:
        read_837(LITERAL_837P.replace("IEA*1*000000905~", "IEA*1*000000904~").encode())
    assert caught.value.rule == "x12_control_mismatch" and caught.value.source.segment == "IEA"


def test_a_set_without_se_falls_and_the_next_set_is_read() -> None:
    data = file_of([body_of(two_claims()), body_of([make_claim_data(claim_id="C3", member_id="M3")])])
    first_se = data.index(b"\nSE*") + 1
    data = data[:first_se] + data[data.index(b"\n", first_se) + 1 :]  # the first set's SE removed
    result = read_837(data)
    assert [c.claim_id for c in result.claims] == ["C3"]
    (error,) = result.rejected
    assert error.rule == "x12_truncated" and error.source.control["ST02"] == "0001"
    assert (error.source.segment, error.source.position) == ("ST", position_of(data, "ST*", 2))


@pytest.mark.parametrize(
    ("data", "rule"),
    [
        (b"", "x12_isa_invalid"),
        (b"GS*HC*A*B~", "x12_isa_invalid"),
        (b"ISA*00*  *00*~", "x12_isa_invalid"),
        (LITERAL_837P.replace("*ZZ*CLEARINGHOUSE  *", "*ZZ*CLEARINGHOUSE*").encode(), "x12_isa_invalid"),
        (LITERAL_837P.replace("*000000905*0*P", "*00000905X*0*P").encode(), "x12_isa_invalid"),
        (LITERAL_837P.encode() + b"ISA*00*~", "x12_structure"),  # a segment after the IEA
        (LITERAL_837P.replace("HL*1**20*1~", "GE*1*905~\nHL*1**20*1~").encode(), "x12_structure"),
    ],
)
def test_broken_envelopes_refuse_the_whole_file(data: bytes, rule: str) -> None:
    with pytest.raises(FormatError) as caught:
        read_837(data)
    assert caught.value.rule == rule
    assert caught.value.source is not None and caught.value.message


def test_an_835_is_not_an_837() -> None:
    data = (ROOT / "examples" / "x12" / "835-demo.x12").read_bytes()
    with pytest.raises(FormatError) as caught:
        read_837(data)
    assert caught.value.rule == "x12_version" and "HP" in caught.value.message


@pytest.mark.parametrize(
    "transform",
    [
        lambda data: data.replace(b"~\n", b"~\r\n"),  # CRLF after each segment
        lambda data: data.replace(b"~\n", b"~"),  # one long line
        lambda data: data.replace(b"~\n", b"\n"),  # line breaks as the segment terminator
        lambda data: data.replace(b"~\n", b"~\n\n"),  # blank lines between segments
    ],
)
def test_line_breaks_do_not_change_what_is_read(transform: Any) -> None:
    data = sample("837p-10-claims.x12")
    expected = [(c.data, c.source.position) for c in read_837(data).claims]
    changed = transform(data)
    assert changed != data
    assert [(c.data, c.source.position) for c in read_837(changed).claims] == expected


# --- problems inside a claim: field, value, rule --------------------------------------------


def test_fractional_units_are_a_problem() -> None:
    body = with_segment(body_of(two_claims()), "SV1*HC:99213*", "SV1*HC:99213*125.00*UN*1.5***1")
    data, problem = first_claim_problem(body)
    clm, sv1 = position_of(data, "CLM*C1*"), position_of(data, "SV1*HC:99213*")
    assert (problem.field, problem.value, problem.rule) == (f"CLM[{clm}].SV1[{sv1}]-04", "1.5", "fractional_units")
    assert "line 1" in problem.message


def test_whole_units_written_with_decimals_are_read() -> None:
    body = with_segment(body_of(two_claims()), "SV1*HC:99213*", "SV1*HC:99213*125*UN*2.0***1")
    result = read_837(file_of([body]))
    assert result.claims[0].data is not None and result.claims[0].data["service_lines"][0]["units"] == 2


@pytest.mark.parametrize(
    ("segment", "element", "rule", "value"),
    [
        ("SV1*HC:99213*125.001*UN*1***1", "-02", "money_precision", "125.001"),
        ("SV1*HC:99213*-125.00*UN*1***1", "-02", "money_negative", "-125.00"),
        ("SV1*HC:99213*125,00*UN*1***1", "-02", "money_format", "125,00"),
        ("SV1*HC:99213*1E2*UN*1***1", "-02", "money_format", "1E2"),
        ("SV1*HC:99213*125.00*MJ*15***1", "-03", "unknown_qualifier", "MJ"),
        ("SV1*ER:99213*125.00*UN*1***1", "-01-1", "unknown_qualifier", "ER"),
        ("SV1*HC:99213*125.00*UN*1***1:X", "-07-2", "not_whole_number", "X"),
        ("SV1*HC*125.00*UN*1***1", "-01-2", "required", None),
    ],
)
def test_service_line_problems_name_element_and_rule(segment: str, element: str, rule: str, value: Any) -> None:
    body = with_segment(body_of(two_claims()), "SV1*HC:99213*", segment)
    data, problem = first_claim_problem(body)
    clm, sv1 = position_of(data, "CLM*C1*"), position_of(data, segment)
    assert (problem.field, problem.value, problem.rule) == (f"CLM[{clm}].SV1[{sv1}]{element}", value, rule)


@pytest.mark.parametrize(
    ("new", "element", "rule", "value"),
    [
        ("DTP*472*D8*20250230", "-03", "date_invalid", "20250230"),
        ("DTP*472*RD8*20250602", "-03", "date_invalid", "20250602"),
        ("DTP*472*D6*250602", "-02", "unknown_qualifier", "D6"),
    ],
)
def test_line_date_problems(new: str, element: str, rule: str, value: str) -> None:
    body = with_segment(body_of(two_claims()), "DTP*472*", new)
    data, problem = first_claim_problem(body)
    clm, dtp = position_of(data, "CLM*C1*"), position_of(data, new)
    assert (problem.field, problem.value, problem.rule) == (f"CLM[{clm}].DTP[{dtp}]{element}", value, rule)


def _with_element(segment: str, index: int, value: str) -> str:
    elements = segment.split("*")
    elements[index] = value
    return "*".join(elements)


@pytest.mark.parametrize(
    ("index", "value", "element", "rule"),
    [
        (2, "250.5.0", "-02", "money_format"),
        (2, "250.005", "-02", "money_precision"),
        (2, "-251.00", "-02", "money_negative"),
        (2, "", "-02", "required"),
        (5, "11:B", "-05-3", "required"),
        (5, ":B:1", "-05-1", "required"),
        (1, "", "-01", "required"),
    ],
)
def test_claim_level_problems(index: int, value: str, element: str, rule: str) -> None:
    body = body_of(two_claims())
    clm = next(s for s in body if s.startswith("CLM*C1*"))
    data = file_of([with_segment(body, "CLM*C1*", _with_element(clm, index, value))])
    claim = read_837(data).claims[0]
    problem = only_problem(claim)
    assert (problem.field, problem.rule) == (f"CLM[{position_of(data, 'CLM*', 1)}]{element}", rule)
    assert claim.source.position == position_of(data, "CLM*", 1)


def test_diagnosis_problems() -> None:
    body = body_of(two_claims())
    hi = next(s for s in body if s.startswith("HI*"))
    for new, rule, element in [
        ("HI*ABF:E119*ABF:I10", "principal_diagnosis", ""),
        ("HI*ABK:E119*ABK:I10", "principal_diagnosis", ""),
        ("HI*ABK:E119*ABF", "required", "-02-2"),
        ("HI*ABK:E119*DR:470", "unknown_qualifier", "-02-1"),  # a DRG is an 837I qualifier
    ]:
        data = file_of([with_segment(body, hi, new)])
        problem = only_problem(read_837(data).claims[0])
        assert problem.rule == rule, new
        clm = position_of(data, "CLM*C1*")
        if element:
            assert problem.field == f"CLM[{clm}].HI[{position_of(data, new)}]{element}"
        else:
            assert problem.field.startswith(f"CLM[{clm}].HI")


def test_problems_of_the_loops_around_a_claim() -> None:
    body = body_of(two_claims())
    cases = [
        (
            with_segment(body, "NM1*85*", "NM1*85*2*SYNTHETIC CLINIC*****24*990000001"),
            "NM1*85*",
            "-08",
            "unknown_qualifier",
        ),
        (with_segment(body, "NM1*IL*", "NM1*IL*1*DOE*ALEX****MI"), "NM1*IL*", "-09", "required"),
        (with_segment(body, "NM1*PR*", "NM1*PR*2*PLAN*****ZZ*PAYER-ACME"), "NM1*PR*", "-08", "unknown_qualifier"),
        (with_segment(body, "DMG*", "DMG*D8*19800231*U"), "DMG*", "-02", "date_invalid"),
        (with_segment(body, "DMG*", "DMG*D6*800412*U"), "DMG*", "-01", "unknown_qualifier"),
        (with_segment(body, "SBR*", "SBR**18*******CI"), "SBR*", "-01", "required"),
    ]
    for spoiled, prefix, element, rule in cases:
        data = file_of([spoiled])
        claims = read_837(data).claims
        problem = only_problem(claims[0])
        expected = f"CLM[{position_of(data, 'CLM*C1*')}].{prefix[:3].rstrip('*')}[{position_of(data, prefix)}]{element}"
        assert (problem.field, problem.rule) == (expected, rule), prefix
        if prefix == "NM1*85*":  # the billing provider's loop is every claim's: both fall
            assert claims[1].data is None and claims[1].problems[0].rule == rule
        else:
            assert claims[1].data is not None


def test_missing_segments_are_named() -> None:
    body = body_of(two_claims())
    for prefix, field in [("DMG*", "DMG"), ("NM1*PR*", "NM1"), ("SBR*", "SBR")]:
        data = file_of([with_segment(body, prefix, None)])
        problem = only_problem(read_837(data).claims[0])
        assert (problem.field, problem.rule) == (f"CLM[{position_of(data, 'CLM*C1*')}].{field}", "required"), prefix
    data = file_of([with_segment(body, "NM1*IL*", None)])  # its DMG then belongs to no subscriber loop either
    problems = read_837(data).claims[0].problems
    clm = position_of(data, "CLM*C1*")
    assert [(p.field, p.rule) for p in problems] == [(f"CLM[{clm}].NM1", "required"), (f"CLM[{clm}].DMG", "required")]
    data = file_of([with_segment(body, "DTP*472*", None)])
    problem = only_problem(read_837(data).claims[0])
    assert (
        problem.rule == "required"
        and problem.field == f"CLM[{position_of(data, 'CLM*C1*')}].LX[{position_of(data, 'LX*1')}]"
    )


def test_dependent_without_demographics_names_the_patient_loop() -> None:
    body = body_of(two_claims(), dependents={0})
    data = file_of([with_segment(body, "DMG*", None, nth=2)])  # the patient's (2010CA), not the subscriber's
    problem = only_problem(read_837(data).claims[0])
    assert problem.rule == "required" and "2010CA" in problem.message


def test_segments_of_the_other_kind_are_problems() -> None:
    body = with_segment(body_of(two_claims()), "SV1*HC:99213*", "SV2*0510*HC:99213*125.00*UN*1")
    _, problem = first_claim_problem(body)
    assert problem.rule == "unknown_qualifier" and "837P" in problem.message
    institutional = [
        make_claim_data(claim_id="C1", place_of_service="13"),
        make_claim_data(claim_id="C2", place_of_service="13"),
    ]
    body = with_segment(body_of(institutional, kind="837I"), "SV2*", "SV1*HC:99213*125.00*UN*1***1")
    _, problem = first_claim_problem(body, kind="837I")
    assert problem.rule == "unknown_qualifier" and "837I" in problem.message


def test_837i_line_without_any_date_is_a_problem() -> None:
    claims = [
        make_claim_data(claim_id="C1", place_of_service="13"),
        make_claim_data(claim_id="C2", place_of_service="13"),
    ]
    body = with_segment(with_segment(body_of(claims, kind="837I"), "DTP*434*", None), "DTP*472*", None)
    _, problem = first_claim_problem(body, kind="837I")
    assert problem.rule == "required" and "DTP*434" in problem.message


def test_problems_are_all_listed_and_the_claim_has_no_data() -> None:
    body = with_segment(body_of(two_claims()), "SV1*HC:99213*", "SV1*HC:99213*1.234*MJ*0.5***1")
    claim = read_837(file_of([body])).claims[0]
    assert claim.data is None
    assert [p.rule for p in claim.problems] == ["money_precision", "unknown_qualifier", "fractional_units"]
    assert all(p.message for p in claim.problems)


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cents"),
    [("125.00", 12500), ("125", 12500), ("125.5", 12550), (".5", 50), ("0", 0), ("19999999.99", 1999999999)],
)
def test_money_is_exact_cents(text: str, cents: int) -> None:
    problems: list[FieldProblem] = []
    assert money_cents(text, "f", "amount", problems) == cents and problems == []


def test_money_refusals_and_negatives() -> None:
    problems: list[FieldProblem] = []
    assert money_cents("-12.50", "f", "amount", problems, negative=True) == -1250 and problems == []
    for text, rule in [
        ("12.345", "money_precision"),
        ("-1", "money_negative"),
        ("", "money_format"),
        ("NaN", "money_format"),
    ]:
        assert money_cents(text, lambda: "CLM[3]-02", "amount", problems) is None
        assert (problems[-1].field, problems[-1].value, problems[-1].rule) == ("CLM[3]-02", text, rule)


def test_dates_and_whole_numbers() -> None:
    problems: list[FieldProblem] = []
    day = datetime(2025, 6, 2).date()
    assert parse_date_value("D8", "20250602", "f", "date", problems) == (day, day)
    assert parse_date_value("RD8", "20250602-20250603", "f", "date", problems) == (day, day.replace(day=3))
    assert parse_date_value("D8", "2025-06-02", "f", "date", problems) is None
    assert whole_number("3", "f", "units", problems, rule="fractional_units") == 3
    assert whole_number("3.50", "f", "units", problems, rule="fractional_units") is None
    assert [p.rule for p in problems] == ["date_invalid", "fractional_units"]


# --- the stored samples are the generator's --------------------------------------------------


def test_stored_samples_are_what_the_script_makes() -> None:
    path = ROOT / "scripts" / "make_x12_samples.py"
    spec = importlib.util.spec_from_file_location("make_x12_samples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    samples = module.build_samples()
    assert len(samples) == 11
    for relative, data in samples.items():
        stored = (ROOT / relative).read_bytes()
        assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest(), f"{relative}: run the script"


def test_demo_samples_read_clean() -> None:
    professional = read_837((ROOT / "examples" / "x12" / "837p-demo.x12").read_bytes())
    institutional = read_837((ROOT / "examples" / "x12" / "837i-demo.x12").read_bytes())
    assert (professional.kind, len(professional.claims)) == ("837P", 3)
    assert (institutional.kind, len(institutional.claims)) == ("837I", 2)
    for claim in professional.claims + institutional.claims:
        assert claim.data is not None and claim.data["payer_id"] == "PAYER-ACME"
        assert find_problems(parse_claim(claim.data), today=TODAY) == []


def test_result_is_a_frozen_dataclass() -> None:
    result = read_837(LITERAL_837P.encode())
    assert isinstance(result, X12ClaimFile)
    with pytest.raises(AttributeError):
        result.kind = "837I"  # type: ignore[misc]
