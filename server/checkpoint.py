"""Per-round checkpoints: everything a restarted server needs to go on, written together atomically.

One file holds the global generator, FedAdam's moments, the consortium ledger, which node is which site and
the paid preprocessing results, so a reader never pairs a generator with a ledger or moments from another
round. ``server.resume`` reads it back.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from flwr.app import ArrayRecord, MetricRecord

from server.consortium import ConsortiumLedger
from shared.atomic import atomic_write_bytes
from shared.errors import ConfigError
from shared.plan import TrainingPlan

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "fedsynth-checkpoint/2"


class OptimizerState(Protocol):
    """What the checkpoint needs from the strategy (server.strategy.LedgeredFedAdam)."""

    m_t: dict[str, np.ndarray] | None
    v_t: dict[str, np.ndarray] | None
    participants: dict[int, str]
    round_offset: int


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint as read back: the state after round ``round`` (rounds lost in a crash included)."""

    run_id: str
    round: int
    generator: dict[str, torch.Tensor]
    m_t: dict[str, np.ndarray] | None
    v_t: dict[str, np.ndarray] | None
    participants: dict[int, str]
    class_frequencies: dict[str, dict[str, float]]


class Checkpointer:
    """Used as the strategy's ``evaluate_fn``: Flower calls it at round 0 and after every round."""

    def __init__(
        self, directory: Path, plan: TrainingPlan, ledger: ConsortiumLedger, *,
        strategy: OptimizerState | None = None, class_frequencies: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:
        self.path = directory / CHECKPOINT_NAME
        self.plan, self.ledger = plan, ledger
        self.frequencies = {k: dict(v) for k, v in (class_frequencies or {}).items()}
        self.strategy = strategy
        self.last_round = 0
        self.last_arrays: ArrayRecord | None = None

    def __call__(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        strategy = self.strategy
        offset = strategy.round_offset if strategy is not None else 0
        server_round += offset  # Flower's own count starts again at 0 in a resumed run
        state: dict[str, Any] = {
            "format": FORMAT,
            "run_id": self.plan.run_id,
            "round": server_round,
            "generator": arrays.to_torch_state_dict(),
            "ledger": self.ledger.ledger.to_dict(),
            "fedadam": {"m_t": _tensors(strategy.m_t if strategy else None),
                        "v_t": _tensors(strategy.v_t if strategy else None)},
            "participants": {str(node): site for node, site in (strategy.participants if strategy else {}).items()},
            "class_frequencies": self.frequencies,
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())
        self.last_round, self.last_arrays = server_round, arrays
        return None


def load_checkpoint(path: Path) -> dict[str, object]:
    """Read a checkpoint (tensors and plain data only; no pickled code is executed)."""
    return dict(torch.load(path, map_location="cpu", weights_only=True))


def read_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint this version can resume from, or a ConfigError that says why not."""
    try:
        state = load_checkpoint(path)
    except Exception as exc:  # a torn or foreign file: say which, not what it held
        raise ConfigError(f"{path}: not a readable checkpoint ({type(exc).__name__}); it cannot be resumed") from None
    if state.get("format") != FORMAT:
        raise ConfigError(
            f"{path}: checkpoint format {state.get('format')!r}, this version resumes {FORMAT!r} only "
            "(an older checkpoint lacks FedAdam's moments); start a new run in a new out-dir"
        )
    fedadam = state["fedadam"]
    assert isinstance(fedadam, dict)
    participants = state["participants"]
    assert isinstance(participants, dict)
    return Checkpoint(
        run_id=str(state["run_id"]), round=int(state["round"]),  # type: ignore[call-overload]
        generator=dict(state["generator"]),  # type: ignore[call-overload]
        m_t=_arrays(fedadam.get("m_t")), v_t=_arrays(fedadam.get("v_t")),
        participants={int(node): str(site) for node, site in participants.items()},
        class_frequencies={k: {c: float(f) for c, f in v.items()}
                           for k, v in dict(state.get("class_frequencies") or {}).items()},  # type: ignore[call-overload]
    )


def _tensors(arrays: dict[str, np.ndarray] | None) -> dict[str, torch.Tensor] | None:
    return None if not arrays else {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def _arrays(tensors: object) -> dict[str, np.ndarray] | None:
    if not tensors:
        return None
    assert isinstance(tensors, dict)
    return {str(k): v.numpy() for k, v in tensors.items()}
