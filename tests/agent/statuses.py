"""A status poll as the chain returns it, for agent tests that drive `step()` without a chain."""

from edgetune.chain.types import Phase, Status, Step

COMMITTING = Status(
    phase=Phase.UPDATE_COMMIT,
    round=1,
    phase_end=100,
    active_edges=3,
    reveals=0,
    score_reveals=0,
    included_mask=0,
    global_hash=bytes(32),
    global_cid="bafkglobal",
    registered=True,
    active=True,
    stake=10**18,
    done=Step(0),
    owed=0,
    tallied_parts=0,
    settled_edges=0,
)
