"""Flower 1.41's fixed waits that sit on a deployed round's critical path, shortened in the processes we start.

Flower's deployment runtime waits in three places regardless of how fast the work is: the SuperNode sleeps 3 s
whenever the SuperLink has no message for it and 0.5 s at a time while it waits for its ClientApp's reply in
its own memory (``flwr.supernode.start_client_internal``), and a process pulling
a message's objects that are not stored yet (the sender is still pushing them) backs off 1 s, then 2 s, 4 s...
(``flwr.supercore.inflatable.inflatable_utils``). On loopback these waits were most of an empty round
(benchmarks: ``round_overhead``). Each function here changes one of those numbers in Flower's own code path,
in this process only, and says so if this Flower no longer has it; nothing of Flower's logic is replaced.
"""

from __future__ import annotations

import logging
import time
import types

logger = logging.getLogger("shared.flower_latency")
POLL_INTERVAL_S = 0.25  # one small authenticated request a site every 0.25 s while it waits for a round
# A wait shorter than this is on the SuperNode's own state (a reply or an object its ClientApp is still
# writing), a longer one is on the SuperLink: only the former is cheap enough to check every LOCAL_WAIT_S.
LOCAL_WAIT_BELOW_S = 1.0
LOCAL_WAIT_S = 0.05  # 20 in-memory checks a second while a ClientApp trains (at 50 a second, ten SuperNodes
# spent a fifth of a core on them: py-spy, 2026-12-05); its reply leaves within 50 ms
PULL_BACKOFF_S = (0.05, 0.25)  # first retry after 50 ms, doubling up to 0.25 s (Flower: 1 s doubling up to 10 s)


class _PromptTime:
    """The ``time`` module as ``start_client_internal`` sees it: a wait for the SuperLink capped at
    ``interval``, a wait on the SuperNode's own memory at ``local``."""

    def __init__(self, interval: float, local: float = LOCAL_WAIT_S) -> None:
        self.interval = interval
        self.local = local

    def sleep(self, seconds: float) -> None:
        time.sleep(min(seconds, self.local if seconds < LOCAL_WAIT_BELOW_S else self.interval))

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def prompt_polling(interval: float = POLL_INTERVAL_S) -> bool:
    """Cap the SuperNode loop's idle sleeps at ``interval``; False (and a warning) if Flower has no such loop."""
    from flwr.supernode import start_client_internal as loop

    if not isinstance(getattr(loop, "time", None), types.ModuleType | _PromptTime):
        logger.warning("this Flower's SuperNode has no polling loop to shorten; it polls at its own pace")
        return False
    loop.time = _PromptTime(interval)  # type: ignore[assignment]
    return True


def prompt_object_pulls(initial: float = PULL_BACKOFF_S[0], cap: float = PULL_BACKOFF_S[1]) -> bool:
    """Retry a not-yet-stored object after ``initial`` s, doubling up to ``cap``, instead of Flower's 1 s up to 10 s."""
    from flwr.supercore.inflatable import inflatable_utils as pulls

    changed = True
    for function in (pulls.pull_objects, pulls.pull_and_inflate_object_from_tree):
        defaults = getattr(function, "__kwdefaults__", None) or {}
        if {"initial_backoff", "backoff_cap"} <= defaults.keys():
            defaults.update(initial_backoff=initial, backoff_cap=cap)
        else:
            changed = False
            logger.warning("this Flower's %s has no pull back-off to shorten", function.__name__)
    return changed
