"""App-specific tokens in /api/v1 (FEATURE_APP_SPECIFIC_TOKENS;
endpoints/api/appspecifictokens.py): list, create, get and revoke, Quay's
shapes, the audit rows, and that a user only ever sees its own tokens.
Logging in with "$app" is t/nginx/test_v2_auth_credentials.py's."""

import json
import re
import uuid

import pytest

from api import (Api, assert_error, create_token, create_user, principal,
                 sql)


CODE = re.compile(r"[A-Z0-9]{120}")


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


@pytest.fixture(scope="module")
def alice(registry):
    return principal(registry, "alice")


@pytest.fixture(scope="module")
def bob(registry):
    return principal(registry, "bob")


def audit(registry, kind):
    rows = sql(registry, f"""
        SELECT a.username, COALESCE(p.username, ''), e.metadata_json::text
          FROM logentry e JOIN logentrykind k ON k.id = e.kind_id
          JOIN "user" a ON a.id = e.account_id
          LEFT JOIN "user" p ON p.id = e.performer_id
         WHERE k.name = '{kind}' ORDER BY e.id""")
    return [(a, p, json.loads(m)) for a, p, m in rows]


def create(api, title):
    res = api.post("/user/apptoken", json={"title": title})
    assert res.status_code == 200, res.text
    return res.json()["token"]


def test_create_returns_the_code_once_and_stores_it_encrypted(registry,
                                                              alice):
    res = alice.post("/user/apptoken", json={"title": "laptop <i>\u00e9"})
    assert res.status_code == 200, res.text
    token = res.json()["token"]
    assert set(token) == {"uuid", "title", "last_accessed", "created",
                          "expiration", "token_code"}
    assert token["title"] == "laptop <i>\u00e9"
    assert token["last_accessed"] is None and token["expiration"] is None
    assert token["created"].endswith(" -0000")
    assert CODE.fullmatch(token["token_code"])
    uuid.UUID(token["uuid"])

    name, secret, title = sql(registry, f"""
        SELECT token_name, token_secret, title FROM appspecificauthtoken
         WHERE uuid = '{token["uuid"]}'""")[0]
    assert name == token["token_code"][:60]
    assert secret.startswith("v1$$")
    assert token["token_code"][60:] not in secret
    assert title == "laptop <i>\u00e9"
    assert ("alice", "alice", {"app_specific_token_title": "laptop <i>\u00e9",
                               "app_specific_token": token["uuid"]}) \
        in audit(registry, "create_app_specific_token")


def test_get_shows_the_code_decrypted(alice):
    token = create(alice, "get me")
    res = alice.get(f"/user/apptoken/{token['uuid']}")
    assert res.status_code == 200, res.text
    assert res.json() == {"token": token}


def test_list_has_no_codes(alice):
    token = create(alice, "listed")
    res = alice.get("/user/apptoken")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["only_expiring"] is None
    listed = {t["uuid"]: t for t in body["tokens"]}
    assert token["uuid"] in listed
    assert all(set(t) == {"uuid", "title", "last_accessed", "created",
                          "expiration"} for t in body["tokens"])
    expected = dict(token)
    del expected["token_code"]
    assert listed[token["uuid"]] == expected


def test_list_expiring(registry, alice):
    soon = create(alice, "soon")
    later = create(alice, "later")
    sql(registry, "UPDATE appspecificauthtoken SET expiration = now()"
        f" + interval '1 day' WHERE uuid = '{soon['uuid']}';"
        " UPDATE appspecificauthtoken SET expiration = now()"
        f" + interval '60 days' WHERE uuid = '{later['uuid']}'")
    body = alice.get("/user/apptoken", params={"expiring": "true"}).json()
    assert body["only_expiring"] is True
    assert [t["uuid"] for t in body["tokens"]] == [soon["uuid"]]
    assert body["tokens"][0]["expiration"].endswith(" -0000")
    body = alice.get("/user/apptoken", params={"expiring": "false"}).json()
    assert body["only_expiring"] is False
    assert {soon["uuid"], later["uuid"]} <= {t["uuid"]
                                            for t in body["tokens"]}


def test_expired_token_is_404_but_listed(registry, alice):
    token = create(alice, "expired")
    sql(registry, "UPDATE appspecificauthtoken SET expiration = now()"
        f" - interval '1 second' WHERE uuid = '{token['uuid']}'")
    assert_error(alice.get(f"/user/apptoken/{token['uuid']}"), 404,
                 "not_found")
    assert token["uuid"] in [t["uuid"] for t in alice.get(
        "/user/apptoken").json()["tokens"]]


def test_revoke(registry, alice):
    token = create(alice, "revoked")
    res = alice.delete(f"/user/apptoken/{token['uuid']}")
    assert res.status_code == 204, res.text
    assert res.content == b""
    assert sql(registry, "SELECT count(*) FROM appspecificauthtoken"
               f" WHERE uuid = '{token['uuid']}'") == [("0",)]
    assert ("alice", "alice", {"app_specific_token_title": "revoked",
                               "app_specific_token": token["uuid"]}) \
        in audit(registry, "revoke_app_specific_token")
    assert_error(alice.get(f"/user/apptoken/{token['uuid']}"), 404)
    assert_error(alice.delete(f"/user/apptoken/{token['uuid']}"), 404)


def test_users_never_see_each_others_tokens(registry, alice, bob):
    token = create(alice, "private")
    assert token["uuid"] not in [t["uuid"] for t in bob.get(
        "/user/apptoken").json()["tokens"]]
    missing = assert_error(bob.get(f"/user/apptoken/{uuid.uuid4()}"), 404,
                           "not_found")
    theirs = assert_error(bob.get(f"/user/apptoken/{token['uuid']}"), 404,
                          "not_found")
    assert missing == theirs
    assert_error(bob.delete(f"/user/apptoken/{token['uuid']}"), 404,
                 "not_found")
    assert alice.get(f"/user/apptoken/{token['uuid']}").status_code == 200
    assert not [m for _, _, m in audit(registry,
                                       "revoke_app_specific_token")
                if m["app_specific_token"] == token["uuid"]]


@pytest.mark.parametrize("body", [
    {}, {"title": None}, {"title": 5}, {"title": ["x"]},
    {"title": "t" * 256}, {"name": "x"},
])
def test_bad_bodies_are_400(registry, alice, body):
    before = sql(registry, "SELECT count(*) FROM appspecificauthtoken")
    assert_error(alice.post("/user/apptoken", json=body), 400,
                 "invalid_request")
    assert sql(registry, "SELECT count(*) FROM appspecificauthtoken") \
        == before


def test_non_object_body_is_400(alice):
    assert_error(alice.post("/user/apptoken", data='"title"',
                            headers={"Content-Type": "application/json"}),
                 400)


def test_odd_uuids_are_404(alice):
    # ("%00" is refused by nginx itself, before any handler)
    for odd in ("x", "'; DROP TABLE appspecificauthtoken; --",
                "%01", "%C3%A9", "a" * 300):
        res = alice.get(f"/user/apptoken/{odd}")
        assert res.status_code in (400, 404), (odd, res.text)
        assert res.json()["status"] == res.status_code


@pytest.mark.parametrize("method,path", [
    ("GET", "/user/apptoken"), ("POST", "/user/apptoken"),
    ("GET", f"/user/apptoken/{uuid.uuid4()}"),
    ("DELETE", f"/user/apptoken/{uuid.uuid4()}"),
])
def test_anonymous_401_and_narrow_scope_403(registry, method, path):
    assert_error(Api(registry).request(method, path, json={"title": "x"}),
                 401, "invalid_token")
    name = "narrow" + method.lower() + str(len(path))
    create_user(registry, name)
    narrow = Api(registry, create_token(registry, name,
                                        "user:read repo:admin"))
    assert_error(narrow.request(method, path, json={"title": "x"}), 403,
                 "insufficient_scope")


def test_feature_off_is_404(start_registry, registry, alice):
    token = create(alice, "feature")
    off = start_registry(DB_URI=registry.db_uri,
                         FEATURE_APP_SPECIFIC_TOKENS=False)
    api = Api(off, alice.token)
    assert_error(api.get("/user/apptoken"), 404, "not_found")
    assert_error(api.post("/user/apptoken", json={"title": "x"}), 404)
    assert_error(api.get(f"/user/apptoken/{token['uuid']}"), 404)
    assert_error(api.delete(f"/user/apptoken/{token['uuid']}"), 404)
    assert alice.get(f"/user/apptoken/{token['uuid']}").status_code == 200
