"""ClaimLedger: a permissioned ledger of US medical claims (claim model, validation, fingerprints, chain)."""
