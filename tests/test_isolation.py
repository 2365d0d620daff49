"""Two tenants never see each other's documents, jobs, searches or chat sessions."""

TEXT = "The zebrafish aquarium needs its water filter cleaned every Tuesday morning."


def test_tenants_do_not_see_each_others_documents(api, rq_worker):
    alice, bob = api.register(tenant="Alice Inc"), api.register(tenant="Bob Ltd")
    uploaded = api.upload_text(alice, "Aquarium care", TEXT)
    assert uploaded.status_code == 202
    document_id = uploaded.json()["document"]["id"]
    job_id = uploaded.json()["job_id"]
    api.wait_for_document(alice, document_id)

    assert api.http.get(f"/documents/{document_id}", headers=bob["headers"]).status_code == 404
    assert api.http.get(f"/documents/{document_id}/events", headers=bob["headers"]).status_code == 404
    assert api.http.delete(f"/documents/{document_id}", headers=bob["headers"]).status_code == 404
    assert api.http.get(f"/jobs/{job_id}", headers=bob["headers"]).status_code == 404
    assert api.http.get("/documents", headers=bob["headers"]).json()["items"] == []
    assert api.http.get(f"/documents/{document_id}", headers=alice["headers"]).status_code == 200


def test_tenants_do_not_share_search_results(api, rq_worker):
    alice, bob = api.register(), api.register()
    document_id = api.upload_text(alice, "Aquarium care", TEXT).json()["document"]["id"]
    api.wait_for_document(alice, document_id)
    for mode in ("hybrid", "vector", "keyword"):
        query = {"query": "zebrafish aquarium filter", "mode": mode}
        assert api.http.post("/search", headers=alice["headers"], json=query).json()["results"], mode
        assert api.http.post("/search", headers=bob["headers"], json=query).json()["results"] == [], mode


def test_same_content_in_two_tenants_is_not_a_duplicate(api, rq_worker):
    alice, bob = api.register(), api.register()
    assert api.upload_text(alice, "Aquarium care", TEXT).status_code == 202
    assert api.upload_text(bob, "Aquarium care", TEXT).status_code == 202


def test_same_session_string_names_two_private_sessions(api):
    alice, bob = api.register(), api.register()
    api.http.post("/chat", headers=alice["headers"], json={"message": "alice asks", "session_id": "shared"})
    api.http.post("/chat", headers=bob["headers"], json={"message": "bob asks", "session_id": "shared"})
    alice_messages = api.http.get("/chat/sessions/shared/messages", headers=alice["headers"]).json()["items"]
    bob_messages = api.http.get("/chat/sessions/shared/messages", headers=bob["headers"]).json()["items"]
    assert [m["content"] for m in alice_messages if m["role"] == "user"] == ["alice asks"]
    assert [m["content"] for m in bob_messages if m["role"] == "user"] == ["bob asks"]


def test_sessions_are_private_within_a_tenant(api):
    admin = api.register()
    api.http.post("/users", headers=admin["headers"], json={"email": "colleague@example.com",
                                                            "password": "colleague-password"})
    token = api.http.post("/auth/login", json={"email": "colleague@example.com",
                                               "password": "colleague-password"}).json()["access_token"]
    colleague = {"Authorization": f"Bearer {token}"}
    api.http.post("/chat", headers=admin["headers"], json={"message": "private question", "session_id": "mine"})
    assert api.http.get("/chat/sessions/mine/messages", headers=colleague).status_code == 404
    assert api.http.get("/chat/sessions", headers=colleague).json()["items"] == []
