"""Blob pulls over raw HTTP: HEAD, GET, Range and DELETE on
/v2/<name>/blobs/<digest> (issue #3 "Blobs"; reference 2.2; security
catalogue B1.4 and B1.9).

A blob is served only when linked to the repository of the URL (an
unexpired uploadedblob row or a manifestblob row); the bytes go out as a
file buffer (sendfile) and nginx's range filter answers Range requests.
"""

import hashlib
import os
import subprocess

import pytest

import harness


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def create_user(registry, name, password):
    res = subprocess.run(
        [str(harness.QUAYCTL), "user", "create", name, "--db-uri",
         registry.db_uri, "--password-stdin"],
        input=password + "\n", text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def dbname(registry):
    return registry.db_uri.rsplit("/", 1)[1]


def error(r):
    return r.json()["errors"][0]["code"]


class Client:
    """Requests against one repository with a pull,push token for it."""

    def __init__(self, registry, name, auth):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        r = registry.request(
            "GET", "/v2/auth", auth=auth,
            params=[("service", host),
                    ("scope", f"repository:{name}:pull,push")])
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def req(self, method, path, headers=None, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        return self.registry.request(method, path, headers=h, **kw)

    def push(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data)
        assert r.status_code == 201, r.text
        return digest

    def blob(self, digest, method="GET", headers=None):
        return self.req(method, f"/v2/{self.name}/blobs/{digest}",
                        headers=headers)


@pytest.fixture(scope="module")
def registry(start_registry):
    # the harness's nginx.conf has sendfile on, as conf/nginx.conf does
    return start_registry()


@pytest.fixture(scope="module")
def users(registry):
    create_user(registry, "alice", "alice-password")
    create_user(registry, "bob", "bob-password")
    return {"alice": ("alice", "alice-password"),
            "bob": ("bob", "bob-password")}


@pytest.fixture(scope="module")
def alice(registry, users):
    return Client(registry, "alice/blobs", users["alice"])


@pytest.fixture(scope="module")
def blob3000(alice):
    data = os.urandom(3000)
    return data, alice.push(data)


def test_head_has_the_headers_and_no_body(alice, blob3000):
    data, digest = blob3000
    r = alice.blob(digest, "HEAD")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["Content-Length"] == "3000"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{digest}"'
    assert r.headers["Cache-Control"] == "max-age=31536000"
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def test_get_returns_the_bytes(alice, blob3000):
    data, digest = blob3000
    r = alice.blob(digest)
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == "3000"


def test_if_none_match_with_the_digest_is_304(alice, blob3000):
    _, digest = blob3000
    r = alice.blob(digest, headers={"If-None-Match": f'"{digest}"'})
    assert r.status_code == 304


@pytest.mark.parametrize("spec,start,end", [
    ("bytes=500-1499", 500, 1499),
    ("bytes=-500", 2500, 2999),
    ("bytes=2000-5000", 2000, 2999),
    ("bytes=0-0", 0, 0),
    ("bytes=2999-", 2999, 2999),
])
def test_range_is_206_with_content_range(alice, blob3000, spec, start, end):
    data, digest = blob3000
    r = alice.blob(digest, headers={"Range": spec})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == f"bytes {start}-{end}/3000"
    assert r.content == data[start:end + 1]
    assert r.headers["Docker-Content-Digest"] == digest


def test_range_on_head_is_206_without_a_body(alice, blob3000):
    _, digest = blob3000
    r = alice.blob(digest, "HEAD", headers={"Range": "bytes=500-1499"})
    assert r.status_code == 206
    assert r.headers["Content-Range"] == "bytes 500-1499/3000"
    assert r.headers["Content-Length"] == "1000"
    assert r.content == b""


@pytest.mark.parametrize("spec", ["bytes=500-0", "bytes=3000-",
                                  "bytes=5000-6000"])
def test_unsatisfiable_range_is_416(alice, blob3000, spec):
    _, digest = blob3000
    r = alice.blob(digest, headers={"Range": spec})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == "bytes */3000"


@pytest.mark.parametrize("spec", ["bytes=0-99999999999999999999",
                                  "items=0-1", "bytes=0-9,20-29",
                                  "bytes=abc", "bytes=--1"])
def test_odd_ranges_never_get_a_5xx(alice, blob3000, spec):
    data, digest = blob3000
    r = alice.blob(digest, headers={"Range": spec})
    assert r.status_code in (200, 206, 416)
    if r.status_code == 200:
        assert r.content == data


def test_multi_range_is_multipart(alice, blob3000):
    data, digest = blob3000
    r = alice.blob(digest, headers={"Range": "bytes=0-9,20-29"})
    assert r.status_code == 206
    assert r.headers["Content-Type"].startswith("multipart/byteranges")
    assert data[0:10] in r.content and data[20:30] in r.content


def test_a_blob_of_another_repository_is_unknown(registry, users, blob3000):
    _, digest = blob3000
    bob = Client(registry, "bob/other", users["bob"])
    bob.push(b"bob's own blob")
    for method in ("GET", "HEAD"):
        r = bob.blob(digest, method)
        assert r.status_code == 404
    assert error(bob.blob(digest)) == "BLOB_UNKNOWN"


def test_an_unknown_digest_is_404_blob_unknown(alice):
    r = alice.blob(sha256(b"never pushed"))
    assert r.status_code == 404
    assert error(r) == "BLOB_UNKNOWN"


@pytest.mark.parametrize("digest", [
    "sha256:baddigeststring", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
    "md5:abcd", "sha512:" + "a" * 64,
])
def test_a_malformed_digest_is_400_or_404(alice, digest):
    r = alice.blob(digest)
    assert r.status_code in (400, 404)
    assert error(r) in ("DIGEST_INVALID", "BLOB_UNKNOWN")


def test_delete_is_405_unsupported(alice, blob3000):
    _, digest = blob3000
    r = alice.blob(digest, "DELETE")
    assert r.status_code == 405
    assert error(r) == "UNSUPPORTED"
    assert alice.blob(digest).status_code == 200


def test_an_expired_upload_link_hides_the_blob(registry, alice):
    data = os.urandom(100)
    digest = alice.push(data)
    registry.pg.sql(
        "UPDATE uploadedblob SET expires_at = now() - interval '1 second'"
        " WHERE blob_id = (SELECT id FROM imagestorage WHERE"
        f" content_checksum = '{digest}')", db=dbname(registry))
    assert alice.blob(digest).status_code == 404


def test_a_manifest_link_keeps_the_blob_visible(registry, alice):
    data = os.urandom(100)
    digest = alice.push(data)
    db = dbname(registry)
    registry.pg.sql(
        "WITH m AS (INSERT INTO manifest (repository_id, digest,"
        " media_type_id, manifest_bytes) SELECT u.repository_id,"
        f" 'sha256:{'0' * 64}', (SELECT id FROM mediatype WHERE name ="
        " 'application/vnd.oci.image.manifest.v1+json'), '{}'"
        " FROM uploadedblob u JOIN imagestorage s ON s.id = u.blob_id"
        f" WHERE s.content_checksum = '{digest}' LIMIT 1 RETURNING id,"
        " repository_id)"
        " INSERT INTO manifestblob (repository_id, manifest_id, blob_id)"
        " SELECT m.repository_id, m.id, s.id FROM m, imagestorage s"
        f" WHERE s.content_checksum = '{digest}'", db=db)
    registry.pg.sql(
        "UPDATE uploadedblob SET expires_at = now() - interval '1 second'"
        " WHERE blob_id = (SELECT id FROM imagestorage WHERE"
        f" content_checksum = '{digest}')", db=db)
    r = alice.blob(digest)
    assert r.status_code == 200
    assert r.content == data


def test_a_row_without_bytes_is_404_and_logged(registry, alice):
    data = os.urandom(100)
    digest = alice.push(data)
    hexd = digest.split(":")[1]
    (registry.storage_path / "sha256" / hexd[:2] / hexd).unlink()
    r = alice.blob(digest)
    assert r.status_code == 404
    assert error(r) == "BLOB_UNKNOWN"
    assert "its bytes are missing" in registry.error_log()


def test_a_large_blob_streams_back_intact(alice):
    data = os.urandom(20 * 1024 * 1024 + 5)
    digest = alice.push(data)
    r = alice.blob(digest)
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == digest.split(":")[1]
