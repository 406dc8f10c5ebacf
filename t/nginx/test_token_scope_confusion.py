"""Scope confusion (issue #4 forged-token suite; security catalogue B2
#26 and #28): a registry token grants exactly the repositories and actions
named in its access claim.  A token for alice/b must not open alice/bc,
alice/b/c, alice, ALICE/B or alice/b/, whatever exists there; a pull token
must not push or delete."""

import pytest

import v2client
from api import create_user


def token_for(registry, scopes, auth):
    status, token = v2client.token_for(registry, scopes, auth)
    assert status == 200
    return token


bearer = v2client.bearer
push_image = v2client.push_image


@pytest.fixture(scope="module")
def registry(start_registry):
    reg = start_registry()
    create_user(reg, "alice", "alice-password")
    auth = ("alice", "alice-password")
    for repo in ("alice/b", "alice/bc", "alice/b/c"):
        token = token_for(reg, [f"repository:{repo}:pull,push"], auth)
        push_image(reg, repo, token)
    return reg


@pytest.fixture(scope="module")
def alice():
    return ("alice", "alice-password")


@pytest.mark.parametrize("other", ["alice/bc", "alice/b/c", "alice",
                                   "ALICE/B", "alice/B", "alice/b/"])
def test_token_for_one_repo_opens_no_other(registry, alice, other):
    token = token_for(registry, ["repository:alice/b:pull,push"], alice)
    # the token works where it should
    assert bearer(registry, "GET", "/v2/alice/b/tags/list",
                  token).status_code == 200
    res = bearer(registry, "GET", f"/v2/{other}/tags/list", token)
    assert res.status_code in (400, 401, 404), (other, res.status_code)
    assert res.status_code != 200
    res = bearer(registry, "GET", f"/v2/{other}/manifests/v1", token)
    assert res.status_code in (400, 401, 404), (other, res.status_code)


def test_existing_neighbours_answer_401_insufficient_scope(registry, alice):
    token = token_for(registry, ["repository:alice/b:pull"], alice)
    for other in ("alice/bc", "alice/b/c"):
        res = bearer(registry, "GET", f"/v2/{other}/manifests/v1", token)
        assert res.status_code == 401
        assert f'scope="repository:{other}:pull"' in res.headers[
            "WWW-Authenticate"]


def test_pull_token_cannot_push_or_delete(registry, alice):
    token = token_for(registry, ["repository:alice/b:pull"], alice)
    res = bearer(registry, "POST", "/v2/alice/b/blobs/uploads/", token)
    assert res.status_code == 401
    res = bearer(registry, "PUT", "/v2/alice/b/manifests/v2", token,
                 data=b"{}", headers={"Content-Type":
                                      "application/vnd.oci.image.manifest."
                                      "v1+json"})
    assert res.status_code == 401
    res = bearer(registry, "DELETE", "/v2/alice/b/manifests/v1", token)
    assert res.status_code == 401
    # nothing changed
    full = token_for(registry, ["repository:alice/b:pull"], alice)
    assert bearer(registry, "GET", "/v2/alice/b/manifests/v1",
                  full, headers={"Accept": "application/vnd.oci.image."
                                 "manifest.v1+json"}).status_code == 200


def test_push_only_token_cannot_delete(registry, alice):
    # security catalogue #28: DELETE needs "*" (or delete), not push
    token = token_for(registry, ["repository:alice/bc:push"], alice)
    res = bearer(registry, "DELETE", "/v2/alice/bc/manifests/v1", token)
    assert res.status_code in (401, 403)
    pull = token_for(registry, ["repository:alice/bc:pull"], alice)
    assert bearer(registry, "GET", "/v2/alice/bc/manifests/v1", pull,
                  headers={"Accept": "application/vnd.oci.image.manifest."
                           "v1+json"}).status_code == 200


def test_scope_in_token_is_not_a_prefix_match(registry, alice):
    # a token for alice/b/c says nothing about alice/b
    token = token_for(registry, ["repository:alice/b/c:pull"], alice)
    assert bearer(registry, "GET", "/v2/alice/b/c/tags/list",
                  token).status_code == 200
    assert bearer(registry, "GET", "/v2/alice/b/tags/list",
                  token).status_code == 401
