"""Receiving the pooled synthetic table at a site: write the signed files, then verify them before use."""

from __future__ import annotations

import json
from pathlib import Path

from flwr.app import ConfigRecord

from shared.atomic import atomic_write_bytes
from shared.errors import VerificationError
from shared.manifest import DELIVERY_PREFIX, verify_output


def receive_delivery(record: ConfigRecord, output_dir: Path) -> Path:
    """Write every delivered file under ``output_dir/<run id>/`` and verify the signed manifest there."""
    files = {
        k[len(DELIVERY_PREFIX) :]: v for k, v in record.items() if k.startswith(DELIVERY_PREFIX) and isinstance(v, bytes)
    }
    if "manifest.json" not in files or "manifest.json.sig" not in files:
        raise VerificationError("the delivery lacks manifest.json or its signature; nothing was written")
    manifest = json.loads(files["manifest.json"])
    run_id = str(manifest.get("run_id", "run"))
    target = output_dir / run_id
    for name in files:
        if Path(name).name != name:
            raise VerificationError(f"the delivery names a file outside its folder ({name!r}); nothing was used")
    for name, data in sorted(files.items()):
        atomic_write_bytes(target / name, data)
    pinned = record.get("signer-public-key")
    verify_output(target, public_key=bytes(pinned) if isinstance(pinned, bytes) else None)
    return target
