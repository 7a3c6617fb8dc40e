"""How the console's bytes travel: TLS credentials for both ends, and the loopback rule for plaintext.

The console server and the dashboard both go through this module, so they agree on one rule: TLS by
default (``--tls-cert``/``--tls-key``/``--tls-ca``, made by ``fedsynth certs DIR``), plaintext only when asked
for with ``--insecure`` and only on a loopback address, where no other machine sees the traffic. A ``--tls-ca``
on the server turns on mutual TLS: only clients holding a certificate signed by that CA may connect.

Addresses are ``HOST:PORT`` (``127.0.0.1:50051``, ``[::1]:50051``, ``localhost:50051``), parsed strictly:
a lax parser would let ``0.0.0.0`` or a typo slip past the loopback rule.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from shared.errors import ConfigError

__all__ = [
    "TLSFiles",
    "channel_credentials",
    "check_plaintext",
    "is_loopback",
    "open_channel",
    "server_credentials",
    "split_address",
]

_ADDRESS_FORM = (
    "HOST:PORT, e.g. 127.0.0.1:50051, [::1]:50051, localhost:50051 or console.example.org:50051 "
    "(IPv6 addresses in brackets)"
)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_LOOPBACK_NAMES = ("localhost",)
_MAKE_CERTS = "make them with `fedsynth certs DIR`"


def split_address(address: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` into the host (IPv6 without brackets) and the port; ConfigError if malformed."""
    bracketed = re.fullmatch(r"\[([^\[\]]+)\]:(\d{1,5})", address)
    if bracketed:
        host, port = bracketed.group(1), bracketed.group(2)
        if not _is_ip(host, version=6):
            raise _malformed(address, f"{host!r} in brackets is not an IPv6 address")
    else:
        plain = re.fullmatch(r"([^:\[\]]+):(\d{1,5})", address)
        if plain is None:
            raise _malformed(address, "expected HOST:PORT")
        host, port = plain.group(1), plain.group(2)
        if not (_is_ip(host, version=4) or _is_hostname(host)):
            raise _malformed(address, f"{host!r} is neither an IPv4 address nor a host name")
    if int(port) > 65535:
        raise _malformed(address, f"port {port} is above 65535")
    return host, int(port)


def is_loopback(address: str) -> bool:
    """Whether ``HOST:PORT`` names this machine only: 127.0.0.0/8, ``[::1]`` or ``localhost``.

    Wildcards (``0.0.0.0``, ``[::]``) listen on every interface, and any other name may resolve elsewhere,
    so neither counts.
    """
    host, _ = split_address(address)
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1 (Python < 3.13 says otherwise)
    return ip.is_loopback


def check_plaintext(address: str, insecure: bool, who: str) -> None:
    """Refuse ``--insecure`` (plaintext) for ``who`` unless ``address`` is loopback."""
    if insecure and not is_loopback(address):
        raise ConfigError(
            f"{who}: plaintext is allowed only on loopback (127.0.0.1, ::1, localhost): {address} is not. "
            f"Drop --insecure and use TLS (--tls-cert/--tls-key/--tls-ca; {_MAKE_CERTS}), or use a "
            "loopback address such as 127.0.0.1:PORT"
        )


@dataclass(frozen=True)
class TLSFiles:
    """The PEM files of one end: its certificate and key (together or not at all) and the CA it trusts.

    On a server ``ca`` is the CA client certificates must be signed by (mutual TLS); on a client it is the
    CA the server's certificate must be signed by (None: the system's roots).
    """

    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            given, missing = ("--tls-cert", "--tls-key") if self.key is None else ("--tls-key", "--tls-cert")
            raise ConfigError(
                f"{given} needs {missing}: a certificate and its private key go together; pass both "
                f"({_MAKE_CERTS})"
            )
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-ca", self.ca)):
            if path is not None and not Path(path).is_file():
                what = "is not a file" if Path(path).exists() else "does not exist"
                raise ConfigError(f"{flag} {path} {what}; pass the PEM file's path ({_MAKE_CERTS})")

    @property
    def has_identity(self) -> bool:
        """Whether a certificate and key are given (a server needs one; a client may, for mutual TLS)."""
        return self.cert is not None


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials:
    """TLS credentials for the console server; with ``tls.ca``, clients must show a certificate it signed."""
    if tls.cert is None or tls.key is None:
        raise ConfigError(
            "the console server needs a certificate: pass --tls-cert and --tls-key "
            f"({_MAKE_CERTS}), or --insecure to serve plaintext on a loopback address"
        )
    cert, key = _read_identity(tls.cert, tls.key)
    ca = _read_certificates("--tls-ca", tls.ca) if tls.ca is not None else None
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def channel_credentials(tls: TLSFiles) -> grpc.ChannelCredentials:
    """TLS credentials for a console client: trust ``tls.ca`` (or the system's roots), show ``cert`` if any."""
    ca = _read_certificates("--tls-ca", tls.ca) if tls.ca is not None else None
    if tls.cert is None or tls.key is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert, key = _read_identity(tls.cert, tls.key)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def open_channel(
    address: str, tls: TLSFiles | None, insecure: bool, *, who: str = "console client"
) -> grpc.Channel:
    """A channel to the console at ``address``: TLS unless ``insecure`` (then loopback only)."""
    split_address(address)  # a malformed address fails here, with the form expected, not at the first call
    if insecure:
        if tls is not None and (tls.has_identity or tls.ca is not None):
            raise ConfigError(f"{who}: --insecure and --tls-* contradict each other; drop one")
        check_plaintext(address, insecure, who)
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(tls or TLSFiles()))


def _read_identity(cert_path: Path, key_path: Path) -> tuple[bytes, bytes]:
    """The PEM certificate chain and key, checked to belong together (gRPC's own error would not say)."""
    chain = _read_certificates("--tls-cert", cert_path)
    data = _read("--tls-key", key_path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        # Never echo the parser's detail: it may quote the key material.
        raise ConfigError(
            f"--tls-key {key_path} is not an unencrypted PEM private key; pass the key made with the "
            f"certificate ({_MAKE_CERTS})"
        ) from None
    leaf = x509.load_pem_x509_certificates(chain)[0]
    if leaf.public_key() != key.public_key():
        raise ConfigError(
            f"--tls-key {key_path} does not belong to --tls-cert {cert_path}; pass the key made with that "
            "certificate"
        )
    return chain, data


def _read_certificates(flag: str, path: Path) -> bytes:
    data = _read(flag, path)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(
            f"{flag} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); pass a certificate "
            f"file ({_MAKE_CERTS})"
        ) from None
    return data


def _read(flag: str, path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{flag} {path} cannot be read ({exc.strerror}); check the path and its permissions"
        ) from None


def _is_ip(host: str, *, version: int) -> bool:
    try:
        return ipaddress.ip_address(host).version == version
    except ValueError:
        return False


def _is_hostname(host: str) -> bool:
    labels = host.split(".")
    # An all-numeric last label is a mistyped IPv4 address (127.1, 300.0.0.1), which resolvers read unevenly.
    return len(host) <= 253 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _malformed(address: str, problem: str) -> ConfigError:
    return ConfigError(f"address {address!r} is malformed ({problem}); expected {_ADDRESS_FORM}")
