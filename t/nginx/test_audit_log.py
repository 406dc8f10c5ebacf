"""Audit log rows (issue #4, "Audit log"): logins, successful and failed,
and push, pull and delete of manifests land in logentry with Quay's kinds,
the performer, the repository and the client address."""

import hashlib
import json
import subprocess

import pytest

import harness
from harness import wait_until


def create_user(registry, name, password):
    res = subprocess.run(
        [str(harness.QUAYCTL), "user", "create", name, "--db-uri",
         registry.db_uri, "--password-stdin"],
        input=password + "\n", text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def rows(registry, kind):
    db = registry.db_uri.rsplit("/", 1)[1]
    return registry.pg.sql(
        "SELECT u.username, COALESCE(p.username, ''),"
        " COALESCE(r.name, ''), e.ip, e.metadata_json::text"
        " FROM logentry e JOIN logentrykind k ON k.id = e.kind_id"
        " JOIN \"user\" u ON u.id = e.account_id"
        " LEFT JOIN \"user\" p ON p.id = e.performer_id"
        " LEFT JOIN repository r ON r.id = e.repository_id"
        f" WHERE k.name = '{kind}' ORDER BY e.id", db=db)


@pytest.fixture(scope="module")
def registry(start_registry):
    reg = start_registry()
    create_user(reg, "ivy", "ivy-password")
    return reg


def test_logins_are_logged(registry):
    host = registry.url.split("//")[1]
    assert registry.request("GET", "/v2/auth", params={"service": host},
                            auth=("ivy", "nope-nope")).status_code == 401
    assert registry.request("GET", "/v2/auth", params={"service": host},
                            auth=("ivy", "ivy-password")).status_code == 200
    failed = wait_until(lambda: rows(registry, "login_failure"), 10,
                        "login_failure row")
    assert failed[0][:2] == ("ivy", "") and failed[0][3] == "127.0.0.1"
    ok = wait_until(lambda: rows(registry, "login_success"), 10,
                    "login_success row")
    assert ok[0][:2] == ("ivy", "ivy")


def test_push_pull_and_delete_are_logged(registry):
    host = registry.url.split("//")[1]
    token = registry.request(
        "GET", "/v2/auth", auth=("ivy", "ivy-password"),
        params=[("service", host),
                ("scope", "repository:ivy/audited:pull,push,delete")]
    ).json()["token"]
    auth = {"Authorization": "Bearer " + token}

    config = b'{"architecture":"amd64","os":"linux"}'
    layer = b"layer bytes for the audit test"
    for blob in (config, layer):
        d = "sha256:" + hashlib.sha256(blob).hexdigest()
        r = registry.request("POST", "/v2/ivy/audited/blobs/uploads/",
                             params={"digest": d}, data=blob, headers=dict(
                                 auth, **{"Content-Type":
                                          "application/octet-stream"}))
        assert r.status_code == 201, r.text

    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + hashlib.sha256(config).hexdigest(),
                   "size": len(config)},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": "sha256:" + hashlib.sha256(layer).hexdigest(),
                    "size": len(layer)}]}).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    r = registry.request("PUT", "/v2/ivy/audited/manifests/v1", data=manifest,
                         headers=dict(auth, **{
                             "Content-Type":
                             "application/vnd.oci.image.manifest.v1+json"}))
    assert r.status_code == 201, r.text
    assert registry.request("GET", "/v2/ivy/audited/manifests/v1",
                            headers=auth).status_code == 200
    assert registry.request("DELETE", "/v2/ivy/audited/manifests/v1",
                            headers=auth).status_code == 202

    push = wait_until(lambda: rows(registry, "push_repo"), 10, "push_repo")
    assert push[0][:3] == ("ivy", "ivy", "audited")
    assert json.loads(push[0][4]) == {"reference": "v1",
                                      "manifest_digest": digest}
    pull = wait_until(lambda: rows(registry, "pull_repo"), 10, "pull_repo")
    assert pull[0][:3] == ("ivy", "ivy", "audited")
    deleted = wait_until(lambda: rows(registry, "delete_tag"), 10,
                         "delete_tag")
    assert json.loads(deleted[0][4])["reference"] == "v1"
