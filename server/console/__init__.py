"""The coordinator's console, served from the server side (``protos/shared/console/v1/console.proto``).

- ``events``: the run's event log, with its history, that any number of watchers follow;
- ``monitor``: what the run is doing, kept from the ServerApp's own steps and turned into events;
- ``history``: the same state rebuilt from a run folder, to serve a finished run read-only;
- ``tokens`` and ``interceptor``: who may call what (viewer, admin);
- ``service``: the RPCs; ``server``: the gRPC server, TLS by default; ``config``: its run-config keys.
"""

__all__: list[str] = []
