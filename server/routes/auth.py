"""POST /auth/register and POST /auth/login."""

from __future__ import annotations

import logging

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints
from sanic import Blueprint, Request
from sanic.response import json

from db import users as queries
from server.auth import hash_password, issue_token, verify_password
from server.errors import Conflict, Forbidden, Unauthorized
from server.validation import parse_body

logger = logging.getLogger(__name__)

blueprint = Blueprint("auth", url_prefix="/auth")

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]+$"
LOGIN_FAILED = "The email or password is incorrect."


# A tenant name or title that is only whitespace is as missing as an empty one.
NonBlankName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class RegisterBody(BaseModel):
    tenant: NonBlankName
    email: str = Field(pattern=EMAIL_PATTERN, max_length=320)
    password: str = Field(min_length=8, max_length=1024)


class LoginBody(BaseModel):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


def token_body(request: Request, *, user_id, tenant_id, role) -> dict:
    settings = request.app.ctx.settings
    token = issue_token(settings.jwt_secret, settings.jwt_expires_seconds,
                        user_id=user_id, tenant_id=tenant_id, role=role)
    return {"access_token": token, "token_type": "bearer", "expires_in": settings.jwt_expires_seconds}


@blueprint.post("/register")
async def register(request: Request):
    if not request.app.ctx.settings.allow_signup:
        raise Forbidden("Sign-up is disabled on this server; ask an admin of your tenant to add you.")
    body = parse_body(request, RegisterBody)
    password_hash = await hash_password(body.password)
    try:
        created = await queries.create_tenant_with_admin(
            request.app.ctx.db, tenant_name=body.tenant, email=body.email.strip(), password_hash=password_hash
        )
    except queries.EmailTaken:
        raise Conflict("A user with this email exists already; log in instead.") from None
    logger.info("tenant registered tenant_id=%s user_id=%s", created["tenant_id"], created["user_id"])
    tokens = token_body(request, user_id=created["user_id"], tenant_id=created["tenant_id"], role="admin")
    return json({"tenant_id": created["tenant_id"], "user_id": created["user_id"], **tokens}, status=201)


@blueprint.post("/login")
async def login(request: Request):
    body = parse_body(request, LoginBody)
    user = await queries.find_user_for_login(request.app.ctx.db, body.email.strip())
    if not await verify_password(user["password_hash"] if user else None, body.password):
        logger.info("login rejected")
        raise Unauthorized(LOGIN_FAILED)
    return json(token_body(request, user_id=user["id"], tenant_id=user["tenant_id"], role=user["role"]))
