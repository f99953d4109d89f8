"""ClaimLedger in brownie's environment: the demo consortium, batches, duplicates, roles."""

from __future__ import annotations

import brownie
import pytest
from conftest import (
    O_PARTLY_APPROVED,
    S_ACCEPTED,
    S_ADJUDICATED,
    S_NONE,
    S_PAID,
    S_SUBMITTED,
    S_VOIDED,
    ZERO32,
    pack_terms,
    plain,
    typed_error,
)

from scripts.deploy import DEMO_KEY_ID, DEMO_ORGANISATIONS, ROLE_AUDITOR, ROLE_PAYER, ROLE_PROVIDER, org_id

REASON = "0x" + b"A3:21".ljust(8, b"\0").hex()  # bytes8 reason code
CARC_45 = "0x" + b"45".ljust(4, b"\0").hex()  # bytes4 CARC code
REMITTANCE = "0x" + "ab" * 32


def test_deploy_registers_demo_consortium(ledger, consortium, accounts):
    admin = accounts[0]
    assert ledger.defaultAdmin() == admin
    assert ledger.hasRole(ledger.OPERATOR_ROLE(), admin)
    assert ledger.organisationCount() == len(DEMO_ORGANISATIONS)
    role_names = {ROLE_PROVIDER: "PROVIDER_ROLE", ROLE_PAYER: "PAYER_ROLE", ROLE_AUDITOR: "AUDITOR_ROLE"}
    for i, (name, role) in enumerate(DEMO_ORGANISATIONS, start=1):
        org = consortium.orgs[name]
        assert org == i
        assert plain(ledger.organisation(org)) == (org_id(name), role, True, 1)
        assert ledger.organisationIndex(org_id(name)) == org
        assert ledger.organisationOf(accounts[i]) == org
        assert ledger.hasRole(getattr(ledger, role_names[role])(), accounts[i])
    assert ledger.isFingerprintKeyAccepted(DEMO_KEY_ID)
    assert not ledger.isFingerprintKeyAccepted(DEMO_KEY_ID + 1)


@pytest.mark.parametrize(
    "fields",
    [(1, 1, 2, 0, 1, 1), (2**64 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**16 - 1, 8), (12_345, 7, 3, 2, 4, 7)],
)
def test_pack_terms_matches_contract(ledger, fields):
    charge, key_id, payer, related, lines, frequency = fields
    terms = pack_terms(charge, key_id, payer, line_count=lines, frequency=frequency, related_version=related)
    assert ledger.packTerms(fields) == terms
    assert plain(ledger.unpackTerms(terms)) == fields


def test_provider_submits_a_batch(ledger, provider, provider_org, payer_orgs, claims, chain):
    batch = [claims.claim(payer_orgs[i % 2], charge=10_000 + i, lines=1 + i % 3) for i in range(6)]
    tx = ledger.submitClaims(batch, {"from": provider})

    assert tx.status == 1
    submitted = tx.events["ClaimSubmitted"]
    assert len(submitted) == len(batch)
    assert "SuspectDuplicateFlagged" not in tx.events
    assert "DuplicateRefused" not in tx.events
    assert plain(tx.return_value) == (1,) * len(batch)
    for i, (claim, event) in enumerate(zip(batch, submitted, strict=True)):
        key, document_hash, _, _, line_keys = claim
        assert event["exactKey"] == key
        assert event["documentHash"] == document_hash
        assert (event["version"], event["providerOrg"], event["payerOrg"]) == (1, provider_org, payer_orgs[i % 2])
        assert (event["keyId"], event["lineCount"], event["totalCharge"]) == (DEMO_KEY_ID, len(line_keys), 10_000 + i)
        record = ledger.claimRecord(key)
        assert record["status"] == S_SUBMITTED
        assert record["suspect"] is False
        assert (record["version"], record["lineCount"], record["totalCharge"]) == (1, len(line_keys), 10_000 + i)
        assert record["submittedAt"] == chain[tx.block_number].timestamp
        assert ledger.claimStatus(key, 1) == S_SUBMITTED
        assert ledger.liveVersion(key) == 1
        for line_key in line_keys:
            assert plain(ledger.lineHolder(line_key)) == (key, 1)


def test_exact_duplicate_is_refused_not_reverted(ledger, provider, provider_org, payer_orgs, claims):
    original = claims.claim(payer_orgs[0], charge=5_000)
    ledger.submitClaims([original], {"from": provider})

    # the same exact key again (a resend, here with another document hash and charge), next to a new claim
    resend = claims.claim(payer_orgs[1], charge=9_999, exact_key=original[0])
    fresh = claims.claim(payer_orgs[0])
    tx = ledger.submitClaims([resend, fresh], {"from": provider})

    assert tx.status == 1
    refused = tx.events["DuplicateRefused"]
    assert len(refused) == 1
    assert refused[0]["exactKey"] == original[0]
    assert refused[0]["existingVersion"] == 1
    assert refused[0]["submitterOrg"] == provider_org
    assert refused[0]["documentHash"] == resend[1]
    assert [e["exactKey"] for e in tx.events["ClaimSubmitted"]] == [fresh[0]]
    assert plain(tx.return_value) == (0, 1)
    record = ledger.claimRecord(original[0])
    assert (record["version"], record["payerOrg"], record["totalCharge"]) == (1, payer_orgs[0], 5_000)


def test_shared_line_is_flagged_suspect(ledger, provider, payer_orgs, claims):
    first = claims.claim(payer_orgs[0], lines=2)
    ledger.submitClaims([first], {"from": provider})
    second = claims.claim(payer_orgs[0], line_keys=[claims.new_key(), first[4][1]])
    tx = ledger.submitClaims([second], {"from": provider})

    flagged = tx.events["SuspectDuplicateFlagged"]
    assert len(flagged) == 1
    assert (flagged[0]["lineIndex"], flagged[0]["earlierExactKey"], flagged[0]["earlierVersion"]) == (1, first[0], 1)
    assert ledger.claimRecord(second[0])["suspect"] is True
    assert ledger.claimRecord(first[0])["suspect"] is False
    # lineHolder names the newest live holder; once that ends, the earlier one again
    shared = first[4][1]
    assert plain(ledger.lineHolder(shared)) == (second[0], 1)
    ledger.voidClaim(second[0], 1, {"from": provider})
    assert plain(ledger.lineHolder(shared)) == (first[0], 1)
    ledger.voidClaim(first[0], 1, {"from": provider})
    assert plain(ledger.lineHolder(shared)) == (ZERO32, 0)


def test_role_violations_revert(ledger, consortium, provider, payers, payer_orgs, claims, accounts):
    claim = claims.claim(payer_orgs[0])
    payer_role, provider_role, operator_role = ledger.PAYER_ROLE(), ledger.PROVIDER_ROLE(), ledger.OPERATOR_ROLE()
    outsider = accounts[5]

    for caller in (payers[0], consortium.auditor, outsider):
        with brownie.reverts(typed_error("AccessControlUnauthorizedAccount", caller, provider_role)):
            ledger.submitClaims([claim], {"from": caller})
    with brownie.reverts(typed_error("AccessControlUnauthorizedAccount", provider, operator_role)):
        ledger.registerOrganisation(org_id("intruder"), ROLE_PAYER, {"from": provider})

    ledger.submitClaims([claim], {"from": provider})
    key = claim[0]
    with brownie.reverts(typed_error("AccessControlUnauthorizedAccount", provider, payer_role)):
        ledger.acknowledge(key, 1, True, REASON, {"from": provider})
    # a payer may act only on the claims addressed to it
    with brownie.reverts(typed_error("ClaimLedgerNotClaimPayer", key, payer_orgs[1], payer_orgs[0])):
        ledger.acknowledge(key, 1, True, REASON, {"from": payers[1]})
    assert ledger.claimStatus(key, 1) == S_SUBMITTED


def test_batch_with_an_unaccepted_key_id_reverts_whole(ledger, provider, payer_orgs, claims):
    good = claims.claim(payer_orgs[0])
    bad = claims.claim(payer_orgs[0], key_id=DEMO_KEY_ID + 1)
    with brownie.reverts(typed_error("ClaimLedgerUnknownKeyId", 1, DEMO_KEY_ID + 1)):
        ledger.submitClaims([good, bad], {"from": provider})
    assert ledger.claimStatus(good[0], 1) == S_NONE
    with brownie.reverts(typed_error("ClaimLedgerEmptyBatch")):
        ledger.submitClaims([], {"from": provider})


def test_payer_lifecycle_to_payment_then_void_and_resubmit(ledger, provider, payers, payer_orgs, claims):
    paid, voided = claims.claim(payer_orgs[0], charge=20_000), claims.claim(payer_orgs[1], charge=3_000)
    ledger.submitClaims([paid, voided], {"from": provider})
    payer = payers[0]

    ledger.acknowledge(paid[0], 1, True, "0x" + "00" * 8, {"from": payer})
    assert ledger.claimStatus(paid[0], 1) == S_ACCEPTED
    with brownie.reverts(typed_error("ClaimLedgerMissingAdjustmentReason", paid[0], O_PARTLY_APPROVED)):
        ledger.adjudicate(paid[0], 1, O_PARTLY_APPROVED, 15_000, [], {"from": payer})
    ledger.adjudicate(paid[0], 1, O_PARTLY_APPROVED, 15_000, [CARC_45], {"from": payer})
    assert ledger.claimStatus(paid[0], 1) == S_ADJUDICATED
    with brownie.reverts(typed_error("ClaimLedgerPaidExceedsAllowed", paid[0], 15_001, 15_000)):
        ledger.recordPayment(paid[0], 1, 15_001, REMITTANCE, {"from": payer})
    tx = ledger.recordPayment(paid[0], 1, 15_000, REMITTANCE, {"from": payer})
    assert tx.events["ClaimPaid"]["paidAmount"] == 15_000
    assert ledger.claimStatus(paid[0], 1) == S_PAID
    assert ledger.settlement(paid[0])["allowedAmount"] == 15_000
    assert ledger.daysToPayment(paid[0]) == 0
    with brownie.reverts(typed_error("ClaimLedgerInvalidTransition", paid[0], S_PAID, S_VOIDED)):
        ledger.voidClaim(paid[0], 1, {"from": provider})

    with brownie.reverts(typed_error("ClaimLedgerNotClaimPayer", paid[0], payer_orgs[1], payer_orgs[0])):
        ledger.reversePayment(paid[0], 1, REMITTANCE, {"from": payers[1]})
    tx = ledger.reversePayment(paid[0], 1, REMITTANCE, {"from": payer})
    assert tx.events["ClaimPaymentReversed"]["reversedAmount"] == 15_000
    assert ledger.claimStatus(paid[0], 1) == S_ACCEPTED
    assert ledger.settlement(paid[0])["paidAmount"] == 0
    ledger.adjudicate(paid[0], 1, O_PARTLY_APPROVED, 14_000, [CARC_45], {"from": payer})
    ledger.recordPayment(paid[0], 1, 14_000, REMITTANCE, {"from": payer})
    assert ledger.claimStatus(paid[0], 1) == S_PAID

    ledger.voidClaim(voided[0], 1, {"from": provider})
    assert ledger.claimStatus(voided[0], 1) == S_VOIDED
    assert ledger.liveVersion(voided[0]) == 0
    again = claims.claim(payer_orgs[1], exact_key=voided[0])
    tx = ledger.submitClaims([again], {"from": provider})
    assert tx.events["ClaimSubmitted"]["version"] == 2
    assert ledger.claimStatus(voided[0], 1) == S_NONE
    assert ledger.claimStatus(voided[0], 2) == S_SUBMITTED
