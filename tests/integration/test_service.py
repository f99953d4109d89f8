"""The one door (ledger.service) against a real anvil and SQLite: validate, fingerprint, submit,
act, verify, read history; a duplicate made under a retiring key is still caught."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import ClaimNotFoundError, ContractRevertError, PermissionDeniedError
from ledger.fingerprint import Keyring
from ledger.service import ClaimLedgerService, Member, PayerStep
from tests.factories import make_claim_data, make_line_data
from tests.integration.pipeline_fixtures import (
    PAYER_X_INDEX,
    PAYER_Y_INDEX,
    Ledger,
    dev_account,
    gateway_service,
    start_node,
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Ledger, ClaimLedgerService, Keyring, Path]]:
    node = start_node(tmp_path / "node")
    ledger, service, keyring, _ = gateway_service(node, tmp_path)
    try:
        yield ledger, service, keyring, tmp_path
    finally:
        service.close()
        node.kill()


def members(ledger: Ledger) -> tuple[Member, Member, Member]:
    provider = Member("PROV-A", "provider", ledger.prov_org, ledger.provider)
    payer_x = Member("PAYER-X", "payer", ledger.payer_x, dev_account(PAYER_X_INDEX))
    payer_y = Member("PAYER-Y", "payer", ledger.payer_y, dev_account(PAYER_Y_INDEX))
    return provider, payer_x, payer_y


def doc(**overrides: object) -> dict:
    overrides.setdefault("payer_id", "PAYER-X")
    return make_claim_data(**overrides)


def ref(outcome) -> tuple[bytes, int]:
    return bytes.fromhex(outcome.exact_key[2:]), outcome.version


def test_a_claims_life_through_the_service(world) -> None:
    ledger, service, _, _ = world
    provider, payer_x, payer_y = members(ledger)
    first, bad, again, other = service.submit(
        provider,
        [
            doc(claim_id="CLM-1", member_id="M-100"),
            doc(claim_id="CLM-2", billing_npi="1234567890", diagnoses=["E11"]),
            doc(claim_id="CLM-1-RESENT", member_id="M-100"),  # same claim under another id: exact duplicate
            doc(claim_id="CLM-3", member_id="M-100", billing_npi="1245319599"),  # same service, other provider
        ],
    )
    assert first.status == "recorded" and first.version == 1 and first.suspects == []
    assert bad.status == "invalid"
    assert {p["rule"] for p in bad.problems} >= {"npi_check_digit", "icd10_not_billable"}
    assert again.status == "duplicate" and again.existing == {"exact_key": first.exact_key, "version": 1}
    assert other.status == "recorded"
    assert other.suspects == [{"line_index": 0, "earlier_exact_key": first.exact_key, "earlier_version": 1}]

    key, version = ref(first)
    with pytest.raises(ClaimNotFoundError):  # not addressed to PAYER-Y: it may not know it exists
        service.acknowledge(payer_y, key, version, True)
    with pytest.raises(PermissionDeniedError):
        service.acknowledge(provider, key, version, True)
    service.acknowledge(payer_x, key, version, True)
    service.adjudicate(payer_x, key, version, "partly_approved", 10_000, ["45"])
    service.record_payment(payer_x, key, version, 8_000, os.urandom(32))
    with pytest.raises(ContractRevertError) as refused:
        service.void(provider, key, version)
    assert refused.value.error == "ClaimLedgerInvalidTransition"

    record = service.claim_for(payer_x, key, version)
    assert (record["status"], record["allowed_amount"], record["paid_amount"]) == ("paid", 10_000, 8_000)
    names = [e["name"] for e in service.history(key, version)]
    # the refused resubmission is part of the claim's record: evidence of who tried, and when
    assert names == ["ClaimSubmitted", "DuplicateRefused", "ClaimAcknowledged", "ClaimAdjudicated", "ClaimPaid"]

    assert service.verify(doc(claim_id="CLM-1", member_id="M-100"))["matches"] is True
    tampered = doc(claim_id="CLM-1", member_id="M-100")
    tampered["service_lines"][0]["charge_cents"] += 1
    tampered["total_charge_cents"] += 1
    assert service.verify(tampered) == {"matches": False}


def test_void_and_replace_through_the_service(world) -> None:
    ledger, service, _, _ = world
    provider, payer_x, _ = members(ledger)
    [original] = service.submit(provider, [doc(claim_id="CLM-9", member_id="M-900")])
    key, version = ref(original)
    replacement = doc(
        claim_id="CLM-9",
        member_id="M-900",
        frequency="7",
        original_claim_id=f"{original.exact_key}:{version}",
        diagnoses=["I10"],
    )
    [replaced] = service.submit(provider, [replacement])
    assert replaced.status == "recorded"
    assert replaced.replaced == {"exact_key": original.exact_key, "version": 1}
    assert (replaced.exact_key, replaced.version) == (original.exact_key, 2)  # same key: same slot, version 2
    voided = service.void(provider, key, 2)
    assert voided.status == "voided"
    [resent] = service.submit(provider, [doc(claim_id="CLM-9B", member_id="M-900")])
    assert (resent.status, resent.version) == ("recorded", 3)
    assert service.claim_for(payer_x, key, 3)["status"] == "submitted"


def test_a_duplicate_under_the_retiring_key_is_caught(world) -> None:
    ledger, service, keyring, tmp_path = world
    provider, _, _ = members(ledger)
    [first] = service.submit(provider, [doc(claim_id="CLM-R1", member_id="M-777")])
    assert first.status == "recorded"
    rotated = Keyring.rotate(tmp_path / "keyring.json", window_days=30)
    assert rotated.current.key_id != keyring.current.key_id
    admin = ledger.w3.eth.accounts[0]
    ledger.contract.set_fingerprint_key(rotated.current.key_id, True, sender=admin)
    service.keyring = rotated
    [again] = service.submit(provider, [doc(claim_id="CLM-R1-AGAIN", member_id="M-777")])
    assert again.status == "duplicate"
    assert again.existing == {"exact_key": first.exact_key, "version": 1, "key_id": keyring.current.key_id}
    [fresh] = service.submit(provider, [doc(claim_id="CLM-R2", member_id="M-778")])
    assert fresh.status == "recorded"
    record = service.claim_for(provider, *ref(fresh))
    assert record["key_id"] == rotated.current.key_id


def test_only_providers_submit(world) -> None:
    ledger, service, _, _ = world
    _, payer_x, _ = members(ledger)
    with pytest.raises(PermissionDeniedError):
        service.submit(payer_x, [doc()])


def test_an_unknown_payer_is_a_field_problem(world) -> None:
    ledger, service, _, _ = world
    provider, _, _ = members(ledger)
    [outcome] = service.submit(provider, [doc(payer_id="PAYER-NOBODY", service_lines=[make_line_data()])])
    assert outcome.status == "invalid"
    assert [p["rule"] for p in outcome.problems] == ["unknown_payer"]
    assert copy.deepcopy(outcome.problems[0])["field"] == "payer_id"


def test_payer_steps_run_together_and_a_refused_one_does_not_hold_back_the_rest(world) -> None:
    ledger, service, _, _ = world
    provider, payer_x, payer_y = members(ledger)
    a, b, c = service.submit(provider, [doc(claim_id=f"PS-{n}", member_id=f"M-PS-{n}") for n in range(3)])
    (ka, va), (kb, vb), (kc, vc) = ref(a), ref(b), ref(c)
    charge = make_claim_data()["total_charge_cents"]
    remittance = os.urandom(32)

    def life(key: bytes, version: int) -> list[PayerStep]:
        return [
            PayerStep(key, version, "acknowledge", (True, b"A2:20")),
            PayerStep(key, version, "adjudicate", ("approved", charge, [])),
            PayerStep(key, version, "record_payment", (charge, remittance)),
        ]

    head = ledger.contract.w3.eth.block_number
    answers = service.payer_steps(payer_x, life(ka, va) + life(kb, vb))
    assert all("error" not in x for x in answers)
    assert ledger.contract.w3.eth.block_number == head + 1, "six steps, one transaction"
    assert len({x["tx_hash"] for x in answers}) == 1
    assert [service.claim_for(payer_x, k, v)["status"] for k, v in ((ka, va), (kb, vb))] == ["paid", "paid"]

    # One step the contract refuses (allowed above the charge): the batch is run again step by step,
    # the refused step and the one that needed it are answered with their errors, the rest land.
    steps = [
        PayerStep(kc, vc, "acknowledge", (True, b"A2:20")),
        PayerStep(kc, vc, "adjudicate", ("approved", charge + 1, [])),
        PayerStep(kc, vc, "record_payment", (charge, remittance)),
        PayerStep(ka, va, "reverse_payment", (remittance,)),
    ]
    answers = service.payer_steps(payer_x, steps)
    assert "error" not in answers[0] and "error" not in answers[3]
    assert answers[1]["error"]["details"]["error"] == "ClaimLedgerAllowedExceedsCharge"
    assert answers[2]["error"]["details"]["error"] == "ClaimLedgerInvalidTransition"
    assert service.claim_for(payer_x, kc, vc)["status"] == "accepted"
    assert service.claim_for(payer_x, ka, va)["status"] == "accepted"

    # A claim not addressed to the caller is refused before anything is sent.
    [answer] = service.payer_steps(payer_y, [PayerStep(kb, vb, "reverse_payment", (remittance,))])
    assert answer["error"]["code"] == "claim_not_found"
    assert service.claim_for(payer_x, kb, vb)["status"] == "paid"
    with pytest.raises(PermissionDeniedError):
        service.payer_steps(provider, [PayerStep(kb, vb, "reverse_payment", (remittance,))])
