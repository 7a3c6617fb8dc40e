"""The privacy ledger: a durable, append-only record of every DP release and its cumulative cost.

A site keeps one as the authority over its own budget; the server keeps a mirror of the consortium's in
the same format. The file is JSON::

    {"format": "fedsynth-ledger/1", "entries": [LedgerEntry, ...]}

Each entry records the parameters of what was released in one round (the DP-SGD run, or the site-level
noise, plus any other release such as a noisy metric) and the epsilon *cumulative* for that site and level
after it. A record-level entry whose run had a privacy unit (``client.units``) says so (``privacy_unit``,
``max_rows_per_unit``): its epsilon is then per unit (a patient), and one budget never mixes units.
Because the parameters are logged, every epsilon can be recomputed from the file alone
(:meth:`Ledger.verify`), and an entry whose epsilon disagrees with its history is refused.

Write-ahead: :meth:`Ledger.append` and :func:`record_spend` return only after the file is durably
replaced (``shared.atomic``: temp file, fsync, rename, directory fsync). Callers record a spend *before*
releasing anything, so a crash can over-count a spend but never forget one. An unreadable ledger is an
error, never an empty ledger: starting from zero would forget spent budget.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from shared import accounting
from shared.accounting import History, HistoryEntry
from shared.atomic import atomic_write_json
from shared.errors import ConfigError, LedgerError

__all__ = ["FORMAT", "LEVELS", "Ledger", "LedgerEntry", "Release", "record_spend"]

logger = logging.getLogger(__name__)

FORMAT = "fedsynth-ledger/1"
LEVELS = ("record", "site")
TRUSTS = ("local", "secure-aggregation", "server")
# Appending recomputes epsilon with the same Opacus code; 1e-6 absorbs float noise across machines only.
_REL_TOL = 1e-6
# `fedsynth ledger verify` is for an independent check, possibly another Opacus version: 1% is the line
# between numerical drift and a wrong figure.
VERIFY_REL_TOL = 0.01


@dataclass(frozen=True)
class Release:
    """One run of identical Poisson-subsampled Gaussian releases (Opacus's history entry, named)."""

    what: str
    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not isinstance(self.what, str) or not self.what:
            raise LedgerError(f"release 'what' must be a non-empty string, got {self.what!r}")
        _check_mechanism((self.noise_multiplier, self.sample_rate, self.steps), f"release {self.what!r}")

    def as_history_entry(self) -> HistoryEntry:
        """This release as an Opacus history entry."""
        return (float(self.noise_multiplier), float(self.sample_rate), self.steps)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Release:
        """Inverse of ``dataclasses.asdict``; raises LedgerError on a missing or unknown key."""
        return cls(**_exact_keys(data, cls, "release"))


@dataclass(frozen=True)
class LedgerEntry:
    """One round's charge to one site at one level, with the cumulative epsilon after it."""

    site: str
    round: int
    level: str
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon: float
    run_id: str
    extra_releases: tuple[Release, ...] = field(default=())
    # What the main release's noise relies on: "local" (the site added it all), "secure-aggregation" (other
    # sites added the rest and the sum hid the shares), "server" (the server added it: central site-level DP).
    trust: str = "local"
    # The noise multiplier of this site's own release seen alone, when it is below ``noise_multiplier``
    # because the rest comes from other sites: what the epsilon falls back to if the trust fails.
    fallback_noise_multiplier: float | None = None
    # Whom the epsilon protects: None = one row (record-level, as every entry before units existed); else the
    # identifier column of the unit (a patient) and how many of a unit's rows the site used at most.
    privacy_unit: str | None = None
    max_rows_per_unit: int | None = None

    def __post_init__(self) -> None:
        where = f"ledger entry (site {self.site!r}, round {self.round!r})"
        _check_identity(self, where)
        _check_unit(self, where)
        if self.trust not in TRUSTS:
            raise LedgerError(f"{where}: trust must be one of {TRUSTS}, got {self.trust!r}")
        if self.fallback_noise_multiplier is not None:
            _check_mechanism((self.fallback_noise_multiplier, self.sample_rate, self.steps), where)
        _check_mechanism((self.noise_multiplier, self.sample_rate, self.steps), where)
        try:
            accounting.check_accountant(self.accountant)
            accounting.check_delta(self.delta)
        except ConfigError as exc:
            raise LedgerError(f"{where}: {exc}") from exc
        if not isinstance(self.epsilon, (int, float)) or not self.epsilon >= 0:
            raise LedgerError(f"{where}: epsilon must be a number >= 0, got {self.epsilon!r}")
        if not all(isinstance(r, Release) for r in self.extra_releases):
            raise LedgerError(f"{where}: extra_releases must hold Release objects")

    def history(self) -> History:
        """Everything this entry charged, as Opacus history: the main release, then the extras."""
        main = (float(self.noise_multiplier), float(self.sample_rate), self.steps)
        return [main, *(r.as_history_entry() for r in self.extra_releases)]

    def fallback_history(self) -> History:
        """``history`` with the main release at the noise the site added itself (trusting no one)."""
        noise = self.noise_multiplier if self.fallback_noise_multiplier is None else self.fallback_noise_multiplier
        return [(float(noise), float(self.sample_rate), self.steps), *self.history()[1:]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (a record-level entry has no unit keys, so its file is as it always was)."""
        data = asdict(self)
        data["extra_releases"] = [asdict(r) for r in self.extra_releases]
        if self.privacy_unit is None:
            del data["privacy_unit"], data["max_rows_per_unit"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerEntry:
        """Inverse of :meth:`to_dict`; raises LedgerError on a missing, unknown or invalid field."""
        values = _exact_keys(
            data, cls, "ledger entry",
            optional=("extra_releases", "trust", "fallback_noise_multiplier", "privacy_unit", "max_rows_per_unit"),
        )
        extras = values.get("extra_releases", [])
        if not isinstance(extras, list) or not all(isinstance(r, Mapping) for r in extras):
            raise LedgerError("ledger entry: extra_releases must be a list of objects")
        values["extra_releases"] = tuple(Release.from_dict(r) for r in extras)
        return cls(**values)


def _check_identity(entry: LedgerEntry, where: str) -> None:
    if not isinstance(entry.site, str) or not entry.site:
        raise LedgerError(f"{where}: site must be a non-empty string")
    if not isinstance(entry.round, int) or isinstance(entry.round, bool) or entry.round < 0:
        raise LedgerError(f"{where}: round must be an integer >= 0")
    if entry.level not in LEVELS:
        raise LedgerError(f"{where}: level must be one of {LEVELS}, got {entry.level!r}")
    if not isinstance(entry.run_id, str) or not entry.run_id:
        raise LedgerError(f"{where}: run_id must be a non-empty string")


def _check_unit(entry: LedgerEntry, where: str) -> None:
    unit, rows = entry.privacy_unit, entry.max_rows_per_unit
    if (unit is None) != (rows is None):
        raise LedgerError(f"{where}: privacy_unit and max_rows_per_unit go together; give both or neither")
    if unit is not None and (not isinstance(unit, str) or not unit):
        raise LedgerError(f"{where}: privacy_unit must be a column name, got {unit!r}")
    if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool) or rows < 1):
        raise LedgerError(f"{where}: max_rows_per_unit must be an integer >= 1, got {rows!r}")
    if unit is not None and entry.level != "record":
        raise LedgerError(f"{where}: a privacy unit applies to the record level (the site's DP-SGD), "
                          f"not {entry.level!r}")


def _check_mechanism(entry: Sequence[float | int], where: str) -> None:
    try:
        accounting.check_history([entry], where)
    except ConfigError as exc:
        raise LedgerError(str(exc)) from exc


def _exact_keys(
    data: Mapping[str, Any], cls: type, what: str, optional: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The fields of ``cls`` from ``data``: a missing or unknown key is an error, not a default."""
    if not isinstance(data, Mapping):
        raise LedgerError(f"{what} must be a JSON object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    missing = sorted(names - set(optional) - set(data))
    unknown = sorted(set(data) - names)
    if missing or unknown:
        raise LedgerError(f"{what}: missing keys {missing}, unknown keys {unknown}")
    return dict(data)


@dataclass(frozen=True)
class Ledger:
    """An immutable ledger value and the file it lives in. ``append`` returns the new value."""

    path: Path
    entries: tuple[LedgerEntry, ...] = ()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ledger:
        """Read the ledger at ``path``; a missing file is an empty ledger, a bad one an error."""
        target = Path(path)
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(target)
        except (OSError, UnicodeDecodeError) as exc:
            raise LedgerError(_unreadable(target, f"cannot be read ({exc})")) from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LedgerError(_unreadable(target, f"is not valid JSON ({exc})")) from exc
        return cls.from_dict(data, target)

    @classmethod
    def from_dict(cls, data: Any, path: str | os.PathLike[str]) -> Ledger:
        """Build a ledger from parsed JSON; errors name ``path`` and the entry index."""
        target = Path(path)
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise LedgerError(_unreadable(target, f"is not a {FORMAT} ledger (format: {found!r})"))
        raw = data.get("entries")
        if not isinstance(raw, list):
            raise LedgerError(_unreadable(target, "has no 'entries' list"))
        entries = []
        for i, item in enumerate(raw):
            try:
                entries.append(LedgerEntry.from_dict(item))
            except (LedgerError, TypeError) as exc:
                raise LedgerError(_unreadable(target, f"has a bad entry {i}: {exc}")) from exc
        return cls(target, tuple(entries))

    def to_dict(self) -> dict[str, Any]:
        """The file's JSON content."""
        return {"format": FORMAT, "entries": [e.to_dict() for e in self.entries]}

    def entries_for(self, site: str, level: str) -> tuple[LedgerEntry, ...]:
        """All entries of ``site`` at ``level``, oldest first."""
        return tuple(e for e in self.entries if e.site == site and e.level == level)

    def history(self, site: str, level: str) -> History:
        """Everything charged to ``site`` at ``level``, flattened into one Opacus history."""
        return [step for e in self.entries_for(site, level) for step in e.history()]

    def fallback_spent(self, site: str, level: str) -> float:
        """Cumulative epsilon of ``site`` at ``level`` if every trust assumption failed (noise it added alone).

        Equal to :meth:`spent` for a site that always added all its noise itself; for site-level DP in
        central mode the server added all the noise, so there is no fallback and this returns infinity.
        """
        mine = self.entries_for(site, level)
        if not mine:
            return 0.0
        if any(e.trust == "server" for e in mine):
            return math.inf
        history = [step for e in mine for step in e.fallback_history()]
        return accounting.epsilon(history, delta=mine[-1].delta, accountant=mine[-1].accountant)

    def spent(self, site: str, level: str) -> float:
        """Cumulative epsilon of ``site`` at ``level`` (0.0 if it never spent)."""
        mine = self.entries_for(site, level)
        return float(mine[-1].epsilon) if mine else 0.0

    def sites(self) -> tuple[str, ...]:
        """The sites that have entries, sorted."""
        return tuple(sorted({e.site for e in self.entries}))

    def append(self, entry: LedgerEntry) -> Ledger:
        """Check ``entry``, durably write the ledger with it, then return the new value.

        Refuses (LedgerError) an entry whose epsilon is not the one recomputed from the cumulative
        history, whose delta or accountant differs from earlier entries of the same site and level, or
        when the file changed on disk since this value was loaded (another writer appended).
        """
        with _locked(self.path):
            on_disk = Ledger.load(self.path)
            if on_disk.entries != self.entries:
                raise LedgerError(
                    f"ledger {self.path} changed on disk since it was loaded (another process "
                    "appended to it); load it again and recompute the entry"
                )
            return self._write_with(entry)

    def _write_with(self, entry: LedgerEntry) -> Ledger:
        """Validate ``entry`` against this ledger and write the result (caller holds the lock)."""
        self._check_consistent(entry)
        expected = self._cumulative_epsilon(entry)
        if not _same_epsilon(entry.epsilon, expected):
            raise LedgerError(
                f"refused ledger entry for site {entry.site!r}, round {entry.round}: epsilon "
                f"{entry.epsilon!r} differs from {expected!r} recomputed from the cumulative history "
                f"with the {entry.accountant} accountant; compute it with shared.ledger.record_spend"
            )
        return self._write(entry)

    def _cumulative_epsilon(self, entry: LedgerEntry) -> float:
        """Epsilon of this ledger's history for the entry's site and level, plus the entry itself."""
        return accounting.epsilon(
            self.history(entry.site, entry.level) + entry.history(),
            delta=entry.delta,
            accountant=entry.accountant,
        )

    def _write(self, entry: LedgerEntry) -> Ledger:
        """Durably write this ledger plus ``entry`` (already checked) and return the new value."""
        updated = replace(self, entries=(*self.entries, entry))
        atomic_write_json(self.path, updated.to_dict())
        logger.debug("ledger %s: site %s round %s recorded", self.path, entry.site, entry.round)
        return updated

    def _check_consistent(self, entry: LedgerEntry) -> None:
        """One budget is one (delta, accountant, unit): mixing them would make the sum meaningless."""
        earlier = self.entries_for(entry.site, entry.level)
        if not earlier:
            return
        first = earlier[0]
        if first.privacy_unit != entry.privacy_unit:
            # A per-row epsilon does not bound what a person with many rows risks, nor the reverse for the sum.
            raise LedgerError(
                f"refused ledger entry for site {entry.site!r}, round {entry.round}: it protects "
                f"{_unit_name(entry.privacy_unit)} but earlier {entry.level}-level entries protect "
                f"{_unit_name(first.privacy_unit)}; one budget has one privacy unit (start a new ledger file)"
            )
        if (first.delta, first.accountant) != (entry.delta, entry.accountant):
            raise LedgerError(
                f"refused ledger entry for site {entry.site!r}, round {entry.round}: its "
                f"(delta={entry.delta}, accountant={entry.accountant}) differs from the "
                f"(delta={first.delta}, accountant={first.accountant}) of earlier {entry.level}-level "
                "entries; a budget must keep one delta and accountant (start a new ledger file)"
            )

    def verify(self, rel_tol: float = VERIFY_REL_TOL) -> int:
        """Recompute every cumulative epsilon from the logged parameters alone.

        Returns the number of entries checked. Raises LedgerError naming every entry whose recorded epsilon
        differs from the recomputed one by more than ``rel_tol`` (relative).
        """
        histories: dict[tuple[str, str], History] = {}
        bad: list[str] = []
        for index, entry in enumerate(self.entries):
            key = (entry.site, entry.level)
            histories[key] = histories.get(key, []) + entry.history()
            expected = accounting.epsilon(histories[key], delta=entry.delta, accountant=entry.accountant)
            if not math.isclose(entry.epsilon, expected, rel_tol=rel_tol, abs_tol=1e-9):
                bad.append(
                    f"entry {index} (site {entry.site!r}, round {entry.round}, {entry.level} level, "
                    f"{entry.accountant}): records epsilon {entry.epsilon:.6g}, its history gives {expected:.6g}"
                )
        if bad:
            raise LedgerError(
                f"ledger {self.path}: {len(bad)} of {len(self.entries)} entries disagree with their parameters "
                f"by more than {rel_tol:.0%}; the file was altered or written by faulty code. Do not trust its "
                "budget.\n  " + "\n  ".join(bad)
            )
        return len(self.entries)


def _unit_name(unit: str | None) -> str:
    return "one row" if unit is None else f"one {unit}"


def _same_epsilon(recorded: float, expected: float) -> bool:
    return math.isclose(recorded, expected, rel_tol=_REL_TOL, abs_tol=1e-12)


def _unreadable(path: Path, problem: str) -> str:
    return (
        f"privacy ledger {path} {problem}. It is not treated as empty, since that would forget "
        "spent budget: restore it from a backup, or move it aside only if no budget was spent."
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of one ledger across processes (a sidecar lock file).

    The kernel drops the lock when the holder dies, so a crashed writer cannot wedge the ledger.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def record_spend(
    path: str | os.PathLike[str],
    *,
    site: str,
    round: int,
    level: str,
    accountant: str,
    delta: float,
    releases: Sequence[Release],
    run_id: str,
    trust: str = "local",
    fallback_noise_multiplier: float | None = None,
    privacy_unit: str | None = None,
    max_rows_per_unit: int | None = None,
) -> LedgerEntry:
    """Load the ledger, charge ``releases`` to ``site`` at ``level``, write it durably, return the entry.

    ``releases[0]`` is the round's main mechanism (the DP-SGD run, or the site-level noise); the rest are
    stored as ``extra_releases``. The cumulative epsilon is computed with ``shared.accounting``.
    """
    if not releases:
        raise LedgerError(f"record_spend for site {site!r}, round {round}: no releases given")
    main, *extras = releases
    target = Path(path)
    with _locked(target):
        ledger = Ledger.load(target)
        draft = LedgerEntry(
            site=site,
            round=round,
            level=level,
            accountant=accountant,
            noise_multiplier=float(main.noise_multiplier),
            sample_rate=float(main.sample_rate),
            steps=main.steps,
            delta=float(delta),
            epsilon=0.0,
            run_id=run_id,
            extra_releases=tuple(extras),
            trust=trust,
            fallback_noise_multiplier=fallback_noise_multiplier,
            privacy_unit=privacy_unit,
            max_rows_per_unit=max_rows_per_unit,
        )
        ledger._check_consistent(draft)
        entry = replace(draft, epsilon=ledger._cumulative_epsilon(draft))
        ledger._write(entry)
    return entry
