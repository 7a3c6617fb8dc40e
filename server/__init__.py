"""The coordinator side of fedsynth: the Flower ServerApp, run planning, ledger mirror, publication, CLI."""

__all__: list[str] = []
