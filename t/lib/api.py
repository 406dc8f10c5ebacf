"""Helpers for REST API tests (/api/v1): users, OAuth tokens and a small
client that sends the Bearer header.  Principals are made the way a
platform team makes them: users with quayctl, tokens with quayctl token
create (an OAuth application "automation" owned by the user, as Quay's
user/initialize makes)."""

import secrets
import subprocess

import harness


ALL_SCOPES = ("org:admin repo:admin repo:create repo:read repo:write "
              "super:user user:admin user:read")


def db_name(registry):
    return registry.db_uri.rsplit("/", 1)[1]


def sql(registry, query):
    return registry.pg.sql(query, db=db_name(registry))


def create_user(registry, name, password=None):
    """Creates user name (password: name + '-password') with quayctl."""
    password = password or name + "-password"
    res = subprocess.run(
        [str(harness.QUAYCTL), "user", "create", name, "--db-uri",
         registry.db_uri, "--password-stdin"],
        input=password + "\n", text=True, capture_output=True)
    assert res.returncode == 0, res.stderr
    return password


def create_token(registry, username, scopes=ALL_SCOPES):
    """An OAuth access token for username with scopes (space-separated),
    made by quayctl token create."""
    res = subprocess.run(
        [str(harness.QUAYCTL), "token", "create", username, "--db-uri",
         registry.db_uri, "--scopes", scopes],
        text=True, capture_output=True)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip().splitlines()[-1]
    assert len(token) == 40, res.stdout
    return token


class Api:
    """registry.request with "Authorization: Bearer <token>" (none for
    anonymous) and paths relative to /api/v1."""

    def __init__(self, registry, token=None):
        self.registry = registry
        self.token = token

    def request(self, method, path, **kw):
        headers = dict(kw.pop("headers", {}) or {})
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        return self.registry.request(method, "/api/v1" + path,
                                     headers=headers, **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)


def principal(registry, name, scopes=ALL_SCOPES):
    """A new user name and an Api client with a token for it."""
    create_user(registry, name)
    return Api(registry, create_token(registry, name, scopes))


def assert_error(res, status, error_type=None):
    """res is Quay's JSON error with status (and error_type)."""
    assert res.status_code == status, (res.status_code, res.text)
    body = res.json()
    assert body["status"] == status, body
    assert isinstance(body["error_message"], str) and body["error_message"]
    assert body["detail"] == body["error_message"]
    assert body["title"] == body["error_type"]
    assert body["type"].endswith("/api/v1/error/" + body["error_type"])
    if error_type is not None:
        assert body["error_type"] == error_type, body
    return body


def random_name(prefix):
    return prefix + secrets.token_hex(4)
