"""PromptGrid: Flower's send-and-receive contract (push, pull until all replies or the timeout), polled faster."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, Metadata, RecordDict
from flwr.app.message.message import make_message
from flwr.proto.node_pb2 import NodeInfo  # pylint: disable=E0611
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from server.prompt_grid import PromptGrid


class SlowSites(Grid):
    """A stand-in for the SuperLink's Grid (a real one needs a SuperLink): each reply shows up after a delay."""

    def __init__(self, delays: dict[str, float]) -> None:
        self.delays, self.pulls, self.pushed_at = delays, 0, 0.0

    def set_run(self, run: Run) -> None: ...

    @property
    def run(self) -> Run:
        raise NotImplementedError

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return [1, 2]

    def get_nodes(self) -> Iterable[NodeInfo]:
        return []

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        self.pushed_at = time.monotonic()
        return [m.metadata.message_id for m in messages]

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        self.pulls += 1
        now = time.monotonic() - self.pushed_at
        return [_message(f"reply-{i}", reply_to=i) for i in message_ids if self.delays[i] <= now]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        raise AssertionError("PromptGrid must not fall back to Flower's 3 s loop")


def _message(message_id: str, reply_to: str = "") -> Message:
    metadata = Metadata(run_id=1, message_id=message_id, src_node_id=0, dst_node_id=1, reply_to_message_id=reply_to,
                        group_id="1", created_at=time.time(), ttl=60.0, message_type="train")
    return make_message(metadata, RecordDict())


def test_every_reply_is_collected_soon_after_the_last_one_arrives() -> None:
    inner = SlowSites({"a": 0.0, "b": 0.5})
    began = time.monotonic()
    replies = list(PromptGrid(inner, interval=0.05).send_and_receive([_message("a"), _message("b")], timeout=10))
    assert sorted(m.metadata.reply_to_message_id for m in replies) == ["a", "b"]
    assert time.monotonic() - began < 1.5  # Flower's own loop would have slept 3 s after the first pull
    assert inner.pulls >= 2


def test_a_site_that_never_answers_is_left_behind_at_the_timeout() -> None:
    inner = SlowSites({"a": 0.0, "b": 1e9})
    began = time.monotonic()
    replies = list(PromptGrid(inner, interval=0.05).send_and_receive([_message("a"), _message("b")], timeout=0.4))
    assert [m.metadata.reply_to_message_id for m in replies] == ["a"]
    assert 0.4 <= time.monotonic() - began < 2.0
