"""Requested class shares (run config ``sample.class-shares``, ``fedsynth demo --oversample``): parsing,
validation against the schema, and how the classes left out share the rest."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.config import RunConfig
from server.demo import DemoOptions
from server.sampling import _quotas
from shared.class_shares import ClassShares, resolve_shares
from shared.errors import ConfigError
from shared.schema import Schema, load_schema
from tests.conftest import SMALL_SCHEMA


def test_parse_reads_pairs_and_empty_means_off() -> None:
    shares = ClassShares.parse(" readmitted = 0.5 ")

    assert shares is not None and shares.as_dict() == {"readmitted": 0.5}
    assert ClassShares.parse("healed=0.25,readmitted=0.75").as_dict() == {"healed": 0.25, "readmitted": 0.75}  # type: ignore[union-attr]
    assert ClassShares.parse("") is None and ClassShares.parse("   ") is None
    assert ClassShares.parse(shares.to_text()) == shares


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1", "not CATEGORY=SHARE"),
        ("1=half", "must be a number"),
        ("1=1.5", r"must be in \[0, 1\]"),
        ("1=-0.1", r"must be in \[0, 1\]"),
        ("1=nan", r"must be in \[0, 1\]"),
        ("=0.5", "class name is empty"),
        ("1=0.2,1=0.3", "given twice"),
        ("0=0.7,1=0.6", "more than 1"),
    ],
)
def test_parse_refuses_malformed_text_naming_the_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"--oversample.*{problem}"):
        ClassShares.parse(text, key="--oversample")


def test_parse_refuses_a_number_where_text_is_expected() -> None:
    with pytest.raises(ConfigError, match="sample.class-shares must be text"):
        ClassShares.parse(0.5)


def test_check_needs_classes_of_a_categorical_target() -> None:
    schema = Schema.from_dict(SMALL_SCHEMA)
    ClassShares.parse("readmitted=0.5").check(schema)  # type: ignore[union-attr]

    with pytest.raises(ConfigError, match=r"\['fraud'\] are not classes of the target 'outcome'.*healed"):
        ClassShares.parse("fraud=0.5").check(schema)  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="must add up to 1"):
        ClassShares.parse("healed=0.2,readmitted=0.3").check(schema)  # type: ignore[union-attr]
    no_target = Schema.from_dict({**SMALL_SCHEMA, "target": None})
    with pytest.raises(ConfigError, match="names no target"):
        ClassShares.parse("readmitted=0.5").check(no_target)  # type: ignore[union-attr]
    numeric_target = Schema.from_dict({**SMALL_SCHEMA, "target": "age"})
    with pytest.raises(ConfigError, match="'age' is continuous"):
        ClassShares.parse("readmitted=0.5").check(numeric_target)  # type: ignore[union-attr]


def test_the_run_config_parses_the_key_and_checks_it_against_the_schema(small_schema: Path) -> None:
    config = RunConfig.from_run_config({"schema-path": str(small_schema), "sample.class-shares": "readmitted=0.5"})
    assert config.class_shares is not None and config.class_shares.as_dict() == {"readmitted": 0.5}
    assert RunConfig.from_run_config({"schema-path": str(small_schema)}).class_shares is None

    with pytest.raises(ConfigError, match="sample.class-shares: .*'1'.* are not classes"):
        RunConfig.from_run_config({"schema-path": str(small_schema), "sample.class-shares": "1=0.5"})


def test_the_demo_refuses_an_unknown_class_before_it_runs(tmp_path: Path, small_schema: Path) -> None:
    data = tmp_path / "table.csv"
    data.write_text("patient_id,age,sex,ward,lab,outcome\n")
    shares = ClassShares.parse("fraud=0.5", key="--oversample")

    with pytest.raises(ConfigError, match="--oversample: .*fraud"):
        DemoOptions(out=tmp_path / "out", sites=3, rounds=1, epsilon=3.0, delta=1e-5, split="iid", seed=0, rows=None,
                    data=data, schema=small_schema, split_by=None, local_steps=None, force=False, oversample=shares)


def test_the_bundled_bank_schemas_accept_an_oversampled_fraud_class() -> None:
    root = Path(__file__).resolve().parents[2] / "data"
    for name in ("creditcard_fraud_ulb_subsample", "credit_default_taiwan"):
        ClassShares.parse("1=0.5").check(load_schema(root / name / "schema.json"))  # type: ignore[union-attr]
        assert json.loads((root / name / "schema.json").read_text())["target"]


def test_classes_left_out_share_the_rest_like_the_base() -> None:
    requested = ClassShares.parse("c=0.5")

    assert resolve_shares(["a", "b", "c"], requested, {"a": 3.0, "b": 1.0, "c": 9.0}) == {"a": 0.375, "b": 0.125, "c": 0.5}
    assert resolve_shares(["a", "b", "c"], requested, {}) == {"a": 0.25, "b": 0.25, "c": 0.5}  # no base: evenly
    assert resolve_shares(["a", "b"], None, {"a": 1.0, "b": 3.0}) == {"a": 0.25, "b": 0.75}
    assert resolve_shares(["a", "b"], ClassShares.parse("a=1"), {"a": 0.1, "b": 0.9}) == {"a": 1.0, "b": 0.0}


@given(
    shares=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=4).filter(lambda s: math.fsum(s) <= 1.0),
    extra=st.integers(1, 3),
    base=st.lists(st.floats(0.0, 10.0), min_size=7, max_size=7),
    rows=st.integers(0, 5000),
)
def test_resolved_shares_keep_the_request_add_up_to_one_and_round_to_the_rows(
    shares: list[float], extra: int, base: list[float], rows: int
) -> None:
    names = [f"c{i}" for i in range(len(shares) + extra)]
    requested = ClassShares(tuple(zip(names, shares)))

    resolved = resolve_shares(names, requested, dict(zip(names, base)))
    quotas = _quotas(resolved, rows)

    assert math.isclose(math.fsum(resolved.values()), 1.0, abs_tol=1e-9)
    assert all(resolved[n] == s for n, s in zip(names, shares))
    assert sum(quotas.values()) == rows
    assert all(abs(quotas[n] - resolved[n] * rows) < 1.0 + 1e-6 for n in names)


def test_the_conditional_vae_needs_a_categorical_target(tmp_path: Path, small_schema: Path) -> None:
    numeric_target = tmp_path / "numeric-target.json"
    numeric_target.write_text(json.dumps({**SMALL_SCHEMA, "target": "age"}))

    with pytest.raises(ConfigError, match="train.generator='ctvae' conditions its decoder on the target's class"):
        RunConfig.from_run_config({"schema-path": str(numeric_target), "train.generator": "ctvae"})
    with pytest.raises(ConfigError, match="--generator ctvae conditions on the target's class"):
        DemoOptions(out=tmp_path / "out", sites=3, rounds=1, epsilon=3.0, delta=1e-5, split="iid", seed=0, rows=None,
                    data=small_schema, schema=numeric_target, split_by=None, local_steps=None, force=False,
                    generator="ctvae")
    assert RunConfig.from_run_config({"schema-path": str(small_schema), "train.generator": "ctvae"}).generator == "ctvae"
