"""Integration tests: the ClaimLedger contract and the chain client against real anvil processes."""
