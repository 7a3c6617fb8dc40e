"""The coordinator's console API, shared by the server that serves it and the dashboard that reads it.

``shared.console.v1`` holds the stubs generated from ``protos/shared/console/v1/console.proto`` (never
edited by hand: ``python protos/generate.py``); ``auth`` the token metadata both sides agree on;
``transport`` the TLS credentials and the loopback rule for plaintext.
"""

__all__: list[str] = []
