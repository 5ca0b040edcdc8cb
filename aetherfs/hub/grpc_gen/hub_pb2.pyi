from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoReply(_message.Message):
    __slots__ = ("store_id", "signer", "trusted_signers")
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIGNERS_FIELD_NUMBER: _ClassVar[int]
    store_id: str
    signer: bytes
    trusted_signers: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, store_id: _Optional[str] = ..., signer: _Optional[bytes] = ..., trusted_signers: _Optional[_Iterable[bytes]] = ...) -> None: ...

class Principal(_message.Message):
    __slots__ = ("subject", "groups", "admin", "via")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    subject: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    admin: bool
    via: str
    def __init__(self, subject: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., admin: _Optional[bool] = ..., via: _Optional[str] = ...) -> None: ...

class DatasetRef(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    def __init__(self, dataset: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetSummary(_message.Message):
    __slots__ = ("name", "tags")
    class TagsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tags: _containers.ScalarMap[str, str]
    def __init__(self, name: _Optional[str] = ..., tags: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ListDatasetsReply(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetSummary]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetSummary, _Mapping]]] = ...) -> None: ...

class TagRef(_message.Message):
    __slots__ = ("dataset", "tag")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    tag: str
    def __init__(self, dataset: _Optional[str] = ..., tag: _Optional[str] = ...) -> None: ...

class Tag(_message.Message):
    __slots__ = ("dataset", "tag", "manifest", "seq", "time", "signer", "signed")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    SIGNER_FIELD_NUMBER: _ClassVar[int]
    SIGNED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    tag: str
    manifest: bytes
    seq: int
    time: float
    signer: bytes
    signed: bytes
    def __init__(self, dataset: _Optional[str] = ..., tag: _Optional[str] = ..., manifest: _Optional[bytes] = ..., seq: _Optional[int] = ..., time: _Optional[float] = ..., signer: _Optional[bytes] = ..., signed: _Optional[bytes] = ...) -> None: ...

class TagList(_message.Message):
    __slots__ = ("tags", "damaged")
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DAMAGED_FIELD_NUMBER: _ClassVar[int]
    tags: _containers.RepeatedCompositeFieldContainer[Tag]
    damaged: _containers.RepeatedCompositeFieldContainer[DamagedTag]
    def __init__(self, tags: _Optional[_Iterable[_Union[Tag, _Mapping]]] = ..., damaged: _Optional[_Iterable[_Union[DamagedTag, _Mapping]]] = ...) -> None: ...

class DamagedTag(_message.Message):
    __slots__ = ("tag", "reason")
    TAG_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    tag: str
    reason: str
    def __init__(self, tag: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class SetTagRequest(_message.Message):
    __slots__ = ("dataset", "tag", "manifest", "expect_seq")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    EXPECT_SEQ_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    tag: str
    manifest: bytes
    expect_seq: int
    def __init__(self, dataset: _Optional[str] = ..., tag: _Optional[str] = ..., manifest: _Optional[bytes] = ..., expect_seq: _Optional[int] = ...) -> None: ...

class ManifestRef(_message.Message):
    __slots__ = ("dataset", "manifest")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    manifest: bytes
    def __init__(self, dataset: _Optional[str] = ..., manifest: _Optional[bytes] = ...) -> None: ...

class PutManifestRequest(_message.Message):
    __slots__ = ("dataset", "manifest", "stored")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    STORED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    manifest: bytes
    stored: bytes
    def __init__(self, dataset: _Optional[str] = ..., manifest: _Optional[bytes] = ..., stored: _Optional[bytes] = ...) -> None: ...

class PackRef(_message.Message):
    __slots__ = ("dataset", "pack")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PACK_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    pack: bytes
    def __init__(self, dataset: _Optional[str] = ..., pack: _Optional[bytes] = ...) -> None: ...

class PackInfo(_message.Message):
    __slots__ = ("present", "size")
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    present: bool
    size: int
    def __init__(self, present: _Optional[bool] = ..., size: _Optional[int] = ...) -> None: ...

class PackRange(_message.Message):
    __slots__ = ("dataset", "pack", "start", "length")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PACK_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    pack: bytes
    start: int
    length: int
    def __init__(self, dataset: _Optional[str] = ..., pack: _Optional[bytes] = ..., start: _Optional[int] = ..., length: _Optional[int] = ...) -> None: ...

class PutPackRequest(_message.Message):
    __slots__ = ("dataset", "pack", "data")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PACK_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    pack: bytes
    data: bytes
    def __init__(self, dataset: _Optional[str] = ..., pack: _Optional[bytes] = ..., data: _Optional[bytes] = ...) -> None: ...

class Blob(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class PutReply(_message.Message):
    __slots__ = ("created",)
    CREATED_FIELD_NUMBER: _ClassVar[int]
    created: bool
    def __init__(self, created: _Optional[bool] = ...) -> None: ...

class Keys(_message.Message):
    __slots__ = ("dataset", "store_id", "dataset_key", "convergence_secret", "trusted_signers")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    STORE_ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_KEY_FIELD_NUMBER: _ClassVar[int]
    CONVERGENCE_SECRET_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_SIGNERS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    store_id: str
    dataset_key: bytes
    convergence_secret: bytes
    trusted_signers: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, dataset: _Optional[str] = ..., store_id: _Optional[str] = ..., dataset_key: _Optional[bytes] = ..., convergence_secret: _Optional[bytes] = ..., trusted_signers: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AgentRef(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class StatusReport(_message.Message):
    __slots__ = ("agent", "report_json", "received")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    agent: str
    report_json: str
    received: float
    def __init__(self, agent: _Optional[str] = ..., report_json: _Optional[str] = ..., received: _Optional[float] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("dataset", "tags")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class TagEvent(_message.Message):
    __slots__ = ("dataset", "tag", "seq", "manifest")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    tag: str
    seq: int
    manifest: bytes
    def __init__(self, dataset: _Optional[str] = ..., tag: _Optional[str] = ..., seq: _Optional[int] = ..., manifest: _Optional[bytes] = ...) -> None: ...
