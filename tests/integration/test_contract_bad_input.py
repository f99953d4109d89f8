"""Malformed batches: each refused with the exact error naming the claim (index 2 of a batch
of three), and nothing of the batch written, the two good claims before it included."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from ledger.chain import ZERO32, ClaimSubmission
from tests.integration.support import UINT64_MAX, Consortium, assert_events, random_key, submitted

BAD_INDEX = 2
RESERVED_BIT = 1 << 216

Bad = Callable[[Consortium], ClaimSubmission]


def _good(c: Consortium) -> ClaimSubmission:
    return c.claim(lines=2)


CASES: list[tuple[str, Bad, str, Callable[[Consortium, ClaimSubmission], dict[str, Any]]]] = [
    (
        "zero exact key",
        lambda c: replace(_good(c), exact_key=ZERO32),
        "ClaimLedgerZeroExactKey",
        lambda c, s: {"index": BAD_INDEX},
    ),
    (
        "zero document hash",
        lambda c: replace(_good(c), document_hash=ZERO32),
        "ClaimLedgerZeroDocumentHash",
        lambda c, s: {"index": BAD_INDEX},
    ),
    (
        "zero line key",
        lambda c: replace(_good(c), line_keys=(random_key(), ZERO32)),
        "ClaimLedgerZeroLineKey",
        lambda c, s: {"index": BAD_INDEX, "lineIndex": 1},
    ),
    (
        "more lines declared than keys",
        lambda c: replace(_good(c), line_count=3),
        "ClaimLedgerLineCountMismatch",
        lambda c, s: {"index": BAD_INDEX, "declared": 3, "actual": 2},
    ),
    (
        "fewer lines declared than keys",
        lambda c: replace(_good(c), line_count=1),
        "ClaimLedgerLineCountMismatch",
        lambda c, s: {"index": BAD_INDEX, "declared": 1, "actual": 2},
    ),
    (
        "no service lines",
        lambda c: replace(_good(c), line_keys=()),
        "ClaimLedgerNoServiceLines",
        lambda c, s: {"index": BAD_INDEX},
    ),
    (
        "zero charge",
        lambda c: replace(_good(c), total_charge=0),
        "ClaimLedgerZeroCharge",
        lambda c, s: {"index": BAD_INDEX},
    ),
    (
        "charge past uint64",
        lambda c: replace(_good(c), total_charge=UINT64_MAX + 1),
        "ClaimLedgerAmountOverflow",
        lambda c, s: {"index": BAD_INDEX, "amount": UINT64_MAX + 1, "maxAmount": UINT64_MAX},
    ),
    (
        "charge at the top of its 96 bits",
        lambda c: replace(_good(c), total_charge=2**96 - 1),
        "ClaimLedgerAmountOverflow",
        lambda c, s: {"index": BAD_INDEX, "amount": 2**96 - 1, "maxAmount": UINT64_MAX},
    ),
    (
        "frequency 0",
        lambda c: replace(_good(c), frequency=0),
        "ClaimLedgerUnknownFrequency",
        lambda c, s: {"index": BAD_INDEX, "frequency": 0},
    ),
    (
        "frequency 2",
        lambda c: replace(_good(c), frequency=2),
        "ClaimLedgerUnknownFrequency",
        lambda c, s: {"index": BAD_INDEX, "frequency": 2},
    ),
    (
        "original naming a related claim",
        lambda c: replace(_good(c), related_key=b"\x11" * 32),
        "ClaimLedgerUnexpectedRelatedClaim",
        lambda c, s: {"index": BAD_INDEX, "relatedKey": b"\x11" * 32},
    ),
    (
        "unknown key id",
        lambda c: replace(_good(c), key_id=8),
        "ClaimLedgerUnknownKeyId",
        lambda c, s: {"index": BAD_INDEX, "keyId": 8},
    ),
    (
        "key id 0",
        lambda c: replace(_good(c), key_id=0),
        "ClaimLedgerUnknownKeyId",
        lambda c, s: {"index": BAD_INDEX, "keyId": 0},
    ),
    (
        "payer 0",
        lambda c: replace(_good(c), payer_org=0),
        "ClaimLedgerUnknownPayer",
        lambda c, s: {"index": BAD_INDEX, "payerOrg": 0},
    ),
    (
        "unregistered payer",
        lambda c: replace(_good(c), payer_org=99),
        "ClaimLedgerUnknownPayer",
        lambda c, s: {"index": BAD_INDEX, "payerOrg": 99},
    ),
    (
        "a provider as payer",
        lambda c: replace(_good(c), payer_org=c.prov_b.index),
        "ClaimLedgerUnknownPayer",
        lambda c, s: {"index": BAD_INDEX, "payerOrg": c.prov_b.index},
    ),
    (
        "the auditor as payer",
        lambda c: replace(_good(c), payer_org=c.auditor.index),
        "ClaimLedgerUnknownPayer",
        lambda c, s: {"index": BAD_INDEX, "payerOrg": c.auditor.index},
    ),
    (
        "an inactive payer",
        lambda c: replace(_good(c), payer_org=c.payer_off.index),
        "ClaimLedgerUnknownPayer",
        lambda c, s: {"index": BAD_INDEX, "payerOrg": c.payer_off.index},
    ),
    (
        "replacement of no claim",
        lambda c: replace(_good(c), frequency=7, related_key=b"\x22" * 32, related_version=1),
        "ClaimLedgerUnknownClaim",
        lambda c, s: {"exactKey": b"\x22" * 32, "version": 1, "current": 0},
    ),
    (
        "void of no claim",
        lambda c: replace(_good(c), frequency=8, related_key=b"\x22" * 32, related_version=1),
        "ClaimLedgerUnknownClaim",
        lambda c, s: {"exactKey": b"\x22" * 32, "version": 1, "current": 0},
    ),
]


@pytest.mark.parametrize(("make_bad", "error", "args"), [pytest.param(*row[1:], id=row[0]) for row in CASES])
def test_a_bad_claim_reverts_its_whole_batch(
    consortium: Consortium,
    make_bad: Bad,
    error: str,
    args: Callable[[Consortium, ClaimSubmission], dict[str, Any]],
) -> None:
    c = consortium
    batch = [_good(c), _good(c), make_bad(c)]
    c.assert_refused(
        lambda: c.submit(*batch),
        error,
        args(c, batch[BAD_INDEX]),
        keys=[s.exact_key for s in batch],
        line_keys=[k for s in batch for k in s.line_keys],
        sender=c.prov_a.account,
    )


def test_reserved_terms_bits_revert_the_batch(consortium: Consortium) -> None:
    c = consortium
    good = [_good(c), _good(c)]
    bad = _good(c)
    terms = bad.terms() | RESERVED_BIT
    batch = [s.as_tuple() for s in good] + [(bad.exact_key, bad.document_hash, ZERO32, terms, list(bad.line_keys))]
    c.assert_refused(
        lambda: c.ledger.transact("submitClaims", batch, sender=c.prov_a.account),
        "ClaimLedgerReservedTermsBits",
        {"index": BAD_INDEX, "terms": terms},
        keys=[s.exact_key for s in (*good, bad)],
        sender=c.prov_a.account,
    )


def test_an_empty_batch_is_refused(consortium: Consortium) -> None:
    c = consortium
    c.assert_refused(lambda: c.submit(), "ClaimLedgerEmptyBatch", {}, sender=c.prov_a.account)


def test_a_batch_longer_than_max_batch_is_refused(consortium: Consortium) -> None:
    c = consortium
    max_batch = c.ledger.call("MAX_BATCH")
    assert max_batch == 2000
    # The size is checked before any claim: keep them small, web3 encodes the batch twice.
    one = c.claim(line_keys=())
    batch = [replace(one, exact_key=i.to_bytes(32, "big")) for i in range(1, max_batch + 2)]
    c.assert_refused(
        lambda: c.submit(*batch),
        "ClaimLedgerBatchTooLarge",
        {"size": max_batch + 1, "maxSize": max_batch},
        keys=[batch[0].exact_key, batch[-1].exact_key],
        sender=c.prov_a.account,
    )


def test_an_inactive_organisation_cannot_submit(consortium: Consortium) -> None:
    c = consortium
    batch = [_good(c) for _ in range(3)]
    c.assert_refused(
        lambda: c.submit(*batch, sender=c.prov_off.account),
        "ClaimLedgerOrganisationInactive",
        {"org": c.prov_off.index},
        keys=[s.exact_key for s in batch],
        sender=c.prov_off.account,
    )


def test_an_exact_duplicate_is_refused_before_its_other_fields_are_checked(consortium: Consortium) -> None:
    """Documented order (ClaimLedger._checkTerms): the duplicate is evidence, not a revert."""
    c = consortium
    recorded = c.submit_new()
    first, second = _good(c), _good(c)
    duplicate = replace(recorded, document_hash=random_key(), payer_org=99, line_keys=())
    assert_events(
        c.submit(first, second, duplicate),
        [
            submitted(first, 1, c.prov_a.index),
            submitted(second, 1, c.prov_a.index),
            (
                "DuplicateRefused",
                {
                    "exactKey": recorded.exact_key,
                    "existingVersion": 1,
                    "submitterOrg": c.prov_a.index,
                    "documentHash": duplicate.document_hash,
                },
            ),
        ],
    )
    assert c.ledger.claim_record(recorded.exact_key)["payer_org"] == c.payer_x.index
