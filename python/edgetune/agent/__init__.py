"""The edge agent (a chain-driven state machine), the task owner's publishing, and the
federation runners. This package uses chain/, storage/, learning/ and contribution/; none of them
imports it."""
