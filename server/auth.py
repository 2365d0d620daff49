"""Password hashing, JWT access tokens, and the middleware that authenticates each request."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from uuid import UUID

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sanic import Request

from db import users as user_queries
from server.errors import Unauthorized

JWT_ALGORITHM = "HS256"
# Paths served without a token.
PUBLIC_PATHS = ("/health", "/health/ready", "/auth/login", "/auth/register", "/docs", "/openapi.json")

_hasher = PasswordHasher()
# A stand-in hash verified for unknown emails, so a login takes as long whether or not the email exists.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, taken from a verified token."""

    user_id: UUID
    tenant_id: UUID
    role: str


async def hash_password(password: str) -> str:
    """Hash with Argon2id in a thread, since a slow hash would block the event loop."""
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


def issue_token(secret: str, expires_in: int, *, user_id: UUID, tenant_id: UUID, role: str) -> str:
    now = int(time.time())
    claims = {"sub": str(user_id), "tid": str(tenant_id), "role": role, "iat": now, "exp": now + expires_in}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_token(secret: str, token: str) -> Principal:
    try:
        claims = jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["exp", "sub", "tid"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The access token has expired; log in again.") from None
    except jwt.PyJWTError:
        raise Unauthorized("The access token is invalid.") from None
    try:
        return Principal(user_id=UUID(claims["sub"]), tenant_id=UUID(claims["tid"]), role=str(claims.get("role")))
    except (ValueError, TypeError):
        raise Unauthorized("The access token is invalid.") from None


def is_public(path: str) -> bool:
    return path.rstrip("/") in PUBLIC_PATHS or path.startswith("/docs/")


def authenticate(request: Request) -> None:
    """Set request.ctx.principal from the bearer token, or raise 401 on a protected path."""
    request.ctx.principal = None
    header = request.headers.get("authorization", "")
    if is_public(request.path) and not header:
        return
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        if is_public(request.path):
            return
        raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <access_token>'.")
    request.ctx.principal = decode_token(request.app.ctx.settings.jwt_secret, token.strip())


def principal(request: Request) -> Principal:
    return request.ctx.principal


async def load_profile(request: Request, caller: Principal) -> tuple[dict | None, bool | None]:
    """Return the caller's profile (None when the user no longer exists) and whether it came from the cache.

    Cached for CACHE_USER_PROFILE_TTL, until `Cache.invalidate_user` is called for the user.
    """
    cache = request.app.ctx.cache

    async def compute() -> dict | None:
        return await user_queries.get_user_profile(request.app.ctx.db, tenant_id=caller.tenant_id,
                                                   user_id=caller.user_id)

    return await cache.get_or_compute(cache.profile_entry(caller.tenant_id, caller.user_id), compute)


async def current_role(request: Request, caller: Principal) -> str | None:
    """Return the caller's role as stored now, or None when the user no longer exists.

    The token's role claim is the role at login. Permission checks read the stored role instead,
    cached for CACHE_PERMISSIONS_TTL, so that a changed role takes effect without a new login.
    """
    cache = request.app.ctx.cache

    async def compute() -> dict:
        profile = await user_queries.get_user_profile(request.app.ctx.db, tenant_id=caller.tenant_id,
                                                      user_id=caller.user_id)
        return {"role": profile["role"] if profile else None}

    value, _ = await cache.get_or_compute(cache.role_entry(caller.tenant_id, caller.user_id), compute)
    return value["role"]
