"""fedsynth's code used by both sides: schema, encoders, generators, accounting, ledger, signing.

It imports neither ``client`` nor ``server``.
"""

__all__: list[str] = []
