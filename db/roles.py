"""The two database roles: the owner that migrates the schema and the application role.

The web and RQ workers connect as the application role (DATABASE_URL), which owns no table and
has no BYPASSRLS, so row-level security applies to it. Migrations run as the owner
(DATABASE_ADMIN_URL), which then grants the application role what it needs.
"""

from __future__ import annotations

import logging
import re
import secrets
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

logger = logging.getLogger(__name__)

# The role that the embedded PostgreSQL's application connects as.
EMBEDDED_APP_ROLE = "ragplatform_app"
ROLE_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# The materialized view that contains every tenant's usage, which the application never reads
# directly (it reads tenant_usage_daily instead).
OWNER_ONLY_RELATIONS = ("usage_daily",)
APP_FUNCTIONS = ("app_find_login(text)", "app_refresh_usage()", "app_recent_tenant_settings(integer)",
                 "app_unfinished_documents(double precision, integer)")
# Views that run as their owner, because writing through them would skip the policies' WITH
# CHECK, and the migration log, which the application reads at start to find pending migrations.
READ_ONLY_RELATIONS = ("tenant_usage_daily", "tenant_chunks", "tenant_documents", "schema_migrations")


def role_of(database_url: str) -> str | None:
    return urlsplit(database_url).username


def _quoted_role(role: str) -> str:
    if not ROLE_NAME_PATTERN.match(role):
        raise ValueError(f"database role name {role!r} is invalid; use letters, digits and underscores")
    return f'"{role}"'


async def grant_app_role(connection: asyncpg.Connection, role: str) -> None:
    """Grant `role` the rights of the application on every table; run by the owner after migrations.

    The grants are repeated on every run, so tables added by later migrations are covered.
    """
    quoted = _quoted_role(role)
    statements = [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        *(f"REVOKE ALL ON {relation} FROM {quoted}" for relation in OWNER_ONLY_RELATIONS),
        *(f"REVOKE INSERT, UPDATE, DELETE ON {relation} FROM {quoted}" for relation in READ_ONLY_RELATIONS),
        *(f"GRANT EXECUTE ON FUNCTION {function} TO {quoted}" for function in APP_FUNCTIONS),
    ]
    for statement in statements:
        await connection.execute(statement)


async def describe_app_role(connection: asyncpg.Connection) -> list[str]:
    """Return why the connected role escapes row-level security; an empty list when it does not."""
    row = await connection.fetchrow(
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls,"
        " EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = 'documents' AND c.relowner = r.oid) AS owns"
        " FROM pg_roles r WHERE r.rolname = current_user"
    )
    problems = []
    if row["rolsuper"]:
        problems.append(f"role {row['rolname']} is a superuser")
    if row["rolbypassrls"]:
        problems.append(f"role {row['rolname']} has BYPASSRLS")
    if row["owns"]:
        problems.append(f"role {row['rolname']} owns the tables")
    return problems


def _read_or_create_password(path: Path) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _with_credentials(database_url: str, role: str, password: str) -> str:
    parts = urlsplit(database_url)
    host = parts.hostname or ""
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def ensure_app_role(admin_url: str, password_path: Path, role: str = EMBEDDED_APP_ROLE) -> str:
    """Create the application role (LOGIN, no BYPASSRLS) unless it exists; return its URL.

    Its password is generated once into `password_path`, readable by the owner only. Needs an
    admin URL whose role has CREATEROLE, as the embedded server's superuser does.
    """
    password = _read_or_create_password(password_path)
    quoted = _quoted_role(role)
    connection = await asyncpg.connect(admin_url)
    try:
        # The password goes in as a literal, since utility statements take no parameters.
        literal = await connection.fetchval("SELECT quote_literal($1)", password)
        options = f"LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD {literal}"
        if await connection.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role) is None:
            try:
                await connection.execute(f"CREATE ROLE {quoted} {options}")
                logger.info("database role created role=%s", role)
            except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
                pass  # another process created it a moment ago
        await connection.execute(f"ALTER ROLE {quoted} {options}")
    finally:
        await connection.close()
    return _with_credentials(admin_url, role, password)
