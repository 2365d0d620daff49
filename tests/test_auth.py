"""Registration, login, tokens and users over HTTP."""

import time
import uuid

import jwt


def test_register_returns_token_and_ids(api):
    user = api.register(tenant="Acme")
    assert user["token_type"] == "bearer"
    assert user["expires_in"] > 0
    assert uuid.UUID(user["tenant_id"])
    assert uuid.UUID(user["user_id"])


def test_register_same_email_conflicts(api):
    user = api.register()
    response = api.http.post("/auth/register", json={"tenant": "Other", "email": user["email"].upper(),
                                                     "password": "another-password"})
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"


def test_login_is_case_insensitive_on_email(api):
    user = api.register()
    response = api.http.post("/auth/login", json={"email": user["email"].upper(), "password": user["password"]})
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


def test_login_failure_message_is_the_same_for_unknown_email(api):
    user = api.register()
    wrong_password = api.http.post("/auth/login", json={"email": user["email"], "password": "wrong-password"})
    unknown_email = api.http.post("/auth/login", json={"email": "nobody@example.com", "password": "wrong-password"})
    assert wrong_password.status_code == 401
    assert unknown_email.status_code == 401
    assert wrong_password.json()["error"]["message"] == unknown_email.json()["error"]["message"]


def test_short_password_is_rejected(api):
    response = api.http.post("/auth/register", json={"tenant": "T", "email": "short@example.com",
                                                     "password": "1234567"})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == "password"


def test_users_me_returns_profile_and_tenant(api):
    user = api.register(tenant="Initech")
    response = api.http.get("/users/me", headers=user["headers"])
    assert response.status_code == 200
    body = response.json()
    assert body["email"] == user["email"]
    assert body["role"] == "admin"
    assert body["tenant"] == {"id": user["tenant_id"], "name": "Initech"}


def test_missing_token_is_unauthorized(api):
    response = api.http.get("/users/me")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_tampered_token_is_unauthorized(api):
    user = api.register()
    token = user["access_token"]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    response = api.http.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_token_signed_with_another_secret_is_unauthorized(api):
    user = api.register()
    claims = {"sub": user["user_id"], "tid": user["tenant_id"], "role": "admin", "exp": int(time.time()) + 60}
    forged = jwt.encode(claims, "not-the-server-secret-but-long-enough-for-hs256", algorithm="HS256")
    response = api.http.get("/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_expired_token_is_unauthorized(api, server_env):
    user = api.register()
    claims = {"sub": user["user_id"], "tid": user["tenant_id"], "role": "admin",
              "iat": int(time.time()) - 120, "exp": int(time.time()) - 60}
    expired = jwt.encode(claims, server_env["JWT_SECRET"], algorithm="HS256")
    response = api.http.get("/users/me", headers={"Authorization": f"Bearer {expired}"})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_token_of_missing_user_is_unauthorized(api, server_env):
    # A validly signed token whose user no longer exists returned 404 on /users/me.
    user = api.register()
    claims = {"sub": str(uuid.uuid4()), "tid": user["tenant_id"], "role": "admin",
              "iat": int(time.time()), "exp": int(time.time()) + 600}
    token = jwt.encode(claims, server_env["JWT_SECRET"], algorithm="HS256")
    response = api.http.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_admin_creates_member_who_can_log_in(api):
    admin = api.register()
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    created = api.http.post("/users", headers=admin["headers"],
                            json={"email": email, "password": "member-password", "role": "member"})
    assert created.status_code == 201
    assert created.json()["tenant_id"] == admin["tenant_id"]
    login = api.http.post("/auth/login", json={"email": email, "password": "member-password"})
    assert login.status_code == 200


def test_member_cannot_create_users(api):
    admin = api.register()
    email = f"member-{uuid.uuid4().hex[:8]}@example.com"
    api.http.post("/users", headers=admin["headers"], json={"email": email, "password": "member-password"})
    token = api.http.post("/auth/login", json={"email": email, "password": "member-password"}).json()["access_token"]
    response = api.http.post("/users", headers={"Authorization": f"Bearer {token}"},
                             json={"email": "x" + email, "password": "member-password"})
    assert response.status_code == 403
