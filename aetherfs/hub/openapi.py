"""The OpenAPI document of the hub's REST surface, generated from its routes (FastAPI).

Nothing here lists an operation: the routes in `aetherfs/hub/app.py` and the models in
`aetherfs/hub/models.py` are the document. This module adds what FastAPI cannot infer: the
schemas of dataset and tag names (built from `aetherfs/core/names.py`, their one source), the
bearer scheme, and the error envelope every operation may answer instead of FastAPI's 422.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from aetherfs import __version__
from aetherfs.hub.models import dataset_schema, tag_schema

_ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
_ERROR_STATUSES = ("400", "401", "403", "404")


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document of `app`'s API routes, with the hub's errors and names filled in."""
    doc = get_openapi(
        title="AetherFS hub",
        version=__version__,
        description="Datasets, tags, manifests, packs, grants and the fleet, over REST.",
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["responses"] = {
        "Error": {
            "description": "an error: `code` as in docs/hub.md, `message` says what to do",
            "content": {"application/json": {"schema": _ERROR_BODY}},
        }
    }
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "an API token (afs_...) or an OIDC access/ID token (JWT)",
        }
    }
    doc["security"] = [{"bearer": []}, {}]
    error = {"$ref": "#/components/responses/Error"}
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation["responses"]
            responses.pop("422", None)  # FastAPI's; bad input is our 400 envelope
            for status in _ERROR_STATUSES:
                responses.setdefault(status, error)
            responses["default"] = error
            for param in operation.get("parameters", []):
                name, where = param["name"], param["in"]
                if (name, where) == ("dataset", "path"):
                    param["schema"] = dataset_schema()
                elif (name, where) in (("tag", "path"), ("a", "query"), ("b", "query")):
                    param["schema"] = tag_schema()
                elif (name, where) == ("tag", "query"):  # watch: any number of tags
                    param["schema"] = {"type": "array", "items": tag_schema()}
    return doc
