"""835 reader: remittance and claim payment fields, CAS triplets, reversals, digests, refusals."""

from __future__ import annotations

import hashlib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from x12sdk.generate import generate_835
from x12sdk.io import X12ModelReader

from ledger.errors import FormatError
from ledger.formats.x835 import Adjustment, ClaimPayment, Remittance, X12RemittanceFile, read_835
from ledger.formats.x837 import read_837
from ledger.formats.x837_write import Payment, remittance_segments, write_835, write_interchange

ROOT = Path(__file__).resolve().parents[2]


def positions(data: bytes) -> list[str]:
    """The file's segments as the standard numbers them (ISA is 1): a plain split, not the reader."""
    return [part.strip().decode("latin-1") for part in data.split(b"~") if part.strip()]


def position_of(data: bytes, prefix: str, nth: int = 1) -> int:
    hits = [number for number, segment in enumerate(positions(data), start=1) if segment.startswith(prefix)]
    assert len(hits) >= nth, f"{prefix!r} is not in the file {nth} time(s)"
    return hits[nth - 1]


def set_bytes(data: bytes, nth: int = 1) -> bytes:
    """The ``nth`` transaction set's bytes, ST to SE's terminator, found by plain search."""
    start = -1
    for _ in range(nth):
        start = data.index(b"ST*835*", start + 1)
    end = data.index(b"~", data.index(b"SE*", start)) + 1
    return data[start:end]


LITERAL_835 = """\
ISA*00*          *00*          *ZZ*PAYERACME      *ZZ*NORTHCLINIC    *250716*0800*^*00501*000000777*0*P*:~
GS*HP*PAYERACME*NORTHCLINIC*20250716*0800*777*X*005010X221A1~
ST*835*1001~
BPR*I*269.50*C*ACH*CCP*01*011000015*DA*0001234567*1999999999**01*021000021*DA*0009876543*20250715~
TRN*1*EFT0001234*1999999999~
REF*EV*NORTHCLINIC~
DTM*405*20250714~
N1*PR*ACME HEALTH PLAN*XV*PAYER-ACME~
N3*1 PAYER PLAZA~
N4*HARTFORD*CT*06101~
REF*2U*SHOULD-NOT-BE-USED~
PER*BL*PROVIDER SERVICES*TE*8005550100~
N1*PE*NORTH CLINIC*XX*1234567893~
N3*1 MAIN ST~
N4*SPRINGFIELD*IL*62701~
REF*TJ*990000001~
LX*1~
TS3*1234567893*11*20251231*3*760.50~
CLP*PCN-1*1*305.50*229.50*30*12*PAYER0001*11*1~
CAS*PR*1*10**2*20~
NM1*QC*1*ROE*KID~
NM1*82*1*RENDER*ING****XX*1245319599~
DTM*232*20250602~
AMT*AU*290.50~
SVC*HC:99213:25*125*95*11*1~
DTM*472*20250602~
CAS*CO*45*15~
AMT*B6*110~
SVC*HC:97110:GP*180.5*134.5**3~
DTM*472*20250602~
CAS*CO*45*10.5*1*253*1.5**59*3*1*94*0.5**131*0.25**45*0.25~
CAS*OA*23*3.5~
CLP*PCN-2*4*99*0*0*12*PAYER0002~
CAS*CO*50*99~
NM1*QC*1*POE*JO~
CLP*PCN-0*22*-305.50*-229.50*-30*12*PAYER0000~
CAS*CO*45*-46~
NM1*QC*1*ROE*KID~
CLP*PCN-3*1*40*40**12~
NM1*QC*1*LOE*AL~
PLB*1234567893*20251231*WO:PCN-0*-229.50~
SE*40*1001~
GE*1*777~
IEA*1*000000777~
"""


def test_835_every_field_is_mapped() -> None:
    data = LITERAL_835.encode()
    result = read_835(data, file="era.835")
    assert isinstance(result, X12RemittanceFile) and result.rejected == []
    (remittance,) = result.remittances
    control = {"ISA13": "000000777", "GS06": "777", "ST02": "1001"}
    assert remittance.source.to_dict() == {"file": "era.835", "segment": "ST", "position": 3, "control": control}
    assert remittance.payer_id == "PAYER-ACME"  # N104, ahead of REF*2U
    assert remittance.payee_npi == "1234567893"
    assert remittance.trace_number == "EFT0001234"
    assert remittance.payment_cents == 26950
    assert remittance.payment_date == date(2025, 7, 15)
    assert remittance.digest == hashlib.sha256(set_bytes(data)).digest()
    paid, denied, reversal, plain = remittance.claims
    assert paid == ClaimPayment(
        source=paid.source,
        claim_id="PCN-1",
        status_code="1",
        charge_cents=30550,
        paid_cents=22950,
        patient_responsibility_cents=3000,
        payer_claim_control="PAYER0001",
        adjustments=(
            Adjustment("PR", "1", 1000),  # claim level: two triplets in one CAS
            Adjustment("PR", "2", 2000),
            Adjustment("CO", "45", 1500),  # first service line
            Adjustment("CO", "45", 1050),  # second service line: six triplets in one CAS
            Adjustment("CO", "253", 150),
            Adjustment("CO", "59", 300),
            Adjustment("CO", "94", 50),
            Adjustment("CO", "131", 25),
            Adjustment("CO", "45", 25),
            Adjustment("OA", "23", 350),
        ),
    )
    assert (paid.source.segment, paid.source.position) == ("CLP", position_of(data, "CLP*PCN-1*"))
    assert paid.source.control == control
    assert denied.status_code == "4" and denied.is_denied and denied.paid_cents == 0
    assert denied.adjustments == (Adjustment("CO", "50", 9900),)
    assert reversal.is_reversal and reversal.problems == ()
    assert (reversal.charge_cents, reversal.paid_cents, reversal.patient_responsibility_cents) == (
        -30550,
        -22950,
        -3000,
    )
    assert reversal.adjustments == (Adjustment("CO", "45", -4600),)
    assert (plain.patient_responsibility_cents, plain.payer_claim_control, plain.adjustments) == (0, None, ())


def test_835_claims_keep_their_place_and_sum_to_the_payment() -> None:
    (remittance,) = read_835(LITERAL_835.encode()).remittances
    assert [c.claim_id for c in remittance.claims] == ["PCN-1", "PCN-2", "PCN-0", "PCN-3"]
    plb = Decimal("-229.50")  # the provider-level recoupment of the reversal: BPR02 = CLP04s - PLB
    assert sum(c.paid_cents for c in remittance.claims) - int(plb * 100) == remittance.payment_cents


def test_digest_is_of_the_exact_bytes_of_each_set() -> None:
    first = remittance_segments(
        [("C1", "1", 10000, 8000, 0, [("CO", "45", 2000)])],
        payer_id="PAYER-ACME",
        payee_npi="1234567893",
        trace_number="T1",
        payment_date=date(2025, 7, 15),
    )
    second = remittance_segments(
        [("C2", "1", 10000, 9000, 1000, [("PR", "2", 1000)])],
        payer_id="PAYER-ACME",
        payee_npi="1234567893",
        trace_number="T2",
        payment_date=date(2025, 7, 15),
    )
    data = write_interchange(
        [[first, second]], transaction_code="835", version="005010X221A1", sender="PA", receiver="PB", st03=False
    )
    data = data.replace(b"~\n", b"~\r\n")  # line breaks inside a set are part of its bytes
    one, two = read_835(data).remittances
    assert one.digest == hashlib.sha256(set_bytes(data, 1)).digest()
    assert two.digest == hashlib.sha256(set_bytes(data, 2)).digest()
    assert set_bytes(data, 1).startswith(b"ST*835*0001~\r\nBPR*") and set_bytes(data, 1).endswith(b"SE*13*0001~")
    assert one.digest != two.digest
    # outside the set (the envelope's date, say) the digest does not change; inside, it does
    other_day = data[:70] + b"991231" + data[76:]  # ISA09, the interchange date
    assert other_day != data
    assert read_835(other_day).remittances[0].digest == one.digest
    assert read_835(data.replace(b"TRN*1*T1*", b"TRN*1*T9*")).remittances[0].digest != one.digest


# --- CAS and problems of one claim payment ----------------------------------------------------


def _one_claim(clp: str, *cas: str) -> tuple[bytes, ClaimPayment]:
    body = [
        "BPR*I*10*C*ACH*CCP*01*011000015*DA*0001234567*1999999999**01*021000021*DA*0009876543*20250715",
        "TRN*1*T1*1999999999",
        "N1*PR*PLAN*XV*PAYER-ACME",
        "N1*PE*CLINIC*XX*1234567893",
        "LX*1",
        clp,
        *cas,
        "CLP*NEXT*1*10*10**12*P2",
    ]
    data = write_interchange([[body]], transaction_code="835", version="005010X221A1", sender="PA", receiver="PB")
    (remittance,) = read_835(data).remittances
    first, following = remittance.claims
    assert following.claim_id == "NEXT" and following.problems == ()  # the next claim still reads
    return data, first


def test_negative_amounts_outside_a_reversal_are_problems() -> None:
    data, payment = _one_claim("CLP*C1*1*100*-10*0*12*P1")
    (problem,) = payment.problems
    clp = position_of(data, "CLP*C1*")
    assert (problem.field, problem.value, problem.rule) == (f"CLP[{clp}]-04", "-10", "money_negative")
    assert payment.paid_cents == 0 and payment.charge_cents == 10000


@pytest.mark.parametrize(
    ("cas", "element", "rule", "value"),
    [
        ("CAS*XX*45*10", "-01", "unknown_qualifier", "XX"),
        ("CAS*CO*45*10.001", "-03", "money_precision", "10.001"),
        ("CAS*CO*45*ten", "-03", "money_format", "ten"),
        ("CAS*CO*45", "-03", "required", None),
        ("CAS*CO**10", "-02", "required", None),
        ("CAS*CO*45*1*1*97*2*1*16", "-09", "required", None),  # the third triplet's amount is CAS09
    ],
)
def test_cas_problems_name_the_element(cas: str, element: str, rule: str, value: object) -> None:
    data, payment = _one_claim("CLP*C1*1*100*90*0*12*P1", cas)
    (problem,) = payment.problems
    clp, at = position_of(data, "CLP*C1*"), position_of(data, "CAS*")
    assert (problem.field, problem.value, problem.rule) == (f"CLP[{clp}].CAS[{at}]{element}", value, rule)


def test_cas_holds_up_to_six_triplets_and_quantities_are_passed_over() -> None:
    cas = "CAS*CO*1*1*9*2*2*9*3*3*9*4*4*9*5*5*9*6*6*9"
    _, payment = _one_claim("CLP*C1*1*100*79*0*12*P1", cas)
    assert payment.adjustments == tuple(Adjustment("CO", str(n), 100 * n) for n in range(1, 7))
    assert payment.problems == ()


def test_missing_claim_fields() -> None:
    data, payment = _one_claim("CLP**1**90")
    clp = position_of(data, "CLP**1")
    assert [(p.field, p.rule) for p in payment.problems] == [
        (f"CLP[{clp}]-01", "required"),
        (f"CLP[{clp}]-03", "required"),
    ]
    assert payment.patient_responsibility_cents == 0 and payment.payer_claim_control is None


def test_unknown_claim_status_is_kept_as_given() -> None:
    _, payment = _one_claim("CLP*C1*19*100*80*20*12*P1")
    assert payment.status_code == "19" and payment.problems == () and not payment.is_reversal


# --- remittance-level fields: the set falls -----------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "rule", "segment"),
    [
        ("BPR*I*269.50*", "BPR*I*269.5.0*", "money_format", "BPR"),
        ("BPR*I*269.50*", "BPR*I*-269.50*", "money_negative", "BPR"),
        ("DA*0009876543*20250715~", "DA*0009876543*20250732~", "date_invalid", "BPR"),
        ("TRN*1*EFT0001234*1999999999~", "TRN*1**1999999999~", "required", "TRN"),
        ("N1*PR*ACME HEALTH PLAN*XV*PAYER-ACME~", "N1*PR*ACME HEALTH PLAN~", "required", "N1"),
    ],
)
def test_unreadable_remittance_fields_refuse_the_set(old: str, new: str, rule: str, segment: str) -> None:
    text = LITERAL_835.replace("REF*2U*SHOULD-NOT-BE-USED~\n", "").replace("SE*40*", "SE*39*")
    data = text.replace(old, new).encode()
    result = read_835(data)
    assert result.remittances == []
    (error,) = result.rejected
    assert (error.rule, error.source.segment) == (rule, segment)
    assert error.source.position == position_of(data, segment + "*")
    assert "none of its 4 claim payments is taken" in error.message


def test_payer_id_falls_back_to_ref_2u_and_payment_date_is_optional() -> None:
    text = LITERAL_835.replace("N1*PR*ACME HEALTH PLAN*XV*PAYER-ACME~", "N1*PR*ACME HEALTH PLAN~")
    text = text.replace("DA*0009876543*20250715~", "DA*0009876543~")
    text = text.replace("N1*PE*NORTH CLINIC*XX*1234567893~", "N1*PE*NORTH CLINIC*FI*990000001~")
    (remittance,) = read_835(text.encode()).remittances
    assert remittance.payer_id == "SHOULD-NOT-BE-USED"
    assert remittance.payment_date is None
    assert remittance.payee_npi is None  # identified by tax id, not NPI


# --- envelope: the same rules as the 837 -------------------------------------------------


def test_bad_se01_refuses_one_set_and_the_next_is_read() -> None:
    payments: list[Payment] = [("C1", "1", 10000, 10000, 0, [])]
    body = remittance_segments(
        payments, payer_id="PAYER-ACME", payee_npi=None, trace_number="T1", payment_date=date(2025, 7, 1)
    )
    data = write_interchange([[body, body]], transaction_code="835", version="005010X221A1", sender="PA", receiver="PB")
    data = data.replace(f"SE*{len(body) + 2}*0001~".encode(), f"SE*{len(body) + 1}*0001~".encode())
    result = read_835(data)
    (error,) = result.rejected
    assert error.rule == "x12_se_count"
    assert (error.source.segment, error.source.position) == ("SE", position_of(data, "SE*"))
    assert "its 1 claim payment is not taken" in error.message
    (remittance,) = result.remittances
    assert remittance.source.control["ST02"] == "0002"


@pytest.mark.parametrize(
    ("transform", "rule"),
    [
        (lambda data: data[: data.index(b"GE*")], "x12_truncated"),
        (lambda data: data.replace(b"IEA*1*", b"IEA*3*"), "x12_iea_count"),
        (lambda data: data.replace(b"ACME HEALTH", "ACMÉ HEALTH".encode("cp1252")), "not_utf8"),
        (lambda data: data.replace(b"GS*HP*", b"GS*HC*"), "x12_version"),
    ],
)
def test_whole_file_refusals(transform: object, rule: str) -> None:
    data = transform(LITERAL_835.encode())  # type: ignore[operator]
    with pytest.raises(FormatError) as caught:
        read_835(data)
    assert caught.value.rule == rule and caught.value.source is not None


def test_file_size_limit() -> None:
    with pytest.raises(FormatError) as caught:
        read_835(b"\xff" * (100 * 1024 * 1024))
    assert caught.value.rule == "file_too_large"
    with pytest.raises(FormatError) as caught:
        read_835(LITERAL_835.encode(), max_bytes=1000)
    assert caught.value.rule == "file_too_large"


def test_an_837_is_not_an_835() -> None:
    with pytest.raises(FormatError) as caught:
        read_835((ROOT / "examples" / "x12" / "837p-demo.x12").read_bytes())
    assert caught.value.rule == "x12_version"


# --- writer round trip, samples, and x12sdk as an oracle -------------------------------------


def test_write_835_round_trip_with_a_reversal() -> None:
    payments: list[Payment] = [
        ("C1", "1", 25000, 18000, 2000, [("CO", "45", 5000), ("PR", "2", 2000)]),
        ("C2", "4", 9900, 0, 0, [Adjustment("CO", "50", 9900)]),
        ("C0", "22", -25000, -18000, -2000, [("CO", "45", -5000), ("PR", "2", -2000)]),
        ("C3", "1", 700000, 700000, 0, [("CO", str(n), 1) for n in range(1, 8)]),  # 7 triplets: 2 CAS
    ]
    data = write_835(
        payments, payer_id="PAYER-ACME", payee_npi="1234567893", trace_number="TRACE9", payment_date=date(2025, 7, 2)
    )
    (remittance,) = read_835(data).remittances
    assert isinstance(remittance, Remittance)
    assert (remittance.payer_id, remittance.payee_npi, remittance.trace_number) == (
        "PAYER-ACME",
        "1234567893",
        "TRACE9",
    )
    assert remittance.payment_cents == sum(p[3] for p in payments)
    assert remittance.payment_date == date(2025, 7, 2)
    for claim, (claim_id, status, charge, paid, patient, adjustments) in zip(remittance.claims, payments, strict=True):
        assert (claim.claim_id, claim.status_code, claim.charge_cents, claim.paid_cents) == (
            claim_id,
            status,
            charge,
            paid,
        )
        assert claim.patient_responsibility_cents == patient and claim.problems == ()
        expected = [a if isinstance(a, Adjustment) else Adjustment(*a) for a in adjustments]
        assert list(claim.adjustments) == expected
        assert claim.payer_claim_control is not None and claim.payer_claim_control.startswith("TRACE9")


def test_demo_835_pays_and_denies_the_demo_837p() -> None:
    remittance_file = read_835((ROOT / "examples" / "x12" / "835-demo.x12").read_bytes())
    claims_file = read_837((ROOT / "examples" / "x12" / "837p-demo.x12").read_bytes())
    (remittance,) = remittance_file.remittances
    assert remittance.payer_id == "PAYER-ACME" and remittance.payee_npi == "1234567893"
    by_id = {c.claim_id: c for c in claims_file.claims}
    assert [c.claim_id for c in remittance.claims] == list(by_id)
    assert [c.status_code for c in remittance.claims] == ["1", "1", "4"]
    for payment in remittance.claims:
        submitted = by_id[payment.claim_id].data
        assert submitted is not None and payment.charge_cents == submitted["total_charge_cents"]
        assert payment.charge_cents - payment.paid_cents == sum(a.amount_cents for a in payment.adjustments)
    assert remittance.payment_cents == sum(c.paid_cents for c in remittance.claims)


def test_x12sdk_generated_835_reads_as_x12sdk_reads_it() -> None:
    text = generate_835(seed=5, claims=25)
    rejected = read_835(text.encode()).rejected  # its N1*PR names the payer without an id: the set falls
    assert [(e.rule, e.source.segment) for e in rejected] == [("required", "N1")]
    end = text.index("~", text.index("N1*PR*"))
    text = text[:end] + "*XV*PAYER-ACME" + text[end:]  # N1*PR*<name>*XV*PAYER-ACME
    expected = []
    with X12ModelReader(text) as reader:
        models: list[Any] = list(reader.models())  # x12sdk types them as the base class
        for model in models:
            bpr = model.header.bpr_segment
            for claim in model.claims():
                clp = claim.claim.clp_segment
                cas = list(claim.adjustments) + [c for line in claim.service_lines for c in (line.cas_segment or [])]
                triplets = []
                for segment in cas:
                    dumped = segment.model_dump()
                    amounts = [v for k, v in dumped.items() if k.startswith("monetary_amount") and v is not None]
                    reasons = [v for k, v in dumped.items() if k.startswith("adjustment_reason_code") and v]
                    triplets += [
                        (segment.adjustment_group_code, r, int(a * 100)) for r, a in zip(reasons, amounts, strict=True)
                    ]
                expected.append(
                    (clp.patient_control_number, clp.claim_status_code, int(clp.total_claim_charge_amount * 100),
                     int(clp.claim_payment_amount * 100), clp.payer_claim_control_number, triplets)
                )  # fmt: skip
    (remittance,) = read_835(text.encode()).remittances
    assert remittance.payment_cents == int(bpr.total_actual_provider_payment_amount * 100)
    assert remittance.payer_id == "PAYER-ACME"
    got = [
        (c.claim_id, c.status_code, c.charge_cents, c.paid_cents, c.payer_claim_control,
         [(a.group, a.reason, a.amount_cents) for a in c.adjustments])
        for c in remittance.claims
    ]  # fmt: skip
    assert got == expected and len(got) == 25
    assert any(len(c.adjustments) > 0 for c in remittance.claims)
