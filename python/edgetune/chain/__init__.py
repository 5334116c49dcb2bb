"""chain: compile the contracts, run local chains, connect and send transactions."""
