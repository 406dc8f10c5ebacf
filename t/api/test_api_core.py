"""The /api/v1 framework (issue #4): routing, the caller's token, scopes,
Quay's error shape, the discovery document, and GET /api/v1/user/."""

import pytest

from api import (Api, assert_error, create_token, create_user, principal,
                 sql)


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


@pytest.fixture(scope="module")
def alice(registry):
    return principal(registry, "alice")


def test_user_get(alice):
    res = alice.get("/user/")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["username"] == "alice"
    assert body["anonymous"] is False
    assert body["super_user"] is False
    assert body["organizations"] == []
    assert body["avatar"]["name"] == "alice"


def test_trailing_slash_is_optional(alice):
    assert alice.get("/user").status_code == 200


def test_anonymous_gets_401(registry):
    res = Api(registry).get("/user/")
    assert_error(res, 401, "invalid_token")
    assert res.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", [
    "Bearer " + "A" * 40,                 # unknown token
    "Bearer " + "A" * 39,                 # wrong length
    "Bearer " + "A" * 39 + "-",           # outside the alphabet
    "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=", # Basic is not accepted
    "Bearer",
])
def test_bad_tokens_get_401(registry, header):
    res = registry.request("GET", "/api/v1/user/",
                           headers={"Authorization": header})
    assert_error(res, 401, "invalid_token")


def test_wrong_secret_half_gets_401(registry, alice):
    forged = alice.token[:20] + ("B" if alice.token[20] != "B" else "C") \
        + alice.token[21:]
    assert_error(Api(registry, forged).get("/user/"), 401, "invalid_token")


def test_expired_token_gets_401(registry):
    create_user(registry, "old")
    token = create_token(registry, "old")
    assert Api(registry, token).get("/user/").status_code == 200
    sql(registry, "UPDATE oauthaccesstoken SET expires_at = now()"
        f" - interval '1 second' WHERE token_name = '{token[:20]}'")
    assert_error(Api(registry, token).get("/user/"), 401, "invalid_token")


def test_disabled_user_gets_401(registry):
    api = principal(registry, "gone")
    sql(registry, "UPDATE \"user\" SET enabled = false"
        " WHERE username = 'gone'")
    assert_error(api.get("/user/"), 401, "invalid_token")


def test_missing_scope_gets_403(registry):
    create_user(registry, "narrow")
    api = Api(registry, create_token(registry, "narrow", "repo:read"))
    assert_error(api.get("/user/"), 403, "insufficient_scope")


def test_implied_scope_is_enough(registry):
    create_user(registry, "broad")
    api = Api(registry, create_token(registry, "broad", "user:admin"))
    assert api.get("/user/").status_code == 200


def test_unknown_route_is_json_404(alice):
    assert_error(alice.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_json_405(alice):
    assert_error(alice.request("PATCH", "/user/"), 405)


def test_control_bytes_in_path_are_400(alice, registry):
    res = registry.request("GET", "/api/v1/user/a%01b",
                           headers={"Authorization": "Bearer " + alice.token})
    assert res.status_code in (400, 404)
    assert res.json()["status"] == res.status_code


def test_superuser_flag(registry):
    # harness config: SUPER_USERS = [admin]
    admin = principal(registry, "admin")
    assert admin.get("/user/").json()["super_user"] is True
    create_user(registry, "admin2")
    # without super:user the token does not act as a superuser
    limited = Api(registry, create_token(registry, "admin", "user:read"))
    assert limited.get("/user/").json()["super_user"] is False


def test_discovery_lists_routes_with_scopes(registry):
    res = Api(registry).get("/discovery")
    assert res.status_code == 200
    doc = res.json()
    assert doc["swagger"] == "2.0"
    op = doc["paths"]["/api/v1/user/"]["get"]
    assert op["x-requires-scope"] == "user:read"
    assert op["security"] == [{"oauth2_implicit": ["user:read"]}]
    assert "user:read" in doc["securityDefinitions"]["oauth2_implicit"][
        "scopes"]


def test_quayctl_token_rejects_bad_input(registry):
    import subprocess
    import harness
    for args, needle in [
        (["token", "create", "alice", "--db-uri", registry.db_uri,
          "--scopes", "repo:everything"], "invalid --scopes"),
        (["token", "create", "nobody", "--db-uri", registry.db_uri],
         "no enabled user nobody"),
        (["token", "create", "alice", "--db-uri", registry.db_uri,
          "--days", "0"], "invalid --days"),
    ]:
        res = subprocess.run([str(harness.QUAYCTL)] + args, text=True,
                             capture_output=True)
        assert res.returncode != 0
        assert needle in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
