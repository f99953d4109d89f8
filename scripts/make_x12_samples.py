"""Write the X12 sample files: examples for the README, good and bad inputs for the tests.

Run: .venv/bin/python scripts/make_x12_samples.py [--check]

Deterministic: the same bytes every run (fixed dates, synthetic patients, no clock). ``--check``
writes nothing and exits 1 if a stored file differs from what this script makes
(``tests/unit/test_x12_837.py`` checks the same).

examples/x12/
  837p-demo.x12       3 claims from the demo provider to PAYER-ACME (billing NPI 1234567893)
  837i-demo.x12       2 institutional claims (facility type 13, hospital outpatient)
  835-demo.x12        PAYER-ACME pays the 837P's first two claims and denies the third

tests/samples/x12/
  837p-10-claims.x12        10 claims: dependents, modifiers, date ranges, a secondary, a replacement
  bad-truncated.x12         the 10-claim file cut short inside its 4th claim (no SE, GE, IEA)
  bad-se-count.x12          two transaction sets; the first's SE01 is one too many
  bad-ge-count.x12          two functional groups; the first's GE01 says 2 sets, it has 1
  bad-iea-count.x12         IEA01 says 2 groups, there is 1
  bad-no-service-lines.x12  3 claims, the second without service lines (its 2400 loop removed)
  bad-hi-qualifier.x12      2 claims, the first with diagnosis qualifier ZZZ in HI02
  bad-not-utf8.x12          a subscriber's name in Latin-1 (byte 0xC9)

The demo consortium (api/runtime.py) registers the provider PROV-A without an NPI; the
samples bill under 1234567893, the NPI the README's JSON example uses (a made-up number with a
valid check digit). Diagnoses are billable ICD-10-CM codes; procedure codes are CPT and
HCPCS Level II in form.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ledger.claim import parse_claim
from ledger.formats.x837_write import Payment, claim_segments, write_835, write_837i, write_837p, write_interchange
from ledger.validation import find_problems

ROOT = Path(__file__).resolve().parent.parent
CREATED = datetime(2025, 7, 1, 9, 30)
TODAY = date(2025, 7, 1)
DEMO_NPI = "1234567893"
RENDERING_NPI = "1245319599"
PAYER = "PAYER-ACME"
SENDER, RECEIVER = "PROV-A", "PAYER-ACME"
VERSION_837P = "005010X222A1"


def line(
    day: str, code: str, cents: int, *, units: int = 1, modifiers: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "service_date_from": day,
        "procedure_code": code,
        "modifiers": list(modifiers),
        "units": units,
        "charge_cents": cents,
        "diagnosis_pointers": [1],
    }
    data.update(extra)
    return data


def claim(
    claim_id: str, member: str, birth: str, diagnoses: list[str], lines: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "claim_id": claim_id,
        "frequency": "1",
        "original_claim_id": None,
        "billing_npi": DEMO_NPI,
        "rendering_npi": RENDERING_NPI,
        "payer_id": PAYER,
        "responsibility": "P",
        "member_id": member,
        "patient_birth_date": birth,
        "place_of_service": "11",
        "diagnoses": diagnoses,
        "service_lines": lines,
        "total_charge_cents": sum(item["charge_cents"] for item in lines),
    }
    data.update(extra)
    return data


def demo_837p_claims() -> list[dict[str, Any]]:
    """Three clean claims; the second is for a dependent of the subscriber."""
    return [
        claim(
            "X12-DEMO-1001",
            "MBR500100201",
            "1980-04-12",
            ["E119", "I10"],
            [line("2025-06-02", "99213", 12500), line("2025-06-02", "80053", 4500, diagnosis_pointers=[1, 2])],
        ),
        claim(
            "X12-DEMO-1002",
            "MBR500100202",
            "2014-09-01",
            ["J069"],
            [line("2025-06-03", "99214", 17500, modifiers=("25",)), line("2025-06-03", "G0008", 3500)],
        ),
        claim(
            "X12-DEMO-1003",
            "MBR500100203",
            "1957-11-30",
            ["M5450", "R079"],
            [line("2025-06-09", "93000", 6000, diagnosis_pointers=[2]), line("2025-06-09", "J1100", 2000, units=2)],
        ),
    ]


def demo_837i_claims() -> list[dict[str, Any]]:
    """Two outpatient hospital claims (facility type 13; institutional lines point at diagnosis 1)."""
    return [
        claim(
            "X12-INST-2001",
            "MBR500100211",
            "1972-02-14",
            ["R079", "I10"],
            [line("2025-06-04", "93000", 21000), line("2025-06-04", "85025", 6500)],
            place_of_service="13",
        ),
        claim(
            "X12-INST-2002",
            "MBR500100212",
            "1990-08-23",
            ["J069"],
            [line("2025-06-05", "99283", 48000, modifiers=("25",)), line("2025-06-05", "36415", 2500)],
            place_of_service="13",
        ),
    ]


def demo_835() -> bytes:
    """PAYER-ACME's remittance for the demo 837P: two claims paid, the third denied (CO-50)."""
    first, second, third = demo_837p_claims()
    payments: list[Payment] = [
        # charge 170.00: 30.00 over the contracted rate, 20.00 copay, 120.00 paid
        (first["claim_id"], "1", first["total_charge_cents"], 12000, 2000, [("CO", "45", 3000), ("PR", "3", 2000)]),
        # charge 210.00: 25.00 over the contracted rate, 37.00 deductible, 148.00 paid
        (second["claim_id"], "1", second["total_charge_cents"], 14800, 3700, [("CO", "45", 2500), ("PR", "1", 3700)]),
        # charge 100.00: not medically necessary, nothing paid
        (third["claim_id"], "4", third["total_charge_cents"], 0, 0, [("CO", "50", third["total_charge_cents"])]),
    ]
    return write_835(
        payments,
        payer_id=PAYER,
        payee_npi=DEMO_NPI,
        trace_number="EFT20250715001",
        payment_date=date(2025, 7, 15),
        sender="PAYER-ACME",
        receiver="PROV-A",
        created=CREATED,
    )


def ten_claims() -> list[dict[str, Any]]:
    """Ten clean claims covering what the reader maps (see the module docstring)."""
    diagnoses = [["E119", "I10"], ["J069"], ["M5450", "R079"], ["Z0000"], ["I10", "E119", "R079"]]
    codes = ["99213", "99214", "85025", "80053", "36415", "G0008", "J1100", "0001F", "0002T", "93000"]
    out = []
    for number in range(10):
        day = f"2025-06-{number + 2:02d}"
        lines = [line(day, codes[number], 10000 + 500 * number)]
        if number % 2 == 0:
            lines.append(line(day, codes[(number + 3) % 10], 4000 + 100 * number, modifiers=("59",), units=2))
        if number == 3:
            lines.append(line(day, "97110", 9000, units=3, modifiers=("GP",), service_date_to="2025-06-07"))
        extra: dict[str, Any] = {}
        if number == 5:
            extra = {"responsibility": "S", "payer_id": "PAYER-BETA"}
        if number == 7:
            extra = {"frequency": "7", "original_claim_id": "X12-TEN-0003"}
        if number == 8:
            lines[0]["place_of_service"] = "22"
            lines[0]["diagnosis_pointers"] = [1, 2]
            extra = {"rendering_npi": None}
        out.append(
            claim(
                f"X12-TEN-{number:04d}",
                f"MBR6001000{number:02d}",
                f"19{60 + number}-0{1 + number % 9}-15",
                diagnoses[number % 5] if number != 8 else ["E119", "R079"],
                lines,
                **extra,
            )
        )
    return out


def _replace_once(data: bytes, old: bytes, new: bytes) -> bytes:
    if data.count(old) < 1:
        raise SystemExit(f"sample generation: {old!r} not found")
    return data.replace(old, new, 1)


def _check_clean(claims: list[dict[str, Any]]) -> None:
    for data in claims:
        problems = find_problems(parse_claim(data), today=TODAY)
        if problems:
            raise SystemExit(f"sample claim {data['claim_id']} is not clean: {problems}")


def build_samples() -> dict[str, bytes]:
    """Every sample file, by its path relative to the repository root."""
    demo_p, demo_i, ten = demo_837p_claims(), demo_837i_claims(), ten_claims()
    for claims in (demo_p, demo_i, ten):
        _check_clean(claims)
    samples = {
        "examples/x12/837p-demo.x12": write_837p(
            demo_p, sender=SENDER, receiver=RECEIVER, created=CREATED, dependents={1}
        ),
        "examples/x12/837i-demo.x12": write_837i(
            demo_i, sender=SENDER, receiver=RECEIVER, created=CREATED, control_number=2
        ),
        "examples/x12/835-demo.x12": demo_835(),
    }
    good = write_837p(ten, sender=SENDER, receiver=RECEIVER, created=CREATED, dependents={1, 4}, control_number=10)
    samples["tests/samples/x12/837p-10-claims.x12"] = good

    # cut short inside the 4th claim: after its first service line's SV1
    fourth = good.index(b"CLM*X12-TEN-0003*")
    samples["tests/samples/x12/bad-truncated.x12"] = good[: good.index(b"~\n", good.index(b"SV1*", fourth)) + 2]

    def body(claims: list[dict[str, Any]], dependents: set[int] | None = None) -> list[str]:
        return claim_segments(
            claims, kind="837P", sender=SENDER, receiver=RECEIVER, created=CREATED, dependents=dependents or set()
        )

    def interchange(groups: list[list[list[str]]], control: int) -> bytes:
        return write_interchange(
            groups,
            transaction_code="837",
            version=VERSION_837P,
            sender=SENDER,
            receiver=RECEIVER,
            created=CREATED,
            control_number=control,
        )

    two_sets = interchange([[body(ten[:2]), body(ten[2:4])]], 20)
    samples["tests/samples/x12/bad-se-count.x12"] = _replace_once(
        two_sets, f"SE*{len(body(ten[:2])) + 2}*0001~".encode(), f"SE*{len(body(ten[:2])) + 3}*0001~".encode()
    )
    two_groups = interchange([[body(ten[:2])], [body(ten[2:4])]], 30)
    samples["tests/samples/x12/bad-ge-count.x12"] = _replace_once(two_groups, b"GE*1*30~", b"GE*2*30~")
    one_group = interchange([[body(ten[:2])]], 40)
    samples["tests/samples/x12/bad-iea-count.x12"] = _replace_once(one_group, b"IEA*1*000000040~", b"IEA*2*000000040~")

    # the second claim without its 2400 loop (LX, SV1, DTP): everything after its HI/NM1*82, up to the next HL
    segments = body(ten[:3])
    start = next(i for i, s in enumerate(segments) if s.startswith("CLM*X12-TEN-0001*"))
    end = next(i for i in range(start, len(segments)) if segments[i].startswith("HL*"))
    first_lx = next(i for i in range(start, end) if segments[i].startswith("LX*"))
    samples["tests/samples/x12/bad-no-service-lines.x12"] = interchange([[segments[:first_lx] + segments[end:]]], 50)

    hi_body = body(ten[:2])
    hi_at = next(i for i, s in enumerate(hi_body) if s.startswith("HI*"))
    hi_body[hi_at] = hi_body[hi_at].replace("*ABF:", "*ZZZ:", 1)
    samples["tests/samples/x12/bad-hi-qualifier.x12"] = interchange([[hi_body]], 60)

    latin1 = interchange([[body(ten[:2])]], 70)
    samples["tests/samples/x12/bad-not-utf8.x12"] = _replace_once(
        latin1, b"NM1*IL*1*ROE*", "NM1*IL*1*RO\u00c9*".encode("latin-1")
    )
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a stored file differs")
    args = parser.parse_args()
    stale = []
    for relative, data in build_samples().items():
        path = ROOT / relative
        if args.check:
            if not path.exists() or path.read_bytes() != data:
                stale.append(relative)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        print(f"wrote {relative} ({len(data):,} bytes)")
    if stale:
        print("stale: " + ", ".join(stale) + " (run scripts/make_x12_samples.py)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
