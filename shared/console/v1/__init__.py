"""Generated from ``protos/shared/console/v1/console.proto`` by ``protos/generate.py``; do not edit."""

__all__: list[str] = []
