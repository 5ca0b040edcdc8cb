"""The hub's request and response bodies as typed, frozen models (pydantic).

HubService returns these, the REST routes declare them (so the OpenAPI document is generated
from them, `aetherfs/hub/openapi.py`), and gRPC and the web pages read their fields. Requests
refuse unknown fields and wrong types before any handler runs (400 `invalid`).
"""

from __future__ import annotations

import base64
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
)

from aetherfs.core import names
from aetherfs.core.tags import SignedTag
from aetherfs.hub import acl
from aetherfs.hub.acl import ANYONE

HEX64 = r"^[0-9a-f]{64}$"
# What the server checks (`check_dataset_name`, `check_tag`) is the truth; these schemas say
# the same, so that no name the document allows is refused (schemathesis checks it).
_DATASET_SEGMENT = names._SEGMENT.pattern


def _ecma(pattern: str) -> str:
    """A Python pattern of names.py as an ECMA-262 one (JSON Schema): `\\d` is `[0-9]` there."""
    return pattern.replace(r"\d", "[0-9]")


def _calver_days() -> str:
    """MM.DD pairs that `names.is_version_tag` accepts in every year (2001 has no Feb 29)."""
    by_month: dict[str, list[str]] = {}
    for month in range(1, 13):
        for day in range(1, 32):
            if names.is_version_tag(f"2001.{month:02}.{day:02}"):
                by_month.setdefault(f"{month:02}", []).append(f"{day:02}")
    return "(" + "|".join(f"{m}[.]({'|'.join(d)})" for m, d in by_month.items()) + ")"


def dataset_schema() -> dict[str, Any]:
    segment = _ecma(_DATASET_SEGMENT)
    return {
        "type": "string",
        "maxLength": names.MAX_NAME,
        "pattern": f"^{segment}(/{segment})*$",
        "description": "a dataset name; its '/' separators stay as they are (team/geo-db)",
    }


def tag_schema() -> dict[str, Any]:
    """A version tag (SemVer, or CalVer on a real day) or a channel not shaped like one."""
    semver = _ecma(names._SEMVER.pattern)
    channel = _ecma(names._CHANNEL.pattern)
    calver = f"[1-9][0-9]{{3}}[.]{_calver_days()}([.](0|[1-9][0-9]*))?"
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "anyOf": [
            # A SemVer core that reads as a date (2026.11.32) is a bad CalVer tag, not SemVer.
            {"pattern": f"^{semver}$", "not": {"pattern": r"^[0-9]{4}[.][0-9]{2}[.][0-9]{2}"}},
            {"pattern": f"^{calver}$"},
            # Nor a channel shaped like a version (`1.2`, `v1.0.0`): names.py refuses those, or
            # may (a `v` prefix is a version someone mistyped), so the document never offers one.
            {"pattern": f"^{channel}$", "not": {"pattern": "^v?[0-9]+([.][0-9]+)*(-.*)?$"}},
        ],
    }


def subject_schema() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^({ANYONE}|{_ecma(acl._SUBJECT.pattern)})$"}


def agent_schema() -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{_ecma(names._AGENT_ID.pattern)}$"}


DatasetName_ = Annotated[StrictStr, WithJsonSchema(dataset_schema())]
Subject = Annotated[StrictStr, WithJsonSchema(subject_schema())]
AgentId = Annotated[StrictStr, WithJsonSchema(agent_schema())]


MAX_TTL_SECONDS = 30 * 86400  # a join token lives at most 30 days


def _integral(value: object) -> object:
    # JSON has one number type: 3.0 is the integer 3 (and "3" or true are not integers).
    return int(value) if isinstance(value, float) and value.is_integer() else value


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# Responses -------------------------------------------------------------------------------
class Info(Model):
    store_id: str
    signer: str
    trusted_signers: list[str]


class Who(Model):
    subject: str
    kind: str
    name: str
    groups: list[str]
    admin: bool
    via: str


class Tag(Model):
    """A tag record, with the signed bytes so a client (or a peer it relays to) verifies it."""

    dataset: str
    tag: str
    manifest: str
    seq: int
    time: float
    signer: str
    signed: str = Field(description="base64: the Ed25519 signature, then the msgpack record")

    @classmethod
    def of(cls, signed: SignedTag) -> Tag:
        r = signed.record
        return cls(
            dataset=r.dataset,
            tag=r.tag,
            manifest=r.manifest_id.hex(),
            seq=r.seq,
            time=r.time,
            signer=r.signer.hex(),
            signed=base64.b64encode(signed.signed).decode(),
        )


_DAMAGED = (
    "tags whose stored record does not verify, left out of `tags`; a store admin repairs one "
    "with `aetherfs tag --repair NAME:TAG`"
)


class DatasetSummary(Model):
    name: str
    tags: dict[str, str] = Field(description="tag -> manifest id")
    updated: float | None
    damaged: list[str] = Field(default_factory=list, description=_DAMAGED)


class TagListing(Model):
    """A dataset's tags as read: each one that verifies, and why each other one does not."""

    tags: dict[str, Tag]
    damaged: dict[str, str] = Field(default_factory=dict, description="tag -> why: " + _DAMAGED)


class Dataset(Model):
    name: str
    created: float | None
    tags: dict[str, Tag]
    damaged: dict[str, str] = Field(default_factory=dict, description="tag -> why: " + _DAMAGED)


class DatasetName(Model):
    name: str


class Stored(Model):
    """A content-addressed upload: `created` is false when the store held it already."""

    created: bool


class ManifestStored(Stored):
    manifest: str


class PackStored(Stored):
    pack: str


class Keys(Model):
    dataset: str
    store_id: str
    dataset_key: str
    trusted_signers: list[str]
    convergence_secret: str | None = Field(None, description="writers only")


class Grant(Model):
    subject: str
    role: str


class Grants(Model):
    grants: list[Grant]


class FileChange(Model):
    path: str
    change: Literal["added", "removed", "changed"]
    old_size: int
    new_size: int
    new_bytes: int


class TagAt(Model):
    tag: str
    manifest: str


class Diff(Model):
    dataset: str
    changes: list[FileChange]
    blocks_to_fetch: int
    bytes_to_fetch: int
    total_stored_bytes: int
    saving: float
    a: TagAt
    b: TagAt


class AgentStatus(Model):
    model_config = ConfigDict(frozen=True, extra="allow")
    agent: str
    received: float
    report: dict[str, Any]


class RolloutStep(Model):
    time: float = Field(description="when the count changed (the agents' clocks, seconds)")
    hosts: int = Field(description="hosts with the version live from then on")


class VersionRollout(Model):
    manifest: str = Field(pattern=HEX64)
    first_live: float
    hosts_live: int = Field(description="subscribed hosts with this version live now")
    steps: list[RolloutStep]
    bytes_by_source: dict[str, int] = Field(
        description="bytes the hosts took for this version, by source (store, peers, cache, "
        "local, or any other the agents name), summed over the hosts that counted them"
    )
    hosts_counted: int = Field(description="hosts whose reports gave bytes by source")
    stored_size: int | None = Field(description="the version's unique blocks on the store")
    store_ratio: float | None = Field(description="bytes from the store / stored_size")


class ChannelRollout(Model):
    dataset: str
    channel: str
    hosts_total: int = Field(description="agents subscribed to dataset:channel now")
    start: float
    end: float
    versions: list[VersionRollout] = Field(description="the newest versions, newest first")


class AuditEntry(Model):
    model_config = ConfigDict(frozen=True, extra="allow")
    time: float
    subject: str
    via: str
    action: str
    dataset: str | None
    detail: dict[str, Any]


class FleetInfo(Model):
    fleet: str
    fleet_public_key: str


class JoinToken(Model):
    join_token: str
    expires: float


class Enrolled(Model):
    fleet: str
    fleet_public_key: str
    certificate: str = Field(description="base64 of the signed agent certificate")
    serial: str
    expires: float
    token: str = Field(description="the agent's API token")


class Renewed(Model):
    """A renewal's answer: the enrolment's shape, without a new API token (the agent's stays)."""

    fleet: str
    fleet_public_key: str
    certificate: str = Field(description="base64 of the new signed agent certificate")
    serial: str
    expires: float
    previous: str = Field(description="the serial of the certificate renewed")


class Revoked(Model):
    seq: int
    serials: list[str]


class Revocations(Revoked):
    signed: str = Field(description="base64 of the fleet-signed revocation list")


class PeerHint(Model):
    agent: str = Field(description="the hub's id of the agent (its `agent:ID` token)")
    addresses: list[str] = Field(description="IPv4 addresses its peer protocol listens on")
    port: int
    received: float = Field(description="when the hub received the report naming them")


class PeerHints(Model):
    fleet: str | None = Field(
        description="the fleet shown: the caller's, from its last report (null: it has not "
        "reported a `peer`, so none is shown)"
    )
    fresh_seconds: float = Field(description="only agents that reported within this are shown")
    peers: list[PeerHint] = Field(description="other agents of the fleet, at most 64")


# Requests --------------------------------------------------------------------------------
class CreateDataset(Model):
    name: DatasetName_


class SetTag(Model):
    manifest: Annotated[StrictStr, Field(pattern=HEX64)]
    expect_seq: Annotated[StrictInt, Field(ge=0), BeforeValidator(_integral)] | None = Field(
        None, description="the seq last seen (0: the tag must not exist yet)"
    )


class SetGrant(Model):
    subject: Subject
    role: Literal["read", "write", "admin"] | None = Field(None, description="null: revoke")


class CreateJoinToken(Model):
    ttl_seconds: (
        Annotated[StrictInt, Field(ge=1, le=MAX_TTL_SECONDS), BeforeValidator(_integral)] | None
    ) = Field(None, description="default 3600; 0 is refused (it used to mean the default)")


class Enrol(Model):
    join_token: StrictStr
    agent: AgentId
    public_key: Annotated[StrictStr, Field(pattern=HEX64)]


class Renew(Model):
    certificate: StrictStr = Field(max_length=4096, description="base64 of the certificate held")
    signature: StrictStr = Field(
        pattern="^[0-9a-f]{128}$",
        description="hex Ed25519 signature by the certified key over "
        "b'aetherfs certificate renewal\\0' + certificate",
    )


# The fleet id as agents carry it in their DNS-SD records (`aetherfs/net/ids.py`, `FleetId`).
FLEET_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"
MAX_PEER_ADDRESSES = 8


def _peer_address(value: str) -> str:
    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        raise ValueError("a peer address is an IPv4 address such as 10.0.0.2") from None
    if (
        address.is_unspecified
        or address.is_multicast
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise ValueError("a peer address is one others can reach: not 0.0.0.0 nor multicast")
    return str(address)


class PeerListen(Model):
    """A status report's `peer`: where the agent's peer protocol listens, and its fleet."""

    # Newer agents may say more (a protocol version, say): ignored here, never refused.
    model_config = ConfigDict(frozen=True, extra="ignore")
    addresses: list[Annotated[StrictStr, AfterValidator(_peer_address)]] = Field(
        min_length=1, max_length=MAX_PEER_ADDRESSES
    )
    port: StrictInt = Field(ge=1, le=65535)
    fleet: StrictStr = Field(pattern=FLEET_PATTERN)


class Revoke(Model):
    serial: Annotated[StrictStr, Field(pattern="^[0-9a-f]{32}$")] | None = None
    agent: AgentId | None = None
