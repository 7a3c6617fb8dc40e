"""The one place that chooses where tensors live: CUDA when a site has a GPU, else the CPU."""

from __future__ import annotations

import os

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available; ``cpu``/``cuda`` force a choice (``cuda`` fails loudly without one)."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA device is visible; use 'auto' or 'cpu'")
    if preference == "cpu":
        # Simulated sites share a small machine; one intra-op thread each avoids oversubscription, which cost
        # ~7x in throughput on a 2-core box (DESIGN.md section 8). FEDSYNTH_TORCH_THREADS overrides.
        torch.set_num_threads(int(os.environ.get("FEDSYNTH_TORCH_THREADS", "1")))
    return torch.device(preference)
