"""What an edge agent is configured with, and what it reports per round."""

from dataclasses import dataclass, field

from edgetune.agent.roles import Role
from edgetune.contribution import ShapleyConfig
from edgetune.errors import EdgetuneError


class ChainOutageTooLong(EdgetuneError):
    """No chain answered for longer than `AgentSettings.outage_limit_s`."""


@dataclass
class AgentSettings:
    stake: int
    shapley: ShapleyConfig = field(default_factory=ShapleyConfig)
    role: Role = field(default_factory=Role)
    poll_min_s: float = 0.05
    poll_max_s: float = 2.0
    # How long the chain may be unreachable before the agent gives up: a node restart, a
    # reboot or a network repair all fit in ten minutes. Polled meanwhile at most this often.
    outage_limit_s: float = 600.0
    outage_poll_max_s: float = 5.0
    # An update the store cannot deliver is judged unavailable only once the scoring phase has
    # this few blocks left (time enough to score and commit); until then it may be an outage.
    content_margin_blocks: int = 3
    # Register only once this many edges have: the process runner gives each edge its place in
    # the plan, so the registration index that every table and figure shows is the plan index
    # its log file, data folder and the runner's lines show. 0: register at once.
    register_after: int = 0


@dataclass
class RoundTimings:
    """Seconds spent per round on each kind of work (the figures the federation reports)."""

    training: float = 0.0
    storage: float = 0.0
    chain: float = 0.0
    shapley: float = 0.0
