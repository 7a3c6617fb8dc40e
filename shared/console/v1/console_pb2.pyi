import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUN_STATUS_UNSPECIFIED: _ClassVar[RunStatus]
    RUN_STATUS_PLANNING: _ClassVar[RunStatus]
    RUN_STATUS_PREPROCESSING: _ClassVar[RunStatus]
    RUN_STATUS_TRAINING: _ClassVar[RunStatus]
    RUN_STATUS_SAMPLING: _ClassVar[RunStatus]
    RUN_STATUS_EVALUATING: _ClassVar[RunStatus]
    RUN_STATUS_PUBLISHING: _ClassVar[RunStatus]
    RUN_STATUS_FINISHED: _ClassVar[RunStatus]
    RUN_STATUS_STOPPED: _ClassVar[RunStatus]
    RUN_STATUS_FAILED: _ClassVar[RunStatus]

class SiteStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SITE_STATUS_UNSPECIFIED: _ClassVar[SiteStatus]
    SITE_STATUS_IDLE: _ClassVar[SiteStatus]
    SITE_STATUS_TRAINING: _ClassVar[SiteStatus]
    SITE_STATUS_UPDATED: _ClassVar[SiteStatus]
    SITE_STATUS_REFUSED: _ClassVar[SiteStatus]
    SITE_STATUS_FAILED: _ClassVar[SiteStatus]
    SITE_STATUS_DROPPED: _ClassVar[SiteStatus]
RUN_STATUS_UNSPECIFIED: RunStatus
RUN_STATUS_PLANNING: RunStatus
RUN_STATUS_PREPROCESSING: RunStatus
RUN_STATUS_TRAINING: RunStatus
RUN_STATUS_SAMPLING: RunStatus
RUN_STATUS_EVALUATING: RunStatus
RUN_STATUS_PUBLISHING: RunStatus
RUN_STATUS_FINISHED: RunStatus
RUN_STATUS_STOPPED: RunStatus
RUN_STATUS_FAILED: RunStatus
SITE_STATUS_UNSPECIFIED: SiteStatus
SITE_STATUS_IDLE: SiteStatus
SITE_STATUS_TRAINING: SiteStatus
SITE_STATUS_UPDATED: SiteStatus
SITE_STATUS_REFUSED: SiteStatus
SITE_STATUS_FAILED: SiteStatus
SITE_STATUS_DROPPED: SiteStatus

class GetRunRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Budget(_message.Message):
    __slots__ = ("level", "target_epsilon", "delta", "accountant", "noise_multiplier")
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_EPSILON_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    level: str
    target_epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    def __init__(self, level: _Optional[str] = ..., target_epsilon: _Optional[float] = ..., delta: _Optional[float] = ..., accountant: _Optional[str] = ..., noise_multiplier: _Optional[float] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("run_id", "status", "detail", "planned_rounds", "completed_rounds", "current_round", "started_at", "finished_at", "eta_seconds", "budgets", "plan_json", "config", "read_only", "stop_requested", "manifest_sha256")
    class ConfigEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_ROUND_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ETA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    PLAN_JSON_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    STOP_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    status: RunStatus
    detail: str
    planned_rounds: int
    completed_rounds: int
    current_round: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    eta_seconds: float
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    plan_json: str
    config: _containers.ScalarMap[str, str]
    read_only: bool
    stop_requested: bool
    manifest_sha256: str
    def __init__(self, run_id: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ..., detail: _Optional[str] = ..., planned_rounds: _Optional[int] = ..., completed_rounds: _Optional[int] = ..., current_round: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., eta_seconds: _Optional[float] = ..., budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., plan_json: _Optional[str] = ..., config: _Optional[_Mapping[str, str]] = ..., read_only: bool = ..., stop_requested: bool = ..., manifest_sha256: _Optional[str] = ...) -> None: ...

class WatchRunRequest(_message.Message):
    __slots__ = ("history_only",)
    HISTORY_ONLY_FIELD_NUMBER: _ClassVar[int]
    history_only: bool
    def __init__(self, history_only: bool = ...) -> None: ...

class EpsilonSpent(_message.Message):
    __slots__ = ("site", "level", "spent", "budget")
    SITE_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    site: str
    level: str
    spent: float
    budget: float
    def __init__(self, site: _Optional[str] = ..., level: _Optional[str] = ..., spent: _Optional[float] = ..., budget: _Optional[float] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("run_id", "planned_rounds", "budgets", "min_sites")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    MIN_SITES_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    planned_rounds: int
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    min_sites: int
    def __init__(self, run_id: _Optional[str] = ..., planned_rounds: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ..., min_sites: _Optional[int] = ...) -> None: ...

class PhaseChanged(_message.Message):
    __slots__ = ("status", "detail")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    status: RunStatus
    detail: str
    def __init__(self, status: _Optional[_Union[RunStatus, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class RoundStarted(_message.Message):
    __slots__ = ("round", "planned_rounds", "sites")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    round: int
    planned_rounds: int
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, round: _Optional[int] = ..., planned_rounds: _Optional[int] = ..., sites: _Optional[_Iterable[str]] = ...) -> None: ...

class SiteRound(_message.Message):
    __slots__ = ("site", "status", "reply_seconds", "noisy_loss", "reason", "node_id")
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REPLY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOISY_LOSS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    site: str
    status: SiteStatus
    reply_seconds: float
    noisy_loss: float
    reason: str
    node_id: int
    def __init__(self, site: _Optional[str] = ..., status: _Optional[_Union[SiteStatus, str]] = ..., reply_seconds: _Optional[float] = ..., noisy_loss: _Optional[float] = ..., reason: _Optional[str] = ..., node_id: _Optional[int] = ...) -> None: ...

class RoundFinished(_message.Message):
    __slots__ = ("round", "planned_rounds", "duration_seconds", "sites", "epsilon", "mean_noisy_loss")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PLANNED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    MEAN_NOISY_LOSS_FIELD_NUMBER: _ClassVar[int]
    round: int
    planned_rounds: int
    duration_seconds: float
    sites: _containers.RepeatedCompositeFieldContainer[SiteRound]
    epsilon: _containers.RepeatedCompositeFieldContainer[EpsilonSpent]
    mean_noisy_loss: float
    def __init__(self, round: _Optional[int] = ..., planned_rounds: _Optional[int] = ..., duration_seconds: _Optional[float] = ..., sites: _Optional[_Iterable[_Union[SiteRound, _Mapping]]] = ..., epsilon: _Optional[_Iterable[_Union[EpsilonSpent, _Mapping]]] = ..., mean_noisy_loss: _Optional[float] = ...) -> None: ...

class RunEnded(_message.Message):
    __slots__ = ("status", "detail", "completed_rounds", "manifest_sha256", "epsilon")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    status: RunStatus
    detail: str
    completed_rounds: int
    manifest_sha256: str
    epsilon: _containers.RepeatedCompositeFieldContainer[EpsilonSpent]
    def __init__(self, status: _Optional[_Union[RunStatus, str]] = ..., detail: _Optional[str] = ..., completed_rounds: _Optional[int] = ..., manifest_sha256: _Optional[str] = ..., epsilon: _Optional[_Iterable[_Union[EpsilonSpent, _Mapping]]] = ...) -> None: ...

class HistoryEnd(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: int
    def __init__(self, events: _Optional[int] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("sequence", "time", "run_id", "run_started", "phase_changed", "round_started", "round_finished", "run_ended", "history_end")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_STARTED_FIELD_NUMBER: _ClassVar[int]
    PHASE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ROUND_STARTED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FINISHED_FIELD_NUMBER: _ClassVar[int]
    RUN_ENDED_FIELD_NUMBER: _ClassVar[int]
    HISTORY_END_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    time: _timestamp_pb2.Timestamp
    run_id: str
    run_started: RunStarted
    phase_changed: PhaseChanged
    round_started: RoundStarted
    round_finished: RoundFinished
    run_ended: RunEnded
    history_end: HistoryEnd
    def __init__(self, sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., run_id: _Optional[str] = ..., run_started: _Optional[_Union[RunStarted, _Mapping]] = ..., phase_changed: _Optional[_Union[PhaseChanged, _Mapping]] = ..., round_started: _Optional[_Union[RoundStarted, _Mapping]] = ..., round_finished: _Optional[_Union[RoundFinished, _Mapping]] = ..., run_ended: _Optional[_Union[RunEnded, _Mapping]] = ..., history_end: _Optional[_Union[HistoryEnd, _Mapping]] = ...) -> None: ...

class GetLedgerRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LedgerRelease(_message.Message):
    __slots__ = ("what", "noise_multiplier", "sample_rate", "steps")
    WHAT_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    what: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    def __init__(self, what: _Optional[str] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ...) -> None: ...

class LedgerEntry(_message.Message):
    __slots__ = ("site", "round", "level", "accountant", "noise_multiplier", "sample_rate", "steps", "delta", "epsilon", "trust", "extra_releases")
    SITE_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    ACCOUNTANT_FIELD_NUMBER: _ClassVar[int]
    NOISE_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    EXTRA_RELEASES_FIELD_NUMBER: _ClassVar[int]
    site: str
    round: int
    level: str
    accountant: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    delta: float
    epsilon: float
    trust: str
    extra_releases: _containers.RepeatedCompositeFieldContainer[LedgerRelease]
    def __init__(self, site: _Optional[str] = ..., round: _Optional[int] = ..., level: _Optional[str] = ..., accountant: _Optional[str] = ..., noise_multiplier: _Optional[float] = ..., sample_rate: _Optional[float] = ..., steps: _Optional[int] = ..., delta: _Optional[float] = ..., epsilon: _Optional[float] = ..., trust: _Optional[str] = ..., extra_releases: _Optional[_Iterable[_Union[LedgerRelease, _Mapping]]] = ...) -> None: ...

class Ledger(_message.Message):
    __slots__ = ("entries", "spent", "document", "sha256")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LedgerEntry]
    spent: _containers.RepeatedCompositeFieldContainer[EpsilonSpent]
    document: str
    sha256: str
    def __init__(self, entries: _Optional[_Iterable[_Union[LedgerEntry, _Mapping]]] = ..., spent: _Optional[_Iterable[_Union[EpsilonSpent, _Mapping]]] = ..., document: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "node_id", "status", "rounds_participated", "last_round", "last_seen", "last_reply_seconds", "epsilon", "trust", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_PARTICIPATED_FIELD_NUMBER: _ClassVar[int]
    LAST_ROUND_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_REPLY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    TRUST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    node_id: int
    status: SiteStatus
    rounds_participated: int
    last_round: int
    last_seen: _timestamp_pb2.Timestamp
    last_reply_seconds: float
    epsilon: _containers.RepeatedCompositeFieldContainer[EpsilonSpent]
    trust: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., node_id: _Optional[int] = ..., status: _Optional[_Union[SiteStatus, str]] = ..., rounds_participated: _Optional[int] = ..., last_round: _Optional[int] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_reply_seconds: _Optional[float] = ..., epsilon: _Optional[_Iterable[_Union[EpsilonSpent, _Mapping]]] = ..., trust: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ...) -> None: ...

class StreamSyntheticRequest(_message.Message):
    __slots__ = ("chunk_bytes",)
    CHUNK_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunk_bytes: int
    def __init__(self, chunk_bytes: _Optional[int] = ...) -> None: ...

class SyntheticHeader(_message.Message):
    __slots__ = ("file_name", "size_bytes", "sha256", "columns", "rows", "manifest_json", "manifest_signature")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_JSON_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    size_bytes: int
    sha256: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    manifest_json: str
    manifest_signature: str
    def __init__(self, file_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., sha256: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., manifest_json: _Optional[str] = ..., manifest_signature: _Optional[str] = ...) -> None: ...

class SyntheticChunk(_message.Message):
    __slots__ = ("header", "offset", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: SyntheticHeader
    offset: int
    data: bytes
    def __init__(self, header: _Optional[_Union[SyntheticHeader, _Mapping]] = ..., offset: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class StopRunRequest(_message.Message):
    __slots__ = ("reason", "skip_publish")
    REASON_FIELD_NUMBER: _ClassVar[int]
    SKIP_PUBLISH_FIELD_NUMBER: _ClassVar[int]
    reason: str
    skip_publish: bool
    def __init__(self, reason: _Optional[str] = ..., skip_publish: bool = ...) -> None: ...

class StopRunResponse(_message.Message):
    __slots__ = ("accepted", "message", "status")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    status: RunStatus
    def __init__(self, accepted: bool = ..., message: _Optional[str] = ..., status: _Optional[_Union[RunStatus, str]] = ...) -> None: ...
