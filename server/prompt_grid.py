"""The run's Grid, asking for replies every fraction of a second instead of every 3 s.

Flower 1.41's deployment Grid (``flwr.superlink.grid.http_grid``) sleeps a fixed 3 s between two pulls of
the replies it waits for, so every message exchange of a round (one for training; four with secure
aggregation) ends up to 3 s after the last site answered. This wrapper keeps Flower's Grid for everything
(pushing, pulling, nodes, messages) and only waits less between two pulls, through the Grid's own public
``push_messages``/``pull_messages``. A pull is one small request to the SuperLink.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from shared.flower_latency import prompt_object_pulls

PULL_INTERVAL = 0.1  # as Flower's own in-memory (simulation) Grid


class PromptGrid(Grid):
    """Delegates to ``grid``; ``send_and_receive`` pulls every ``interval`` seconds."""

    def __init__(self, grid: Grid, interval: float = PULL_INTERVAL) -> None:
        self._grid, self.interval = grid, interval
        prompt_object_pulls()  # a reply's objects are pulled 50 ms after a miss, not 1 s

    def set_run(self, run: Run) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        return self._grid.run

    def create_message(
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self) -> Iterable[NodeInfo]:
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """As Flower's: push, then pull until every reply is in or ``timeout`` seconds have passed."""
        waiting = set(self._grid.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            pulled = list(self._grid.pull_messages(waiting))
            replies += pulled
            waiting -= {msg.metadata.reply_to_message_id for msg in pulled}
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.interval)  # polling the SuperLink: Flower's Grid offers no way to be told
        return replies
