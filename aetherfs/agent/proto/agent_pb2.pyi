from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Progress(_message.Message):
    __slots__ = ("manifest", "bytes_total", "bytes_done", "blocks_total", "blocks_missing", "files_total", "files_linked")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_MISSING_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_LINKED_FIELD_NUMBER: _ClassVar[int]
    manifest: str
    bytes_total: int
    bytes_done: int
    blocks_total: int
    blocks_missing: int
    files_total: int
    files_linked: int
    def __init__(self, manifest: _Optional[str] = ..., bytes_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., blocks_total: _Optional[int] = ..., blocks_missing: _Optional[int] = ..., files_total: _Optional[int] = ..., files_linked: _Optional[int] = ...) -> None: ...

class ChannelStatus(_message.Message):
    __slots__ = ("dataset", "channel", "state", "live_manifest", "live_path", "live_since", "progress", "last_error", "retries")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LIVE_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    LIVE_PATH_FIELD_NUMBER: _ClassVar[int]
    LIVE_SINCE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    RETRIES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    channel: str
    state: str
    live_manifest: str
    live_path: str
    live_since: float
    progress: Progress
    last_error: str
    retries: int
    def __init__(self, dataset: _Optional[str] = ..., channel: _Optional[str] = ..., state: _Optional[str] = ..., live_manifest: _Optional[str] = ..., live_path: _Optional[str] = ..., live_since: _Optional[float] = ..., progress: _Optional[_Union[Progress, _Mapping]] = ..., last_error: _Optional[str] = ..., retries: _Optional[int] = ...) -> None: ...

class CacheStatus(_message.Message):
    __slots__ = ("bytes", "blocks", "limit", "evicted_bytes", "corrupt_dropped")
    BYTES_FIELD_NUMBER: _ClassVar[int]
    BLOCKS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EVICTED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_DROPPED_FIELD_NUMBER: _ClassVar[int]
    bytes: int
    blocks: int
    limit: int
    evicted_bytes: int
    corrupt_dropped: int
    def __init__(self, bytes: _Optional[int] = ..., blocks: _Optional[int] = ..., limit: _Optional[int] = ..., evicted_bytes: _Optional[int] = ..., corrupt_dropped: _Optional[int] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("agent_version", "pid", "data_root", "channels", "bytes_by_source", "cache", "last_error", "json")
    class BytesBySourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DATA_ROOT_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    BYTES_BY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    CACHE_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    agent_version: str
    pid: int
    data_root: str
    channels: _containers.RepeatedCompositeFieldContainer[ChannelStatus]
    bytes_by_source: _containers.ScalarMap[str, int]
    cache: CacheStatus
    last_error: str
    json: str
    def __init__(self, agent_version: _Optional[str] = ..., pid: _Optional[int] = ..., data_root: _Optional[str] = ..., channels: _Optional[_Iterable[_Union[ChannelStatus, _Mapping]]] = ..., bytes_by_source: _Optional[_Mapping[str, int]] = ..., cache: _Optional[_Union[CacheStatus, _Mapping]] = ..., last_error: _Optional[str] = ..., json: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("refs",)
    REFS_FIELD_NUMBER: _ClassVar[int]
    refs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, refs: _Optional[_Iterable[str]] = ...) -> None: ...

class VersionLive(_message.Message):
    __slots__ = ("dataset", "channel", "manifest_id", "path", "time")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    channel: str
    manifest_id: str
    path: str
    time: float
    def __init__(self, dataset: _Optional[str] = ..., channel: _Optional[str] = ..., manifest_id: _Optional[str] = ..., path: _Optional[str] = ..., time: _Optional[float] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("directory", "dataset", "tags", "no_latest")
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    NO_LATEST_FIELD_NUMBER: _ClassVar[int]
    directory: str
    dataset: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    no_latest: bool
    def __init__(self, directory: _Optional[str] = ..., dataset: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., no_latest: _Optional[bool] = ...) -> None: ...

class PublishReply(_message.Message):
    __slots__ = ("manifest_id", "tags", "files", "bytes", "new_bytes")
    MANIFEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    NEW_BYTES_FIELD_NUMBER: _ClassVar[int]
    manifest_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    files: int
    bytes: int
    new_bytes: int
    def __init__(self, manifest_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., files: _Optional[int] = ..., bytes: _Optional[int] = ..., new_bytes: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShutdownReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
