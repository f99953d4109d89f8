// SPDX-License-Identifier: UNLICENSED
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {IClaimLedger} from "./IClaimLedger.sol";

/**
 * @title OrganisationRegistry
 * @notice The consortium's members: organisations with a role, their accounts, and the
 * fingerprint key ids the consortium accepts. Operators manage it; the default admin is
 * handed over in two steps (OpenZeppelin AccessControlDefaultAdminRules).
 * @dev Member roles (PROVIDER_ROLE, PAYER_ROLE, AUDITOR_ROLE) are administered by
 * REGISTRY_ROLE, which nobody holds: they are granted and revoked only with the account's
 * organisation, through {addAccount} and {removeAccount}, so a role never exists without
 * an organisation behind it.
 */
abstract contract OrganisationRegistry is IClaimLedger, AccessControlDefaultAdminRules {
    bytes32 public constant OPERATOR_ROLE = keccak256("OPERATOR_ROLE");
    bytes32 public constant PROVIDER_ROLE = keccak256("PROVIDER_ROLE");
    bytes32 public constant PAYER_ROLE = keccak256("PAYER_ROLE");
    bytes32 public constant AUDITOR_ROLE = keccak256("AUDITOR_ROLE");
    bytes32 public constant REGISTRY_ROLE = keccak256("REGISTRY_ROLE");

    mapping(uint32 org => Organisation) private _organisations;
    mapping(bytes32 orgId => uint32 org) private _orgIndex;
    mapping(address account => uint32 org) private _memberOf;
    mapping(uint32 keyId => bool) private _acceptedKeys;
    uint32 private _organisationCount;

    constructor(uint48 adminDelay, address admin) AccessControlDefaultAdminRules(adminDelay, admin) {
        _grantRole(OPERATOR_ROLE, admin);
        _setRoleAdmin(PROVIDER_ROLE, REGISTRY_ROLE);
        _setRoleAdmin(PAYER_ROLE, REGISTRY_ROLE);
        _setRoleAdmin(AUDITOR_ROLE, REGISTRY_ROLE);
    }

    // ------------------------------------------------------------------ operator functions

    /**
     * @notice Registers an organisation. Requires OPERATOR_ROLE, a non-zero `orgId` not yet
     * registered, and a role of Provider, Payer or Auditor. The organisation starts active.
     * @return org the organisation's index, used in claims and events.
     * Emits {OrganisationRegistered}.
     */
    function registerOrganisation(bytes32 orgId, Role role) external onlyRole(OPERATOR_ROLE) returns (uint32 org) {
        if (orgId == bytes32(0)) revert ClaimLedgerZeroOrganisationId();
        if (role == Role.None) revert ClaimLedgerInvalidRole(role);
        uint32 existing = _orgIndex[orgId];
        if (existing != 0) revert ClaimLedgerOrganisationExists(orgId, existing);
        org = ++_organisationCount;
        _organisations[org] = Organisation({orgId: orgId, role: role, active: true, accounts: 0});
        _orgIndex[orgId] = org;
        emit OrganisationRegistered(org, orgId, role);
    }

    /**
     * @notice Activates or deactivates an organisation. A deactivated organisation can
     * neither submit claims, take payer steps, nor receive claims. Requires OPERATOR_ROLE.
     * Emits {OrganisationActivationChanged}.
     */
    function setOrganisationActive(uint32 org, bool active) external onlyRole(OPERATOR_ROLE) {
        Organisation storage o = _existing(org);
        o.active = active;
        emit OrganisationActivationChanged(org, active);
    }

    /**
     * @notice Adds `account` to organisation `org` and grants it the organisation's role.
     * Requires OPERATOR_ROLE, an existing organisation, a non-zero account that belongs to
     * no organisation yet. Emits {AccountAdded} (and OpenZeppelin's {RoleGranted}).
     */
    function addAccount(uint32 org, address account) external onlyRole(OPERATOR_ROLE) {
        Organisation storage o = _existing(org);
        if (account == address(0)) revert ClaimLedgerZeroAddress();
        uint32 current = _memberOf[account];
        if (current != 0) revert ClaimLedgerAccountAlreadyMember(account, current);
        _memberOf[account] = org;
        o.accounts += 1;
        _grantRole(_roleOf(o.role), account);
        emit AccountAdded(org, account);
    }

    /**
     * @notice Removes `account` from its organisation and revokes its role (key rotation:
     * add the new account first, then remove the old one). Requires OPERATOR_ROLE and a
     * member account. Emits {AccountRemoved} (and OpenZeppelin's {RoleRevoked}).
     */
    function removeAccount(address account) external onlyRole(OPERATOR_ROLE) {
        uint32 org = _memberOf[account];
        if (org == 0) revert ClaimLedgerUnknownAccount(account);
        Organisation storage o = _organisations[org];
        delete _memberOf[account];
        o.accounts -= 1;
        _revokeRole(_roleOf(o.role), account);
        emit AccountRemoved(org, account);
    }

    /**
     * @notice Accepts or retires a fingerprint key id. Claims fingerprinted under a key id
     * that is not accepted are refused. Requires OPERATOR_ROLE and a non-zero key id.
     * Emits {FingerprintKeyChanged}.
     */
    function setFingerprintKey(uint32 keyId, bool accepted) external onlyRole(OPERATOR_ROLE) {
        if (keyId == 0) revert ClaimLedgerZeroKeyId();
        _acceptedKeys[keyId] = accepted;
        emit FingerprintKeyChanged(keyId, accepted);
    }

    // ------------------------------------------------------------------ views

    /// @notice The organisation at index `org` (all zero if none).
    function organisation(uint32 org) external view returns (Organisation memory) {
        return _organisations[org];
    }

    /// @notice The index of the organisation registered as `orgId` (0 if none).
    function organisationIndex(bytes32 orgId) external view returns (uint32) {
        return _orgIndex[orgId];
    }

    /// @notice The organisation `account` belongs to (0 if none).
    function organisationOf(address account) external view returns (uint32) {
        return _memberOf[account];
    }

    /// @notice How many organisations are registered; their indexes run from 1 to this.
    function organisationCount() external view returns (uint32) {
        return _organisationCount;
    }

    /// @notice Whether claims fingerprinted under `keyId` are accepted.
    function isFingerprintKeyAccepted(uint32 keyId) external view returns (bool) {
        return _acceptedKeys[keyId];
    }

    // ------------------------------------------------------------------ internal

    /// @dev The caller's organisation index, after checking it holds `role` and is active.
    function _callerOrg(bytes32 role) internal view returns (uint32 org) {
        _checkRole(role);
        org = _activeMemberOrg(msg.sender);
    }

    /// @dev The organisation of `account`, after checking it is a member of an active one.
    function _activeMemberOrg(address account) internal view returns (uint32 org) {
        org = _memberOf[account];
        if (org == 0) revert ClaimLedgerUnknownAccount(account);
        if (!_organisations[org].active) revert ClaimLedgerOrganisationInactive(org);
    }

    /// @dev Whether `org` is an active payer.
    function _isActivePayer(uint32 org) internal view returns (bool) {
        Organisation storage o = _organisations[org];
        return o.role == Role.Payer && o.active;
    }

    function _isAcceptedKey(uint32 keyId) internal view returns (bool) {
        return _acceptedKeys[keyId];
    }

    function _existing(uint32 org) private view returns (Organisation storage o) {
        o = _organisations[org];
        if (o.role == Role.None) revert ClaimLedgerUnknownOrganisation(org);
    }

    function _roleOf(Role role) private pure returns (bytes32) {
        if (role == Role.Provider) return PROVIDER_ROLE;
        if (role == Role.Payer) return PAYER_ROLE;
        return AUDITOR_ROLE;
    }
}
