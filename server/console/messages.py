"""Every message the console sends back with a refused call, in one place (as Flower keeps its own)."""

from __future__ import annotations

NO_TOKEN = (
    "no token: send the call metadata 'authorization: Bearer <token>' "
    "(fedsynth console --token ...; tokens come from 'fedsynth console token add')"
)
UNKNOWN_TOKEN = "the token is not known to this console (revoked, mistyped, or from another tokens file)"
NEEDS_ADMIN = "{method} needs an admin token; {name} has the role {role}"
NOT_PUBLISHED = "the synthetic table is not published yet (run status: {status}); try again when the run has finished"
SYNTHETIC_MISSING = "the manifest lists {name} but the file is missing from the run folder; re-run 'fedsynth verify'"
NO_LEDGER = "no ledger yet: the run has not charged any release"
