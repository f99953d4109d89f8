"""The ClaimLedger HTTP gateway: auth, roles, idempotency, request and response schemas. Thin.

No business rule lives here: every claim decision is ``ledger.service``'s (and the contract's).
"""
