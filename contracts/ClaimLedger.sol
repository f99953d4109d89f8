// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {Multicall} from "@openzeppelin/contracts/utils/Multicall.sol";
import {OrganisationRegistry} from "./OrganisationRegistry.sol";

/**
 * @title ClaimLedger
 * @notice The consortium's shared record of medical claims: keyed fingerprints, exact
 * duplicates refused, suspect duplicates flagged, and each claim's life from submission to
 * payment, void or replacement. Holds no protected health information.
 * @dev Storage per claim: one packed slot (the record, under its exact key) and one slot
 * per service line (suspect key -> exact key of the newest claim that holds it); a suspect
 * line adds one slot linking to the earlier holder. A key held by an ended claim counts as
 * free, so a void releases every key without touching them.
 * {Multicall} (OpenZeppelin) runs several calls in one transaction with the caller's own
 * rights (each inner call is a delegatecall, so every role and ownership check applies as if
 * called alone): a payer posts an 835's acknowledgements, adjudications and payments in one
 * transaction, all or nothing.
 */
contract ClaimLedger is OrganisationRegistry, Multicall {
    /// @notice The most claims one {submitClaims} call takes.
    uint256 public constant MAX_BATCH = 2000;

    uint8 private constant FREQUENCY_ORIGINAL = 1;
    uint8 private constant FREQUENCY_REPLACEMENT = 7;
    uint8 private constant FREQUENCY_VOID = 8;

    uint256 private constant RESERVED_TERMS_BITS = type(uint256).max << 216;

    mapping(bytes32 exactKey => ClaimRecord) private _claims;
    /// @notice How many holders of one line key a lookup walks at most (ended ones are skipped).
    uint256 public constant MAX_LINE_WALK = 16;

    // The claims holding a line key form a list, newest first: _lineHolder is its head and
    // _lineNext[keccak256(lineKey, exactKey)] the holder before exactKey. A claim is pushed
    // only when it shares the line with a live claim (a suspect), so the common case is one slot.
    mapping(bytes32 lineKey => bytes32 exactKey) private _lineHolder;
    mapping(bytes32 lineAndHolder => bytes32 exactKey) private _lineNext;
    mapping(bytes32 exactKey => Settlement) private _settlements;

    /// @param adminDelay seconds a default-admin handover must wait (AccessControlDefaultAdminRules).
    /// @param admin the first default admin and operator.
    constructor(uint48 adminDelay, address admin) OrganisationRegistry(adminDelay, admin) {}

    // ------------------------------------------------------------------ provider

    /**
     * @notice Records a batch of claims for the caller's organisation.
     * Requirements: PROVIDER_ROLE, an active organisation, 1 to MAX_BATCH claims. A void
     * (frequency 8) needs only (relatedKey, relatedVersion): a live, unpaid claim of the
     * caller's organisation; its other fields are not read. Every other claim needs non-zero
     * keys, as many line keys as `lineCount` (at least one), a total charge above zero that
     * fits 64 bits, an accepted key id, an active payer, and frequency 1 (no related claim)
     * or 7 (replacing such a live, unpaid claim). Any of these failing reverts the whole
     * batch. An exact duplicate of a live claim does not revert: it is refused and kept as
     * evidence (its other fields are then not checked: nothing of it is written).
     * Emits, per claim: {ClaimSubmitted} and {SuspectDuplicateFlagged} per suspect line;
     * {DuplicateRefused}; {ClaimReplaced} then {ClaimSubmitted}; or {ClaimVoided}.
     * @return versions per claim, the version recorded (0 if refused as a duplicate; for a
     * void, the version voided).
     */
    function submitClaims(ClaimSubmission[] calldata claims) external returns (uint32[] memory versions) {
        uint32 provider = _callerOrg(PROVIDER_ROLE);
        uint256 n = claims.length;
        if (n == 0) revert ClaimLedgerEmptyBatch();
        if (n > MAX_BATCH) revert ClaimLedgerBatchTooLarge(n, MAX_BATCH);
        versions = new uint32[](n);
        for (uint256 i = 0; i < n; ++i) {
            versions[i] = _submit(claims[i], i, provider);
        }
    }

    /**
     * @notice Voids claim (exactKey, version): it ends and releases its keys.
     * Requirements: PROVIDER_ROLE, an active organisation that submitted the claim, and the
     * claim live and not paid. Emits {ClaimVoided}.
     */
    function voidClaim(bytes32 exactKey, uint32 version) external {
        uint32 provider = _callerOrg(PROVIDER_ROLE);
        _void(exactKey, version, provider);
    }

    // ------------------------------------------------------------------ payer

    /**
     * @notice Acknowledges a submitted claim: accepted (277CA A2) or rejected (A3) with a
     * reason code. A rejected claim ends and releases its keys.
     * Requirements: PAYER_ROLE, an active organisation the claim is addressed to, status
     * Submitted, a non-zero `reasonCode` when rejecting. Emits {ClaimAcknowledged}.
     */
    function acknowledge(bytes32 exactKey, uint32 version, bool accepted, bytes8 reasonCode) external {
        uint32 payer = _callerOrg(PAYER_ROLE);
        ClaimRecord storage rec = _payerClaim(exactKey, version, payer);
        Status to = accepted ? Status.Accepted : Status.Rejected;
        if (rec.status != Status.Submitted) revert ClaimLedgerInvalidTransition(exactKey, rec.status, to);
        if (!accepted && reasonCode == bytes8(0)) revert ClaimLedgerMissingReason(exactKey);
        rec.status = to;
        _settlements[exactKey].acknowledgedAt = uint32(block.timestamp);
        emit ClaimAcknowledged(exactKey, version, payer, accepted, reasonCode);
    }

    /**
     * @notice Adjudicates an accepted claim: approved, partly approved or denied, with the
     * allowed amount and the CARC codes of any adjustment.
     * Requirements: PAYER_ROLE, an active organisation the claim is addressed to, status
     * Accepted, outcome not None, allowed amount zero exactly when denied and at most the
     * claim's charge, at least one CARC code unless fully approved. Emits {ClaimAdjudicated}.
     */
    function adjudicate(
        bytes32 exactKey,
        uint32 version,
        Outcome outcome,
        uint256 allowedAmount,
        bytes4[] calldata carcCodes
    ) external {
        uint32 payer = _callerOrg(PAYER_ROLE);
        ClaimRecord storage rec = _payerClaim(exactKey, version, payer);
        if (rec.status != Status.Accepted) revert ClaimLedgerInvalidTransition(exactKey, rec.status, Status.Adjudicated);
        if (outcome == Outcome.None) revert ClaimLedgerInvalidOutcome(exactKey, outcome);
        if ((outcome == Outcome.Denied) != (allowedAmount == 0)) {
            revert ClaimLedgerAllowedAmountMismatch(exactKey, outcome, allowedAmount);
        }
        if (allowedAmount > rec.totalCharge) {
            revert ClaimLedgerAllowedExceedsCharge(exactKey, allowedAmount, rec.totalCharge);
        }
        if (outcome != Outcome.Approved && carcCodes.length == 0) {
            revert ClaimLedgerMissingAdjustmentReason(exactKey, outcome);
        }
        rec.status = Status.Adjudicated;
        Settlement storage s = _settlements[exactKey];
        s.outcome = outcome;
        s.adjudicatedAt = uint32(block.timestamp);
        s.allowedAmount = uint64(allowedAmount);
        emit ClaimAdjudicated(exactKey, version, payer, outcome, uint64(allowedAmount), carcCodes);
    }

    /**
     * @notice Records the payment of an adjudicated claim.
     * Requirements: PAYER_ROLE, an active organisation the claim is addressed to, status
     * Adjudicated and not denied, `paidAmount` at most the allowed amount, a non-zero
     * remittance hash (835 or EFT trace). Emits {ClaimPaid}.
     */
    function recordPayment(bytes32 exactKey, uint32 version, uint256 paidAmount, bytes32 remittanceHash) external {
        uint32 payer = _callerOrg(PAYER_ROLE);
        ClaimRecord storage rec = _payerClaim(exactKey, version, payer);
        if (rec.status != Status.Adjudicated) revert ClaimLedgerInvalidTransition(exactKey, rec.status, Status.Paid);
        Settlement storage s = _settlements[exactKey];
        if (s.outcome == Outcome.Denied) revert ClaimLedgerNotPayable(exactKey, s.outcome);
        if (paidAmount > s.allowedAmount) revert ClaimLedgerPaidExceedsAllowed(exactKey, paidAmount, s.allowedAmount);
        if (remittanceHash == bytes32(0)) revert ClaimLedgerZeroRemittanceHash(exactKey);
        rec.status = Status.Paid;
        s.paidAt = uint32(block.timestamp);
        s.paidAmount = uint64(paidAmount);
        emit ClaimPaid(exactKey, version, payer, uint64(paidAmount), remittanceHash);
    }

    /**
     * @notice Reverses the payment of a paid claim (an 835 claim with status 22, "reversal of
     * previous payment"): the claim goes back to Accepted with its settlement cleared, so that
     * the corrected adjudication and payment that follow can be recorded on the same claim.
     * Requirements: PAYER_ROLE, an active organisation the claim is addressed to, status Paid,
     * a non-zero remittance hash (the 835 carrying the reversal). Emits {ClaimPaymentReversed}.
     */
    function reversePayment(bytes32 exactKey, uint32 version, bytes32 remittanceHash) external {
        uint32 payer = _callerOrg(PAYER_ROLE);
        ClaimRecord storage rec = _payerClaim(exactKey, version, payer);
        if (rec.status != Status.Paid) revert ClaimLedgerInvalidTransition(exactKey, rec.status, Status.Accepted);
        if (remittanceHash == bytes32(0)) revert ClaimLedgerZeroRemittanceHash(exactKey);
        Settlement storage s = _settlements[exactKey];
        uint64 reversed = s.paidAmount;
        rec.status = Status.Accepted;
        s.outcome = Outcome.None;
        s.allowedAmount = 0;
        s.adjudicatedAt = 0;
        s.paidAmount = 0;
        s.paidAt = 0;
        emit ClaimPaymentReversed(exactKey, version, payer, reversed, remittanceHash);
    }

    // ------------------------------------------------------------------ any member

    /**
     * @notice Anchors the head hash of an organisation's access audit log on chain.
     * Requirements: a member account (any role) of an active organisation, a non-zero head.
     * Emits {AuditLogAnchored}.
     */
    function anchorAuditLog(bytes32 head, uint64 entries) external {
        uint32 org = _activeMemberOrg(msg.sender);
        if (head == bytes32(0)) revert ClaimLedgerZeroAuditHead();
        emit AuditLogAnchored(org, head, entries);
    }

    // ------------------------------------------------------------------ views

    /// @notice Packs a claim's small fields into `ClaimSubmission.terms` (see IClaimLedger).
    /// Reverts with {ClaimLedgerAmountOverflow} (index 0) if the total charge does not fit 64 bits.
    function packTerms(ClaimTerms memory t) public pure returns (uint256) {
        if (t.totalCharge > type(uint64).max) revert ClaimLedgerAmountOverflow(0, t.totalCharge, type(uint64).max);
        return uint256(uint96(t.totalCharge)) | (uint256(t.keyId) << 96) | (uint256(t.payerOrg) << 128)
            | (uint256(t.relatedVersion) << 160) | (uint256(t.lineCount) << 192) | (uint256(t.frequency) << 208);
    }

    /// @notice Reads the fields of `ClaimSubmission.terms`.
    function unpackTerms(uint256 terms) public pure returns (ClaimTerms memory t) {
        t.totalCharge = uint96(terms);
        t.keyId = uint32(terms >> 96);
        t.payerOrg = uint32(terms >> 128);
        t.relatedVersion = uint32(terms >> 160);
        t.lineCount = uint16(terms >> 192);
        t.frequency = uint8(terms >> 208);
    }

    /// @notice The record under `exactKey` now (all zero if none).
    function claimRecord(bytes32 exactKey) external view returns (ClaimRecord memory) {
        return _claims[exactKey];
    }

    /// @notice The payer's figures of the claim under `exactKey` now.
    function settlement(bytes32 exactKey) external view returns (Settlement memory) {
        return _settlements[exactKey];
    }

    /// @notice The status of claim (exactKey, version); None if that version is not the one held there now.
    function claimStatus(bytes32 exactKey, uint32 version) external view returns (Status) {
        ClaimRecord storage rec = _claims[exactKey];
        return rec.version == version ? rec.status : Status.None;
    }

    /// @notice The live claim holding `exactKey`, if any: its version (0 if none).
    function liveVersion(bytes32 exactKey) public view returns (uint32) {
        ClaimRecord storage rec = _claims[exactKey];
        return _isLive(rec.status) ? rec.version : 0;
    }

    /// @notice For each key, the version of the live claim holding it (0 if none). Lets a
    /// gateway check fingerprints made under a retiring key during a rotation window.
    function liveVersions(bytes32[] calldata exactKeys) external view returns (uint32[] memory versions) {
        versions = new uint32[](exactKeys.length);
        for (uint256 i = 0; i < exactKeys.length; ++i) {
            versions[i] = liveVersion(exactKeys[i]);
        }
    }

    /// @notice The newest live claim holding suspect key `lineKey`: its exact key and version (zero if none).
    function lineHolder(bytes32 lineKey) external view returns (bytes32 exactKey, uint32 version) {
        (exactKey,) = _walkLine(lineKey, _lineHolder[lineKey], bytes32(0));
        version = exactKey == bytes32(0) ? 0 : liveVersion(exactKey);
    }

    /// @notice Days from submission to payment of the claim under `exactKey` (reverts if not paid).
    function daysToPayment(bytes32 exactKey) external view returns (uint256) {
        ClaimRecord storage rec = _claims[exactKey];
        if (rec.status != Status.Paid) revert ClaimLedgerInvalidTransition(exactKey, rec.status, Status.Paid);
        return (_settlements[exactKey].paidAt - rec.submittedAt) / 1 days;
    }

    // ------------------------------------------------------------------ internal

    function _submit(ClaimSubmission calldata c, uint256 i, uint32 provider) private returns (uint32) {
        ClaimTerms memory t = unpackTerms(c.terms);
        if (c.terms & RESERVED_TERMS_BITS != 0) revert ClaimLedgerReservedTermsBits(i, c.terms);
        if (t.frequency == FREQUENCY_VOID) {
            _void(c.relatedKey, t.relatedVersion, provider);
            return t.relatedVersion;
        }
        bytes32 key = c.exactKey;
        if (key == bytes32(0)) revert ClaimLedgerZeroExactKey(i);
        if (c.documentHash == bytes32(0)) revert ClaimLedgerZeroDocumentHash(i);
        ClaimRecord storage rec = _claims[key];
        Status held = rec.status;
        uint24 previousVersion = rec.version;

        if (t.frequency == FREQUENCY_REPLACEMENT) {
            ClaimRecord storage original = _providerClaim(c.relatedKey, t.relatedVersion, provider, Status.Replaced);
            bool sameSlot = c.relatedKey == key;
            if (!sameSlot && _isLive(held)) {
                emit DuplicateRefused(key, previousVersion, provider, c.documentHash);
                return 0;
            }
            original.status = Status.Replaced;
            if (sameSlot) held = Status.Replaced;
        } else if (t.frequency != FREQUENCY_ORIGINAL) {
            revert ClaimLedgerUnknownFrequency(i, t.frequency);
        } else {
            if (_isLive(held)) {
                emit DuplicateRefused(key, previousVersion, provider, c.documentHash);
                return 0;
            }
            if (c.relatedKey != bytes32(0) || t.relatedVersion != 0) {
                revert ClaimLedgerUnexpectedRelatedClaim(i, c.relatedKey);
            }
        }

        _checkTerms(c, t, i);
        uint24 version = previousVersion + 1;
        bool suspect = _holdLines(c.lineKeys, key, version);
        if (held != Status.None) delete _settlements[key];
        uint64 total = uint64(t.totalCharge);
        _claims[key] = ClaimRecord({
            status: Status.Submitted,
            frequency: t.frequency,
            suspect: suspect,
            lineCount: t.lineCount,
            version: version,
            providerOrg: provider,
            payerOrg: t.payerOrg,
            keyId: t.keyId,
            submittedAt: uint32(block.timestamp),
            totalCharge: total
        });
        if (t.frequency == FREQUENCY_REPLACEMENT) {
            emit ClaimReplaced(c.relatedKey, t.relatedVersion, key, version);
        }
        emit ClaimSubmitted(key, version, provider, t.payerOrg, c.documentHash, t.keyId, t.lineCount, total, t.frequency);
        return version;
    }

    /// @dev Takes every line key for claim `key`; flags the lines another live claim holds too.
    function _holdLines(bytes32[] calldata lineKeys, bytes32 key, uint24 version) private returns (bool suspect) {
        uint256 lines = lineKeys.length;
        for (uint256 j = 0; j < lines; ++j) {
            bytes32 lineKey = lineKeys[j];
            bytes32 top = _lineHolder[lineKey];
            if (top == bytes32(0)) {
                _lineHolder[lineKey] = key;
                continue;
            }
            (bytes32 earlier, bool listed) = _walkLine(lineKey, top, key);
            if (earlier != bytes32(0)) {
                suspect = true;
                emit SuspectDuplicateFlagged(key, version, uint16(j), earlier, _claims[earlier].version);
                // A key already in the list (an earlier version of this claim) is not linked again: that
                // would loop the list and lose the claims behind it.
                if (top != key && !listed) {
                    _lineNext[keccak256(abi.encode(lineKey, key))] = top;
                    _lineHolder[lineKey] = key;
                }
            } else if (top != key) {
                _lineHolder[lineKey] = key;
            }
        }
    }

    /// @dev Walks line `lineKey`'s list from `holder` (at most MAX_LINE_WALK steps): the first live claim
    /// other than `self`, and whether `self` is in the list.
    function _walkLine(bytes32 lineKey, bytes32 holder, bytes32 self) private view returns (bytes32 earlier, bool listed) {
        for (uint256 step = 0; step < MAX_LINE_WALK && holder != bytes32(0); ++step) {
            if (holder == self) {
                listed = true;
                if (earlier != bytes32(0)) return (earlier, listed);
            } else if (earlier == bytes32(0) && _isLive(_claims[holder].status)) {
                earlier = holder;
                if (listed) return (earlier, listed);
            }
            holder = _lineNext[keccak256(abi.encode(lineKey, holder))];
        }
    }

    /// @dev The checks of a claim that is about to be recorded (an exact duplicate is refused before them).
    function _checkTerms(ClaimSubmission calldata c, ClaimTerms memory t, uint256 i) private view {
        uint256 lines = c.lineKeys.length;
        if (t.lineCount != lines) revert ClaimLedgerLineCountMismatch(i, t.lineCount, lines);
        if (lines == 0) revert ClaimLedgerNoServiceLines(i);
        for (uint256 j = 0; j < lines; ++j) {
            if (c.lineKeys[j] == bytes32(0)) revert ClaimLedgerZeroLineKey(i, j);
        }
        if (t.totalCharge == 0) revert ClaimLedgerZeroCharge(i);
        if (t.totalCharge > type(uint64).max) revert ClaimLedgerAmountOverflow(i, t.totalCharge, type(uint64).max);
        if (!_isAcceptedKey(t.keyId)) revert ClaimLedgerUnknownKeyId(i, t.keyId);
        if (!_isActivePayer(t.payerOrg)) revert ClaimLedgerUnknownPayer(i, t.payerOrg);
    }

    function _void(bytes32 exactKey, uint32 version, uint32 provider) private {
        ClaimRecord storage rec = _providerClaim(exactKey, version, provider, Status.Voided);
        rec.status = Status.Voided;
        emit ClaimVoided(exactKey, version, provider);
    }

    /// @dev The live, unpaid claim (exactKey, version) of `provider`, about to move to `to`.
    function _providerClaim(
        bytes32 exactKey,
        uint32 version,
        uint32 provider,
        Status to
    ) private view returns (ClaimRecord storage rec) {
        rec = _claims[exactKey];
        if (rec.version != version || rec.status == Status.None) {
            revert ClaimLedgerUnknownClaim(exactKey, version, rec.version);
        }
        if (rec.providerOrg != provider) revert ClaimLedgerNotClaimProvider(exactKey, provider, rec.providerOrg);
        Status from = rec.status;
        if (from == Status.Paid || !_isLive(from)) revert ClaimLedgerInvalidTransition(exactKey, from, to);
    }

    /// @dev Claim (exactKey, version), checked to be addressed to `payer`.
    function _payerClaim(bytes32 exactKey, uint32 version, uint32 payer) private view returns (ClaimRecord storage rec) {
        rec = _claims[exactKey];
        if (rec.version != version || rec.status == Status.None) {
            revert ClaimLedgerUnknownClaim(exactKey, version, rec.version);
        }
        if (rec.payerOrg != payer) revert ClaimLedgerNotClaimPayer(exactKey, payer, rec.payerOrg);
    }

    function _isLive(Status s) private pure returns (bool) {
        return s == Status.Submitted || s == Status.Accepted || s == Status.Adjudicated || s == Status.Paid;
    }
}
