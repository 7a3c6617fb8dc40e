"""The site side of fedsynth: the Flower ClientApp. The only package that touches raw rows."""

__all__: list[str] = []
