"""`fedsynth console` (the live dashboard and its tools) and `fedsynth certs`, wired into server.cli.

    fedsynth console --address HOST:PORT --token T [--tls-ca CA] [--once --json]   # the dashboard
    fedsynth console serve RUN_DIR --address HOST:PORT --tokens FILE --tls-cert C --tls-key K
    fedsynth console token add FILE NAME --role viewer|admin
    fedsynth console stop --address HOST:PORT --token T [--reason R] [--skip-publish]
    fedsynth certs DIR --hosts HOST... [--client NAME]
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from shared.console.auth import ROLES, VIEWER, bearer
from shared.errors import ConfigError

if TYPE_CHECKING:
    from shared.console.transport import TLSFiles

__all__ = ["add_parsers", "run"]

TOKEN_ENV = "FEDSYNTH_CONSOLE_TOKEN"
DEFAULT_ADDRESS = "127.0.0.1:50151"


def add_parsers(sub: Any) -> None:
    from server.certs import add_certs_arguments

    certs = sub.add_parser("certs", help="make a CA, TLS certificates (SuperLink, console) and SuperNode keys")
    add_certs_arguments(certs)
    split = sub.add_parser("split", help="deal a table's rows to site-N.csv tables (demos, local deployments)")
    split.add_argument("data", type=Path)
    split.add_argument("--schema", type=Path, required=True)
    split.add_argument("--sites", type=int, required=True)
    split.add_argument("--out", type=Path, required=True, help="folder for site-0.csv, site-1.csv, ...")
    split.add_argument("--split", choices=("iid", "non-iid"), default="iid")
    split.add_argument("--split-by", default=None, help="column for --split non-iid (default: the schema's)")
    split.add_argument("--seed", type=int, default=0)
    node_key = sub.add_parser("node-key", help="a site: make this SuperNode's authentication key pair")
    node_key.add_argument("out_dir", type=Path, metavar="DIR")
    node_key.add_argument("name", help="the site's name")
    node_key.add_argument("--force", action="store_true", help="replace an existing key pair")

    console = sub.add_parser("console", help="the coordinator's live dashboard, and serving a finished run",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _connection(console)
    console.add_argument("--once", action="store_true", help="print one snapshot and exit")
    console.add_argument("--json", action="store_true", help="with --once: the snapshot as JSON (for scripts)")
    actions = console.add_subparsers(dest="console_command")

    serve = actions.add_parser("serve", help="serve a finished run's folder read-only")
    serve.add_argument("run_dir", type=Path)
    serve.add_argument("--address", default=DEFAULT_ADDRESS, help=f"HOST:PORT to listen on (default {DEFAULT_ADDRESS})")
    serve.add_argument("--tokens", type=Path, required=True, help="the tokens file (fedsynth console token add)")
    serve.add_argument("--tls-cert", type=Path, default=None, help="the server's certificate (fedsynth certs)")
    serve.add_argument("--tls-key", type=Path, default=None, help="its private key")
    serve.add_argument("--tls-ca", type=Path, default=None, help="require client certificates signed by this CA")
    serve.add_argument("--insecure", action="store_true", help="plaintext; only on a loopback address")

    token = actions.add_parser("token", help="manage console tokens")
    token_actions = token.add_subparsers(dest="token_command", required=True)
    add = token_actions.add_parser("add", help="make a token for a caller; it is printed once, the file keeps its hash")
    add.add_argument("file", type=Path)
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default=VIEWER)

    stop = actions.add_parser("stop", help="admin: stop a live run after the round in progress")
    _connection(stop)
    stop.add_argument("--reason", default="", help="why (logged by the server, shown to every watcher)")
    stop.add_argument("--skip-publish", action="store_true", help="end without publishing a synthetic table")


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=DEFAULT_ADDRESS, help=f"the console's HOST:PORT (default {DEFAULT_ADDRESS})")
    parser.add_argument("--token", default=None, help=f"your token (or --token-file, or ${TOKEN_ENV})")
    parser.add_argument("--token-file", type=Path, default=None, help="read the token from this file")
    parser.add_argument("--tls-ca", type=Path, default=None, help="the CA that signed the server's certificate")
    parser.add_argument("--tls-cert", type=Path, default=None, help="a client certificate, if the server requires one")
    parser.add_argument("--tls-key", type=Path, default=None, help="its private key")
    parser.add_argument("--insecure", action="store_true", help="plaintext; only to a loopback address")


def run(args: argparse.Namespace) -> int:
    if args.command == "certs":
        from server.certs import run_certs

        return run_certs(args)
    if args.command == "split":
        from server.split import deal_rows

        counts = deal_rows(args.data, args.schema, args.sites, args.out, split=args.split, seed=args.seed,
                           split_by=args.split_by)
        print(f"{sum(counts)} rows dealt to {args.sites} site tables in {args.out} ({args.split}): {counts}")
        return 0
    if args.command == "node-key":
        from server.node_keys import make_supernode_key

        key = make_supernode_key(args.out_dir, args.name, force=args.force)
        print(f"wrote {key.private} (mode 0600: it stays on this machine) and {key.public}; send only the .pub to "
              "the coordinator, who registers it with: flwr supernode register KEY.pub FEDERATION")
        return 0
    action = args.console_command
    if action is None:
        return _dashboard(args)
    if action == "serve":
        return _serve(args)
    if action == "token":
        from server.console.tokens import add_token

        value = add_token(args.file, args.name, args.role)
        print(f"added {args.role} token {args.name!r} to {args.file} (only its SHA-256 is stored).\n"
              f"This is the only time the token is shown; give it to {args.name} over a private channel:\n{value}")
        return 0
    if action == "stop":
        return _stop(args)
    raise AssertionError(action)


def _dashboard(args: argparse.Namespace) -> int:
    # First, so that it quiets gRPC's core logging (which would tear the live frame) before grpc is imported.
    from server.dashboard import DashboardOptions, run_dashboard

    if args.json and not args.once:
        raise ConfigError("--json goes with --once (the live view is for a terminal)")
    options = DashboardOptions(address=args.address, token=_token(args), tls=_client_tls(args), insecure=args.insecure,
                               once=args.once, json=args.json)
    return run_dashboard(options)


def _serve(args: argparse.Namespace) -> int:
    from server.console.history import monitor_from_run_dir
    from server.console.server import ConsoleServer
    from shared.console.transport import TLSFiles

    monitor = monitor_from_run_dir(args.run_dir.resolve())
    tls = None if args.insecure else TLSFiles(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
    server = ConsoleServer(monitor, address=args.address, tokens=args.tokens, tls=tls, insecure=args.insecure).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print(f"serving run {monitor.run().run_id} from {args.run_dir} read-only on {server.address} "
          f"({'plaintext' if args.insecure else 'TLS'}); Ctrl-C to stop", flush=True)
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    server.stop(grace=1.0)
    return 0


def _stop(args: argparse.Namespace) -> int:
    import grpc

    from shared.console.transport import open_channel
    from shared.console.v1 import console_pb2 as pb
    from shared.console.v1 import console_pb2_grpc as pb_grpc

    with open_channel(args.address, _client_tls(args), args.insecure) as channel:
        stub = pb_grpc.ConsoleStub(channel)
        try:
            reply = stub.StopRun(pb.StopRunRequest(reason=args.reason, skip_publish=args.skip_publish),
                                 metadata=bearer(_token(args)), timeout=10)
        except grpc.RpcError as exc:
            raise ConfigError(f"the console at {args.address} refused StopRun ({exc.code().name}): {exc.details()}") from None
    print(f"{'accepted' if reply.accepted else 'not accepted'}: {reply.message}")
    return 0 if reply.accepted else 1


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return str(args.token)
    if args.token_file is not None:
        try:
            return args.token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--token-file {args.token_file}: {exc.strerror}") from None
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    raise ConfigError(f"no token: pass --token, --token-file or set ${TOKEN_ENV} (tokens come from 'fedsynth console token add')")


def _client_tls(args: argparse.Namespace) -> TLSFiles | None:
    from shared.console.transport import TLSFiles

    if args.insecure:
        return None
    return TLSFiles(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)
