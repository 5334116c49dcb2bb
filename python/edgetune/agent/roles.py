"""Demonstration and test roles: what a cheating or lazy edge does instead of honest work, so
`make demo` and the fairness tests can show what each earns. The protocol code in `edge.py` is
the same for every role; a role only replaces one of three choices (the update it trains, the
scores it reports, whether it evaluates before attesting)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # torch loads only when a role acts, so the CLI can list roles cheaply
    import torch

# free-rider: resubmits the global adapter (a zero change).
# poisoner: a well-formed but destructive update (large seeded noise).
# lazy: trains honestly but scores every update 0 and approves the aggregate without evaluating.
# copier: a Sybil holding a copy of another edge's data; submits that edge's update, slightly
#   perturbed, and reveals only after it (so it is the later, near-copy one).
Behaviour = Literal["honest", "free-rider", "poisoner", "lazy", "copier"]
BEHAVIOURS: tuple[Behaviour, ...] = ("honest", "free-rider", "poisoner", "lazy", "copier")

_POISON_SCALE = 10.0
_COPY_NOISE = 1e-3  # relative; far inside the near-copy threshold (see docs/contribution.md)

Tensors = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Role:
    behaviour: Behaviour = "honest"
    seed: int = 0  # of the poisoner's and copier's noise
    copy_of: str | None = None  # the copier's source edge address

    @property
    def evaluates(self) -> bool:
        """Whether the edge really scores updates and evaluates the aggregate."""
        return self.behaviour != "lazy"

    def replaces_training(self) -> bool:
        return self.behaviour in ("free-rider", "poisoner")

    def fake_update(self, global_trained: Mapping[str, "torch.Tensor"], round_: int) -> Tensors:
        """The free rider's or poisoner's update, from the global adapter's trained tensors."""
        import torch

        if self.behaviour == "free-rider":
            return {k: v.clone() for k, v in global_trained.items()}
        noise = torch.Generator().manual_seed(self.seed + round_)
        return {
            k: v + _POISON_SCALE * torch.randn(v.shape, generator=noise)
            for k, v in global_trained.items()
        }

    def perturb(self, trained: Mapping[str, "torch.Tensor"], round_: int) -> Tensors:
        """The copier's change to the update it copied (identity for everyone else): byte
        copies are refused by the contract, so a copier submits a near-copy."""
        if self.behaviour != "copier":
            return dict(trained)
        import torch

        noise = torch.Generator().manual_seed(self.seed + round_)
        return {
            k: v + _COPY_NOISE * v.abs().mean() * torch.randn(v.shape, generator=noise)
            for k, v in trained.items()
        }
