"""Tests for shared.ledger: format, independent recomputation, write-ahead and crash safety."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from opacus.accountants import RDPAccountant

from shared.errors import LedgerError
from shared.ledger import FORMAT, Ledger, LedgerEntry, Release, record_spend

DELTA = 1e-5


def releases_for(round_: int) -> list[Release]:
    """A deterministic, round-dependent spend: a DP-SGD run and a noisy loss metric."""
    return [
        Release("dp-sgd", 1.0 + 0.1 * (round_ % 3), 0.01, 10 + round_ % 2),
        Release("train-loss", 20.0, 1.0, 1),
    ]


def spend(path: Path, round_: int, *, site: str = "a", level: str = "record") -> LedgerEntry:
    return record_spend(
        path,
        site=site,
        round=round_,
        level=level,
        accountant="rdp",
        delta=DELTA,
        releases=releases_for(round_),
        run_id="run-1",
    )


def opacus_epsilon(history: list[tuple[float, float, int]]) -> float:
    """Epsilon straight from Opacus, bypassing shared.accounting."""
    accountant = RDPAccountant()
    accountant.history = list(history)
    return float(accountant.get_epsilon(delta=DELTA))


def test_missing_file_is_an_empty_ledger(tmp_path: Path) -> None:
    ledger = Ledger.load(tmp_path / "ledger.json")
    assert ledger.entries == ()
    assert ledger.spent("a", "record") == 0.0
    assert ledger.sites() == ()


def test_round_trip(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "ledger.json"
    for r in range(3):
        spend(path, r)
    spend(path, 0, site="b", level="site")
    # Execute
    loaded = Ledger.load(path)
    rebuilt = Ledger.from_dict(loaded.to_dict(), path)
    # Assert
    assert rebuilt == loaded
    assert len(loaded.entries) == 4
    assert loaded.sites() == ("a", "b")
    assert loaded.entries[0].extra_releases == (Release("train-loss", 20.0, 1.0, 1),)
    assert loaded.spent("a", "site") == 0.0
    assert loaded.spent("b", "site") == loaded.entries[-1].epsilon


def test_cumulative_epsilon_matches_opacus_recomputed_from_the_file(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "ledger.json"
    for r in range(4):
        spend(path, r)
    # Execute: read the file with plain json and rebuild the history by hand.
    raw = json.loads(path.read_text())
    history: list[tuple[float, float, int]] = []
    for item in raw["entries"]:
        history.append((item["noise_multiplier"], item["sample_rate"], item["steps"]))
        history += [(x["noise_multiplier"], x["sample_rate"], x["steps"]) for x in item["extra_releases"]]
        # Assert: each recorded epsilon is the cumulative one, not the per-round one.
        assert item["epsilon"] == pytest.approx(opacus_epsilon(history), rel=1e-9)
    assert raw["entries"][-1]["epsilon"] > raw["entries"][0]["epsilon"]


def test_append_writes_before_returning(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "ledger.json"
    first = spend(path, 0)
    ledger = Ledger.load(path)
    entry = replace(first, round=1, epsilon=opacus_epsilon(first.history() * 2))
    # Execute
    updated = ledger.append(entry)
    # Assert
    on_disk = json.loads(path.read_text())
    assert on_disk["format"] == FORMAT
    assert [e["round"] for e in on_disk["entries"]] == [0, 1]
    assert updated.entries[-1] == entry


def test_append_refuses_an_epsilon_that_is_not_recomputable(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = spend(path, 0)
    before = path.read_bytes()
    with pytest.raises(LedgerError, match="recomputed from the cumulative history"):
        Ledger.load(path).append(replace(first, round=1, epsilon=first.epsilon))  # per-round, not cumulative
    assert path.read_bytes() == before


def test_mismatched_delta_or_accountant_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    spend(path, 0)
    before = path.read_bytes()
    for delta, accountant in [(1e-6, "rdp"), (DELTA, "prv")]:
        with pytest.raises(LedgerError, match="must keep one delta and accountant"):
            record_spend(
                path,
                site="a",
                round=1,
                level="record",
                accountant=accountant,
                delta=delta,
                releases=releases_for(1),
                run_id="run-1",
            )
    assert path.read_bytes() == before


def test_stale_value_cannot_overwrite_a_newer_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    first = spend(path, 0)
    stale = Ledger.load(path)
    spend(path, 1)
    entry = replace(first, round=1, epsilon=opacus_epsilon(first.history() * 2))
    with pytest.raises(LedgerError, match="changed on disk"):
        stale.append(entry)
    assert len(Ledger.load(path).entries) == 2


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "something-else/1", "entries": []}', "is not a fedsynth-ledger/1 ledger"),
        ('{"format": "fedsynth-ledger/1"}', "no 'entries' list"),
        ('{"format": "fedsynth-ledger/1", "entries": [{"site": "a"}]}', "bad entry 0"),
    ],
)
def test_corrupt_file_raises_naming_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "site-ledger.json"
    path.write_text(content)
    with pytest.raises(LedgerError, match=fragment) as caught:
        Ledger.load(path)
    assert str(path) in str(caught.value)
    assert "not treated as empty" in str(caught.value)


def test_corrupt_file_is_never_overwritten_by_record_spend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text("{truncated")
    with pytest.raises(LedgerError):
        spend(path, 0)
    assert path.read_text() == "{truncated"


def test_verify_detects_a_tampered_epsilon(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "ledger.json"
    for r in range(3):
        spend(path, r)
    Ledger.load(path).verify()
    raw = json.loads(path.read_text())
    raw["entries"][1]["epsilon"] *= 0.5  # someone shrinks the spent budget
    path.write_text(json.dumps(raw))
    # Execute / Assert
    with pytest.raises(LedgerError, match=r"entry 1 \(site 'a', round 1, record level"):
        Ledger.load(path).verify()


def test_invalid_entry_fields_are_refused() -> None:
    good = dict(
        site="a", round=0, level="record", accountant="rdp", noise_multiplier=1.0,
        sample_rate=0.1, steps=1, delta=DELTA, epsilon=1.0, run_id="r",
    )  # fmt: skip
    LedgerEntry(**good)  # type: ignore[arg-type]
    for key, bad in [("level", "row"), ("accountant", "gdp"), ("sample_rate", 2.0), ("round", -1)]:
        with pytest.raises(LedgerError):
            LedgerEntry(**{**good, key: bad})  # type: ignore[arg-type]


def _append_forever(path: str) -> None:
    """Child process body: keep appending the next round until killed."""
    while True:
        spend(Path(path), len(Ledger.load(path).entries))


def _entry_count(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["entries"])
    except FileNotFoundError:
        return 0


def _temp_files(directory: Path) -> set[str]:
    return {name for name in os.listdir(directory) if name.endswith(".tmp")}


def _wait_for_new_temp_file(directory: Path, stale: set[str], deadline: float) -> bool:
    """Poll until a new writer's temporary file exists, i.e. a write is in progress."""
    while time.monotonic() < deadline:
        if _temp_files(directory) - stale:
            return True
    return False


def test_sigkill_mid_write_leaves_a_prefix_consistent_ledger(tmp_path: Path) -> None:
    # A forked child shares our already imported Opacus, so each kill costs no start-up time.
    path = tmp_path / "ledger.json"
    context = multiprocessing.get_context("fork")
    rng = random.Random(20240601)
    seen, mid_write_kills = 0, 0
    for _ in range(6):
        # Prepare: a writer appending in a loop, allowed to get a few rounds further.
        child = context.Process(target=_append_forever, args=(str(path),), daemon=True)
        child.start()
        assert child.pid is not None
        want = seen + rng.randint(1, 3)
        deadline = time.monotonic() + 20
        while _entry_count(path) < want:
            assert child.is_alive(), f"writer died with exit code {child.exitcode}"
            assert time.monotonic() < deadline, "writer made no progress"
        # Execute: kill it while its next write is in flight (temp file written, not yet renamed).
        stale = _temp_files(tmp_path)  # left behind by earlier kills
        mid_write_kills += _wait_for_new_temp_file(tmp_path, stale, time.monotonic() + 2)
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        # Assert: readable, nothing seen is lost, every entry in order and recomputable.
        ledger = Ledger.load(path)
        assert len(ledger.entries) >= want
        assert [e.round for e in ledger.entries] == list(range(len(ledger.entries)))
        for entry in ledger.entries:
            assert entry.history() == [r.as_history_entry() for r in releases_for(entry.round)]
        ledger.verify()
        seen = len(ledger.entries)
    # The test is only meaningful if some kills landed inside a write.
    assert mid_write_kills >= 1


@pytest.mark.parametrize(("factor", "fails"), [(1.005, False), (0.995, False), (1.02, True), (0.98, True)])
def test_verify_tolerates_numerical_drift_but_not_a_wrong_figure(tmp_path: Path, factor: float, fails: bool) -> None:
    path = tmp_path / "ledger.json"
    for r in range(3):
        spend(path, r)
    raw = json.loads(path.read_text())
    raw["entries"][2]["epsilon"] *= factor
    path.write_text(json.dumps(raw))
    if fails:
        with pytest.raises(LedgerError, match=r"(?s)1 of 3 entries .*entry 2 \(site 'a', round 2"):
            Ledger.load(path).verify()
    else:
        assert Ledger.load(path).verify() == 3


def test_trust_and_fallback_are_recorded_and_give_the_epsilon_if_trust_fails(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    for r in range(1, 4):
        record_spend(
            path, site="a", round=r, level="record", accountant="rdp", delta=DELTA,
            releases=[Release("dp-sgd", 2.0, 0.05, 10)], run_id="run", trust="secure-aggregation",
            fallback_noise_multiplier=1.0,
        )
    ledger = Ledger.load(path)
    assert {e.trust for e in ledger.entries} == {"secure-aggregation"}
    assert ledger.spent("a", "record") == pytest.approx(opacus_epsilon([(2.0, 0.05, 30)]))
    assert ledger.fallback_spent("a", "record") == pytest.approx(opacus_epsilon([(1.0, 0.05, 30)]))
    assert ledger.fallback_spent("a", "record") > ledger.spent("a", "record")
    ledger.verify()


def test_an_old_ledger_without_trust_fields_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    spend(path, 0)
    raw = json.loads(path.read_text())
    for entry in raw["entries"]:
        del entry["trust"], entry["fallback_noise_multiplier"]
    path.write_text(json.dumps(raw))
    assert Ledger.load(path).entries[0].trust == "local"
