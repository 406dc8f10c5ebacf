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
import json
import os
import re
import subprocess
import time

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
    return rgw.location(bucket, prefix=PREFIX, **extra)


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


def test_chunked_upload_crosses_part_boundaries_on_any_worker(
        rgw, rados, alice):
    # 13 PATCHes of 1 MiB (fresh connections: any of the two workers)
    # fill two 5 MiB parts and leave 3 MiB spooled for the PUT
    data = os.urandom(13 * MiB + 12345)
    digest = sha256(data)
    location, uuid = alice.start()
    chunk = MiB
    seen_parts = []
    for off in range(0, len(data), chunk):
        piece = data[off:off + chunk]
        r = alice.patch(location, piece, start=off, fresh=True)
        assert r.status_code == 202, r.text
        assert r.headers["Range"] == f"0-{off + len(piece) - 1}"
        count, meta = upload_metadata(rados, uuid)
        assert count == off + len(piece)
        seen_parts.append(len(meta.get("parts", [])))
        # the node spools only the part being filled
        assert spool_path(rados, uuid).stat().st_size < 6 * MiB

    assert seen_parts[3] == 0 and seen_parts[5] == 1 and seen_parts[-1] == 2
    _, meta = upload_metadata(rados, uuid)
    assert [p[1] for p in meta["parts"]] == [5 * MiB, 5 * MiB]
    assert meta["upload_id"]
    assert [k for k, _ in rgw.list_multipart_uploads(rados.bucket)] == \
        [f"{PREFIX}/uploads/{uuid}"]

    r = alice.put(location, digest, fresh=True)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest

    assert bucket_object(rgw, rados.bucket, blob_key(digest)) == data
    assert upload_metadata(rados, uuid) is None
    assert not spool_path(rados, uuid).exists()
    assert_clean_bucket(rgw, rados.bucket, [digest])


def test_20_mib_blob_is_streamed_in_parts_and_copied_in_ranges(
        rgw, rados, alice):
    # one PATCH of 20 MiB, then the PUT; maximum_chunk_size_mb is 8, so
    # the object reaches its content address by UploadPartCopy ranges
    data = os.urandom(20 * MiB)
    digest = sha256(data)
    location, uuid = alice.start()
    r = alice.patch(location, data)
    assert r.status_code == 202, r.text
    count, meta = upload_metadata(rados, uuid)
    assert count == len(data)
    assert [p[1] for p in meta["parts"]] == [5 * MiB] * 4
    r = alice.put(location, digest)
    assert r.status_code == 201, r.text

    r = alice.blob(digest)
    assert r.status_code == 307
    got = requests.get(r.headers["Location"], timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == digest.split(":")[1]
    assert_clean_bucket(rgw, rados.bucket, [digest])


def test_last_chunk_with_the_put_and_a_blob_of_exactly_one_part(
        rgw, rados, alice):
    one = os.urandom(5 * MiB)
    location, _ = alice.start()
    assert alice.patch(location, one).status_code == 202
    r = alice.put(location, sha256(one))
    assert r.status_code == 201, r.text

    two = os.urandom(7 * MiB)
    location, _ = alice.start()
    assert alice.patch(location, two[:MiB], start=0).status_code == 202
    r = alice.put(location, sha256(two), data=two[MiB:],
                  headers={"Content-Range": f"{MiB}-{len(two) - 1}"})
    assert r.status_code == 201, r.text

    empty = b""
    assert alice.push(empty) == sha256(empty)

    for blob in (one, two, empty):
        assert bucket_object(rgw, rados.bucket, blob_key(sha256(blob))) \
            == blob
    assert rgw.list_multipart_uploads(rados.bucket) == []


def test_wrong_digest_on_put_aborts_and_leaves_nothing(rgw, rados, alice):
    data = os.urandom(6 * MiB)
    location, uuid = alice.start()
    assert alice.patch(location, data).status_code == 202
    r = alice.put(location, sha256(b"something else"))
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "DIGEST_INVALID"
    assert upload_metadata(rados, uuid) is None
    assert rgw.list_multipart_uploads(rados.bucket) == []
    assert blob_key(sha256(data)) not in rgw.list_objects(rados.bucket)


def test_cancel_aborts_the_multipart_upload(rgw, rados, alice):
    location, uuid = alice.start()
    assert alice.patch(location, os.urandom(6 * MiB)).status_code == 202
    assert [k for k, _ in rgw.list_multipart_uploads(rados.bucket)] == \
        [f"{PREFIX}/uploads/{uuid}"]
    assert spool_path(rados, uuid).exists()

    r = alice.req("DELETE", location)
    assert r.status_code == 204, r.text
    assert rgw.list_multipart_uploads(rados.bucket) == []
    assert not spool_path(rados, uuid).exists()
    assert upload_metadata(rados, uuid) is None
    assert alice.req("GET", location).status_code == 404


def test_upload_continues_on_another_node_from_the_bucket_or_last_part(
        rgw, rados, alice):
    # the part being filled is spooled on one node and, at the end of
    # each PATCH, stored in the bucket as uploads/<uuid>.tail; a PATCH
    # that reaches another node (here: the row names another one) fetches
    # it and goes on.  A row without a usable tail (as rows written before
    # tails were stored) is told to resend from the last part boundary.
    # (t/storage/test_s3_cross_node.py runs two real nodes.)
    data = os.urandom(8 * MiB)
    digest = sha256(data)
    location, uuid = alice.start()
    assert alice.patch(location, data[:7 * MiB], start=0).status_code == 202
    _, meta = upload_metadata(rados, uuid)
    assert meta["tail"] == [5 * MiB, 2 * MiB,
                            hashlib.sha256(data[5 * MiB:7 * MiB]).hexdigest()]
    tail_key = f"{PREFIX}/uploads/{uuid}.tail"
    assert bucket_object(rgw, rados.bucket, tail_key) == data[5 * MiB:7 * MiB]

    elsewhere = ("UPDATE blobupload SET storage_metadata = jsonb_set("
                 "storage_metadata, '{node}', '\"elsewhere:/spool\"')"
                 f" WHERE uuid = '{uuid}'")
    rados.pg.sql(elsewhere, db=dbname(rados))
    r = alice.patch(location, data[7 * MiB:7 * MiB + 512 * 1024],
                    start=7 * MiB)
    assert r.status_code == 202, r.text
    assert "were fetched from the bucket" in rados.error_log()

    rados.pg.sql(elsewhere, db=dbname(rados))
    rados.pg.sql("UPDATE blobupload SET storage_metadata = storage_metadata"
                 f" - 'tail' WHERE uuid = '{uuid}'", db=dbname(rados))
    r = alice.patch(location, data[7 * MiB + 512 * 1024:],
                    start=7 * MiB + 512 * 1024)
    assert r.status_code == 416, r.text
    assert r.headers["Range"] == f"0-{5 * MiB - 1}"
    assert "continues from byte 5242880" in r.text
    assert upload_metadata(rados, uuid)[0] == 5 * MiB
    s = alice.req("GET", location)
    assert s.status_code == 204 and s.headers["Range"] == f"0-{5 * MiB - 1}"

    r = alice.patch(location, data[5 * MiB:], start=5 * MiB)
    assert r.status_code == 202, r.text
    r = alice.put(location, digest)
    assert r.status_code == 201, r.text
    assert bucket_object(rgw, rados.bucket, blob_key(digest)) == data
    assert_clean_bucket(rgw, rados.bucket, [digest])


def test_head_is_answered_from_the_database(rgw, rados, alice):
    data = os.urandom(4096)
    digest = alice.push(data)
    rgw.stop_gateway()
    try:
        r = alice.blob(digest, method="HEAD")
        assert r.status_code == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Docker-Content-Digest"] == digest
        # a GET still answers: the presigned URL needs no storage call
        assert alice.blob(digest).status_code == 307
    finally:
        rgw.start_gateway()


def test_endpoint_host_name_is_resolved_at_configuration_time(
        rgw, start_registry):
    # "localhost", not an address: nginx has no resolver configured, so
    # this works only because the endpoint became an implicit upstream
    # when quay_config was read
    bucket = new_bucket(rgw, "byname")
    reg = start_registry(**s3_config(
        "byname", radosgw_location(rgw, bucket, hostname="localhost")))
    create_user(reg, "alice", "alice-password")
    c = Client(reg, "alice/byname", ("alice", "alice-password"))
    data = os.urandom(6 * MiB + 1)
    location, _ = c.start()
    assert c.patch(location, data).status_code == 202
    assert c.put(location, sha256(data)).status_code == 201
    assert bucket_object(rgw, bucket, blob_key(sha256(data))) == data
    r = c.blob(sha256(data))
    assert r.headers["Location"].startswith(f"http://localhost:{rgw.port}/")
    assert "no resolver" not in reg.error_log()


# ---------------------------------------------------------- proxy mode

def test_proxy_mode_streams_the_blob_with_range(rgw, s3form, proxied):
    data = os.urandom(7 * MiB + 3)
    digest = proxied.push(data)
    assert bucket_object(rgw, s3form.bucket, blob_key(digest)) == data

    r = proxied.blob(digest)
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["ETag"] == f'"{digest}"'
    assert r.headers["Content-Length"] == str(len(data))
    assert "x-amz-request-id" not in {k.lower() for k in r.headers}

    r = proxied.blob(digest, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206
    assert r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"

    r = proxied.blob(digest, method="HEAD")
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(len(data))

    # the S3Storage form stores at the same content address
    assert_clean_bucket(rgw, s3form.bucket, [digest])


def test_proxy_mode_with_missing_bytes_is_a_5xx(rgw, s3form, proxied):
    data = os.urandom(1000)
    digest = proxied.push(data)
    assert rgw.s3("DELETE", f"/{s3form.bucket}/{blob_key(digest)}"
                  ).status_code == 204
    r = proxied.blob(digest)
    assert r.status_code == 502
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert "Docker-Content-Digest" not in r.headers
    assert "Cache-Control" not in r.headers


# --------------------------------------------------------------- health

def test_endtoend_health_checks_the_bucket(rados):
    r = rados.request("GET", "/health/endtoend")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["services"]["storage"] is True


# -------------------------------------------------------- wrong secret

def test_wrong_secret_key_is_a_clear_storage_error(rgw, start_registry):
    bucket = new_bucket(rgw, "badkey")
    reg = start_registry(**s3_config(
        "badkey", radosgw_location(rgw, bucket,
                                   secret_key="not-the-secret-key")))
    create_user(reg, "alice", "alice-password")
    c = Client(reg, "alice/badkey", ("alice", "alice-password"))

    small = os.urandom(1000)
    r = c.req("POST", "/v2/alice/badkey/blobs/uploads/",
              params={"digest": sha256(small)}, data=small)
    assert r.status_code == 503, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "UNAVAILABLE"
    assert err["detail"] == 'storage location "badkey" failed'

    big = os.urandom(6 * MiB)
    location, uuid = c.start()
    r = c.patch(location, big)
    assert r.status_code == 503, r.text

    log = reg.error_log()
    assert re.search(r'\[error\].*storage location "badkey": PutObject '
                     r'"registry/sha256/[0-9a-f]{2}/[0-9a-f]{64}" failed: '
                     r'403 SignatureDoesNotMatch', log), log[-3000:]
    assert re.search(r'storage location "badkey": CreateMultipartUpload '
                     r'"registry/uploads/' + uuid + '" failed: 403', log)
    assert "X-Amz-Signature" not in log and "not-the-secret-key" not in log

    assert reg.pg.sql("SELECT count(*) FROM imagestorage",
                      db=dbname(reg)) == [("0",)]
    assert upload_metadata(reg, uuid)[0] == 0
    assert rgw.list_objects(bucket) == []

    r = reg.request("GET", "/health/endtoend")
    assert r.status_code == 503
    assert r.json()["data"]["services"]["storage"] is False


# ------------------------------------------------------ streaming, abort

def worker_pids(registry):
    master = registry.proc.pid
    with open(f"/proc/{master}/task/{master}/children") as f:
        return [int(p) for p in f.read().split()]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_worker_memory_stays_flat_during_a_large_streamed_push(
        rgw, start_registry):
    # one worker, one PATCH of 300 MiB sent as a stream (60 parts):
    # the worker's memory must not follow the blob
    bucket = new_bucket(rgw, "flat")
    reg = start_registry(worker_processes=1,
                         **s3_config("flat", radosgw_location(rgw, bucket)))
    create_user(reg, "alice", "alice-password")
    c = Client(reg, "alice/flat", ("alice", "alice-password"))
    (worker,) = worker_pids(reg)
    c.push(os.urandom(6 * MiB))            # warm up: pools, connections
    before = rss_kib(worker)

    block = os.urandom(MiB)
    size = 300
    h = hashlib.sha256()
    for _ in range(size):
        h.update(block)
    digest = "sha256:" + h.hexdigest()

    def body():
        for _ in range(size):
            yield block

    location, uuid = c.start()
    r = c.req("PATCH", location, data=body(), timeout=600,
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    grew = rss_kib(worker) - before
    assert grew < 4 * 1024, f"worker RSS grew by {grew} KiB"
    r = c.put(location, digest, timeout=600)
    assert r.status_code == 201, r.text
    assert_clean_bucket(rgw, bucket, [digest])


def test_client_that_goes_away_mid_part_leaves_a_usable_upload(
        rgw, rados, alice):
    import socket
    location, uuid = alice.start()
    host, port = rados.url.split("//")[1].split(":")
    data = os.urandom(12 * MiB)
    s = socket.create_connection((host, int(port)))
    s.sendall((f"PATCH {location} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               f"Authorization: Bearer {alice.token}\r\n"
               f"Content-Length: {20 * MiB}\r\n\r\n").encode())
    s.sendall(data)
    time.sleep(0.5)
    s.close()

    # whatever was checkpointed (whole parts) counts; the rest is gone
    def settled():
        m = upload_metadata(rados, uuid)
        return m if m and m[0] in (5 * MiB, 10 * MiB) else None
    count, meta = harness.wait_until(settled, 30, "a checkpointed upload")
    assert count == sum(p[1] for p in meta["parts"])

    r = alice.patch(location, data[count:], start=count)
    assert r.status_code == 202, r.text
    r = alice.put(location, sha256(data))
    assert r.status_code == 201, r.text
    assert bucket_object(rgw, rados.bucket, blob_key(sha256(data))) == data
    assert rados.request("GET", "/health/endtoend").status_code == 200


# --------------------------------------------------------------- skopeo

def _clients():
    """t/clients/conftest.py as a module: its isolated client
    environment (Tools) and identities (Client, Target)."""
    return harness.load_test_file("clients/conftest.py")


@pytest.fixture(scope="module")
def skopeo_tools(tmp_root):
    cl = _clients()
    return cl, cl.Tools(tmp_root.mkdir("s3-clients"))


def skopeo_alice(skopeo_tools, tmp_root, reg):
    cl, tools = skopeo_tools
    target = cl.Target(reg.url, f"127.0.0.1:{reg.port}", False, True, True,
                       {"alice": ("alice", "alice-password")}, reg)
    c = cl.Client(tools, target, "alice", tmp_root.mkdir("s3-alice"))
    c.login()
    return c


@pytest.mark.parametrize("mode", ["redirect", "proxy"])
def test_skopeo_copy_to_and_from_the_s3_backed_registry(
        rgw, rados, s3form, skopeo_tools, tmp_root, mode):
    reg = rados if mode == "redirect" else s3form
    alice = skopeo_alice(skopeo_tools, tmp_root, reg)
    img = images.oci_image(tmp_root.mkdir("img"), f"s3-{mode}",
                           layers=((7_000_000,), (3000, 1000)))
    ref = alice.target.ref(f"alice/skopeo-{mode}", "v1")
    alice.copy(img.ref, ref)
    assert alice.inspect_raw(ref).out == img.manifest

    out = tmp_root.mkdir("pulled") / "dir"
    alice.copy(ref, f"dir:{out}")
    copied = images.read_dir(out)
    assert copied.manifest == img.manifest
    assert copied.layer_digests == [b.digest for b in img.layers]
    for d in [img.config.digest] + [b.digest for b in img.layers]:
        assert images.sha256_file(copied.blobs[d]) == d

    blobs = [img.config.digest] + [b.digest for b in img.layers]
    keys = rgw.list_objects(reg.bucket)
    for d in blobs:
        assert blob_key(d) in keys
    assert rgw.list_multipart_uploads(reg.bucket) == []
    assert [k for k in keys if "/uploads/" in k] == []


def test_endtoend_health_checks_every_location(rgw, start_registry,
                                               tmp_root):
    # uploads go to the local location and work; the second location's
    # bucket refuses the key, and health says so, naming it in the log
    bucket = new_bucket(rgw, "mixed")
    local = tmp_root.mkdir("local-storage")
    reg = start_registry(
        DISTRIBUTED_STORAGE_CONFIG={
            "local": ["LocalStorage", {"storage_path": str(local)}],
            "far": radosgw_location(rgw, bucket, secret_key="wrong-key")},
        DISTRIBUTED_STORAGE_PREFERENCE=["local"],
        DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["local"])
    create_user(reg, "alice", "alice-password")
    c = Client(reg, "alice/mixed", ("alice", "alice-password"))
    data = os.urandom(2000)
    digest = c.push(data)
    assert c.blob(digest).content == data

    r = reg.request("GET", "/health/endtoend")
    assert r.status_code == 503, r.text
    services = r.json()["data"]["services"]
    assert services["storage"] is False
    assert services["database"] is True
    assert re.search(r'storage location "far": HeadBucket "' + bucket +
                     r'" failed: 403', reg.error_log())

    # with both locations healthy, it is 200
    reg.write_config(DISTRIBUTED_STORAGE_CONFIG={
        "local": ["LocalStorage", {"storage_path": str(local)}],
        "far": radosgw_location(rgw, bucket)})
    reg.reload()
    def healthy():
        return reg.request("GET", "/health/endtoend").status_code == 200
    harness.wait_until(healthy, 30, "endtoend 200 after the reload")
