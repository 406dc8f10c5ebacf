"""The workers' storage client (workers/storage.h) against a real Ceph
RGW and a local directory, through t/tools/storagectl.c: streaming and
ranged reads, PutObject, multipart uploads (create, parts, complete,
abort, list), HEAD, DELETE and server-side moves, with the same results
from both drivers.  The bucket is inspected with the harness's own SigV4
signer (t/lib/rgw.py), never through the code under test.
"""

import hashlib
import os
import subprocess

import pytest

import harness


ROOT = harness.ROOT
MiB = 1024 * 1024
PREFIX = "registry"


@pytest.fixture(scope="module")
def storagectl(build, tmp_path_factory):
    """t/tools/storagectl.c linked against the workers' objects."""
    out = tmp_path_factory.mktemp("storagectl") / "storagectl"
    objs = [harness.BUILD / "workers" / f"{n}.o" for n in
            ("storage", "storage_s3", "worker", "worker_metrics")]
    pg_inc = subprocess.run(["pg_config", "--includedir"], check=True,
                            capture_output=True, text=True).stdout.strip()
    harness.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                 "-Werror", "-O1", "-g", "-I", ROOT / "lib", "-I",
                 ROOT / "workers", "-I", pg_inc, "-o", out,
                 ROOT / "t" / "tools" / "storagectl.c", *objs,
                 harness.BUILD / "libquay.a", "-lpq", "-ljansson", "-lcurl",
                 "-lyaml", "-lcrypto", "-lpthread"], timeout=120)
    return out


@pytest.fixture(scope="module")
def env(rgw, storagectl, tmp_path_factory):
    d = tmp_path_factory.mktemp("wstorage")
    bucket = f"quay-wstorage-{os.getpid()}"
    rgw.create_bucket(bucket)
    local = d / "local"
    local.mkdir()
    params = {"hostname": "127.0.0.1", "port": rgw.port, "is_secure": False,
              "access_key": rgw.access_key, "secret_key": rgw.secret_key,
              "bucket_name": bucket, "storage_path": "/" + PREFIX,
              "maximum_chunk_size_mb": 6}
    bad = dict(params, secret_key="not-the-secret")
    config = harness.make_config(
        d / "config.yaml", "postgresql://nobody@127.0.0.1:1/none", local,
        DISTRIBUTED_STORAGE_CONFIG={
            "rgw": ["RadosGWStorage", params],
            "badkey": ["RadosGWStorage", bad],
            "local": ["LocalStorage", {"storage_path": str(local)}]},
        DISTRIBUTED_STORAGE_PREFERENCE=["rgw"],
        DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["rgw"])

    class Env:
        pass

    e = Env()
    e.bucket, e.local, e.config, e.rgw = bucket, local, config, rgw
    e.storagectl = storagectl

    def run(location, *args, data=b"", check=True):
        p = subprocess.run([storagectl, config, location, *map(str, args)],
                           input=data, capture_output=True, timeout=120)
        if check:
            assert p.returncode == 0, p.stderr.decode()
        return p
    e.run = run
    return e


def obj(env, key):
    r = env.rgw.s3("GET", f"/{env.bucket}/{PREFIX}/{key}")
    return r.content if r.status_code == 200 else None


@pytest.mark.parametrize("location", ["rgw", "local"])
def test_put_stat_ranged_get_and_remove(env, location):
    data = os.urandom(3 * MiB + 17)
    key = f"t/{location}/object"
    env.run(location, "put", key, data=data)
    assert env.run(location, "stat", key).stdout == \
        f"{len(data)}\n".encode()
    assert env.run(location, "get", key).stdout == data
    assert env.run(location, "get", key, 1000, 5000).stdout == \
        data[1000:6000]
    assert env.run(location, "get", key, len(data) - 10).stdout == \
        data[-10:]
    if location == "rgw":
        assert obj(env, key) == data
    else:
        assert (env.local / key).read_bytes() == data

    env.run(location, "remove", key)
    p = env.run(location, "stat", key, check=False)
    assert p.returncode == 11, p.stderr        # STORAGE_ENOENT
    assert env.run(location, "remove", key, check=False).returncode == 11


@pytest.mark.parametrize("location", ["rgw", "local"])
def test_multipart_upload_is_invisible_until_completed(env, location):
    data = os.urandom(11 * MiB + 5)
    key = f"t/{location}/mpu"
    p = env.run(location, "mpu-upload", key, 5 * MiB, "--no-complete",
                data=data)
    upload_id = p.stdout.decode().strip()
    assert env.run(location, "stat", key, check=False).returncode == 11
    listed = env.run(location, "mpu-list", f"t/{location}/mp").stdout
    rows = [line.split() for line in listed.decode().splitlines()]
    assert [(k, i) for k, i, _ in rows] == [(key, upload_id)]

    env.run(location, "mpu-abort", key, upload_id)
    assert env.run(location, "mpu-list", f"t/{location}/").stdout == b""
    assert env.run(location, "stat", key, check=False).returncode == 11
    if location == "rgw":
        assert env.rgw.list_multipart_uploads(env.bucket) == []

    env.run(location, "mpu-upload", key, 5 * MiB, data=data)
    assert env.run(location, "get", key).stdout == data
    assert env.run(location, "mpu-list", f"t/{location}/").stdout == b""


@pytest.mark.parametrize("location", ["rgw", "local"])
def test_move_puts_the_object_at_its_new_key(env, location):
    # 13 MiB with maximum_chunk_size_mb 6: RGW copies in three ranges
    data = os.urandom(13 * MiB)
    env.run(location, "mpu-upload", f"t/{location}/src", 8 * MiB, data=data)
    env.run(location, "move", f"t/{location}/src", f"t/{location}/a/dst",
            len(data))
    got = env.run(location, "get", f"t/{location}/a/dst").stdout
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert env.run(location, "stat", f"t/{location}/src",
                   check=False).returncode == 11


def test_wrong_secret_is_access_denied_and_names_the_location(env):
    p = env.run("badkey", "stat", "anything", check=False)
    assert p.returncode == 16, p.stderr                # STORAGE_EDENIED
    err = p.stderr.decode()
    assert 'location badkey: HeadObject anything failed: 403' in err
    assert "not-the-secret" not in err


def test_unreachable_gateway_is_unavailable(env, tmp_path):
    cfg = tmp_path / "down.yaml"
    harness.make_config(
        cfg, "postgresql://nobody@127.0.0.1:1/none", env.local,
        DISTRIBUTED_STORAGE_CONFIG={"down": ["RadosGWStorage", {
            "hostname": "127.0.0.1", "port": harness.free_port(),
            "is_secure": False, "access_key": "a", "secret_key": "b",
            "bucket_name": "x"}]},
        DISTRIBUTED_STORAGE_PREFERENCE=["down"],
        DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["down"])
    p = subprocess.run([env.storagectl, cfg, "down", "stat", "k"],
                       capture_output=True, timeout=60)
    assert p.returncode == 14, p.stderr               # STORAGE_EUNAVAIL
    assert b"location down: HeadObject k" in p.stderr


def test_keys_are_validated_before_any_request(env):
    for key in ("../etc/passwd", "/abs", "a//b", "a b", "x/./y"):
        p = env.run("rgw", "stat", key, check=False)
        assert p.returncode == 12, (key, p.stderr)     # STORAGE_EINVAL
        p = env.run("local", "stat", key, check=False)
        assert p.returncode == 12, (key, p.stderr)
