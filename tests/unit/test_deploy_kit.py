"""The deployment kit (deploy/): static checks that the scripts, units, container and Kubernetes files hang
together, since systemd, Docker and Kubernetes cannot run here. Scripts parse; YAML parses; every script a
unit, compose service or pod starts exists; every variable a script requires is set wherever it runs; every
flag the scripts pass exists in Flower's own --help; every node-config key reaches client/site.py; the image
copies the package and nothing else. A few script checks run the scripts up to their refusal (no server is
started)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
# Where the documented layout puts the checkout (deploy/README.md, the units, the image).
INSTALLED_SRC = "/opt/fedsynth/src/"
SCRIPTS = sorted(DEPLOY.rglob("*.sh"))
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))
UNITS = sorted(DEPLOY.rglob("*.service"))
SUPERLINK = DEPLOY / "superlink" / "run-superlink.sh"
SUPERNODE = DEPLOY / "supernode" / "run-supernode.sh"
REGISTER = DEPLOY / "superlink" / "register-site.sh"
ENV_FILES = {  # env file -> the script that reads it
    DEPLOY / "superlink" / "superlink.env.example": SUPERLINK,
    DEPLOY / "supernode" / "supernode.env.example": SUPERNODE,
    DEPLOY / "container" / "env" / "superlink.env": SUPERLINK,
    **{DEPLOY / "container" / "env" / f"site-{i}.env": SUPERNODE for i in range(3)},
}


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML (a dependency of flwr's stack) is needed to parse the kit")


def _repo_script(command: str) -> Path:
    """The repository file behind an installed path such as /opt/fedsynth/src/deploy/x.sh."""
    assert command.startswith(INSTALLED_SRC), f"{command} is not under {INSTALLED_SRC} (the documented layout)"
    return REPO / command[len(INSTALLED_SRC):]


def _required(script: Path) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+):\?", script.read_text()))


def _optional(script: Path) -> set[str]:
    return set(re.findall(r"\$\{([A-Z_]+):-", script.read_text())) - _required(script)


def _env_keys(path: Path, *, commented: bool = False) -> dict[str, str]:
    pattern = r"^#?([A-Z_]+)=(.*)$" if commented else r"^([A-Z_]+)=(.*)$"
    return dict(re.findall(pattern, path.read_text(), flags=re.M))


def _image_env() -> set[str]:
    """Variables the Dockerfile's ENV instructions set (they hold in every container of the image)."""
    text = (DEPLOY / "container" / "Dockerfile").read_text().replace("\\\n", " ")
    return {key for line in text.splitlines() if line.startswith("ENV ") for key in re.findall(r"([A-Z_]+)=", line)}


# ---- shell scripts ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_script_parses_is_strict_and_executable(script: Path) -> None:
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)

    assert result.returncode == 0, result.stderr
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert os.access(script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_no_quote_inside_a_required_variable_message(script: Path) -> None:
    # Inside "${VAR:?...}" a single quote opens a quoted string; two of them pair up across lines and
    # `bash -n` passes while the message (and the code between) is mangled.
    messages = re.findall(r"\$\{[A-Z_]+:\?([^}]*)\}", script.read_text())

    assert all("'" not in message for message in messages), messages


# ---- env files: every variable a script requires is set wherever the script runs -----------------------------

@pytest.mark.parametrize("env_file", sorted(ENV_FILES), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_env_files_set_every_required_variable_and_only_known_ones(env_file: Path) -> None:
    script = ENV_FILES[env_file]
    keys = _env_keys(env_file)
    known = _required(script) | _optional(script)

    assert _required(script) <= set(keys), f"{env_file.name} lacks {_required(script) - set(keys)}"
    assert set(keys) <= known, f"{env_file.name} sets {set(keys) - known}, which {script.name} never reads"
    assert all(value and not value.startswith(("'", '"')) and " " not in value for value in keys.values()), keys


@pytest.mark.parametrize("example", [p for p in ENV_FILES if p.suffix == ".example"], ids=lambda p: p.name)
def test_env_examples_mention_every_optional_variable(example: Path) -> None:
    mentioned = set(_env_keys(example, commented=True))

    assert _optional(ENV_FILES[example]) <= mentioned, _optional(ENV_FILES[example]) - mentioned


def test_node_config_keys_are_the_ones_the_client_reads() -> None:
    lines = [line for line in SUPERNODE.read_text().splitlines() if re.search(r"node_config\+?=", line)]
    passed = {key for line in lines for key in re.findall(r"([a-z][a-z-]+)=\\?\"?\$", line)}
    site = (REPO / "client" / "site.py").read_text()
    read = set(re.findall(r"node_config(?:\.get\(|\[)\"([a-z-]+)\"", site))

    assert {"site", "data-path", "max-epsilon", "schema-path", "output-dir", "ledger-path",
            "trust-secure-aggregation"} <= passed
    assert passed <= read, f"run-supernode.sh passes {passed - read}, which client/site.py never reads"


# ---- Flower's flags ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flower_help() -> dict[str, set[str]]:
    helps = {}
    for tool, args in (("flower-superlink", ["--help"]), ("fedsynth-supernode", ["--help"]),
                       ("flwr", ["supernode", "register", "--help"])):
        if not (BIN / tool).exists():
            pytest.skip(f"{BIN / tool} is not installed")
        out = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0", "COLUMNS": "200"}).stdout
        helps[tool] = set(re.findall(r"--[a-z][a-z0-9-]*", out))
    return helps


def _flags_passed_to(tool: str, text: str) -> set[str]:
    """Flags on every command line that runs ``tool`` (continuation lines included), and in ``extra+=(...)``."""
    flags: set[str] = set()
    for match in re.finditer(rf"{tool}\"?((?:[^\n]*\\\n)*[^\n]*)", text):
        flags |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", match.group(1)))
    if f"{tool}\"" in text or tool in text:
        flags |= set(re.findall(r"extra\+=\((--[a-z][a-z0-9-]*)", text))
    return flags


@pytest.mark.parametrize("tool,script", [("flower-superlink", SUPERLINK), ("fedsynth-supernode", SUPERNODE),
                                         ("flower-superlink", DEPLOY / "local" / "up.sh"),
                                         ("fedsynth-supernode", DEPLOY / "local" / "up.sh")])
def test_every_flag_passed_to_flower_exists(tool: str, script: Path, flower_help: dict[str, set[str]]) -> None:
    passed = _flags_passed_to(tool, script.read_text())

    assert passed, f"found no {tool} command line in {script}"
    assert passed <= flower_help[tool], f"{script.name} passes {passed - flower_help[tool]} to {tool}"


def test_register_site_passes_flags_that_flwr_supernode_register_has(flower_help: dict[str, set[str]]) -> None:
    passed = set(re.findall(r"args\+=\((--[a-z][a-z0-9-]*)", REGISTER.read_text()))

    assert passed and passed <= flower_help["flwr"], passed - flower_help["flwr"]


# ---- the scripts refuse bad settings before starting anything ----------------------------------------------

def _run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": env.get("HOME", "/nonexistent")}
    return subprocess.run(["bash", str(script), *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=60)


def test_a_missing_variable_is_named() -> None:
    superlink = _run(SUPERLINK, {})
    supernode = _run(SUPERNODE, {"SITE": "a"})

    assert superlink.returncode != 0 and "SUPERLINK_PORT: is not set" in superlink.stderr
    assert supernode.returncode != 0 and "DATA_PATH: is not set" in supernode.stderr


def _supernode_env(tmp_path: Path) -> dict[str, str]:
    for name in ("table.csv", "schema.json", "ca.crt"):
        (tmp_path / name).write_text("x\n")
    (tmp_path / "node.key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    return {"SITE": "st-marys", "DATA_PATH": str(tmp_path / "table.csv"), "SCHEMA_PATH": str(tmp_path / "schema.json"),
            "MAX_EPSILON": "5.0", "OUTPUT_DIR": str(tmp_path / "out"), "SUPERLINK_ADDRESS": "link.example.org:9092",
            "TLS_CA_CERT": str(tmp_path / "ca.crt"), "NODE_KEY": str(tmp_path / "node.key"),
            "STATE_DIR": str(tmp_path / "state"), "FEDSYNTH_BIN": str(tmp_path / "no-bin")}


@pytest.mark.parametrize("change,message", [
    ({"DATA_PATH": "table.csv"}, "DATA_PATH must be an absolute path"),
    ({"MAX_EPSILON": "0"}, "MAX_EPSILON must be a positive number"),
    ({"MAX_EPSILON": "five"}, "MAX_EPSILON must be a positive number"),
    ({"SUPERLINK_ADDRESS": "https://link.example.org:9092"}, "SUPERLINK_ADDRESS must be HOST:PORT"),
    ({"SUPERLINK_ADDRESS": "REPLACE_ME:9092"}, "still holds the template marker REPLACE_ME"),
    ({"TRUST_SECURE_AGGREGATION": "yes"}, "TRUST_SECURE_AGGREGATION must be true or false"),
    ({"SITE": "../evil"}, "SITE='../evil'"),
    ({"NODE_KEY": "{tmp}/ca.crt"}, "is not an OpenSSH private key"),
    ({}, "no-bin/fedsynth-supernode is missing"),  # every check passed: it stops at the missing install
])
def test_run_supernode_refuses_bad_settings(tmp_path: Path, change: dict[str, str], message: str) -> None:
    env = {**_supernode_env(tmp_path), **{k: v.format(tmp=tmp_path) for k, v in change.items()}}

    result = _run(SUPERNODE, env)

    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_run_superlink_refuses_a_certificate_that_does_not_name_its_own_dial_address(tmp_path: Path) -> None:
    from server.certs import make_consortium_certs

    pki = make_consortium_certs(tmp_path / "pki", ["link.example.org"])
    assert pki.server is not None
    env = {"SUPERLINK_PORT": "9092", "TLS_CA_CERT": str(pki.ca.cert), "TLS_CERT": str(pki.server.cert),
           "TLS_KEY": str(pki.server.key), "STATE_DIR": str(tmp_path / "state"), "FEDSYNTH_BIN": str(BIN)}

    result = _run(SUPERLINK, env)

    assert result.returncode == 2, result.stderr
    assert "does not name 127.0.0.1" in result.stderr and "--hosts link.example.org 127.0.0.1" in result.stderr


def test_register_site_refuses_a_private_key(tmp_path: Path) -> None:
    from server.node_keys import make_supernode_key

    key = make_supernode_key(tmp_path, "st-marys")

    refused = _run(REGISTER, {"FEDSYNTH_BIN": str(BIN)}, "st-marys", str(key.private))

    assert refused.returncode == 2 and "is a PRIVATE key" in refused.stderr


# ---- systemd units ---------------------------------------------------------------------------------------

def _unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in path.read_text().splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif line and not line.startswith("#") and current is not None:
            key, _, value = line.partition("=")
            current.setdefault(key, []).append(value)
    return sections


@pytest.mark.parametrize("unit_path", UNITS, ids=lambda p: p.name)
def test_units_run_a_repo_script_as_a_sandboxed_user(unit_path: Path) -> None:
    unit = _unit(unit_path)
    service = unit["Service"]

    assert {"Unit", "Service", "Install"} <= set(unit)
    script = _repo_script(service["ExecStart"][0])
    assert script.is_file() and os.access(script, os.X_OK)
    env_file = Path(service["EnvironmentFile"][0])
    assert env_file.parent == Path("/etc/fedsynth") and (script.parent / f"{env_file.name}.example").is_file()
    assert service["User"][0] not in ("", "root") and service["Restart"] == ["on-failure"]
    assert service["NoNewPrivileges"] == ["yes"] and service["ProtectSystem"] == ["strict"]
    assert "/var/lib/fedsynth" in service["ReadWritePaths"][0].split()
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("unit_path", UNITS, ids=lambda p: p.name)
def test_units_pass_systemd_analyze_verify(unit_path: Path, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # Point ExecStart at this checkout (what /opt/fedsynth/src holds once installed), so verify checks it too.
    local = tmp_path / unit_path.name
    local.write_text(unit_path.read_text().replace(INSTALLED_SRC, f"{REPO}/"))

    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


# ---- YAML, the image, compose ------------------------------------------------------------------------------

@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    documents = [d for d in _yaml().safe_load_all(path.read_text()) if d is not None]

    assert documents and all(isinstance(d, dict) for d in documents)


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path (or one of its parent folders) decides."""
    def regex(pattern: str) -> re.Pattern[str]:
        parts = re.split(r"(\*\*/|\*\*|\*|\?)", pattern.rstrip("/"))
        table = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
        return re.compile("".join(table.get(p, re.escape(p)) for p in parts))
    segments = path.split("/")
    prefixes = ["/".join(segments[:i]) for i in range(1, len(segments) + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.lstrip("!")).fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return excluded


def test_the_image_copies_the_package_and_scripts_but_no_data_tests_or_keys() -> None:
    lines = (DEPLOY / "container" / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True).stdout.split()

    copied = [f for f in files if not _dockerignore_excludes(patterns, f)]

    for needed in ("pyproject.toml", "README.md", "server/app.py", "client/app.py", "shared/schema.py",
                   "deploy/superlink/run-superlink.sh", "deploy/supernode/run-supernode.sh",
                   "deploy/container/trial-init.sh"):
        assert needed in copied or not (REPO / needed).exists(), needed
    assert not [f for f in copied if f.startswith(("data/", "tests/", "benchmarks/", ".venv", "deploy/local/"))]
    assert not [f for f in copied if f.endswith((".csv", ".parquet", ".key", ".pem", ".crt", ".db"))]
    for ignored in ("server/__pycache__/app.cpython-311.pyc", ".venv/bin/python", ".git/config",
                    "fedsynth-demo/synthetic.csv", "deploy/container/compose.yaml"):
        assert _dockerignore_excludes(patterns, ignored), ignored


def test_the_dockerfile_pins_the_cpu_torch_first_and_runs_unprivileged() -> None:
    text = (DEPLOY / "container" / "Dockerfile").read_text()
    torch = text.index("--index-url https://download.pytorch.org/whl/cpu torch==2.13.0")

    assert text.startswith("#") and "\nFROM python:3.11-slim\n" in text
    assert torch < text.index("pip install /opt/fedsynth/src")
    assert re.search(r"^USER fedsynth$", text, flags=re.M)
    assert {"FLWR_TELEMETRY_ENABLED", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "FLWR_DISABLE_UPDATE_CHECK",
            "OPENBLAS_NUM_THREADS"} <= _image_env()


def _defaults(text: str) -> str:
    """Compose's ${VAR:-default}, as compose reads it with VAR unset."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", text)


def _host_path(source: str) -> Path:
    """A compose bind source, relative to the compose file's folder."""
    return (DEPLOY / "container" / _defaults(source)).resolve()


def test_compose_services_start_repo_scripts_with_every_setting_and_mount(tmp_path: Path) -> None:
    compose = _yaml().safe_load((DEPLOY / "container" / "compose.yaml").read_text())
    services, volumes = compose["services"], set(compose["volumes"])
    build = compose["services"]["superlink"]["build"]
    assert (_host_path(build["context"]) / build["dockerfile"]).is_file()

    for name, service in services.items():
        command = service.get("command", [])
        mounts = {}
        for volume in service.get("volumes", []):
            source, target = _defaults(volume).split(":")[:2]
            assert source in volumes or _host_path(source).exists(), f"{name}: {source}"
            mounts[target] = source
        assert set(service.get("depends_on", {})) <= set(services), name
        if not command or not command[0].startswith(INSTALLED_SRC):
            continue
        script = _repo_script(command[0])
        assert script.is_file(), f"{name}: {command[0]}"
        if script in (SUPERLINK, SUPERNODE):
            env = _env_keys(DEPLOY / "container" / service["env_file"])
            assert _required(script) <= set(env) | _image_env(), f"{name} lacks {_required(script) - set(env)}"
            for key in ("TLS_CA_CERT", "TLS_CERT", "TLS_KEY", "DATA_PATH", "SCHEMA_PATH", "NODE_KEY"):
                if key in env:
                    assert any(env[key].startswith(target) for target in mounts), f"{name}: {key} is on no mount"


# ---- Kubernetes --------------------------------------------------------------------------------------------

def _kustomization(folder: Path) -> Iterator[dict[str, Any]]:
    yaml = _yaml()
    spec = yaml.safe_load((folder / "kustomization.yaml").read_text())
    for resource in spec["resources"]:
        yield from (d for d in yaml.safe_load_all((folder / resource).read_text()) if d)


@pytest.mark.parametrize("folder", ["superlink", "site"])
def test_kubernetes_objects_refer_only_to_objects_ports_and_scripts_that_exist(folder: str) -> None:
    docs = list(_kustomization(DEPLOY / "kubernetes" / folder))
    named = {(d["kind"], d["metadata"]["name"]) for d in docs}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    container = pod["spec"]["containers"][0]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}

    assert all(d.get("apiVersion") and d["metadata"].get("name") for d in docs)
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    script = _repo_script(container["args"][0])
    assert script.is_file()
    for volume in volumes.values():
        for kind, ref in (("Secret", volume.get("secret", {}).get("secretName")),
                          ("ConfigMap", volume.get("configMap", {}).get("name")),
                          ("PersistentVolumeClaim", volume.get("persistentVolumeClaim", {}).get("claimName"))):
            assert ref is None or (kind, ref) in named, (kind, ref)
    assert {m["name"] for m in container["volumeMounts"]} <= set(volumes)
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    for probe in (container.get("readinessProbe"), container.get("livenessProbe")):
        port = (probe or {}).get("httpGet", (probe or {}).get("grpc", {})).get("port")
        assert port is None or port in ports or port in ports.values(), port
    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= labels.items()
        assert all(p["targetPort"] in ports for p in service["spec"]["ports"])
    for policy in (d for d in docs if d["kind"] == "NetworkPolicy"):
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()

    env_map = next(d for d in docs if ("ConfigMap", d["metadata"]["name"]) == ("ConfigMap",
                   container["envFrom"][0]["configMapRef"]["name"]))
    env = {k: str(v) for k, v in env_map["data"].items()}
    assert _required(script) <= set(env) | _image_env(), _required(script) - set(env)
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for key in ("TLS_CA_CERT", "TLS_CERT", "TLS_KEY", "NODE_KEY", "SCHEMA_PATH", "DATA_PATH"):
        if key in env:
            _assert_file_is_provided(env[key], mounts, docs)


def _assert_file_is_provided(path: str, mounts: dict[str, dict[str, Any]], docs: list[dict[str, Any]]) -> None:
    """``path`` lies on a mount, and a Secret or ConfigMap mounted there holds that file."""
    folder, name = path.rsplit("/", 1)
    volume = mounts.get(path) or mounts.get(folder)
    assert volume is not None, f"{path} is on no mount"
    source = volume.get("secret", {}).get("secretName") or volume.get("configMap", {}).get("name")
    if source is None:
        return  # a claim: the site fills it
    doc = next(d for d in docs if d["metadata"]["name"] == source and d["kind"] in ("Secret", "ConfigMap"))
    files = doc.get("stringData") or doc.get("data") or {}
    assert name in files or (mounts.get(path) is not None and len(files) == 1), f"{source} has no {name}"


def test_replace_me_marks_only_the_kubernetes_templates() -> None:
    marked = {p.relative_to(DEPLOY).parts[0] for p in DEPLOY.rglob("*") if p.is_file() and "REPLACE_ME" in p.read_text()}

    assert marked <= {"kubernetes", "README.md", "superlink", "supernode"}
    for script in (SUPERLINK, SUPERNODE):  # the only mention there: the refusal to start with a marker
        assert script.read_text().count("REPLACE_ME") == 2


@pytest.mark.parametrize("folder", ["superlink", "site"])
def test_kustomize_renders(folder: str) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")

    result = subprocess.run(["kubectl", "kustomize", str(DEPLOY / "kubernetes" / folder)],
                            capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "namespace: fedsynth" in result.stdout and "image: REPLACE_ME.registry.example/fedsynth:0.1.0" in result.stdout
