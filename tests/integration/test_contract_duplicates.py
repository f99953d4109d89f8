"""Exact duplicates refused, suspect duplicates flagged, and keys released or taken over.

Every scenario uses real synthetic claims (tests/factories.py) fingerprinted with
ledger.fingerprint under a consortium key the ledger accepts, so each test shows the whole
rule: what the fingerprint keeps or leaves out, and what the contract does with it.
"""

from __future__ import annotations

from typing import Any

import pytest

from ledger.chain import ZERO32, ClaimSubmission
from ledger.claim import Claim
from ledger.fingerprint import FingerprintKey, fingerprint
from tests.factories import make_claim, make_line_data, valid_npi
from tests.integration.support import (
    REJECTED_REASON,
    Consortium,
    Org,
    Snapshots,
    assert_events,
    bytes8,
    submitted,
)

CONSORTIUM_KEY = FingerprintKey.from_secret(bytes(range(32)))
OTHER_NPI = valid_npi(3000012)  # another billing provider (another practice, another clearinghouse)
THIRD_NPI = valid_npi(3000013)


@pytest.fixture
def c(deployed_consortium: Consortium, snapshots: Snapshots) -> Consortium:
    """The consortium, accepting the fingerprint key these claims are made with."""

    def accept_key() -> None:
        deployed_consortium.ledger.set_fingerprint_key(CONSORTIUM_KEY.key_id, True, sender=deployed_consortium.admin)

    snapshots.prepared("duplicates", accept_key)
    return deployed_consortium


def payer_of(c: Consortium, claim: Claim) -> Org:
    return next(o for o in c.orgs if o.name == claim.payer_id)


def on_chain(c: Consortium, claim: Claim, related: tuple[bytes, int] | None = None) -> ClaimSubmission:
    """What a gateway sends for ``claim``: its fingerprints, its payer's index and its figures."""
    fp = fingerprint(claim, CONSORTIUM_KEY)
    related_key, related_version = related or (ZERO32, 0)
    return ClaimSubmission(
        exact_key=fp.exact_key,
        document_hash=fp.document_hash,
        line_keys=fp.line_keys,
        key_id=fp.key_id,
        payer_org=payer_of(c, claim).index,
        total_charge=claim.total_charge_cents,
        frequency=int(claim.frequency),
        related_key=related_key,
        related_version=related_version,
    )


def claim(**overrides: Any) -> Claim:
    overrides.setdefault("payer_id", "PAYER-X")
    return make_claim(**overrides)


def refused(existing: ClaimSubmission, version: int, submitter: Org, attempt: ClaimSubmission) -> tuple[str, Any]:
    return (
        "DuplicateRefused",
        {
            "exactKey": existing.exact_key,
            "existingVersion": version,
            "submitterOrg": submitter.index,
            "documentHash": attempt.document_hash,
        },
    )


def flagged(s: ClaimSubmission, line: int, earlier: ClaimSubmission, earlier_version: int = 1) -> tuple[str, Any]:
    return (
        "SuspectDuplicateFlagged",
        {
            "exactKey": s.exact_key,
            "version": 1,
            "lineIndex": line,
            "earlierExactKey": earlier.exact_key,
            "earlierVersion": earlier_version,
        },
    )


def record(c: Consortium, s: ClaimSubmission) -> dict[str, Any]:
    return c.ledger.claim_record(s.exact_key)


# ------------------------------------------------------------------ exact duplicates


def test_exact_duplicate_in_one_batch_is_refused_and_the_rest_of_the_batch_recorded(c: Consortium) -> None:
    first = on_chain(c, claim(claim_id="CLM-1"))
    # Sent again under a new claim id and another rendering NPI: still the same claim.
    again = on_chain(c, claim(claim_id="CLM-1-RESENT", rendering_npi=OTHER_NPI))
    other = on_chain(c, claim(claim_id="CLM-2", member_id="MBR200"))
    assert again.exact_key == first.exact_key and again.document_hash != first.document_hash

    assert c.simulate_submit(first, again, other) == [1, 0, 1]
    outcome = c.submit(first, again, other)
    assert_events(
        outcome,
        [
            submitted(first, 1, c.prov_a.index),
            refused(first, 1, c.prov_a, again),
            submitted(other, 1, c.prov_a.index),
        ],
    )
    assert (record(c, first)["status"], record(c, first)["version"]) == ("submitted", 1)
    assert (record(c, other)["status"], record(c, other)["version"]) == ("submitted", 1)


def test_exact_duplicate_of_a_recorded_claim_is_refused_whoever_sends_it(c: Consortium) -> None:
    first = on_chain(c, claim())
    c.submit(first)
    before = record(c, first)
    for sender, org in ((c.prov_a.accounts[1], c.prov_a), (c.prov_b.account, c.prov_b)):
        attempt = on_chain(c, claim(claim_id=f"CLM-VIA-{org.name}"))
        assert c.simulate_submit(attempt, sender=sender) == [0]
        assert_events(c.submit(attempt, sender=sender), [refused(first, 1, org, attempt)])
        assert record(c, first) == before
    # The refusals stay on the chain as evidence of who tried.
    history = [(e.name, e.args.get("submitterOrg")) for e in c.ledger.events() if e.name == "DuplicateRefused"]
    assert history == [("DuplicateRefused", c.prov_a.index), ("DuplicateRefused", c.prov_b.index)]


def test_the_same_claim_to_two_payers_as_primary_is_refused(c: Consortium) -> None:
    to_x = on_chain(c, claim(payer_id="PAYER-X"))
    to_y = on_chain(c, claim(payer_id="PAYER-Y"))
    assert to_y.exact_key == to_x.exact_key, "the payer is left out of the exact key"
    assert to_y.payer_org != to_x.payer_org
    c.submit(to_x)
    assert_events(c.submit(to_y), [refused(to_x, 1, c.prov_a, to_y)])
    assert record(c, to_x)["payer_org"] == c.payer_x.index


def test_the_same_claim_to_a_secondary_payer_is_recorded_without_a_flag(c: Consortium) -> None:
    primary = on_chain(c, claim(payer_id="PAYER-X", responsibility="P", lines=2))
    secondary = on_chain(c, claim(payer_id="PAYER-Y", responsibility="S", lines=2))
    assert secondary.exact_key != primary.exact_key
    assert not set(secondary.line_keys) & set(primary.line_keys), "responsibility is in the suspect keys too"
    c.submit(primary)
    assert_events(c.submit(secondary), [submitted(secondary, 1, c.prov_a.index)])
    assert record(c, secondary)["suspect"] is False
    assert record(c, secondary)["payer_org"] == c.payer_y.index


# ------------------------------------------------------------------ suspect duplicates


@pytest.mark.parametrize("same_batch", [False, True], ids=["against the ledger", "in one batch"])
def test_a_service_line_billed_again_is_flagged_as_suspect(c: Consortium, same_batch: bool) -> None:
    earlier = on_chain(c, claim(service_lines=[make_line_data(procedure_code="99213")]))
    # Another billing provider, the visit billed with a lab test: a different claim, one line in common.
    later_claim = claim(
        billing_npi=OTHER_NPI,
        claim_id="CLM-B-77",
        service_lines=[
            make_line_data(procedure_code="99213", charge_cents=15000),
            make_line_data(procedure_code="85025"),
        ],
    )
    later = on_chain(c, later_claim)
    assert later.exact_key != earlier.exact_key
    line = later.line_keys.index(earlier.line_keys[0])
    assert line == 1, "canonical order puts 85025 before 99213"

    if same_batch:
        outcome = c.submit(earlier, later, sender=c.prov_a.account)
        expected = [submitted(earlier, 1, c.prov_a.index)]
    else:
        c.submit(earlier)
        outcome = c.submit(later, sender=c.prov_b.account)
        expected = []
    later_provider = c.prov_a if same_batch else c.prov_b
    expected += [flagged(later, line, earlier), submitted(later, 1, later_provider.index)]
    assert_events(outcome, expected)

    assert record(c, later)["suspect"] is True
    assert record(c, earlier)["suspect"] is False
    # lineHolder names the newest live claim billing the line; the earlier one once it ends.
    shared = earlier.line_keys[0]
    assert c.ledger.line_holder(shared) == (later.exact_key, 1)
    assert c.ledger.line_holder(later.line_keys[0]) == (later.exact_key, 1)
    c.ledger.void_claim(later.exact_key, 1, sender=c.prov_a.account if same_batch else c.prov_b.account)
    assert c.ledger.line_holder(shared) == (earlier.exact_key, 1)


@pytest.mark.parametrize(
    ("procedure", "modifier"),
    [("93000", "76"), ("36415", "59"), ("20610", "RT"), ("36415", "XS"), ("85025", "91")],
)
def test_a_repeat_with_a_modifier_that_makes_it_legitimate_is_not_flagged(
    c: Consortium, procedure: str, modifier: str
) -> None:
    first = on_chain(c, claim(service_lines=[make_line_data(procedure_code=procedure)]))
    repeat = on_chain(
        c, claim(claim_id="CLM-REPEAT", service_lines=[make_line_data(procedure_code=procedure, modifiers=[modifier])])
    )
    assert repeat.line_keys[0] != first.line_keys[0]
    assert repeat.exact_key != first.exact_key
    c.submit(first)
    assert_events(c.submit(repeat), [submitted(repeat, 1, c.prov_a.index)])
    assert record(c, repeat)["suspect"] is False


def test_a_split_line_in_a_later_claim_is_flagged_once_per_line(c: Consortium) -> None:
    first = on_chain(
        c, claim(service_lines=[make_line_data(procedure_code="99213"), make_line_data(procedure_code="36415")])
    )
    later = on_chain(
        c,
        claim(
            billing_npi=OTHER_NPI,
            service_lines=[make_line_data(procedure_code="36415", units=2), make_line_data(procedure_code="99213")],
        ),
    )
    c.submit(first)
    outcome = c.submit(later)
    flags = [e.args["lineIndex"] for e in outcome.named("SuspectDuplicateFlagged")]
    assert flags == [0, 1]
    assert record(c, later)["suspect"] is True


# ------------------------------------------------------------------ keys released and taken over


def test_a_void_releases_the_exact_key_and_the_line_keys(c: Consortium) -> None:
    original = on_chain(c, claim(lines=2))
    c.submit(original)
    voided = c.ledger.void_claim(original.exact_key, 1, sender=c.prov_a.account)
    assert_events(
        voided, [("ClaimVoided", {"exactKey": original.exact_key, "version": 1, "providerOrg": c.prov_a.index})]
    )
    assert c.ledger.live_version(original.exact_key) == 0
    assert c.ledger.line_holder(original.line_keys[0]) == (ZERO32, 0)

    # Another claim with one of those lines is not suspect against the voided claim.
    sharing = on_chain(c, claim(billing_npi=OTHER_NPI, service_lines=[make_line_data(procedure_code="99213", units=3)]))
    assert sharing.line_keys[0] in original.line_keys
    assert_events(c.submit(sharing, sender=c.prov_b.account), [submitted(sharing, 1, c.prov_b.index)])

    # The same claim sent again is recorded as version 2 of its slot.
    again = on_chain(c, claim(lines=2, claim_id="CLM-0001-B"))
    assert again.exact_key == original.exact_key
    outcome = c.submit(again)
    flags = [e.args for e in outcome.named("SuspectDuplicateFlagged")]
    # Its 99213 line is held by the live `sharing` claim now; the other line is free.
    assert flags == [
        {
            "exactKey": again.exact_key,
            "version": 2,
            "lineIndex": again.line_keys.index(sharing.line_keys[0]),
            "earlierExactKey": sharing.exact_key,
            "earlierVersion": 1,
        }
    ]
    assert outcome.named("ClaimSubmitted")[0].args["version"] == 2
    assert c.ledger.claim_status(original.exact_key, 1) == "none"
    assert c.ledger.claim_status(original.exact_key, 2) == "submitted"


def test_a_claim_sent_again_after_its_void_is_version_2_and_not_suspect(c: Consortium) -> None:
    original = on_chain(c, claim(lines=2))
    c.submit(original)
    c.ledger.void_claim(original.exact_key, 1, sender=c.prov_a.account)
    again = on_chain(c, claim(lines=2, claim_id="CLM-0001-B"))
    assert_events(c.submit(again), [submitted(again, 2, c.prov_a.index)])
    assert record(c, again)["suspect"] is False
    assert c.ledger.line_holder(again.line_keys[1]) == (again.exact_key, 2)
    assert c.ledger.settlement(again.exact_key)["outcome"] == "none"


def test_a_rejected_claim_releases_its_keys(c: Consortium) -> None:
    original = on_chain(c, claim())
    c.submit(original)
    rejected = c.ledger.acknowledge(original.exact_key, 1, False, REJECTED_REASON, sender=c.payer_x.account)
    assert_events(
        rejected,
        [
            (
                "ClaimAcknowledged",
                {
                    "exactKey": original.exact_key,
                    "version": 1,
                    "payerOrg": c.payer_x.index,
                    "accepted": False,
                    "reasonCode": bytes8(REJECTED_REASON),
                },
            )
        ],
    )
    assert c.ledger.live_version(original.exact_key) == 0
    corrected = on_chain(c, claim(claim_id="CLM-0001-R"))
    assert_events(c.submit(corrected), [submitted(corrected, 2, c.prov_a.index)])
    assert record(c, corrected)["suspect"] is False
    # The new version starts with no payer figures: the rejection's acknowledgement time is gone.
    assert c.ledger.settlement(corrected.exact_key)["acknowledged_at"] == 0


def test_a_replacement_with_the_same_exact_key_is_not_a_duplicate(c: Consortium) -> None:
    original = on_chain(c, claim(lines=2))
    c.submit(original)
    # A corrected diagnosis: the exact key leaves diagnoses out, so the replacement keeps the slot.
    replacement = on_chain(
        c,
        claim(lines=2, frequency="7", original_claim_id="CLM-0001", diagnoses=["E119", "R079"]),
        related=(original.exact_key, 1),
    )
    assert replacement.exact_key == original.exact_key
    assert replacement.line_keys == original.line_keys
    outcome = c.submit(replacement)
    assert_events(
        outcome,
        [
            (
                "ClaimReplaced",
                {
                    "exactKey": original.exact_key,
                    "version": 1,
                    "replacementKey": original.exact_key,
                    "replacementVersion": 2,
                },
            ),
            submitted(replacement, 2, c.prov_a.index),
        ],
    )
    # One slot per exact key: version 2 holds it now, so version 1 reads as no claim at all.
    assert c.ledger.claim_status(original.exact_key, 1) == "none"
    assert c.ledger.claim_status(original.exact_key, 2) == "submitted"
    rec = record(c, replacement)
    assert (rec["version"], rec["frequency"], rec["suspect"]) == (2, 7, False)
    assert c.ledger.line_holder(original.line_keys[0]) == (original.exact_key, 2)


def test_a_replacement_with_a_new_exact_key_takes_over_the_original_lines(c: Consortium) -> None:
    original = on_chain(c, claim(lines=2))
    c.submit(original)
    corrected_lines = [
        make_line_data(procedure_code="99213", units=2, charge_cents=25000),
        make_line_data(procedure_code="85025", charge_cents=12600),
    ]
    replacement = on_chain(
        c,
        claim(frequency="7", original_claim_id="CLM-0001", service_lines=corrected_lines),
        related=(original.exact_key, 1),
    )
    assert replacement.exact_key != original.exact_key
    assert set(replacement.line_keys) == set(original.line_keys), "units and charges are left out of the suspect key"

    assert_events(
        c.submit(replacement),
        [
            (
                "ClaimReplaced",
                {
                    "exactKey": original.exact_key,
                    "version": 1,
                    "replacementKey": replacement.exact_key,
                    "replacementVersion": 1,
                },
            ),
            submitted(replacement, 1, c.prov_a.index),
        ],
    )
    assert c.ledger.claim_status(original.exact_key, 1) == "replaced"
    assert c.ledger.live_version(original.exact_key) == 0
    assert record(c, replacement)["suspect"] is False
    for line_key in original.line_keys:
        assert c.ledger.line_holder(line_key) == (replacement.exact_key, 1)

    # A later claim with one of those lines is suspect against the replacement, not the original.
    later = on_chain(c, claim(billing_npi=OTHER_NPI, service_lines=[make_line_data(procedure_code="85025", units=4)]))
    outcome = c.submit(later, sender=c.prov_b.account)
    assert [e.args["earlierExactKey"] for e in outcome.named("SuspectDuplicateFlagged")] == [replacement.exact_key]


def test_a_replacement_whose_exact_key_another_live_claim_holds_is_refused(c: Consortium) -> None:
    original = on_chain(c, claim(claim_id="CLM-1"))
    other = on_chain(c, claim(claim_id="CLM-2", member_id="MBR200"))
    c.submit(original, other)
    # "Corrected" into the other claim's content: an exact duplicate of it.
    replacement = on_chain(
        c,
        claim(claim_id="CLM-1", frequency="7", original_claim_id="CLM-1", member_id="MBR200"),
        related=(original.exact_key, 1),
    )
    assert replacement.exact_key == other.exact_key
    before = (record(c, original), record(c, other))
    assert c.simulate_submit(replacement) == [0]
    assert_events(c.submit(replacement), [refused(other, 1, c.prov_a, replacement)])
    assert (record(c, original), record(c, other)) == before
    assert c.ledger.claim_status(original.exact_key, 1) == "submitted"


def test_a_replacement_of_another_providers_claim_is_refused(c: Consortium) -> None:
    original = on_chain(c, claim())
    c.submit(original)
    replacement = on_chain(
        c, claim(frequency="7", original_claim_id="CLM-0001", billing_npi=OTHER_NPI), related=(original.exact_key, 1)
    )
    c.assert_refused(
        lambda: c.submit(replacement, sender=c.prov_b.account),
        "ClaimLedgerNotClaimProvider",
        {"exactKey": original.exact_key, "callerOrg": c.prov_b.index, "providerOrg": c.prov_a.index},
        keys=[original.exact_key, replacement.exact_key],
        line_keys=replacement.line_keys,
    )


def test_a_line_shared_by_two_live_claims_stays_suspect_after_the_first_is_voided(c: Consortium) -> None:
    first = on_chain(c, claim(service_lines=[make_line_data(procedure_code="99213")]))
    second = on_chain(c, claim(billing_npi=OTHER_NPI, service_lines=[make_line_data(procedure_code="99213", units=2)]))
    c.submit(first)
    c.submit(second, sender=c.prov_b.account)
    assert record(c, second)["suspect"] is True
    c.ledger.void_claim(first.exact_key, 1, sender=c.prov_a.account)

    # `second` is live and bills this line: the design says a match with a live claim is flagged.
    third = on_chain(c, claim(billing_npi=THIRD_NPI, service_lines=[make_line_data(procedure_code="99213", units=3)]))
    outcome = c.submit(third)
    assert [e.args["earlierExactKey"] for e in outcome.named("SuspectDuplicateFlagged")] == [second.exact_key]
    assert record(c, third)["suspect"] is True
    line = second.line_keys[0]
    assert c.ledger.line_holder(line) == (third.exact_key, 1)
    c.ledger.void_claim(third.exact_key, 1, sender=c.prov_a.account)
    assert c.ledger.line_holder(line) == (second.exact_key, 1)


@pytest.mark.parametrize("comes_back", ["sent again after its void", "replaced in its slot"])
def test_every_live_claim_on_a_line_stays_findable_when_one_comes_back_under_its_exact_key(
    c: Consortium, comes_back: str
) -> None:
    """X, K and Y bill the same service; K returns under its own exact key (version 2) while
    Y is the newest holder. Once K and Y end, X is still live: a fourth claim is suspect against it."""
    visit = "99213"
    x = on_chain(c, claim(service_lines=[make_line_data(procedure_code=visit)]))
    k = on_chain(c, claim(billing_npi=OTHER_NPI, service_lines=[make_line_data(procedure_code=visit, units=2)]))
    y = on_chain(c, claim(billing_npi=THIRD_NPI, service_lines=[make_line_data(procedure_code=visit, units=3)]))
    line = x.line_keys[0]
    c.submit(x)
    c.submit(k, sender=c.prov_b.account)
    if comes_back == "sent again after its void":
        c.ledger.void_claim(k.exact_key, 1, sender=c.prov_b.account)
        c.submit(y)
        k2 = on_chain(
            c,
            claim(
                claim_id="CLM-0001-B",
                billing_npi=OTHER_NPI,
                service_lines=[make_line_data(procedure_code=visit, units=2)],
            ),
        )
    else:
        c.submit(y)
        k2 = on_chain(
            c,
            claim(
                frequency="7",
                original_claim_id="CLM-0001",
                billing_npi=OTHER_NPI,
                diagnoses=["E119", "R079"],
                service_lines=[make_line_data(procedure_code=visit, units=2)],
            ),
            related=(k.exact_key, 1),
        )
    assert k2.exact_key == k.exact_key
    outcome = c.submit(k2, sender=c.prov_b.account)
    assert [e.args["earlierExactKey"] for e in outcome.named("SuspectDuplicateFlagged")] == [y.exact_key]
    c.ledger.void_claim(y.exact_key, 1, sender=c.prov_a.account)
    c.ledger.void_claim(k.exact_key, 2, sender=c.prov_b.account)

    z = on_chain(
        c, claim(billing_npi=valid_npi(3000014), service_lines=[make_line_data(procedure_code=visit, units=4)])
    )
    flags = c.submit(z).named("SuspectDuplicateFlagged")
    assert [e.args["earlierExactKey"] for e in flags] == [x.exact_key], "X is live and bills the line"
    c.ledger.void_claim(z.exact_key, 1, sender=c.prov_a.account)
    assert c.ledger.line_holder(line) == (x.exact_key, 1)
