"""The final step of a run: send every participating site the signed synthetic table."""

from __future__ import annotations

import logging

from flwr.app import ConfigRecord, Message, MessageType, RecordDict
from flwr.serverapp import Grid

from server.publish import Publication
from shared.manifest import DELIVERY_PREFIX, public_key_bytes

logger = logging.getLogger(__name__)


def deliver(grid: Grid, participants: dict[int, str], publication: Publication, key: object) -> dict[str, str]:
    """Send the published files to each site; returns site -> where it stored them (from its receipt)."""
    # The report is not signed (it is rebuilt from signed files, and names the manifest's hash), but every
    # site should see the same one the coordinator reads.
    reports = [name for name in ("report.json", "report.html") if (publication.out_dir / name).is_file()]
    record = ConfigRecord(
        {f"{DELIVERY_PREFIX}{name}": (publication.out_dir / name).read_bytes()
         for name in (*publication.files, "manifest.json", "manifest.json.sig", *reports)}
    )
    record["signer-public-key"] = public_key_bytes(key)  # type: ignore[arg-type]
    messages = [
        Message(content=RecordDict({"delivery": record}), message_type=f"{MessageType.QUERY}.deliver", dst_node_id=node)
        for node in sorted(participants)
    ]
    receipts: dict[str, str] = {}
    for reply in grid.send_and_receive(messages, timeout=600):
        site = participants.get(reply.metadata.src_node_id, str(reply.metadata.src_node_id))
        if reply.has_error():
            logger.warning("delivery to %s failed: %s", site, reply.error.reason)
            continue
        receipts[site] = str(reply.content.config_records["receipt"]["path"])
    return receipts
