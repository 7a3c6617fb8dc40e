"""`fedsynth certs`: a consortium's own certificate authority and the TLS certificates it signs.

Keys are ECDSA P-256 and signatures SHA-256: small, fast, and accepted by every TLS stack gRPC uses. The CA
(``ca.crt``/``ca.key``) is made once and reused, so certificates can be added later without reissuing the
others; the server's (``server.crt``/``server.key``) names every host it is reached by, as DNS names and IP
addresses (gRPC checks the address it dials against them); each client's (``client-<name>.crt``/``.key``)
carries its name as CN, for mutual TLS. Private keys are written 0600 and atomically: a key is never
readable by others, not even for a moment, and a crash never leaves half a file.

Each kind of certificate is one small issuing function over :class:`CertificateAuthority`, so new kinds
(a Flower SuperLink certificate, per-site keys) are added beside them.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import logging
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.atomic import atomic_write_bytes
from shared.errors import ConfigError

__all__ = [
    "DEFAULT_HOSTS",
    "CertPaths",
    "CertificateAuthority",
    "CertificateSet",
    "add_certs_arguments",
    "format_summary",
    "issue_client",
    "issue_server",
    "load_or_create_ca",
    "make_consortium_certs",
    "run_certs",
]

logger = logging.getLogger(__name__)

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
MAX_DAYS = 3650
_CLIENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# Tolerate clocks a little behind ours: a certificate valid "from now" would be refused by them for a while.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class CertPaths:
    """Where one certificate and its private key were written."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateSet:
    """What :func:`make_consortium_certs` wrote (``server`` is None when no host was asked for)."""

    out_dir: Path
    ca: CertPaths
    ca_created: bool
    server: CertPaths | None
    clients: Mapping[str, CertPaths]


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA's certificate and key: everything needed to sign more certificates."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        common_name: str,
        *,
        usage: x509.ObjectIdentifier,
        days: int,
        names: Sequence[x509.GeneralName] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A fresh key and a leaf certificate for it, for one extended key usage (server or client auth)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        # A leaf outliving its CA would only fail later, and more obscurely, than it does here.
        expires = min(now + datetime.timedelta(days=days), self.certificate.not_valid_after_utc)
        builder = (
            _builder(_name(common_name), self.certificate.subject, key, now - _BACKDATE, expires)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key


def load_or_create_ca(out_dir: Path, days: int) -> tuple[CertificateAuthority, bool]:
    """The CA in ``out_dir`` (``ca.crt`` + ``ca.key``), made if neither exists; True if it was made."""
    cert_path, key_path = out_dir / "ca.crt", out_dir / "ca.key"
    if cert_path.exists() and key_path.exists():
        return _load_ca(cert_path, key_path), False
    if cert_path.exists() or key_path.exists():
        present, absent = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
        raise ConfigError(
            f"{present} exists but {absent} does not: a CA needs both. Restore {absent.name}, or move "
            f"{present.name} aside to make a new CA (every certificate the old one signed must then be reissued)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = _name("fedsynth consortium CA")
    certificate = (
        _builder(subject, subject, key, now - _BACKDATE, now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca = CertificateAuthority(certificate, key)
    _write_pair(CertPaths(cert_path, key_path), certificate, key)
    return ca, True


def issue_server(
    ca: CertificateAuthority, hosts: Sequence[str], days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serverAuth certificate naming every host (DNS name or IP address) clients may dial."""
    if not hosts:
        raise ConfigError("--hosts needs at least one host name or IP address the server is reached by")
    return ca.issue(hosts[0], usage=ExtendedKeyUsageOID.SERVER_AUTH, days=days, names=_server_names(hosts))


def issue_client(
    ca: CertificateAuthority, name: str, days: int
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A clientAuth certificate with CN ``name``, for mutual TLS."""
    _check_client_name(name)
    return ca.issue(name, usage=ExtendedKeyUsageOID.CLIENT_AUTH, days=days)


def make_consortium_certs(
    out_dir: Path,
    hosts: Sequence[str],
    clients: Sequence[str] = (),
    days: int = 365,
    force: bool = False,
) -> CertificateSet:
    """Write a server certificate for ``hosts`` (none if empty) and one per client, signed by the CA in
    ``out_dir`` (made there first if it has none).

    Existing server or client certificates are kept, and asking for them again is an error, unless
    ``force``; the CA itself is never replaced (move it aside to start over).
    """
    if not 1 <= days <= MAX_DAYS:
        raise ConfigError(f"--days must be between 1 and {MAX_DAYS}, got {days}")
    # Validate every input before writing anything: a refused run leaves the directory as it was.
    _server_names(hosts)
    clients = list(dict.fromkeys(clients))
    for name in clients:
        _check_client_name(name)
    server = CertPaths(out_dir / "server.crt", out_dir / "server.key") if hosts else None
    wanted = {name: CertPaths(out_dir / f"client-{name}.crt", out_dir / f"client-{name}.key") for name in clients}
    if not force:
        for paths in ([server] if server else []) + list(wanted.values()):
            _refuse_overwrite(paths)
    _make_private_dir(out_dir)
    ca, ca_created = load_or_create_ca(out_dir, days)
    if server is not None:
        _write_pair(server, *issue_server(ca, hosts, days))
    for name, paths in wanted.items():
        _write_pair(paths, *issue_client(ca, name, days))
    return CertificateSet(
        out_dir=out_dir, ca=CertPaths(out_dir / "ca.crt", out_dir / "ca.key"), ca_created=ca_created,
        server=server, clients=wanted,
    )


def add_certs_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``fedsynth certs OUTDIR`` to ``parser``."""
    parser.add_argument("out_dir", type=Path, metavar="OUTDIR", help="where the CA and certificates go")
    parser.add_argument(
        "--hosts", nargs="+", default=None, metavar="HOST",
        help="names and IP addresses the console server is reached by (default when OUTDIR has no server.crt "
        f"yet: {' '.join(DEFAULT_HOSTS)}; otherwise the existing server certificate is kept)",
    )
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="also make client-NAME.crt/.key for mutual TLS (repeatable)")
    parser.add_argument("--supernode", action="append", default=[], metavar="NAME",
                        help="also make supernode-NAME.key/.key.pub, a SuperNode's authentication key pair "
                        "(repeatable; in a real consortium each site runs 'fedsynth node-key' itself)")
    parser.add_argument("--days", type=int, default=365, help="validity of new certificates, in days")
    parser.add_argument("--force", action="store_true", help="replace existing server or client certificates")


def run_certs(args: argparse.Namespace) -> int:
    """Run ``fedsynth certs`` from parsed arguments: write the certificates, say what to pass where."""
    out_dir: Path = args.out_dir
    hosts = args.hosts
    if hosts is None:
        hosts = [] if (out_dir / "server.crt").exists() else list(DEFAULT_HOSTS)
    written = make_consortium_certs(out_dir, hosts, args.client, days=args.days, force=args.force)
    print(format_summary(written, hosts))
    if args.supernode:
        from server.node_keys import make_supernode_key

        for name in dict.fromkeys(args.supernode):
            key = make_supernode_key(out_dir, name, force=args.force)
            print(f"SuperNode key pair {name!r}: {key.private} (give it to that site only) and {key.public} "
                  "(register it: flwr supernode register KEY.pub FEDERATION)")
    return 0


def format_summary(written: CertificateSet, hosts: Sequence[str]) -> str:
    """What was written, and the flags that use it on the console server and the dashboard."""
    ca = written.ca
    lines = [f"{'made' if written.ca_created else 'reused'} CA: {ca.cert} (key {ca.key}: keep it secret, "
             "ideally offline; it can sign anything)"]
    if written.server is not None:
        lines.append(f"server certificate for {', '.join(hosts)}: {written.server.cert} (key {written.server.key})")
    else:
        lines.append(f"kept the server certificate in {written.out_dir} (pass --hosts to make a new one)")
    lines += [f"client certificate {name!r}: {paths.cert} (key {paths.key})" for name, paths in written.clients.items()]
    server = CertPaths(written.out_dir / "server.crt", written.out_dir / "server.key")
    client = next(iter(written.clients.values()), CertPaths(
        written.out_dir / "client-NAME.crt", written.out_dir / "client-NAME.key"))
    lines += [
        "",
        "next steps:",
        f"  console server:  --tls-cert {server.cert} --tls-key {server.key}",
        f"                   add --tls-ca {ca.cert} to require client certificates (mutual TLS)",
        f"  dashboard:       --tls-ca {ca.cert}",
        f"                   with mutual TLS also --tls-cert {client.cert} --tls-key {client.key}",
        "  the dashboard must dial one of the names in the server certificate (e.g. localhost:PORT).",
    ]
    return "\n".join(lines)


def _load_ca(cert_path: Path, key_path: Path) -> CertificateAuthority:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        raise ConfigError(f"{cert_path} is not a PEM certificate; restore it or move the CA aside") from None
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError):
        # Never echo the parser's detail: it may quote the key material.
        raise ConfigError(
            f"{key_path} is not an unencrypted PEM private key; restore it or move the CA aside"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != certificate.public_key():
        raise ConfigError(f"{key_path} is not the key of {cert_path}; restore the matching pair")
    if certificate.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc):
        raise ConfigError(f"the CA {cert_path} has expired; move ca.crt and ca.key aside to make a new one "
                          "(and reissue every certificate)")
    mode = stat.S_IMODE(key_path.stat().st_mode)
    if mode & 0o077:
        logger.warning("CA key %s is readable by others (mode %o); chmod 600 it", key_path, mode)
    return CertificateAuthority(certificate, key)


def _builder(
    subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime, not_after: datetime.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _name(common_name: str) -> x509.Name:
    # X.509 caps a CN at 64 characters; the full host names live in the SANs anyway.
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])


def _key_usage(
    *, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def _server_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    return list(dict.fromkeys(_general_name(host) for host in hosts))


def _general_name(host: str) -> x509.GeneralName:
    """An IP address SAN for an IP (``[::1]`` accepted), else a DNS name SAN; wildcards are refused."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        labels = host.split(".")
        if len(host) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in labels) or labels[-1].isdigit():
            raise ConfigError(f"--hosts: {host!r} is neither an IP address nor a host name (letters, digits "
                              "and '-' in dot-separated labels, e.g. console.example.org)") from None
        return x509.DNSName(host.lower())
    if ip.is_unspecified:
        raise ConfigError(f"--hosts: {host} is a wildcard listening address, not one a client dials; give the "
                          "server's host names and IP addresses instead")
    return x509.IPAddress(ip)


def _check_client_name(name: str) -> None:
    if not _CLIENT_NAME.fullmatch(name):
        raise ConfigError(
            f"--client {name!r}: a client name has 1 to 64 letters, digits, '-', '_' and '.', starting with a "
            "letter or digit (it becomes the certificate's CN and the file name client-<name>.crt)"
        )


def _refuse_overwrite(paths: CertPaths) -> None:
    for path in (paths.cert, paths.key):
        if path.exists():
            raise ConfigError(f"{path} already exists; pass --force to replace it (the old certificate stops "
                              "matching its key), or choose another OUTDIR")


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) 0700: it holds private keys. An existing one is left alone."""
    missing = [d for d in (directory, *directory.parents) if not d.exists()]
    for created in reversed(missing):
        created.mkdir(mode=0o700, exist_ok=True)
        os.chmod(created, 0o700)  # mkdir's mode is masked by the umask


def _write_pair(paths: CertPaths, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    atomic_write_bytes(paths.key, pem, mode=0o600)
    atomic_write_bytes(paths.cert, certificate.public_bytes(serialization.Encoding.PEM), mode=0o644)


