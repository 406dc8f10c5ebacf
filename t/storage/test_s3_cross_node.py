"""Chunked uploads on S3 across nodes (issue #5: "Resumability holds on
S3. The SHA-256 state and the part list are saved with the upload, so
PATCHes may land on any nginx worker or node").

Two registries share one database, one Redis and one RGW bucket: two
nodes behind a load balancer.  Each has its own client_body_temp_path,
hence its own spool directory and node name.  The bytes past the last
S3 part are stored in the bucket (uploads/<uuid>.tail) at the end of
every PATCH, so a PATCH or PUT that lands on the other node fetches
them, checks their SHA-256 and continues; only when that copy is gone
or wrong does the upload go back to the last part boundary (416 with
the Range to resend from).  The bucket is read with the harness's own
signer (t/lib/rgw.py), never through the code under test.
"""

import hashlib
import os

import pytest
import requests

import harness



# the helpers of test_s3_registry.py
_h = harness.load_test_file("storage/test_s3_registry.py")
MiB, PREFIX, Client = _h.MiB, _h.PREFIX, _h.Client
assert_clean_bucket, blob_key = _h.assert_clean_bucket, _h.blob_key
bucket_object, create_user = _h.bucket_object, _h.create_user
new_bucket, radosgw_location = _h.new_bucket, _h.radosgw_location
s3_config, sha256 = _h.s3_config, _h.sha256
upload_metadata = _h.upload_metadata


FETCHED = "were fetched from the bucket"
WOUND_BACK = "and their copy in the bucket"


class Nodes:
    pass


@pytest.fixture(scope="module")
def nodes(rgw, start_registry):
    n = Nodes()
    n.rgw = rgw
    n.bucket = new_bucket(rgw, "xnode")
    cfg = s3_config("rgw", radosgw_location(rgw, n.bucket))
    n.a = start_registry(**cfg)
    # same database (DB_URI), Redis and bucket; its own spool directory
    n.b = start_registry(DB_URI=n.a.db_uri, **cfg)
    create_user(n.a, "alice", "alice-password")
    n.ca = Client(n.a, "alice/xnode", ("alice", "alice-password"))
    n.cb = Client(n.b, "alice/xnode", ("alice", "alice-password"))
    return n


def path_of(location):
    # the Location may be absolute (SERVER_HOSTNAME names node A)
    if location.startswith("http"):
        return "/" + location.split("/", 3)[3]
    return location


def tail_key(uuid):
    return f"{PREFIX}/uploads/{uuid}.tail"


def tail_object(nodes, uuid):
    r = nodes.rgw.s3("GET", f"/{nodes.bucket}/{tail_key(uuid)}")
    return r.content if r.status_code == 200 else None


def parted(meta):
    return sum(size for _, size in meta.get("parts", []))


def node_of(nodes, uuid):
    return upload_metadata(nodes.a, uuid)[1]["node"]


def count(registry, text):
    return registry.error_log().count(text)


def assert_tail_is(nodes, uuid, data):
    """The row and the bucket agree on the bytes past the last part."""
    length, meta = upload_metadata(nodes.a, uuid)
    start = parted(meta)
    assert length == len(data)
    if start == length:
        return
    at, size, hexd = meta["tail"]
    assert (at, size) == (start, length - start), meta
    assert hexd == hashlib.sha256(data[start:]).hexdigest()
    assert tail_object(nodes, uuid) == data[start:]


def test_patches_alternate_between_nodes_and_the_put_lands_on_either(
        nodes):
    # tails below 5 MiB, then across the part boundary, twice; each
    # PATCH on the other node fetches the tail the previous one stored
    data = os.urandom(17 * MiB + 11)
    digest = sha256(data)
    sizes = [1 * MiB + 7, 2 * MiB, 3 * MiB, 100 * 1024, 6 * MiB, 3,
             4 * MiB]
    assert sum(sizes) < len(data)
    sizes.append(len(data) - sum(sizes))

    location, uuid = nodes.ca.start()
    location = path_of(location)
    fetched_a = count(nodes.a, FETCHED)
    fetched_b = count(nodes.b, FETCHED)
    names = set()
    offset = 0
    for i, size in enumerate(sizes):
        client = nodes.ca if i % 2 == 0 else nodes.cb
        chunk = data[offset:offset + size]
        r = client.patch(location, chunk, start=offset)
        assert r.status_code == 202, (i, r.text)
        offset += size
        assert r.headers["Range"] == f"0-{offset - 1}"
        assert_tail_is(nodes, uuid, data[:offset])
        names.add(node_of(nodes, uuid))

    # the row named both nodes in turn
    assert len(names) == 2, names
    # every PATCH after the first continued from a tail in the bucket,
    # unless the previous one ended exactly on a part boundary
    fetched = (count(nodes.a, FETCHED) - fetched_a
               + count(nodes.b, FETCHED) - fetched_b)
    assert fetched >= len(sizes) - 2
    assert count(nodes.a, WOUND_BACK) + count(nodes.b, WOUND_BACK) == 0

    # the PUT on the node that did not write the last chunk
    client = nodes.ca if len(sizes) % 2 == 0 else nodes.cb
    r = client.put(location, digest)
    assert r.status_code == 201, r.text
    assert bucket_object(nodes.rgw, nodes.bucket, blob_key(digest)) == data
    assert_clean_bucket(nodes.rgw, nodes.bucket, [digest])

    # pulled back through either node: a presigned URL to the same bytes
    for c in (nodes.ca, nodes.cb):
        r = c.blob(digest)
        assert r.status_code == 307
        assert requests.get(r.headers["Location"], timeout=60).content \
            == data


def test_same_node_continuation_fetches_nothing(nodes):
    data = os.urandom(3 * MiB)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    before = count(nodes.a, FETCHED)
    for i in range(3):
        r = nodes.ca.patch(location, data[i * MiB:(i + 1) * MiB],
                           start=i * MiB)
        assert r.status_code == 202, r.text
    assert count(nodes.a, FETCHED) == before
    assert_tail_is(nodes, uuid, data)
    r = nodes.ca.put(location, sha256(data))
    assert r.status_code == 201, r.text
    assert tail_object(nodes, uuid) is None


@pytest.mark.parametrize("last", [0, 3 * MiB])
def test_put_with_the_last_chunk_on_the_other_node(nodes, last):
    data = os.urandom(7 * MiB + 5 + last)
    digest = sha256(data)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    split = len(data) - last if last else 7 * MiB + 5
    r = nodes.ca.patch(location, data[:split], start=0)
    assert r.status_code == 202, r.text
    before = count(nodes.b, FETCHED)
    r = nodes.cb.put(location, digest, data=data[split:])
    assert r.status_code == 201, r.text
    assert count(nodes.b, FETCHED) == before + 1
    assert bucket_object(nodes.rgw, nodes.bucket, blob_key(digest)) == data
    assert upload_metadata(nodes.a, uuid) is None
    assert_clean_bucket(nodes.rgw, nodes.bucket, [digest])


@pytest.mark.parametrize("damage", ["deleted", "corrupted", "truncated"])
def test_tail_lost_behind_the_registry_back_rewinds_to_the_last_part(
        nodes, damage):
    data = os.urandom(9 * MiB + 1)
    digest = sha256(data)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    r = nodes.ca.patch(location, data[:7 * MiB], start=0)
    assert r.status_code == 202, r.text
    _, meta = upload_metadata(nodes.a, uuid)
    boundary = parted(meta)
    assert 0 < boundary < 7 * MiB
    key = f"/{nodes.bucket}/{tail_key(uuid)}"
    tail = data[boundary:7 * MiB]
    if damage == "deleted":
        assert nodes.rgw.s3("DELETE", key).status_code == 204
    elif damage == "corrupted":
        bad = bytearray(tail)
        bad[len(bad) // 2] ^= 0xFF
        assert nodes.rgw.s3("PUT", key, body=bytes(bad)).status_code == 200
    else:
        assert nodes.rgw.s3("PUT", key, body=tail[:-1]).status_code == 200

    r = nodes.cb.patch(location, data[7 * MiB:8 * MiB], start=7 * MiB)
    assert r.status_code == 416, r.text
    assert r.headers["Range"] == f"0-{boundary - 1}"
    assert f"continues from byte {boundary}" in r.text
    assert upload_metadata(nodes.a, uuid)[0] == boundary
    assert WOUND_BACK in nodes.b.error_log()
    s = nodes.ca.req("GET", location)
    assert s.status_code == 204 and s.headers["Range"] == f"0-{boundary - 1}"

    r = nodes.cb.patch(location, data[boundary:8 * MiB], start=boundary)
    assert r.status_code == 202, r.text
    r = nodes.ca.put(location, digest, data=data[8 * MiB:])
    assert r.status_code == 201, r.text
    assert bucket_object(nodes.rgw, nodes.bucket, blob_key(digest)) == data
    assert_clean_bucket(nodes.rgw, nodes.bucket, [digest])


def test_cancel_after_a_cross_node_patch_removes_the_tail(nodes):
    data = os.urandom(2 * MiB)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    assert nodes.ca.patch(location, data[:MiB], start=0).status_code == 202
    r = nodes.cb.patch(location, data[MiB:], start=MiB)
    assert r.status_code == 202, r.text
    assert tail_object(nodes, uuid) == data
    r = nodes.ca.req("DELETE", location)
    assert r.status_code == 204, r.text
    assert tail_object(nodes, uuid) is None
    assert upload_metadata(nodes.a, uuid) is None
    keys = nodes.rgw.list_objects(nodes.bucket, prefix=PREFIX + "/uploads/")
    assert [k for k in keys if uuid in k] == []


def test_failed_tail_store_is_a_5xx_and_the_upload_goes_on(nodes):
    data = os.urandom(4 * MiB + 3)
    digest = sha256(data)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    assert nodes.ca.patch(location, data[:MiB], start=0).status_code == 202

    nodes.a.ignore_log.append(r"PutObject")
    nodes.rgw.stop_gateway()
    try:
        r = nodes.ca.patch(location, data[MiB:3 * MiB], start=MiB)
    finally:
        nodes.rgw.start_gateway()
    assert r.status_code == 503, r.text
    assert r.json()["errors"][0]["code"] == "UNAVAILABLE"
    assert "storage location" in r.text
    # the row is as the last acknowledged PATCH left it
    assert upload_metadata(nodes.a, uuid)[0] == MiB
    assert_tail_is(nodes, uuid, data[:MiB])

    # the client asks where the upload stands (on the other node) and
    # resends from there
    s = nodes.cb.req("GET", location)
    assert s.status_code == 204, s.text
    assert s.headers["Range"] == f"0-{MiB - 1}"
    r = nodes.cb.patch(location, data[MiB:], start=MiB)
    assert r.status_code == 202, r.text
    r = nodes.ca.put(location, digest)
    assert r.status_code == 201, r.text
    assert bucket_object(nodes.rgw, nodes.bucket, blob_key(digest)) == data
    assert_clean_bucket(nodes.rgw, nodes.bucket, [digest])


def test_stale_upload_cleanup_removes_the_tail_and_the_parts(
        nodes, tmp_path):
    # an abandoned session: one part and a tail in the bucket
    data = os.urandom(6 * MiB)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    assert nodes.ca.patch(location, data, start=0).status_code == 202
    assert tail_object(nodes, uuid) == data[5 * MiB:]
    assert [k for k, _ in nodes.rgw.list_multipart_uploads(nodes.bucket)] \
        == [f"{PREFIX}/uploads/{uuid}"]

    log = tmp_path / "cleanup.log"
    p = harness.spawn([harness.BINDIR / "quay-upload-cleanup", "--config",
                       nodes.a.config_path, "--once",
                       "--threshold-minutes", "0"], log)
    assert p.wait(120) == 0, log.read_text(errors="replace")
    assert upload_metadata(nodes.a, uuid) is None
    assert tail_object(nodes, uuid) is None
    assert nodes.rgw.list_multipart_uploads(nodes.bucket) == []
    assert [k for k in nodes.rgw.list_objects(nodes.bucket)
            if not k.startswith(PREFIX + "/sha256/")] == []


def test_swept_spool_is_refilled_from_the_bucket(nodes):
    # the spool sweep (or a lost disk) removed this node's spool: the
    # session goes on from its tail object, on the same node
    data = os.urandom(3 * MiB + 1)
    digest = sha256(data)
    location, uuid = nodes.ca.start()
    location = path_of(location)
    assert nodes.ca.patch(location, data[:2 * MiB], start=0).status_code \
        == 202
    spool = nodes.a.prefix / "client_body_temp" / "uploads" / uuid
    assert spool.stat().st_size == 2 * MiB
    spool.unlink()
    before = count(nodes.a, FETCHED)
    r = nodes.ca.patch(location, data[2 * MiB:], start=2 * MiB)
    assert r.status_code == 202, r.text
    assert count(nodes.a, FETCHED) == before + 1
    r = nodes.ca.put(location, digest)
    assert r.status_code == 201, r.text
    assert bucket_object(nodes.rgw, nodes.bucket, blob_key(digest)) == data
    assert_clean_bucket(nodes.rgw, nodes.bucket, [digest])
