"""The refusal check the contract tests rest on fails when it should: a call that changed
the chain, or refused with other arguments, does not pass for a clean refusal."""

from __future__ import annotations

import pytest

from ledger.errors import ContractRevertError
from tests.integration.support import Consortium


def test_a_call_that_wrote_something_is_not_a_clean_refusal(consortium: Consortium) -> None:
    c = consortium

    def writes_then_refuses() -> None:
        c.ledger.set_fingerprint_key(99, True, sender=c.admin)
        raise ContractRevertError("ClaimLedgerZeroKeyId", {}, call="setFingerprintKey")

    with pytest.raises(AssertionError, match="a refused call changed the chain"):
        c.assert_refused(writes_then_refuses, "ClaimLedgerZeroKeyId", {})


def test_a_refusal_with_other_arguments_does_not_match(consortium: Consortium) -> None:
    c = consortium
    claim = c.claim(payer=99)
    with pytest.raises(AssertionError):
        c.assert_refused(lambda: c.submit(claim), "ClaimLedgerUnknownPayer", {"index": 0, "payerOrg": 98})
