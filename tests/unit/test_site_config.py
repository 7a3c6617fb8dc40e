"""A site's node config: where its private side files go."""

from __future__ import annotations

import json
from pathlib import Path

from client.data import load_site_frame
from client.site import SiteConfig
from shared.schema import load_schema
from tests.conftest import CANARY_ID, SMALL_SCHEMA, write_site_table


def test_quarantined_rows_go_where_the_node_config_says_not_beside_a_read_only_table(tmp_path: Path) -> None:
    tables, private = tmp_path / "tables", tmp_path / "state"
    tables.mkdir()
    write_site_table(tables / "table.csv", rows=30, seed=4, canary=True)  # one row fails validation
    (tmp_path / "schema.json").write_text(json.dumps(SMALL_SCHEMA))
    site = SiteConfig.from_context({
        "site": "st-marys", "data-path": str(tables / "table.csv"), "max-epsilon": 5.0,
        "quarantine-path": str(private / "quarantine" / "table.quarantine.csv"),
    }, {})
    assert site.quarantine_path == private / "quarantine" / "table.quarantine.csv"

    clean, quarantined = load_site_frame(site.data_path, load_schema(tmp_path / "schema.json"), site.quarantine_path)

    assert quarantined == 1 and len(clean) == 31
    assert CANARY_ID + "-2" in site.quarantine_path.read_text()
    assert sorted(p.name for p in tables.iterdir()) == ["table.csv"]  # nothing written beside the table


def test_without_a_quarantine_path_the_rows_go_beside_the_table(tmp_path: Path) -> None:
    write_site_table(tmp_path / "table.csv", rows=10, seed=5, canary=True)
    (tmp_path / "schema.json").write_text(json.dumps(SMALL_SCHEMA))
    site = SiteConfig.from_context({"site": "a", "data-path": str(tmp_path / "table.csv"), "max-epsilon": 1.0}, {})
    assert site.quarantine_path is None
    load_site_frame(site.data_path, load_schema(tmp_path / "schema.json"), site.quarantine_path)
    assert (tmp_path / "table.quarantine.csv").is_file()
