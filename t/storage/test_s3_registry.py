"""The registry on S3 storage (issue #5): a single-node Ceph RADOS Gateway
(the `rgw` fixture, t/lib/rgw.py) is the only storage location, in
Quay's RadosGWStorage and S3Storage forms.

Blobs go in through the registry (monolithic, chunked across S3 part
boundaries, 20 MiB, skopeo) and come back out by redirect (a presigned
URL, fetched from RGW) and through nginx (FEATURE_PROXY_STORAGE, with
Range).  The bucket is then read with the harness's own SigV4 signer
(t/lib/rgw.py), never through the code under test: each blob must be at
its content address, and no multipart upload or temporary object may be
left over.  RGW validates signatures, so a wrong secret key fails for
real.  If RGW cannot be installed these tests fail; they never skip.
"""

import concurrent.futures
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

import harness
import images


MiB = 1024 * 1024
PREFIX = "registry"            # storage_path, as Quay users write it


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_key(digest):
    hexd = digest.split(":")[1]
    return f"{PREFIX}/sha256/{hexd[:2]}/{hexd}"


def dbname(registry):
    return registry.db_uri.rsplit("/", 1)[1]


def create_user(registry, name, password):
    harness.run([harness.QUAYCTL, "user", "create", name, "--db-uri",
                 registry.db_uri, "--password-stdin", "--if-not-exists"],
                input=password + "\n", timeout=60)


_buckets = iter(range(1, 1000))


def new_bucket(rgw, name):
    bucket = f"quay-{name}-{os.getpid()}-{next(_buckets)}"
    rgw.create_bucket(bucket)
    return bucket


def radosgw_location(rgw, bucket, **extra):
    params = {"hostname": "127.0.0.1", "port": rgw.port, "is_secure": False,
              "access_key": rgw.access_key, "secret_key": rgw.secret_key,
              "bucket_name": bucket, "storage_path": "/" + PREFIX}
    params.update(extra)
    return ["RadosGWStorage", params]


def s3_location(rgw, bucket, **extra):
    params = {"s3_bucket": bucket, "s3_access_key": rgw.access_key,
              "s3_secret_key": rgw.secret_key, "s3_region": rgw.region,
              "endpoint_url": rgw.endpoint, "storage_path": PREFIX + "/"}
    params.update(extra)
    return ["S3Storage", params]


def s3_config(name, location, **extra):
    cfg = {"DISTRIBUTED_STORAGE_CONFIG": {name: location},
           "DISTRIBUTED_STORAGE_PREFERENCE": [name],
           "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS": [name]}
    cfg.update(extra)
    return cfg


class Client:
    """Raw HTTP against one repository with a push+pull token."""

    def __init__(self, registry, name, auth):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        r = registry.request("GET", "/v2/auth", auth=auth,
                             params={"service": host,
                                     "scope": f"repository:{name}:pull,push"})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def req(self, method, path, headers=None, fresh=False, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        if fresh:
            # a new connection, so that the request may land on any worker
            h["Connection"] = "close"
            kw.setdefault("timeout", 60)
            with requests.Session() as s:
                return s.request(method, self.registry.url + path,
                                 headers=h, allow_redirects=False, **kw)
        kw.setdefault("timeout", 60)
        return self.registry.request(method, path, headers=h, **kw)

    def start(self):
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        return r.headers["Location"], r.headers["Docker-Upload-UUID"]

    def patch(self, location, data, start=None, **kw):
        headers = {"Content-Type": "application/octet-stream"}
        if start is not None:
            headers["Content-Range"] = f"{start}-{start + len(data) - 1}"
        return self.req("PATCH", location, headers=headers, data=data, **kw)

    def put(self, location, digest, data=b"", **kw):
        return self.req("PUT", location, params={"digest": digest},
                        data=data, **kw)

    def push(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data)
        assert r.status_code == 201, r.text
        return digest

    def blob(self, digest, method="GET", **kw):
        return self.req(method, f"/v2/{self.name}/blobs/{digest}", **kw)


def bucket_object(rgw, bucket, key):
    r = rgw.s3("GET", f"/{bucket}/{key}")
    assert r.status_code == 200, f"{key}: {r.status_code} {r.text[:300]}"
    return r.content


def assert_clean_bucket(rgw, bucket, digests):
    """Every blob at its content address, nothing else: no temporary
    upload object, no multipart upload in progress."""
    keys = rgw.list_objects(bucket)
    for d in digests:
        assert blob_key(d) in keys, f"{blob_key(d)} not in {keys}"
    assert [k for k in keys if not k.startswith(PREFIX + "/sha256/")] == []
    assert rgw.list_multipart_uploads(bucket) == []


def storage_rows(registry, digest):
    return registry.pg.sql(
        "SELECT s.image_size, l.name FROM imagestorage s"
        " JOIN imagestorageplacement p ON p.storage_id = s.id"
        " JOIN imagestoragelocation l ON l.id = p.location_id"
        f" WHERE s.content_checksum = '{digest}'", db=dbname(registry))


def upload_metadata(registry, uuid):
    rows = registry.pg.sql(
        "SELECT byte_count, storage_metadata::text FROM blobupload"
        f" WHERE uuid = '{uuid}'", db=dbname(registry))
    if not rows:
        return None
    return int(rows[0][0]), json.loads(rows[0][1])


def spool_path(registry, uuid):
    return registry.prefix / "client_body_temp" / "uploads" / uuid


# ------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def rados(rgw, start_registry):
    """A registry whose only location is RadosGWStorage, with a small
    maximum_chunk_size so that a 20 MiB blob is copied in ranges."""
    bucket = new_bucket(rgw, "rados")
    reg = start_registry(**s3_config(
        "rgw", radosgw_location(rgw, bucket, maximum_chunk_size_mb=8)))
    reg.bucket = bucket
    create_user(reg, "alice", "alice-password")
    return reg


@pytest.fixture(scope="module")
def alice(rados):
    return Client(rados, "alice/s3", ("alice", "alice-password"))


@pytest.fixture(scope="module")
def s3form(rgw, start_registry):
    """The S3Storage form, with FEATURE_PROXY_STORAGE."""
    bucket = new_bucket(rgw, "s3")
    reg = start_registry(**s3_config("s3", s3_location(rgw, bucket),
                                     FEATURE_PROXY_STORAGE=True))
    reg.bucket = bucket
    create_user(reg, "alice", "alice-password")
    return reg


@pytest.fixture(scope="module")
def proxied(s3form):
    return Client(s3form, "alice/proxied", ("alice", "alice-password"))


# -------------------------------------------------------------- pushes

def test_monolithic_push_is_at_its_content_address_and_pulls_by_redirect(
        rgw, rados, alice):
    data = os.urandom(300_000)
    digest = alice.push(data)

    assert bucket_object(rgw, rados.bucket, blob_key(digest)) == data
    assert storage_rows(rados, digest) == [(str(len(data)), "rgw")]

    r = alice.blob(digest)
    assert r.status_code == 307, r.text
    url = r.headers["Location"]
    assert url.startswith(f"{rgw.endpoint}/{rados.bucket}/{blob_key(digest)}?")
    assert "X-Amz-Expires=600" in url and "X-Amz-Signature=" in url
    got = requests.get(url, timeout=30)
    assert got.status_code == 200
    assert got.content == data

    assert_clean_bucket(rgw, rados.bucket, [digest])
