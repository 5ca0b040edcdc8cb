"""The OpenAPI 3.1 document of the hub's REST surface, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

from aetherfs import __version__

_ERROR = {"$ref": "#/components/responses/Error"}
DATASET_NAME = {
    "type": "string",
    "maxLength": 200,
    "pattern": "^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$",
}
# A version tag (SemVer without build metadata, or CalVer), or a channel that does not look
# like a malformed version.
TAG_NAME = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "anyOf": [
        {
            "type": "string",
            "pattern": "^(0|[1-9][0-9]*)[.](0|[1-9][0-9]*)[.](0|[1-9][0-9]*)"
            "(-(0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*)"
            "([.](0|[1-9][0-9]*|[0-9]*[a-zA-Z-][0-9a-zA-Z-]*))*)?$",
        },
        {
            "type": "string",
            "pattern": "^[0-9]{4}[.](0[1-9]|1[0-2])[.](0[1-9]|[12][0-9]|3[01])"
            "([.](0|[1-9][0-9]*))?$",
        },
        {
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9._-]{0,127}$",
            "not": {"pattern": "^[0-9]+([.][0-9]+)*(-.*)?$"},
        },
    ],
}
AGENT_ID = {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]{0,127}$"}
SUBJECT = {
    "type": "string",
    "pattern": "^(anyone|(user|group|agent):[A-Za-z0-9@._-]{1,128})$",
}
_DATASET = {
    "name": "dataset",
    "in": "path",
    "required": True,
    "description": "dataset name; its '/' separators are kept as they are (team/geo-db)",
    "schema": DATASET_NAME,
}
_TAG = {"name": "tag", "in": "path", "required": True, "schema": TAG_NAME}
_AGENT = {"name": "agent", "in": "path", "required": True, "schema": AGENT_ID}
_PACK = {
    "name": "pack",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}
_MANIFEST = {
    "name": "manifest",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    responses: dict[str, Any],
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {**responses, "400": _ERROR, "401": _ERROR, "403": _ERROR, "404": _ERROR},
    }
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


TAG = {"$ref": "#/components/schemas/Tag"}


def openapi_document() -> dict[str, Any]:
    d = "/v1/datasets/{dataset}/-"
    return {
        "openapi": "3.1.0",
        "info": {"title": "AetherFS hub", "version": __version__},
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API token (afs_...) or an OIDC access/ID token (JWT)",
                }
            },
            "responses": {
                "Error": _json(
                    {
                        "type": "object",
                        "required": ["error"],
                        "properties": {
                            "error": {
                                "type": "object",
                                "properties": {
                                    "code": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                            }
                        },
                    },
                    "an error, with a reason",
                )
            },
            "schemas": {
                "Tag": {
                    "type": "object",
                    "required": ["dataset", "tag", "manifest", "seq", "time", "signer", "signed"],
                    "properties": {
                        "dataset": {"type": "string"},
                        "tag": {"type": "string"},
                        "manifest": {"type": "string"},
                        "seq": {"type": "integer"},
                        "time": {"type": "number"},
                        "signer": {"type": "string", "description": "Ed25519 public key, hex"},
                        "signed": {"type": "string", "description": "signed record, base64"},
                    },
                },
            },
        },
        "security": [{"bearer": []}, {}],
        "paths": {
            "/v1/info": {
                "get": _op(
                    "store id and the registry's signing key", {"200": _json({"type": "object"})}
                )
            },
            "/v1/whoami": {
                "get": _op("the authenticated principal", {"200": _json({"type": "object"})})
            },
            "/v1/datasets": {
                "get": _op("datasets the caller may read", {"200": _json({"type": "array"})}),
                "post": _op(
                    "create a dataset (hub admins); the creator becomes its admin",
                    {"201": _json({"type": "object"}), "409": _ERROR, "413": _ERROR},
                    body=_json_body(
                        {
                            "type": "object",
                            "required": ["name"],
                            "properties": {"name": DATASET_NAME},
                        }
                    ),
                ),
            },
            "/v1/datasets/{dataset}": {
                "get": _op(
                    "a dataset and its tags", {"200": _json({"type": "object"})}, [_DATASET]
                ),
                "delete": _op(
                    "forget a dataset's tags and grants (admin)",
                    {"204": {"description": "gone"}},
                    [_DATASET],
                ),
            },
            f"{d}/tags": {
                "get": _op(
                    "current record of each tag",
                    {"200": _json({"type": "object", "additionalProperties": TAG})},
                    [_DATASET],
                )
            },
            f"{d}/tags/{{tag}}": {
                "get": _op("one tag's current record", {"200": _json(TAG)}, [_DATASET, _TAG]),
                "put": _op(
                    "point a tag at a manifest (write); compare-and-swap on expect_seq",
                    {"200": _json(TAG), "409": _ERROR, "413": _ERROR},
                    [_DATASET, _TAG],
                    _json_body(
                        {
                            "type": "object",
                            "required": ["manifest"],
                            "properties": {
                                "manifest": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                "expect_seq": {
                                    "type": "integer",
                                    "minimum": 0,
                                    "description": "the seq the caller last saw; 0: must not exist",
                                },
                            },
                        }
                    ),
                ),
            },
            f"{d}/tags/{{tag}}/history": {
                "get": _op(
                    "every record the tag has had, oldest first",
                    {"200": _json({"type": "array", "items": TAG})},
                    [_DATASET, _TAG],
                )
            },
            f"{d}/manifests/{{manifest}}": {
                "get": _op(
                    "a sealed manifest's stored bytes",
                    {"200": {"description": "bytes", "content": {"application/octet-stream": {}}}},
                    [_DATASET, _MANIFEST],
                ),
                "put": _op(
                    "store a sealed manifest (write); checked against its id and the dataset key",
                    {
                        "200": _json({"type": "object"}),
                        "201": _json({"type": "object"}),
                        "413": _ERROR,
                        "422": _ERROR,
                    },
                    [_DATASET, _MANIFEST],
                    {"required": True, "content": {"application/octet-stream": {}}},
                ),
            },
            f"{d}/diff": {
                "get": _op(
                    "files changed from tag a to tag b, and the bytes b costs a holder of a",
                    {"200": _json({"type": "object"})},
                    [
                        _DATASET,
                        {"name": "a", "in": "query", "required": True, "schema": TAG_NAME},
                        {"name": "b", "in": "query", "required": True, "schema": TAG_NAME},
                    ],
                )
            },
            f"{d}/packs/{{pack}}": {
                "get": _op(
                    "a pack's bytes; one range with `Range: bytes=a-b`",
                    {
                        "200": {
                            "description": "bytes",
                            "content": {"application/octet-stream": {}},
                        },
                        "206": {
                            "description": "a range",
                            "content": {"application/octet-stream": {}},
                        },
                        "416": {"description": "the range starts past the end"},
                    },
                    [_DATASET, _PACK],
                ),
                "head": _op(
                    "whether the pack is stored, and its size",
                    {"200": {"description": "there"}},
                    [_DATASET, _PACK],
                ),
                "put": _op(
                    "store a pack (write); its bytes must hash to its id",
                    {
                        "200": _json({"type": "object"}),
                        "201": _json({"type": "object"}),
                        "413": _ERROR,
                        "422": _ERROR,
                    },
                    [_DATASET, _PACK],
                    {"required": True, "content": {"application/octet-stream": {}}},
                ),
            },
            f"{d}/keys": {
                "get": _op(
                    "the dataset key (read); plus the convergence secret (write)",
                    {"200": _json({"type": "object"})},
                    [_DATASET],
                )
            },
            f"{d}/grants": {
                "get": _op(
                    "the dataset's grants (admin)", {"200": _json({"type": "object"})}, [_DATASET]
                ),
                "put": _op(
                    "grant a role to a subject, or remove it with role null (admin)",
                    {"200": _json({"type": "object"}), "413": _ERROR},
                    [_DATASET],
                    _json_body(
                        {
                            "type": "object",
                            "required": ["subject"],
                            "properties": {
                                "subject": SUBJECT,
                                "role": {
                                    "enum": ["read", "write", "admin", None],
                                    "description": "`anyone` can only be granted read",
                                },
                            },
                        }
                    ),
                ),
            },
            f"{d}/watch": {
                "get": _op(
                    "server-sent events: the current heads, then every tag move",
                    {"200": {"description": "event stream", "content": {"text/event-stream": {}}}},
                    [
                        _DATASET,
                        {
                            "name": "tag",
                            "in": "query",
                            "schema": {"type": "array", "items": TAG_NAME},
                        },
                    ],
                )
            },
            "/v1/agents": {
                "get": _op(
                    "every agent's last status report (admin)", {"200": _json({"type": "array"})}
                )
            },
            "/v1/agents/{agent}/status": {
                "get": _op(
                    "one agent's last report",
                    {"200": _json({"type": "object"})},
                    [_AGENT],
                ),
                "put": _op(
                    "an agent reports its status (the agent itself)",
                    {"204": {"description": "stored"}, "413": _ERROR},
                    [_AGENT],
                    _json_body({"type": "object"}),
                ),
            },
            "/v1/fleet": {
                "get": _op("the fleet id and its public key", {"200": _json({"type": "object"})})
            },
            "/v1/fleet/join-tokens": {
                "post": _op(
                    "make a single-use join token (hub admins)",
                    {"201": _json({"type": "object"}), "413": _ERROR},
                    body=_json_body(
                        {
                            "type": "object",
                            "properties": {
                                "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": 2592000}
                            },
                        }
                    ),
                )
            },
            "/v1/fleet/enrol": {
                "post": _op(
                    "trade a join token for a certificate over the agent key, plus an agent token",
                    {"201": _json({"type": "object"}), "413": _ERROR},
                    body=_json_body(
                        {
                            "type": "object",
                            "required": ["join_token", "agent", "public_key"],
                            "properties": {
                                "join_token": {"type": "string"},
                                "agent": AGENT_ID,
                                "public_key": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                            },
                        }
                    ),
                )
            },
            "/v1/fleet/revocations": {
                "get": _op("the signed revocation list", {"200": _json({"type": "object"})}),
                "post": _op(
                    "revoke a certificate by serial, or every certificate of an agent (hub admins)",
                    {"200": _json({"type": "object"}), "413": _ERROR},
                    body=_json_body(
                        {
                            "type": "object",
                            "properties": {
                                "serial": {"type": "string"},
                                "agent": AGENT_ID,
                            },
                        }
                    ),
                ),
            },
            "/v1/audit": {
                "get": _op(
                    "audit log entries of one day (hub admins)",
                    {"200": _json({"type": "array"})},
                    [
                        {
                            "name": "day",
                            "in": "query",
                            "schema": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10000},
                        },
                    ],
                )
            },
        },
    }
