"""The console's RPCs (``fedsynth.console.v1.Console``), over a RunMonitor and the run's folder.

State comes from the monitor; the ledger and the synthetic table are read from the files the run wrote
(atomically replaced, so a read never sees half a file). Nothing here touches a site's data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc

from server.console import messages
from server.console.interceptor import current_caller
from server.console.monitor import RunMonitor
from shared.console.v1 import console_pb2 as pb
from shared.console.v1 import console_pb2_grpc as pb_grpc
from shared.ledger import Ledger, LedgerEntry
from shared.manifest import MANIFEST_NAME, SIGNATURE_NAME

__all__ = ["ConsoleService", "SYNTHETIC_NAME"]

logger = logging.getLogger(__name__)
SYNTHETIC_NAME = "synthetic.csv"
LEDGER_NAME = "ledger.json"
_DEFAULT_CHUNK = 64 * 1024
_MAX_CHUNK = 1024 * 1024


class ConsoleService(pb_grpc.ConsoleServicer):
    def __init__(self, monitor: RunMonitor) -> None:
        self.monitor = monitor

    @property
    def run_dir(self) -> Path:
        return self.monitor.run_dir

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.Run:
        return self.monitor.run()

    def WatchRun(self, request: pb.WatchRunRequest, context: grpc.ServicerContext) -> Iterator[pb.RunEvent]:
        yield from self.monitor.log.follow(history_only=request.history_only, active=context.is_active)

    def ListSites(self, request: pb.ListSitesRequest, context: grpc.ServicerContext) -> pb.ListSitesResponse:
        return self.monitor.list_sites()

    def GetLedger(self, request: pb.GetLedgerRequest, context: grpc.ServicerContext) -> pb.Ledger:
        path = self.run_dir / LEDGER_NAME
        try:
            document = path.read_bytes()
        except FileNotFoundError:
            return pb.Ledger()
        ledger = Ledger.from_dict(json.loads(document), path)
        budgets = self.monitor.budgets()
        spent = [pb.EpsilonSpent(site=site, level=level, spent=ledger.spent(site, level), budget=budgets.get(level, 0.0))
                 for site in ledger.sites() for level in ("record", "site") if ledger.entries_for(site, level)]
        return pb.Ledger(entries=[_entry(e) for e in ledger.entries], spent=spent, document=document.decode("utf-8"),
                         sha256=hashlib.sha256(document).hexdigest())

    def StreamSynthetic(
        self, request: pb.StreamSyntheticRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.SyntheticChunk]:
        manifest_path = self.run_dir / MANIFEST_NAME
        if not manifest_path.is_file():
            status = pb.RunStatus.Name(self.monitor.run().status).removeprefix("RUN_STATUS_").lower()
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, messages.NOT_PUBLISHED.format(status=status))
        manifest_text = manifest_path.read_text()
        manifest = json.loads(manifest_text)
        listed = manifest.get("files", {}).get(SYNTHETIC_NAME)
        path = self.run_dir / SYNTHETIC_NAME
        if listed is None or not path.is_file():
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, messages.SYNTHETIC_MISSING.format(name=SYNTHETIC_NAME))
        signature = self.run_dir / SIGNATURE_NAME
        chunk = min(request.chunk_bytes or _DEFAULT_CHUNK, _MAX_CHUNK)
        with path.open("rb") as table:
            header_line = table.readline()
            table.seek(0)
            header = pb.SyntheticHeader(
                file_name=SYNTHETIC_NAME, size_bytes=int(listed["bytes"]), sha256=str(listed["sha256"]),
                columns=header_line.decode("utf-8").rstrip("\r\n").split(","), rows=int(manifest.get("rows", 0)),
                manifest_json=manifest_text,
                manifest_signature=signature.read_text().strip() if signature.is_file() else "",
            )
            offset = 0
            first = True
            while data := table.read(chunk):
                message = pb.SyntheticChunk(offset=offset, data=data)
                if first:
                    message.header.CopyFrom(header)
                    first = False
                yield message
                offset += len(data)

    def StopRun(self, request: pb.StopRunRequest, context: grpc.ServicerContext) -> pb.StopRunResponse:
        caller = current_caller()
        who = caller.name if caller else "?"
        response = self.monitor.request_stop(request.reason[:500], skip_publish=request.skip_publish)
        logger.warning("console: %s asked to stop the run (%s): %s", who,
                       "accepted" if response.accepted else "refused", response.message)
        return response


def _entry(entry: LedgerEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        site=entry.site, round=entry.round, level=entry.level, accountant=entry.accountant,
        noise_multiplier=entry.noise_multiplier, sample_rate=entry.sample_rate, steps=entry.steps, delta=entry.delta,
        epsilon=entry.epsilon, trust=entry.trust or "",
        extra_releases=[pb.LedgerRelease(what=r.what, noise_multiplier=r.noise_multiplier, sample_rate=r.sample_rate,
                                         steps=r.steps) for r in entry.extra_releases],
    )
