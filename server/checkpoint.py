"""Per-round checkpoints: the global generator and the consortium ledger, written together atomically.

One file holds both, so a reader never pairs a generator with a ledger from another round.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import torch
from flwr.app import ArrayRecord, MetricRecord

from server.consortium import ConsortiumLedger
from shared.atomic import atomic_write_bytes
from shared.plan import TrainingPlan

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


class Checkpointer:
    """Used as the strategy's ``evaluate_fn``: Flower calls it at round 0 and after every round."""

    def __init__(self, directory: Path, plan: TrainingPlan, ledger: ConsortiumLedger) -> None:
        self.path = directory / CHECKPOINT_NAME
        self.plan, self.ledger = plan, ledger
        self.last_round = 0
        self.last_arrays: ArrayRecord | None = None

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        state = {
            "format": "fedsynth-checkpoint/1",
            "run_id": self.plan.run_id,
            "round": server_round,
            "generator": arrays.to_torch_state_dict(),
            "ledger": self.ledger.ledger.to_dict(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
        self.last_round, self.last_arrays = server_round, arrays
        return None


def load_checkpoint(path: Path) -> dict[str, object]:
    """Read a checkpoint (tensors and plain data only; no pickled code is executed)."""
    return dict(torch.load(path, map_location="cpu", weights_only=True))
