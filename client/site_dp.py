"""Distributed site-level DP (DP-FedAvg, McMahan et al., ICLR 2018): clip the update, add this site's share.

Flower's own functions do the clipping and the noise (``flwr.supercore.differential_privacy``, the code
behind its ``fixedclipping_mod`` and DP strategy wrappers). Each site adds N(0, (zS)^2 / t); at least t
sites must survive for secure aggregation to unmask the sum, so the sum carries noise of at least zS.
"""

from __future__ import annotations

import numpy as np
from flwr.supercore.differential_privacy import add_gaussian_noise_inplace, clip_inputs_inplace

from shared.plan import TrainingPlan


def site_update(plan: TrainingPlan, update: list[np.ndarray]) -> list[np.ndarray]:
    """The update a site sends into the secure sum: as trained, or clipped and partly noised."""
    if plan.site_dp != "distributed":
        return update
    if any(np.any(u) for u in update):  # Flower's clip divides by the norm
        clip_inputs_inplace(update, plan.site_clip)
    add_gaussian_noise_inplace(update, plan.site_noise_std())
    return update
