"""Every REST API route, fed bad input by a superuser holding every scope
(the caller most likely to reach deep into a function), answers 4xx with
Quay's error JSON, never a 5xx (issue #4: "JSON errors, never 5xx for a
client mistake").  The routes come from the discovery document, so a new
route is covered without editing this file."""

import re

import pytest

from api import Api, create_token, create_user

BODIES = [
    None, "", "[]", "\"x\"", "42", "null", "{", "{\"a\":1,\"a\":2}",
    "{}", "{\"name\": 12}", "{\"role\": [\"admin\"]}",
    "{\"visibility\": {}}", "{\"expiration\": \"soon\"}",
    "{\"expiration\": 1e400}", "{\"tag_expiration_s\": -1}",
    "{\"manifest_digest\": \"sha256:zz\"}", "{\"enabled\": \"yes\"}",
    "{\"username\": \"" + "a" * 5000 + "\"}",
    "{\"repository\": \"../../etc\", \"namespace\": \"admin\","
    " \"visibility\": \"public\"}",
    "{\"title\": \"\\u0000\"}", "{\"description\": 1}",
]

PARAMS = {
    "repository": ["admin/app", "nosuch/repo", "admin/%2e%2e",
                   "admin/" + "x" * 300],
    "orgname": ["acme", "nosuchorg", "A", "x" * 300],
    "teamname": ["owners", "nosuch", "bad name"],
    "membername": ["admin", "nosuch", "acme+ci"],
    "username": ["admin", "nosuch", "acme+ci", "x" * 300],
    "robot_shortname": ["ci", "nosuch", "Bad"],
    "tag": ["latest", "nosuch", "-bad", "x" * 200],
    "token_uuid": ["nosuch", "00000000-0000-0000-0000-000000000000"],
}

QUERIES = ["", "?page=-1", "?limit=abc", "?next_page=%%%",
           "?starttime=13/45/2020", "?namespace=&public=maybe",
           "?onlyActiveTags=perhaps&specificTag=%00"]


@pytest.fixture(scope="module")
def api(start_registry):
    reg = start_registry()
    create_user(reg, "admin")
    admin = Api(reg, create_token(reg, "admin"))
    assert admin.post("/organization/", json={"name": "acme"}) \
        .status_code == 201
    assert admin.put("/organization/acme/robots/ci", json={}) \
        .status_code == 201
    assert admin.post("/repository", json={
        "namespace": "admin", "repository": "app", "visibility": "private",
        "description": ""}).status_code == 201
    return admin


def routes(api):
    doc = Api(api.registry).get("/discovery").json()
    for path, ops in sorted(doc["paths"].items()):
        for method in sorted(ops):
            yield method.upper(), path


def fill(path, choice):
    def one(m):
        values = PARAMS.get(m.group(1), ["x"])
        return values[choice % len(values)]
    return re.sub(r"\{([a-z_]+)\}", one, path)


def test_no_route_answers_5xx_to_bad_input(api):
    failures = []
    count = 0
    for method, path in routes(api):
        for i, body in enumerate(BODIES):
            url = fill(path, i) + QUERIES[i % len(QUERIES)]
            res = api.registry.request(
                method, url, data=body,
                headers={"Authorization": "Bearer " + api.token,
                         "Content-Type": "application/json"})
            count += 1
            if res.status_code >= 500:
                failures.append(f"{method} {url} body={body!r:.60}: "
                                f"{res.status_code} {res.text[:200]}")
            elif res.status_code >= 400 and res.headers.get(
                    "Content-Type", "").startswith("application/json"):
                assert res.json()["status"] == res.status_code
    assert count > 1000
    assert failures == []
