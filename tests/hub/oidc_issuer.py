"""A real, small OIDC issuer for tests: discovery document and JWKS over HTTP, RSA-signed JWTs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jwt
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from hypercorn.config import Config
from hypercorn.trio import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Issuer:
    url: str = ""
    key: rsa.RSAPrivateKey = field(default_factory=new_key)
    kid: str = "k1"
    jwks_requests: int = 0

    def jwk(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        doc.update({"kid": self.kid, "use": "sig", "alg": "RS256"})
        return doc

    def token(
        self,
        sub: str = "alice",
        audience: str = "aetherfs",
        groups: tuple[str, ...] = (),
        lifetime: float = 300,
        key: rsa.RSAPrivateKey | None = None,
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        claims = {
            "iss": issuer or self.url,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": now + int(lifetime),
            "groups": list(groups),
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def app(self) -> Starlette:
        async def discovery(request: Request) -> Response:
            return JSONResponse(
                {
                    "issuer": self.url,
                    "jwks_uri": f"{self.url}/jwks",
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )

        async def jwks(request: Request) -> Response:
            self.jwks_requests += 1
            return JSONResponse({"keys": [self.jwk()]})

        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", discovery),
                Route("/jwks", jwks),
            ]
        )


async def start_issuer(nursery: trio.Nursery) -> Issuer:
    issuer = Issuer()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    app: Any = issuer.app()
    binds = await nursery.start(partial(serve, app, config, mode="asgi"))
    issuer.url = binds[0]
    return issuer
