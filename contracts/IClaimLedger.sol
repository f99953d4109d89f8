// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

/**
 * @title IClaimLedger
 * @notice Types, custom errors and events of the ClaimLedger consortium contract.
 * @dev No protected health information ever reaches this contract: claims arrive as keyed
 * HMAC fingerprints (exact key, one suspect key per service line, document hash) made
 * off chain under a consortium key whose id travels with them.
 *
 * A claim lives in the slot of its exact key; `version` tells apart the successive claims
 * that held the same exact key (a claim voided and sent again, or replaced by a corrected
 * claim with the same key). A claim is addressed as (exactKey, version).
 */
interface IClaimLedger {
    // ------------------------------------------------------------------ types

    /// @notice What an organisation is in the consortium.
    enum Role {
        None,
        Provider,
        Payer,
        Auditor
    }

    /// @notice Where a claim stands. Submitted, Accepted, Adjudicated and Paid are live (they
    /// hold their keys); Rejected, Voided and Replaced are ended and have released them.
    enum Status {
        None,
        Submitted,
        Accepted,
        Rejected,
        Adjudicated,
        Paid,
        Voided,
        Replaced
    }

    /// @notice The payer's decision on an accepted claim.
    enum Outcome {
        None,
        Approved,
        PartlyApproved,
        Denied
    }

    /// @notice One claim of a batch.
    /// @dev `terms` packs the claim's small fields into one word (calldata is paid per byte):
    ///   bits   0..95  total charge in cents (must fit 64 bits)
    ///   bits  96..127 key id of the fingerprint key
    ///   bits 128..159 payer organisation index
    ///   bits 160..191 related version (frequency 7 or 8)
    ///   bits 192..207 line count (must equal lineKeys.length)
    ///   bits 208..215 frequency: 1 original, 7 replacement, 8 void of (relatedKey, related version)
    ///   bits 216..255 zero
    /// {packTerms} and {unpackTerms} build and read it.
    struct ClaimSubmission {
        bytes32 exactKey;
        bytes32 documentHash;
        bytes32 relatedKey;
        uint256 terms;
        bytes32[] lineKeys;
    }

    /// @notice The fields of `ClaimSubmission.terms`, unpacked.
    struct ClaimTerms {
        uint256 totalCharge;
        uint32 keyId;
        uint32 payerOrg;
        uint32 relatedVersion;
        uint16 lineCount;
        uint8 frequency;
    }

    /// @notice The on-chain record of a claim, packed in one storage slot.
    struct ClaimRecord {
        Status status;
        uint8 frequency;
        bool suspect;
        uint16 lineCount;
        uint24 version;
        uint32 providerOrg;
        uint32 payerOrg;
        uint32 keyId;
        uint32 submittedAt;
        uint64 totalCharge;
    }

    /// @notice The payer's figures for a claim, written by its payer steps.
    struct Settlement {
        Outcome outcome;
        uint32 acknowledgedAt;
        uint32 adjudicatedAt;
        uint32 paidAt;
        uint64 allowedAmount;
        uint64 paidAmount;
    }

    /// @notice A consortium member.
    struct Organisation {
        bytes32 orgId;
        Role role;
        bool active;
        uint32 accounts;
    }

    // ------------------------------------------------------------------ errors: batches

    /// @notice A batch with no claims.
    error ClaimLedgerEmptyBatch();
    /// @notice A batch longer than the contract accepts in one call.
    error ClaimLedgerBatchTooLarge(uint256 size, uint256 maxSize);
    /// @notice Claim `index` of the batch has a zero exact key.
    error ClaimLedgerZeroExactKey(uint256 index);
    /// @notice Claim `index` of the batch has a zero document hash.
    error ClaimLedgerZeroDocumentHash(uint256 index);
    /// @notice Line `lineIndex` of claim `index` has a zero suspect key.
    error ClaimLedgerZeroLineKey(uint256 index, uint256 lineIndex);
    /// @notice Claim `index` declares `declared` lines but carries `actual` line keys.
    error ClaimLedgerLineCountMismatch(uint256 index, uint256 declared, uint256 actual);
    /// @notice Claim `index` has no service lines.
    error ClaimLedgerNoServiceLines(uint256 index);
    /// @notice An amount does not fit the ledger's 64-bit cents.
    error ClaimLedgerAmountOverflow(uint256 index, uint256 amount, uint256 maxAmount);
    /// @notice Claim `index` has a zero total charge.
    error ClaimLedgerZeroCharge(uint256 index);
    /// @notice Claim `index` sets bits of `terms` that have no meaning.
    error ClaimLedgerReservedTermsBits(uint256 index, uint256 terms);
    /// @notice Claim `index` has a frequency code other than 1, 7 or 8.
    error ClaimLedgerUnknownFrequency(uint256 index, uint8 frequency);
    /// @notice An original (frequency 1) claim `index` names a related claim.
    error ClaimLedgerUnexpectedRelatedClaim(uint256 index, bytes32 relatedKey);
    /// @notice Claim `index` was fingerprinted under a key id the consortium does not accept.
    error ClaimLedgerUnknownKeyId(uint256 index, uint32 keyId);
    /// @notice Claim `index` is addressed to an organisation that is not a registered payer.
    error ClaimLedgerUnknownPayer(uint256 index, uint32 payerOrg);

    // ------------------------------------------------------------------ errors: claims

    /// @notice No claim (exactKey, version) is on the ledger; `current` is the version there now.
    error ClaimLedgerUnknownClaim(bytes32 exactKey, uint32 version, uint32 current);
    /// @notice Only the provider that submitted the claim may void or replace it.
    error ClaimLedgerNotClaimProvider(bytes32 exactKey, uint32 callerOrg, uint32 providerOrg);
    /// @notice Only the payer the claim is addressed to may take its payer steps.
    error ClaimLedgerNotClaimPayer(bytes32 exactKey, uint32 callerOrg, uint32 payerOrg);
    /// @notice The claim's status does not allow that step.
    error ClaimLedgerInvalidTransition(bytes32 exactKey, Status from, Status to);
    /// @notice A rejection needs a reason code.
    error ClaimLedgerMissingReason(bytes32 exactKey);
    /// @notice The adjudication outcome is not one of Approved, PartlyApproved, Denied.
    error ClaimLedgerInvalidOutcome(bytes32 exactKey, Outcome outcome);
    /// @notice A denial carries an allowed amount, or an approval carries none.
    error ClaimLedgerAllowedAmountMismatch(bytes32 exactKey, Outcome outcome, uint256 allowedAmount);
    /// @notice The allowed amount is more than the claim's charge.
    error ClaimLedgerAllowedExceedsCharge(bytes32 exactKey, uint256 allowedAmount, uint256 totalCharge);
    /// @notice A denial or partial approval needs at least one CARC code.
    error ClaimLedgerMissingAdjustmentReason(bytes32 exactKey, Outcome outcome);
    /// @notice The payment is more than the allowed amount.
    error ClaimLedgerPaidExceedsAllowed(bytes32 exactKey, uint256 paidAmount, uint256 allowedAmount);
    /// @notice A denied claim cannot be paid.
    error ClaimLedgerNotPayable(bytes32 exactKey, Outcome outcome);
    /// @notice A payment needs the hash of its remittance (835) or trace.
    error ClaimLedgerZeroRemittanceHash(bytes32 exactKey);

    // ------------------------------------------------------------------ errors: registry

    /// @notice The calling account belongs to no organisation.
    error ClaimLedgerUnknownAccount(address account);
    /// @notice The organisation is deactivated.
    error ClaimLedgerOrganisationInactive(uint32 org);
    /// @notice No organisation has that index.
    error ClaimLedgerUnknownOrganisation(uint32 org);
    /// @notice An organisation with that id is registered already.
    error ClaimLedgerOrganisationExists(bytes32 orgId, uint32 org);
    /// @notice Organisation ids must be non-zero.
    error ClaimLedgerZeroOrganisationId();
    /// @notice The role must be Provider, Payer or Auditor.
    error ClaimLedgerInvalidRole(Role role);
    /// @notice The account already belongs to an organisation.
    error ClaimLedgerAccountAlreadyMember(address account, uint32 org);
    /// @notice The zero address cannot be a member.
    error ClaimLedgerZeroAddress();
    /// @notice The fingerprint key id must be non-zero.
    error ClaimLedgerZeroKeyId();
    /// @notice The audit log head must be non-zero.
    error ClaimLedgerZeroAuditHead();

    // ------------------------------------------------------------------ events: claims

    /// @notice A claim was recorded.
    event ClaimSubmitted(
        bytes32 indexed exactKey,
        uint32 version,
        uint32 providerOrg,
        uint32 payerOrg,
        bytes32 documentHash,
        uint32 keyId,
        uint16 lineCount,
        uint64 totalCharge,
        uint8 frequency
    );
    /// @notice Line `lineIndex` of a recorded claim matches a line of an earlier live claim.
    event SuspectDuplicateFlagged(
        bytes32 indexed exactKey,
        uint32 version,
        uint16 lineIndex,
        bytes32 earlierExactKey,
        uint32 earlierVersion
    );
    /// @notice An exact duplicate of live claim (exactKey, existingVersion) was refused; kept as evidence.
    event DuplicateRefused(bytes32 indexed exactKey, uint32 existingVersion, uint32 submitterOrg, bytes32 documentHash);
    /// @notice The payer acknowledged a claim: accepted (277CA A2) or rejected (A3) with a reason.
    event ClaimAcknowledged(bytes32 indexed exactKey, uint32 version, uint32 payerOrg, bool accepted, bytes8 reasonCode);
    /// @notice The payer adjudicated a claim.
    event ClaimAdjudicated(
        bytes32 indexed exactKey,
        uint32 version,
        uint32 payerOrg,
        Outcome outcome,
        uint64 allowedAmount,
        bytes4[] carcCodes
    );
    /// @notice The payer paid a claim; `remittanceHash` is the hash of the 835 or the EFT trace.
    event ClaimPaid(bytes32 indexed exactKey, uint32 version, uint32 payerOrg, uint64 paidAmount, bytes32 remittanceHash);
    /// @notice The payer reversed the payment of a paid claim (835 CLP02 22); the claim is
    /// Accepted again, open for a new adjudication. `reversedAmount` is the payment taken back.
    event ClaimPaymentReversed(
        bytes32 indexed exactKey,
        uint32 version,
        uint32 payerOrg,
        uint64 reversedAmount,
        bytes32 remittanceHash
    );
    /// @notice The provider voided a claim; its keys are released.
    event ClaimVoided(bytes32 indexed exactKey, uint32 version, uint32 providerOrg);
    /// @notice The provider replaced a claim; the replacement holds its keys now.
    event ClaimReplaced(bytes32 indexed exactKey, uint32 version, bytes32 replacementKey, uint32 replacementVersion);

    // ------------------------------------------------------------------ events: registry

    event OrganisationRegistered(uint32 indexed org, bytes32 orgId, Role role);
    event OrganisationActivationChanged(uint32 indexed org, bool active);
    event AccountAdded(uint32 indexed org, address account);
    event AccountRemoved(uint32 indexed org, address account);
    event FingerprintKeyChanged(uint32 indexed keyId, bool accepted);
    event AuditLogAnchored(uint32 indexed org, bytes32 head, uint64 entries);
}
