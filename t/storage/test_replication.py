"""Geo-replication (issue #5, quay-behaviour 5): two storage locations,
two buckets "a" and "b" on one real Ceph RGW (the `rgw` fixture fails,
never skips, when RGW cannot be installed), one database shared by
several registry nodes:

    node A   prefers location a (uploads go there)
    node B   prefers location b
    broken   prefers a, but with a wrong secret key for a (a failing
             location, as a revoked key would be; a really stopped
             gateway is test_s3_gateway_failover.py)

A push through node A queues one replication job per blob in the same
statement as the manifest; build/bin/quay-replicate --once copies each
blob to b (streamed in parts, SHA-256 verified, then placed); node B then
serves the bytes from b; the broken node falls back to b.  The buckets are
read with the harness's own SigV4 signer (t/lib/rgw.py), never through the
code under test.  The crash test kills quay-replicate with SIGKILL in the
middle of a 64 MiB copy and checks that a restart finishes it exactly
once, leaving no multipart upload behind.
"""

import hashlib
import json
import os
import re
import signal
import subprocess
import time

import pytest
import requests

import harness


MiB = 1024 * 1024
PREFIX = "registry"
QUEUE = "imagestoragereplication/"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_key(digest):
    hexd = digest.split(":")[1]
    return f"{PREFIX}/sha256/{hexd[:2]}/{hexd}"


def location(rgw, bucket, secret=None):
    return rgw.location(bucket, prefix=PREFIX,
                        secret_key=secret or rgw.secret_key)


class Client:
    """Raw /v2/ HTTP against one repository with a push+pull token."""

    def __init__(self, registry, name, auth=("alice", "alice-password")):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        r = registry.request("GET", "/v2/auth", auth=auth,
                             params={"service": host,
                                     "scope": f"repository:{name}:pull,push"})
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def req(self, method, path, headers=None, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        kw.setdefault("timeout", 120)
        return self.registry.request(method, path, headers=h, **kw)

    def push_blob(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/")
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        # one PATCH (several S3 parts for big blobs), then the PUT
        r = self.req("PATCH", loc, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 202, r.text
        r = self.req("PUT", loc, params={"digest": digest})
        assert r.status_code == 201, r.text
        return digest

    def push_image(self, tag, layers):
        """Pushes a config blob, the layers and an OCI manifest; returns
        (manifest digest, [config digest] + layer digests)."""
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": []},
                             "tag": tag}).encode()
        digests = [self.push_blob(config)] + [self.push_blob(l)
                                             for l in layers]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType":
                       "application/vnd.oci.image.config.v1+json",
                       "digest": digests[0], "size": len(config)},
            "layers": [{"mediaType":
                        "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": d, "size": len(l)}
                       for d, l in zip(digests[1:], layers)]}).encode()
        r = self.req("PUT", f"/v2/{self.name}/manifests/{tag}",
                     data=manifest, headers={"Content-Type": OCI_MANIFEST})
        assert r.status_code == 201, r.text
        return r.headers["Docker-Content-Digest"], digests

    def blob(self, digest, method="GET", **kw):
        return self.req(method, f"/v2/{self.name}/blobs/{digest}", **kw)


# ---------------------------------------------------------------- fixtures

class Geo:
    pass


@pytest.fixture(scope="module")
def geo(rgw, start_registry, tmp_path_factory):
    g = Geo()
    g.rgw = rgw
    g.dir = tmp_path_factory.mktemp("geo")
    g.bucket = {}
    for name in ("a", "b"):
        g.bucket[name] = f"quay-geo-{name}-{os.getpid()}"
        rgw.create_bucket(g.bucket[name])

    storage = {"a": location(rgw, g.bucket["a"]),
               "b": location(rgw, g.bucket["b"])}
    common = dict(DISTRIBUTED_STORAGE_CONFIG=storage,
                  DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a", "b"],
                  FEATURE_STORAGE_REPLICATION=True)
    # a short probe interval, so that a location's state is fresh
    probe = "    quay_storage_probe_interval 1s;"

    g.node_a = start_registry(DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
                              http_extra=probe, **common)
    g.db_uri = g.node_a.db_uri
    g.db = g.db_uri.rsplit("/", 1)[1]
    g.node_b = start_registry(DISTRIBUTED_STORAGE_PREFERENCE=["b", "a"],
                              DB_URI=g.db_uri, http_extra=probe, **common)

    broken = dict(storage, a=location(rgw, g.bucket["a"],
                                      secret="not-the-secret-key"))
    g.broken = start_registry(DISTRIBUTED_STORAGE_CONFIG=broken,
                              DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
                              DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a",
                                                                     "b"],
                              FEATURE_STORAGE_REPLICATION=True,
                              DB_URI=g.db_uri, http_extra=probe)
    g.broken_proxy = start_registry(DISTRIBUTED_STORAGE_CONFIG=broken,
                                    DISTRIBUTED_STORAGE_PREFERENCE=["a",
                                                                    "b"],
                                    DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=[
                                        "a", "b"],
                                    FEATURE_STORAGE_REPLICATION=True,
                                    FEATURE_PROXY_STORAGE=True,
                                    DB_URI=g.db_uri, http_extra=probe)
    for node in (g.broken, g.broken_proxy):
        # the probes and reads of location a fail there, by design
        node.ignore_log.append(r"SignatureDoesNotMatch|AccessDenied")

    harness.run([harness.QUAYCTL, "user", "create", "alice", "--db-uri",
                 g.db_uri, "--password-stdin", "--if-not-exists"],
                input="alice-password\n", timeout=60)

    # the worker reads node A's config.yaml (same database, same locations)
    g.config = g.node_a.config_path
    g.n = 0
    return g


def sql(g, query):
    return g.node_a.pg.sql(query, db=g.db)


def placements(g, digest):
    return sorted(r[0] for r in sql(
        g, "SELECT l.name FROM imagestorage s"
           " JOIN imagestorageplacement p ON p.storage_id = s.id"
           " JOIN imagestoragelocation l ON l.id = p.location_id"
           f" WHERE s.content_checksum = '{digest}'"))


def storage_uuid(g, digest):
    return sql(g, "SELECT uuid FROM imagestorage"
                  f" WHERE content_checksum = '{digest}'")[0][0]


def jobs(g):
    return sql(g, "SELECT state, body::text, last_error, retries_remaining"
                  f" FROM queueitem WHERE queue_name = '{QUEUE}'"
                  " ORDER BY id")


def bucket_object(g, name, digest):
    r = g.rgw.s3("GET", f"/{g.bucket[name]}/{blob_key(digest)}")
    return r.content if r.status_code == 200 else None


def assert_clean(g, name):
    """No multipart upload in progress and nothing but blobs."""
    assert g.rgw.list_multipart_uploads(g.bucket[name]) == []
    keys = g.rgw.list_objects(g.bucket[name])
    assert [k for k in keys if not k.startswith(PREFIX + "/sha256/")] == []


def replicate(g, *args, env=None, timeout=300):
    g.n += 1
    log = g.dir / f"replicate-{g.n}.log"
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config",
                       g.config, "--once", "--retry-base", "0", *args], log,
                      env=env)
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        raise AssertionError("quay-replicate --once hung:\n"
                             + log.read_text(errors="replace"))
    return rc, log.read_text(errors="replace")


def fetch(url):
    r = requests.get(url, timeout=120)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.content


# ------------------------------------------------------------------- tests

def test_push_queues_one_job_per_blob_missing_from_a_location(geo):
    c = Client(geo.node_a, "alice/geo")
    layers = [os.urandom(12 * MiB + 3), os.urandom(4096)]
    _, digests = c.push_image("v1", layers)
    geo.digests, geo.layers = digests, layers

    # each upload recorded its placement in the location it was written to
    for d in digests:
        assert placements(geo, d) == ["a"]
        assert bucket_object(geo, "b", d) is None

    got = {json.loads(body)["storage_id"]: json.loads(body)
           for state, body, _, _ in jobs(geo)}
    assert sorted(got) == sorted(storage_uuid(geo, d) for d in digests)
    ns = sql(geo, "SELECT id FROM \"user\" WHERE username = 'alice'")[0][0]
    assert all(b["namespace_user_id"] == int(ns) for b in got.values())
    assert {s for s, _, _, _ in jobs(geo)} == {"queued"}

    # pushing the same manifest again queues nothing new (one waiting job
    # per blob)
    c.push_image("v1", layers)
    assert len(jobs(geo)) == len(digests)


def test_worker_copies_each_blob_to_b_verified_and_placed(geo):
    rc, log = replicate(geo)
    assert rc == 0, log
    assert len(re.findall(r"replicated blob=sha256:\S+ from=a to=b", log)) \
        == len(geo.digests), log
    assert jobs(geo) == []

    for d, data in zip(geo.digests[1:], geo.layers):
        assert placements(geo, d) == ["a", "b"]
        got = bucket_object(geo, "b", d)
        assert got is not None and sha256(got) == d
        assert got == data
    assert_clean(geo, "a")
    assert_clean(geo, "b")

    # nothing left to do: a second run changes nothing
    rc, log = replicate(geo)
    assert rc == 0 and "replicated" not in log, log


def test_each_node_pulls_from_its_preferred_location(geo):
    big = geo.digests[1]
    for node, name in ((geo.node_a, "a"), (geo.node_b, "b")):
        c = Client(node, "alice/geo")
        r = c.blob(big)
        assert r.status_code == 307, r.text
        url = r.headers["Location"]
        assert url.startswith(f"{geo.rgw.endpoint}/{geo.bucket[name]}/"
                              f"{blob_key(big)}?"), (name, url)
        assert sha256(fetch(url)) == big


def test_a_failing_location_is_skipped_for_redirected_pulls(geo):
    # the broken node has a wrong secret for a: the probe of a fails and
    # the pull is sent to b, which holds the blob too
    c = Client(geo.broken, "alice/geo")
    for d, data in zip(geo.digests[1:], geo.layers):
        r = c.blob(d)
        assert r.status_code == 307, r.text
        url = r.headers["Location"]
        assert url.startswith(f"{geo.rgw.endpoint}/{geo.bucket['b']}/"), url
        assert fetch(url) == data
    log = geo.broken.error_log()
    assert re.search(r'storage location "a" is failing \(probe failed\)',
                     log), log[-3000:]


def test_proxied_pulls_fall_back_to_another_location(geo):
    c = Client(geo.broken_proxy, "alice/geo")
    d, data = geo.digests[1], geo.layers[0]
    r = c.blob(d)
    assert r.status_code == 200, r.text[:300]
    assert r.content == data
    assert r.headers["Docker-Content-Digest"] == d
    r = c.blob(d, headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.content == data[100:200]
    log = geo.broken_proxy.error_log()
    assert re.search(r'proxied read from storage location "a" failed '
                     r'\(403\)', log), log[-3000:]


def test_a_blob_only_in_the_failing_location_is_a_clear_5xx(geo):
    # pushed through node A and not replicated yet: only a holds it
    c = Client(geo.node_a, "alice/geo-only-a")
    d = c.push_blob(os.urandom(2000))
    assert placements(geo, d) == ["a"]
    r = Client(geo.broken_proxy, "alice/geo-only-a").blob(d)
    assert r.status_code == 502, r.text
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    # in redirect mode every holder is down: the first is tried anyway
    r = Client(geo.broken, "alice/geo-only-a").blob(d)
    assert r.status_code == 307
    assert geo.bucket["a"] in r.headers["Location"]


def test_source_missing_everywhere_fails_the_job_with_the_reason(geo):
    c = Client(geo.node_a, "alice/geo-missing")
    layer = os.urandom(5000)
    _, digests = c.push_image("gone", [layer])
    lost = digests[1]
    assert geo.rgw.s3("DELETE", f"/{geo.bucket['a']}/{blob_key(lost)}"
                      ).status_code == 204

    rc, log = replicate(geo)
    assert rc == 0, log
    failed = [(s, e) for s, b, e, _ in jobs(geo)
              if json.loads(b)["storage_id"] == storage_uuid(geo, lost)]
    assert len(failed) == 1 and failed[0][0] == "failed", jobs(geo)
    assert f"blob {lost} is missing (or wrong) in every location that " \
        "holds it: a (no such object)" in failed[0][1]
    assert placements(geo, lost) == ["a"]
    assert placements(geo, digests[0]) == ["a", "b"]   # the config blob
    sql(geo, f"DELETE FROM queueitem WHERE queue_name = '{QUEUE}'")


def test_unreachable_target_is_retried_with_backoff(geo):
    c = Client(geo.node_a, "alice/geo-retry")
    _, digests = c.push_image("retry", [os.urandom(3000)])

    # the worker's own config: location b's gateway is a closed port
    cfg = dict(geo.node_a.config)
    down = location(geo.rgw, geo.bucket["b"])
    down[1]["port"] = harness.free_port()
    cfg["DISTRIBUTED_STORAGE_CONFIG"] = dict(
        cfg["DISTRIBUTED_STORAGE_CONFIG"], b=down)
    path = harness.write_config(geo.dir / "b-down.yaml", cfg)

    geo.n += 1
    log_path = geo.dir / f"replicate-{geo.n}.log"
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config", path,
                       "--once", "--retry-base", "60"], log_path)
    assert p.wait(120) == 0, log_path.read_text()
    rows = jobs(geo)
    assert len(rows) == len(digests)
    for state, _, error, retries in rows:
        assert state == "queued" and retries == "4", rows
        assert error.startswith("target: location b: ") and \
            "onnect" in error, error
    assert all(placements(geo, d) == ["a"] for d in digests)
    assert sql(geo, "SELECT bool_and(available_after > now() + interval"
                    f" '30 seconds') FROM queueitem WHERE queue_name ="
                    f" '{QUEUE}'") == [("t",)]

    # once b answers again, the jobs finish
    sql(geo, "UPDATE queueitem SET available_after = now()"
             f" WHERE queue_name = '{QUEUE}'")
    rc, log = replicate(geo)
    assert rc == 0, log
    assert jobs(geo) == []
    assert all(placements(geo, d) == ["a", "b"] for d in digests)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0


def test_kill_9_mid_copy_then_restart_copies_exactly_once(geo):
    c = Client(geo.node_a, "alice/geo-crash")
    layer = os.urandom(64 * MiB)
    _, digests = c.push_image("big", [layer])
    big = digests[1]
    uuid = storage_uuid(geo, big)
    temp = f"{PREFIX}/uploads/replicate-{uuid}"

    # a worker that pauses after each 8 MiB part and holds a 3 s lease
    geo.n += 1
    log_path = geo.dir / f"replicate-{geo.n}.log"
    env = dict(os.environ, QUAY_REPLICATE_TEST_PART_PAUSE_SECONDS="0.5")
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config",
                       geo.config, "--lease", "3", "--poll", "1"], log_path,
                      env=env)
    try:
        harness.wait_until(
            lambda: "test pause after part 3 of 8"
            in log_path.read_text(errors="replace"), 120,
            "quay-replicate in the middle of the 64 MiB copy")
        hwm = rss_mib(p.pid)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)

    # memory followed the part size, not the blob
    assert hwm < 48, f"worker peak RSS {hwm:.0f} MiB for a 64 MiB copy"

    # the half-made copy is an uncompleted multipart upload: invisible
    assert [k for k, _ in geo.rgw.list_multipart_uploads(geo.bucket["b"])] \
        == [temp]
    assert bucket_object(geo, "b", big) is None
    assert placements(geo, big) == ["a"]

    # the restarted worker claims the job once its lease has expired
    harness.wait_until(
        lambda: sql(geo, "SELECT count(*) FROM queueitem"
                         f" WHERE queue_name = '{QUEUE}' AND lease_owner"
                         " IS NOT NULL AND lease_expires > now()")
        == [("0",)], 30, "the killed worker's lease to expire")
    rc, log = replicate(geo)
    assert rc == 0, log
    assert "reclaimed=yes" in log, log
    assert f"aborted a stale multipart upload location=b key=" \
        f"uploads/replicate-{uuid}" in log, log

    assert jobs(geo) == []
    assert placements(geo, big) == ["a", "b"]
    got = bucket_object(geo, "b", big)
    assert got is not None and hashlib.sha256(got).digest() == \
        hashlib.sha256(layer).digest()
    assert_clean(geo, "b")
    assert len(re.findall(re.escape(f"replicated blob={big} "), log)) == 1


def cleanup(g, *args, timeout=120):
    g.n += 1
    log = g.dir / f"cleanup-{g.n}.log"
    p = harness.spawn([harness.BINDIR / "quay-upload-cleanup", "--config",
                       g.config, "--once", *args], log)
    rc = p.wait(timeout)
    return rc, log.read_text(errors="replace")


def test_upload_cleanup_aborts_stale_multipart_uploads(geo):
    rgw, bucket = geo.rgw, geo.bucket["b"]

    def create(key):
        r = rgw.s3("POST", f"/{bucket}/{key}", query={"uploads": ""})
        assert r.status_code == 200, r.text
        return re.search(r"<UploadId>([^<]+)</UploadId>", r.text).group(1)

    stale = [f"{PREFIX}/uploads/replicate-{'1' * 8}-1111-1111-1111-"
             f"{'1' * 12}", f"{PREFIX}/sha256/ab/{'ab' * 32}"]
    other = f"{PREFIX}/elsewhere/keep"
    for key in stale + [other]:
        create(key)

    # an abandoned push session on a: a multipart upload with one part
    c = Client(geo.node_a, "alice/geo-abandoned")
    r = c.req("POST", f"/v2/{c.name}/blobs/uploads/")
    assert r.status_code == 202
    session = r.headers["Docker-Upload-UUID"]
    r = c.req("PATCH", r.headers["Location"], data=os.urandom(6 * MiB),
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 202, r.text
    assert [k for k, _ in rgw.list_multipart_uploads(geo.bucket["a"])] == \
        [f"{PREFIX}/uploads/{session}"]

    # younger than BLOBUPLOAD_DELETION_DATE_THRESHOLD (two days): kept
    rc, log = cleanup(geo)
    assert rc == 0, log
    assert sorted(k for k, _ in rgw.list_multipart_uploads(bucket)) == \
        sorted(stale + [other])

    # with a threshold of 0 minutes everything under uploads/ and sha256/
    # is stale, once a second has passed (S3 times have seconds)
    time.sleep(1.1)
    rc, log = cleanup(geo, "--threshold-minutes", "0")
    assert rc == 0, log
    assert [k for k, _ in rgw.list_multipart_uploads(bucket)] == [other], \
        log
    for key in stale:
        assert f"aborted a stale multipart upload location=b key=" \
            f"{key[len(PREFIX) + 1:]}" in log, log
    assert rgw.list_multipart_uploads(geo.bucket["a"]) == []
    assert sql(geo, "SELECT count(*) FROM blobupload"
                    f" WHERE uuid = '{session}'") == [("0",)]

    for key, upload_id in rgw.list_multipart_uploads(bucket):
        assert rgw.s3("DELETE", f"/{bucket}/{key}",
                      query={"uploadId": upload_id}).status_code == 204


def test_sigterm_mid_copy_gives_the_job_back_and_aborts_the_upload(geo):
    c = Client(geo.node_a, "alice/geo-term")
    layer = os.urandom(24 * MiB)
    _, digests = c.push_image("term", [layer])
    big = digests[1]

    geo.n += 1
    log_path = geo.dir / f"replicate-{geo.n}.log"
    env = dict(os.environ, QUAY_REPLICATE_TEST_PART_PAUSE_SECONDS="2")
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config",
                       geo.config, "--poll", "1"], log_path, env=env)
    try:
        harness.wait_until(
            lambda: "test pause after part 1 of 3"
            in log_path.read_text(errors="replace"), 120,
            "quay-replicate in the middle of the 24 MiB copy")
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    log = log_path.read_text(errors="replace")
    assert "given back reason=shutdown" in log, log

    # the retry was not used, the half-made copy is gone, nothing placed
    row = [r for r in jobs(geo)
           if json.loads(r[1])["storage_id"] == storage_uuid(geo, big)]
    assert [(s, n) for s, _, _, n in row] == [("queued", "5")], row
    assert geo.rgw.list_multipart_uploads(geo.bucket["b"]) == []
    assert placements(geo, big) == ["a"]

    rc, log = replicate(geo)
    assert rc == 0, log
    assert jobs(geo) == []
    assert placements(geo, big) == ["a", "b"]
    assert bucket_object(geo, "b", big) == layer
    assert_clean(geo, "b")
