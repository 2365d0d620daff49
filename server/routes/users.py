"""GET /users/me and POST /users."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request
from sanic.response import json

from db import users as queries
from server.auth import current_role, hash_password, load_profile, principal
from server.cache import cache_status
from server.errors import Conflict, Forbidden, Unauthorized
from server.routes.auth import EMAIL_PATTERN
from server.validation import parse_body

logger = logging.getLogger(__name__)

blueprint = Blueprint("users", url_prefix="/users")


class CreateUserBody(BaseModel):
    email: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    role: Literal["member", "admin"] = "member"


@blueprint.get("/me")
async def me(request: Request):
    caller = principal(request)
    profile, from_cache = await load_profile(request, caller)
    request.ctx.cache_status = cache_status(from_cache)
    if profile is None:
        raise Unauthorized("The user of this token no longer exists.")
    return json({"id": profile["id"], "email": profile["email"], "role": profile["role"],
                 "tenant": {"id": profile["tenant_id"], "name": profile["tenant_name"]}})


@blueprint.post("/")
async def create_user(request: Request):
    caller = principal(request)
    if await current_role(request, caller) != "admin":
        raise Forbidden("Only an admin of the tenant can add users.")
    body = parse_body(request, CreateUserBody)
    password_hash = await hash_password(body.password)
    try:
        user = await queries.create_user(request.app.ctx.db, tenant_id=caller.tenant_id, email=body.email.strip(),
                                         password_hash=password_hash, role=body.role)
    except queries.EmailTaken:
        raise Conflict("A user with this email exists already.") from None
    logger.info("user created user_id=%s role=%s", user["id"], user["role"])
    return json({"id": user["id"], "email": user["email"], "role": user["role"],
                 "tenant_id": user["tenant_id"], "created_at": user["created_at"]}, status=201)
