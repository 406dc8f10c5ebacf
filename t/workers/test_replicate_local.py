"""quay-replicate between two LocalStorage locations (two directories, as
two mounts in two regions would be): a push through the registry queues
the jobs, the worker copies each blob (a 20 MiB layer in 8 MiB parts
through "<key>.mpu" files), verifies it and places it; a job for a blob
whose bytes were lost fails with the reason.  The S3 side is
t/storage/test_replication.py.
"""

import hashlib
import json
import os
import subprocess

import pytest

import harness


MiB = 1024 * 1024
QUEUE = "imagestoragereplication/"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def path_of(root, digest):
    h = digest.split(":")[1]
    return root / "sha256" / h[:2] / h


@pytest.fixture(scope="module")
def env(start_registry, tmp_path_factory):
    d = tmp_path_factory.mktemp("replocal")
    roots = {n: d / n for n in ("a", "b")}
    for p in roots.values():
        p.mkdir()
    reg = start_registry(
        DISTRIBUTED_STORAGE_CONFIG={
            n: ["LocalStorage", {"storage_path": str(p)}]
            for n, p in roots.items()},
        DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
        DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a", "b"],
        FEATURE_STORAGE_REPLICATION=True)
    harness.run([harness.QUAYCTL, "user", "create", "alice", "--db-uri",
                 reg.db_uri, "--password-stdin", "--if-not-exists"],
                input="alice-password\n", timeout=60)
    host = reg.url.split("//")[1]
    r = reg.request("GET", "/v2/auth", auth=("alice", "alice-password"),
                    params={"service": host,
                            "scope": "repository:alice/rep:pull,push"})
    assert r.status_code == 200, r.text

    class Env:
        pass

    e = Env()
    e.reg, e.roots, e.dir, e.n = reg, roots, d, 0
    e.headers = {"Authorization": "Bearer " + r.json()["token"]}
    e.db = reg.db_uri.rsplit("/", 1)[1]
    return e


def sql(env, q):
    return env.reg.pg.sql(q, db=env.db)


def push(env, tag, layers):
    digests = []
    config = json.dumps({"os": "linux", "tag": tag}).encode()
    for blob in [config] + layers:
        d = sha256(blob)
        r = env.reg.request("POST", "/v2/alice/rep/blobs/uploads/",
                            params={"digest": d}, data=blob,
                            headers=env.headers, timeout=120)
        assert r.status_code == 201, r.text
        digests.append(d)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0], "size": len(config)},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": d, "size": len(l)}
                   for d, l in zip(digests[1:], layers)]}).encode()
    r = env.reg.request("PUT", f"/v2/alice/rep/manifests/{tag}",
                        data=manifest,
                        headers=dict(env.headers,
                                     **{"Content-Type": OCI_MANIFEST}))
    assert r.status_code == 201, r.text
    return digests


def placements(env, digest):
    return sorted(r[0] for r in sql(
        env, "SELECT l.name FROM imagestorage s"
             " JOIN imagestorageplacement p ON p.storage_id = s.id"
             " JOIN imagestoragelocation l ON l.id = p.location_id"
             f" WHERE s.content_checksum = '{digest}'"))


def run(env):
    env.n += 1
    log = env.dir / f"worker-{env.n}.log"
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config",
                       env.reg.config_path, "--once", "--retry-base", "0"],
                      log)
    try:
        rc = p.wait(120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        raise
    return rc, log.read_text(errors="replace")


def test_blobs_are_copied_to_the_second_directory(env):
    layers = [os.urandom(20 * MiB + 7), os.urandom(100)]
    digests = push(env, "v1", layers)
    for d in digests:
        assert placements(env, d) == ["a"]
        assert not path_of(env.roots["b"], d).exists()

    rc, log = run(env)
    assert rc == 0, log
    assert sql(env, "SELECT count(*) FROM queueitem"
                    f" WHERE queue_name = '{QUEUE}'") == [("0",)]
    for d, data in zip(digests[1:], layers):
        assert placements(env, d) == ["a", "b"]
        assert path_of(env.roots["b"], d).read_bytes() == data
    leftovers = [p for p in env.roots["b"].rglob("*")
                 if p.is_file() and "sha256" not in p.parts]
    assert leftovers == []


def test_lost_bytes_fail_the_job_with_the_reason(env):
    layer = os.urandom(5000)
    digests = push(env, "lost", [layer])
    path_of(env.roots["a"], digests[1]).unlink()

    rc, log = run(env)
    assert rc == 0, log
    rows = sql(env, "SELECT state, last_error FROM queueitem"
                    f" WHERE queue_name = '{QUEUE}'")
    assert len(rows) == 1 and rows[0][0] == "failed", rows
    assert "is missing (or wrong) in every location that holds it: " \
        "a (no such object)" in rows[0][1]
    assert placements(env, digests[0]) == ["a", "b"]
    assert placements(env, digests[1]) == ["a"]
