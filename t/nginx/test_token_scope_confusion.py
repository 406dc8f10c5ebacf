"""Scope confusion (issue #4 forged-token suite; security catalogue B2
#26 and #28): a registry token grants exactly the repositories and actions
named in its access claim.  A token for alice/b must not open alice/bc,
alice/b/c, alice, ALICE/B or alice/b/, whatever exists there; a pull token
must not push or delete."""

import hashlib
import json

import pytest

from api import create_user


def token_for(registry, scopes, auth):
    params = [("service", registry.url.split("//")[1])]
    params += [("scope", s) for s in scopes]
    res = registry.request("GET", "/v2/auth", params=params, auth=auth)
    assert res.status_code == 200, res.text
    return res.json()["token"]


def bearer(registry, method, path, token, **kw):
    headers = dict(kw.pop("headers", {}))
    headers["Authorization"] = "Bearer " + token
    return registry.request(method, path, headers=headers, **kw)


def push_image(registry, repo, token, tag="v1"):
    """Pushes a config blob and a one-layer manifest to repo; returns the
    manifest digest."""
    def blob(data):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        res = bearer(registry, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}",
                     token, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert res.status_code == 201, res.text
        return d, len(data)

    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd, cs = blob(cfg)
    ld, ls = blob(repo.encode() + b" layer")
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": cs},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": ld, "size": ls}]}).encode()
    res = bearer(registry, "PUT", f"/v2/{repo}/manifests/{tag}", token,
                 data=manifest,
                 headers={"Content-Type":
                          "application/vnd.oci.image.manifest.v1+json"})
    assert res.status_code == 201, res.text
    return res.headers["Docker-Content-Digest"]


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
