"""True/false settings, read the same way wherever a person typed one (run config, node config)."""

from __future__ import annotations

from typing import Any

from shared.errors import ConfigError

__all__ = ["parse_flag"]

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no", "")


def parse_flag(value: Any, where: str) -> bool:
    """``value`` as a bool; anything but a recognised spelling is an error naming ``where``, never a silent False."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{where} must be true or false, got {value!r}")
