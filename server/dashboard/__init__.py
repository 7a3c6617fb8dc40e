"""The live terminal dashboard of `fedsynth console`: a client of the coordinator's console API.

``state`` folds the console's events and snapshots into what is shown (and the ``--once --json`` snapshot);
``render`` draws one frame of it with rich; ``watch`` connects, follows the run and reconnects.
"""

from __future__ import annotations

import os

# gRPC's core logs routine events (a server's GOAWAY when it restarts) straight to file descriptor 2, which
# would tear the live frame. The variable is read when grpc is first imported, so it is set before `watch`
# imports it; a user's own GRPC_VERBOSITY wins, and a process that imported grpc earlier keeps its setting.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from server.dashboard.state import DashboardState  # noqa: E402
from server.dashboard.watch import DashboardOptions, run_dashboard  # noqa: E402

__all__ = ["DashboardOptions", "DashboardState", "run_dashboard"]
