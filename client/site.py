"""A site's own settings: where its table, ledger and outputs live, and its privacy cap.

Deployment: every key comes from the SuperNode's ``--node-config``. Simulation: Flower only tells a virtual
site its partition id, so the site derives its name and paths from the run's ``sites-dir``, and its cap from
``simulation.site-epsilon-cap``. A deployed site must set its own cap: the server's word is not enough.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
from shared.flags import parse_flag


@dataclass(frozen=True)
class SiteConfig:
    """Where one site keeps its private things, and how much it is willing to spend."""

    site: str
    data_path: Path
    ledger_path: Path
    output_dir: Path
    epsilon_cap: float
    schema_path: Path | None
    device: str
    noise_seed: int | None
    # Whether this site accepts adding only its share of the record-level noise, relying on secure
    # aggregation to hide its update (off unless the site's own policy says so).
    trusts_secure_aggregation: bool = False
    # Whether the site keeps an exact local evaluation report (computed on raw rows, never sent).
    local_evaluation: bool = True
    # Where rows that fail validation are written (site-local; real rows). None: <table stem>.quarantine.csv
    # beside the table, which a read-only mount of the table cannot take.
    quarantine_path: Path | None = None

    def __post_init__(self) -> None:
        if not self.site or any(c in self.site for c in "/\\:"):
            raise ConfigError("node config 'site' must be a non-empty name without '/', '\\' or ':'")
        if not self.epsilon_cap > 0:
            raise ConfigError(f"site {self.site}: max-epsilon must be > 0, got {self.epsilon_cap}")

    @classmethod
    def from_context(cls, node_config: dict[str, Any], run_config: dict[str, Any]) -> SiteConfig:
        if "partition-id" in node_config and "data-path" not in node_config:
            return cls._simulated(node_config, run_config)
        missing = [k for k in ("site", "data-path", "max-epsilon") if k not in node_config]
        if missing:
            raise ConfigError(
                f"this SuperNode lacks node config {missing}; start it with "
                "--node-config 'site=\"NAME\" data-path=\"/path/table.csv\" max-epsilon=5.0'"
            )
        data_path = Path(str(node_config["data-path"])).expanduser()
        home = data_path.parent
        return cls(
            site=str(node_config["site"]),
            data_path=data_path,
            ledger_path=Path(str(node_config.get("ledger-path", home / f"{data_path.stem}.ledger.json"))),
            output_dir=Path(str(node_config.get("output-dir", home / "fedsynth-received"))),
            epsilon_cap=float(node_config["max-epsilon"]),
            schema_path=Path(str(node_config["schema-path"])) if "schema-path" in node_config else None,
            device=str(node_config.get("device", "auto")),
            noise_seed=int(node_config["noise-seed"]) if "noise-seed" in node_config else None,
            trusts_secure_aggregation=parse_flag(
                node_config.get("trust-secure-aggregation", False), "node config 'trust-secure-aggregation'"
            ),
            local_evaluation=parse_flag(
                node_config.get("local-evaluation", True), "node config 'local-evaluation'"
            ),
            quarantine_path=Path(str(node_config["quarantine-path"])) if "quarantine-path" in node_config else None,
        )

    @classmethod
    def _simulated(cls, node_config: dict[str, Any], run_config: dict[str, Any]) -> SiteConfig:
        sites_dir = str(run_config.get("sites-dir", ""))
        if not sites_dir:
            raise ConfigError("simulated sites need run config 'sites-dir' (the folder holding site-N.csv)")
        root = Path(sites_dir)
        name = f"site-{int(node_config['partition-id'])}"
        return cls(
            site=name,
            data_path=root / f"{name}.csv",
            ledger_path=root / f"{name}.ledger.json",
            output_dir=root / f"{name}-received",
            epsilon_cap=float(run_config.get("simulation.site-epsilon-cap", 10.0)),
            schema_path=None,
            device=str(run_config.get("simulation.device", "auto")),
            noise_seed=None,
            trusts_secure_aggregation=parse_flag(
                run_config.get("simulation.trust-secure-aggregation", False),
                "run config 'simulation.trust-secure-aggregation'",
            ),
            local_evaluation=parse_flag(
                run_config.get("simulation.local-evaluation", True), "run config 'simulation.local-evaluation'"
            ),
        )
