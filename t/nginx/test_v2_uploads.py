"""Blob uploads over raw HTTP (issue #3 "Uploads", "Streaming", "Resumable
hashing", "Content-addressed and atomic"; reference 2.3-2.5; security
catalogue B1.4-B1.8, B1.10, B1.19).

Every session is opened and driven with a Bearer token from /v2/auth, as
clients do.  Checks look at the answers, at the rows (blobupload,
imagestorage, uploadedblob) and at the files under the storage path.
"""

import concurrent.futures
import hashlib
import os
import re
import socket
import subprocess
import time

import pytest
import requests

import harness


MiB = 1024 * 1024
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-"
                  r"[0-9a-f]{12}$")


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
    """Requests against one repository with a token for it (and for any
    extra scopes)."""

    def __init__(self, registry, name, auth, extra_scopes=()):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        params = [("service", host),
                  ("scope", f"repository:{name}:pull,push")]
        params += [("scope", s) for s in extra_scopes]
        r = registry.request("GET", "/v2/auth", auth=auth, params=params)
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
        return self.registry.request(method, path, headers=h, **kw)

    def start(self, **kw):
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/", **kw)
        assert r.status_code == 202, r.text
        return r

    def patch(self, location, data, start=None, end=None, **kw):
        headers = {"Content-Type": "application/octet-stream"}
        if start is not None:
            headers["Content-Range"] = f"{start}-{end}"
        return self.req("PATCH", location, headers=headers, data=data, **kw)

    def put(self, location, digest, data=b"", **kw):
        return self.req("PUT", location, params={"digest": digest},
                        data=data, **kw)

    def blob(self, digest, method="GET", **kw):
        return self.req(method, f"/v2/{self.name}/blobs/{digest}", **kw)

    def push(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data)
        assert r.status_code == 201, r.text
        return digest


def uuid_of(r):
    return r.headers["Docker-Upload-UUID"]


def upload_rows(registry, uuid):
    return registry.pg.sql(
        f"SELECT byte_count, chunk_count FROM blobupload WHERE uuid = '{uuid}'",
        db=dbname(registry))


def blob_path(registry, digest):
    hexd = digest.split(":")[1]
    return registry.storage_path / "sha256" / hexd[:2] / hexd


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


@pytest.fixture(scope="module")
def registry(start_registry):
    # $pid in a log of its own shows which worker served each request
    return start_registry(
        worker_processes=2,
        http_extra="    log_format withpid '$pid $request_method $status';",
        server_extra="        access_log pids.log withpid;")


@pytest.fixture(scope="module")
def users(registry):
    create_user(registry, "alice", "alice-password")
    create_user(registry, "bob", "bob-password")
    return {"alice": ("alice", "alice-password"),
            "bob": ("bob", "bob-password")}


@pytest.fixture(scope="module")
def alice(registry, users):
    return Client(registry, "alice/uploads", users["alice"])


@pytest.fixture(scope="module")
def bob(registry, users):
    return Client(registry, "bob/uploads", users["bob"])


# ------------------------------------------------------------- sessions

def test_post_opens_a_session_with_202_location_uuid_and_range(
        registry, alice):
    r = alice.start()
    uuid = uuid_of(r)
    assert UUID.match(uuid)
    assert r.headers["Location"] == f"/v2/alice/uploads/blobs/uploads/{uuid}"
    assert r.headers["Range"] == "0-0"
    assert r.headers["Content-Length"] == "0"
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert upload_rows(registry, uuid) == [("0", "0")]
    assert (registry.storage_path / "uploads" / uuid).is_file()


def test_monolithic_post_with_digest_commits_the_blob(registry, alice):
    data = os.urandom(100_000)
    digest = sha256(data)
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                  params={"digest": digest}, data=data)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/alice/uploads/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Content-Length"] == "0"

    g = alice.blob(digest)
    assert g.status_code == 200
    assert g.content == data
    assert blob_path(registry, digest).read_bytes() == data

    rows = registry.pg.sql(
        "SELECT s.image_size, s.uploading, s.cas_path,"
        " (SELECT count(*) FROM imagestorageplacement p"
        "  WHERE p.storage_id = s.id),"
        " (SELECT count(*) FROM uploadedblob u WHERE u.blob_id = s.id"
        "  AND u.expires_at > now() + interval '50 minutes')"
        f" FROM imagestorage s WHERE content_checksum = '{digest}'",
        db=dbname(registry))
    assert rows == [(str(len(data)), "f", "t", "1", "1")]


def test_monolithic_post_with_a_percent_encoded_digest(alice):
    # Go clients encode the colon: digest=sha256%3A...
    data = b"encoded colon"
    digest = sha256(data)
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/?digest="
                  + digest.replace(":", "%3A"), data=data)
    assert r.status_code == 201, r.text
    assert alice.blob(digest).content == data


def test_chunked_upload_post_patch_patch_put(registry, alice):
    data = os.urandom(3 * MiB + 123)
    digest = sha256(data)
    r = alice.start()
    loc, uuid = r.headers["Location"], uuid_of(r)

    cut = 1 * MiB + 7
    p = alice.patch(loc, data[:cut], 0, cut - 1)
    assert p.status_code == 202, p.text
    assert p.headers["Range"] == f"0-{cut - 1}"
    assert p.headers["Location"] == loc
    assert p.headers["Docker-Upload-UUID"] == uuid

    p = alice.patch(loc, data[cut:], cut, len(data) - 1)
    assert p.status_code == 202, p.text
    assert p.headers["Range"] == f"0-{len(data) - 1}"
    assert upload_rows(registry, uuid) == [(str(len(data)), "2")]

    f = alice.put(loc, digest)
    assert f.status_code == 201, f.text
    assert f.headers["Docker-Content-Digest"] == digest
    assert f.headers["Location"] == f"/v2/alice/uploads/blobs/{digest}"
    assert alice.blob(digest).content == data

    # the session is gone, row and scratch file
    assert upload_rows(registry, uuid) == []
    assert not (registry.storage_path / "uploads" / uuid).exists()
    assert alice.req("GET", loc).status_code == 404


def test_streamed_patch_with_chunked_transfer_encoding(alice):
    pieces = [os.urandom(256 * 1024 + i) for i in range(12)]
    data = b"".join(pieces)
    r = alice.start()
    loc = r.headers["Location"]

    # a generator body makes requests send Transfer-Encoding: chunked
    p = alice.patch(loc, iter(pieces))
    assert p.status_code == 202, p.text
    assert p.headers["Range"] == f"0-{len(data) - 1}"

    tail = os.urandom(5000)
    f = alice.put(loc, sha256(data + tail), data=iter([tail]))
    assert f.status_code == 201, f.text
    assert alice.blob(sha256(data + tail)).content == data + tail


def test_put_with_the_whole_blob_as_final_chunk(alice):
    data = os.urandom(70_000)
    loc = alice.start().headers["Location"]
    f = alice.put(loc, sha256(data), data=data)
    assert f.status_code == 201, f.text
    assert alice.blob(sha256(data)).content == data


def test_empty_blob(alice):
    loc = alice.start().headers["Location"]
    f = alice.put(loc, sha256(b""))
    assert f.status_code == 201, f.text
    g = alice.blob(sha256(b""))
    assert g.status_code == 200
    assert g.content == b""
    assert g.headers["Content-Length"] == "0"


def test_get_on_an_upload_is_204_with_the_range(alice):
    loc = alice.start().headers["Location"]
    g = alice.req("GET", loc)
    assert g.status_code == 204
    assert g.headers["Range"] == "0-0"
    assert alice.patch(loc, b"x" * 100, 0, 99).status_code == 202
    g = alice.req("GET", loc)
    assert g.status_code == 204
    assert g.headers["Range"] == "0-99"
    assert g.headers["Location"] == loc
    assert UUID.match(g.headers["Docker-Upload-UUID"])


# ----------------------------------------------------------- verification

def test_wrong_digest_is_400_and_nothing_becomes_visible(registry, alice):
    data = os.urandom(10_000)
    claimed = sha256(b"something else entirely")
    r = alice.start()
    loc, uuid = r.headers["Location"], uuid_of(r)
    assert alice.patch(loc, data, 0, len(data) - 1).status_code == 202

    f = alice.put(loc, claimed)
    assert f.status_code == 400
    assert error(f) == "DIGEST_INVALID"

    for d in (claimed, sha256(data)):
        assert alice.blob(d, "HEAD").status_code == 404
        assert not blob_path(registry, d).exists()
        assert registry.pg.sql(
            f"SELECT 1 FROM imagestorage WHERE content_checksum = '{d}'",
            db=dbname(registry)) == []

    # the session is invalidated (catalogue B1.6)
    assert alice.req("GET", loc).status_code == 404
    assert upload_rows(registry, uuid) == []
    assert not (registry.storage_path / "uploads" / uuid).exists()


def test_wrong_digest_on_a_monolithic_post_is_400(alice):
    data = b"monolithic but wrong"
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                  params={"digest": sha256(b"other")}, data=data)
    assert r.status_code == 400
    assert error(r) == "DIGEST_INVALID"
    assert alice.blob(sha256(data), "HEAD").status_code == 404


@pytest.mark.parametrize("digest", [
    "sha256:baddigeststring", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
    "sha256:" + "a" * 65, "sha256:", "SHA256:" + "a" * 64, "md5:abcd",
    "sha256:" + "a" * 64 + "\n", "sha256:../../x", "sha512:" + "a" * 64,
    "sha512:" + "a" * 128,
])
def test_bad_digest_on_put_is_400_digest_invalid(alice, digest):
    loc = alice.start().headers["Location"]
    f = alice.put(loc, digest, data=b"abc")
    assert f.status_code == 400
    assert error(f) == "DIGEST_INVALID"
    # the session is still there
    assert alice.req("GET", loc).status_code == 204


def test_put_without_digest_is_400(alice):
    loc = alice.start().headers["Location"]
    f = alice.req("PUT", loc, data=b"abc")
    assert f.status_code == 400
    assert error(f) == "DIGEST_INVALID"


def test_duplicated_digest_argument_is_400(alice):
    loc = alice.start().headers["Location"]
    d = sha256(b"abc")
    f = alice.req("PUT", f"{loc}?digest={d}&digest={d}", data=b"abc")
    assert f.status_code == 400


def test_bad_digest_on_monolithic_post_is_400(alice):
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                  params={"digest": "sha256:nothex"}, data=b"x")
    assert r.status_code == 400
    assert error(r) == "DIGEST_INVALID"


# ------------------------------------------------------------ chunk order

def test_out_of_order_chunk_is_416_and_the_upload_is_kept(alice):
    data = os.urandom(300)
    loc = alice.start().headers["Location"]
    assert alice.patch(loc, data[:100], 0, 99).status_code == 202

    p = alice.patch(loc, data[200:], 200, 299)
    assert p.status_code == 416
    assert error(p) == "BLOB_UPLOAD_INVALID"
    assert p.headers["Range"] == "0-99"

    g = alice.req("GET", loc)
    assert g.status_code == 204
    assert g.headers["Range"] == "0-99"

    assert alice.patch(loc, data[100:], 100, 299).status_code == 202
    assert alice.put(loc, sha256(data)).status_code == 201


def test_first_chunk_not_at_zero_is_416(alice):
    loc = alice.start().headers["Location"]
    p = alice.patch(loc, b"y" * 10, 5, 14)
    assert p.status_code == 416
    assert alice.req("GET", loc).headers["Range"] == "0-0"


@pytest.mark.parametrize("value", [
    "bytes 0-99/100", "99-0", "-5", "0-18446744073709551616",
    "0 - 99", "0-", "abc", "0-9223372036854775807", "0-99,100-199",
    "bytes=0-99",
])
def test_malformed_content_range_is_4xx_and_changes_nothing(alice, value):
    loc = alice.start().headers["Location"]
    assert alice.patch(loc, b"z" * 100, 0, 99).status_code == 202
    p = alice.req("PATCH", loc, headers={"Content-Range": value},
                  data=b"z" * 100)
    assert p.status_code in (400, 416), p.text
    assert alice.req("GET", loc).headers["Range"] == "0-99"


def test_content_length_that_disagrees_with_content_range_is_400(alice):
    loc = alice.start().headers["Location"]
    p = alice.patch(loc, b"q" * 50, 0, 99)
    assert p.status_code == 400
    assert error(p) == "SIZE_INVALID"
    assert alice.req("GET", loc).headers["Range"] == "0-0"


def test_retried_overlapping_chunk_drops_the_overlap(alice):
    # Quay's blobuploader: bytes before byte_count are already stored
    data = os.urandom(400)
    loc = alice.start().headers["Location"]
    assert alice.patch(loc, data[:200], 0, 199).status_code == 202
    p = alice.patch(loc, data[100:300], 100, 299)
    assert p.status_code == 202, p.text
    assert p.headers["Range"] == "0-299"
    p = alice.patch(loc, data[:300], 0, 299)      # entirely old
    assert p.status_code == 202
    assert p.headers["Range"] == "0-299"
    assert alice.patch(loc, data[300:], 300, 399).status_code == 202
    f = alice.put(loc, sha256(data))
    assert f.status_code == 201, f.text
    assert alice.blob(sha256(data)).content == data


# -------------------------------------------------------- cancel, tamper

def test_delete_cancels_the_upload(registry, alice):
    r = alice.start()
    loc, uuid = r.headers["Location"], uuid_of(r)
    assert alice.patch(loc, b"a" * 10, 0, 9).status_code == 202
    d = alice.req("DELETE", loc)
    assert d.status_code == 204
    assert upload_rows(registry, uuid) == []
    assert not (registry.storage_path / "uploads" / uuid).exists()
    for method, kw in (("GET", {}), ("PATCH", {"data": b"b"}),
                       ("PUT", {"params": {"digest": sha256(b"a" * 10)}}),
                       ("DELETE", {})):
        r = alice.req(method, loc, **kw)
        assert r.status_code == 404, (method, r.text)
        assert error(r) == "BLOB_UPLOAD_UNKNOWN"


def test_upload_of_repository_a_is_unknown_in_repository_b(
        registry, alice, bob):
    data = os.urandom(1000)
    r = alice.start()
    uuid = uuid_of(r)
    loc = r.headers["Location"]
    assert alice.patch(loc, data[:500], 0, 499).status_code == 202

    bob.start()         # bob's repository exists and bob may push to it
    other = f"/v2/bob/uploads/blobs/uploads/{uuid}"
    for method, kw in (("GET", {}),
                       ("PATCH", {"data": data[500:],
                                  "headers": {"Content-Range": "500-999"}}),
                       ("PUT", {"params": {"digest": sha256(data)},
                                "data": data[500:]}),
                       ("DELETE", {})):
        r = bob.req(method, other, **kw)
        assert r.status_code == 404, (method, r.text)
        assert error(r) == "BLOB_UPLOAD_UNKNOWN"

    # alice's session is untouched and completes
    assert upload_rows(registry, uuid) == [("500", "1")]
    assert alice.req("GET", loc).headers["Range"] == "0-499"
    assert alice.patch(loc, data[500:], 500, 999).status_code == 202
    assert alice.put(loc, sha256(data)).status_code == 201


@pytest.mark.parametrize("ref", [
    "not-a-uuid", "0123456789ABCDEF0123456789ABCDEF0123",
    "01234567-89AB-4DEF-8123-456789ABCDEF",
    "01234567-89ab-4def-8123-456789abcdef",     # well formed, unknown
])
def test_malformed_or_unknown_uuid_is_404(alice, ref):
    r = alice.req("GET", f"/v2/alice/uploads/blobs/uploads/{ref}")
    assert r.status_code == 404
    assert error(r) == "BLOB_UPLOAD_UNKNOWN"
    r = alice.req("PATCH", f"/v2/alice/uploads/blobs/uploads/{ref}",
                  data=b"x")
    assert r.status_code == 404


def test_traversal_in_the_uuid_never_reaches_a_file(alice):
    for ref in ("..%2F..%2Fx", "%2e%2e", "../../x"):
        r = alice.req("GET", f"/v2/alice/uploads/blobs/uploads/{ref}")
        assert 400 <= r.status_code < 500


def test_head_on_an_upload_is_405(alice):
    loc = alice.start().headers["Location"]
    assert alice.req("HEAD", loc).status_code == 405


def test_two_patches_of_one_upload_at_once_do_not_interleave(alice):
    # the second request finds the upload held and is refused; the bytes
    # committed are exactly those of one request
    r = alice.start()
    loc = r.headers["Location"]
    inode = os.stat(alice.registry.storage_path / "uploads"
                    / uuid_of(r)).st_ino
    slow = socket.create_connection(("127.0.0.1", alice.registry.port))
    try:
        head = (f"PATCH {loc} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {alice.token}\r\n"
                "Content-Range: 0-999\r\nContent-Length: 1000\r\n\r\n")
        slow.sendall(head.encode() + b"s" * 10)

        def locked():
            with open("/proc/locks") as f:
                return any(line.split()[5].endswith(f":{inode}")
                           for line in f if "FLOCK" in line)
        harness.wait_until(locked, 10, "the first PATCH to hold the upload")

        r = alice.patch(loc, b"f" * 1000, 0, 999)
        assert r.status_code == 416
        assert error(r) == "BLOB_UPLOAD_INVALID"
        assert r.headers["Range"] == "0-0"
        slow.sendall(b"s" * 990)
        reply = slow.recv(4096).decode(errors="replace")
        assert reply.startswith("HTTP/1.1 202"), reply
    finally:
        slow.close()
    g = alice.req("GET", loc)
    assert g.headers["Range"] == "0-999"
    assert alice.put(loc, sha256(b"s" * 1000)).status_code == 201


# ----------------------------------------------------------------- mount

def test_mount_from_a_readable_repository_is_201(registry, users):
    src = Client(registry, "alice/mount-src", users["alice"])
    data = os.urandom(5000)
    digest = src.push(data)
    dst = Client(registry, "alice/mount-dst", users["alice"],
                 extra_scopes=["repository:alice/mount-src:pull"])
    assert dst.blob(digest, "HEAD").status_code == 404
    r = dst.req("POST", "/v2/alice/mount-dst/blobs/uploads/",
                params={"mount": digest, "from": "alice/mount-src"})
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"/v2/alice/mount-dst/blobs/{digest}"
    assert r.headers["Docker-Content-Digest"] == digest
    assert dst.blob(digest).content == data


def test_mount_from_an_unreadable_repository_opens_a_session(
        registry, users):
    src = Client(registry, "alice/private-src", users["alice"])
    digest = src.push(os.urandom(3000))
    # bob asks for pull on alice's private repository and does not get it
    thief = Client(registry, "bob/thief", users["bob"],
                   extra_scopes=["repository:alice/private-src:pull"])
    r = thief.req("POST", "/v2/bob/thief/blobs/uploads/",
                  params={"mount": digest, "from": "alice/private-src"})
    assert r.status_code == 202, r.text
    assert UUID.match(uuid_of(r))
    assert thief.blob(digest, "HEAD").status_code == 404


@pytest.mark.parametrize("params", [
    {"mount": "DIGEST", "from": "alice/nonexistent"},
    {"mount": "DIGEST", "from": "Bad//Name"},
    {"mount": "DIGEST"},
    {"mount": sha256(b"never pushed"), "from": "alice/mount-src2"},
])
def test_mount_that_cannot_happen_falls_back_to_a_session(
        registry, users, params):
    src = Client(registry, "alice/mount-src2", users["alice"])
    digest = src.push(b"mount fallback")
    dst = Client(registry, "alice/mount-dst2", users["alice"],
                 extra_scopes=["repository:alice/mount-src2:pull",
                               "repository:alice/nonexistent:pull"])
    params = {k: (digest if v == "DIGEST" else v) for k, v in params.items()}
    r = dst.req("POST", "/v2/alice/mount-dst2/blobs/uploads/", params=params)
    assert r.status_code == 202, r.text


def test_mount_with_a_malformed_digest_is_400(alice):
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                  params={"mount": "sha256:zz", "from": "alice/uploads"})
    assert r.status_code == 400
    assert error(r) == "DIGEST_INVALID"


# ----------------------------------------------------- resume, workers

def test_patches_on_new_connections_resume_on_any_worker(registry, alice):
    data = os.urandom(40 * 64 * 1024)
    loc = alice.start().headers["Location"]
    step = 64 * 1024
    for i in range(0, len(data), step):
        p = alice.patch(loc, data[i:i + step], i, i + step - 1, fresh=True)
        assert p.status_code == 202, p.text
    f = alice.put(loc, sha256(data), fresh=True)
    assert f.status_code == 201, f.text
    assert alice.blob(sha256(data)).content == data

    log = (registry.prefix / "pids.log").read_text().splitlines()
    pids = {line.split()[0] for line in log if " PATCH 202" in line}
    assert len(pids) >= 2, "every PATCH landed on one worker"


def test_client_gone_mid_body_commits_nothing_and_the_upload_resumes(
        registry, alice):
    data = os.urandom(600_000)
    r = alice.start()
    loc, uuid = r.headers["Location"], uuid_of(r)
    assert alice.patch(loc, data[:100_000], 0, 99_999).status_code == 202

    s = socket.create_connection(("127.0.0.1", registry.port))
    s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\n"
               f"Authorization: Bearer {alice.token}\r\n"
               "Content-Range: 100000-599999\r\nContent-Length: 500000\r\n"
               "\r\n").encode() + os.urandom(300_000))
    time.sleep(0.3)
    s.close()

    def settled():
        return upload_rows(registry, uuid) == [("100000", "1")]
    harness.wait_until(settled, 10, "the row to stay at 100000")
    assert alice.req("GET", loc).headers["Range"] == "0-99999"

    # junk past byte_count is dropped by the next request
    assert alice.patch(loc, data[100_000:], 100_000, 599_999) \
        .status_code == 202
    f = alice.put(loc, sha256(data))
    assert f.status_code == 201, f.text
    assert blob_path(registry, sha256(data)).read_bytes() == data


def test_an_upload_resumes_across_a_reload(registry, alice):
    data = os.urandom(300_000)
    loc = alice.start().headers["Location"]
    for i, start in enumerate((0, 100_000, 200_000)):
        if i:
            registry.reload()
        p = alice.patch(loc, data[start:start + 100_000], start,
                        start + 99_999, fresh=True)
        assert p.status_code == 202, p.text
    f = alice.put(loc, sha256(data), fresh=True)
    assert f.status_code == 201, f.text
    assert alice.blob(sha256(data), fresh=True).content == data


def held_by(path):
    """The pid holding a flock on path, or None."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as f:
        for line in f:
            fields = line.split()
            if "FLOCK" in line and fields[5].endswith(f":{inode}"):
                return int(fields[4])
    return None


def assert_no_row_points_at_missing_bytes(registry):
    rows = registry.pg.sql(
        "SELECT DISTINCT s.content_checksum FROM imagestorage s"
        " JOIN imagestorageplacement p ON p.storage_id = s.id",
        db=dbname(registry))
    missing = [d for (d,) in rows if not blob_path(registry, d).is_file()]
    assert missing == []


def test_the_upload_is_let_go_before_the_answer_is_sent(registry, alice):
    # the next PATCH may come on another connection (another worker) the
    # moment the client reads this answer, before the request is freed
    data = os.urandom(3000)
    r = alice.start()
    loc, path = r.headers["Location"], \
        registry.storage_path / "uploads" / uuid_of(r)
    for i in range(0, 3000, 1000):
        p = alice.patch(loc, data[i:i + 1000], i, i + 999)
        assert p.status_code == 202
        assert held_by(path) is None
    p = alice.put(loc, sha256(data))
    assert p.status_code == 201
    r = alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                  params={"digest": sha256(b"held?")}, data=b"held?")
    assert r.status_code == 201
    assert held_by(blob_path(registry, sha256(b"held?"))) is None


def test_a_worker_killed_mid_patch_leaves_a_resumable_session(
        registry, alice):
    data = os.urandom(400_000)
    r = alice.start()
    loc, uuid = r.headers["Location"], uuid_of(r)
    path = registry.storage_path / "uploads" / uuid
    assert alice.patch(loc, data[:100_000], 0, 99_999).status_code == 202

    registry.ignore_log.append(r"exited on signal 9")
    s = socket.create_connection(("127.0.0.1", registry.port))
    try:
        s.sendall((f"PATCH {loc} HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {alice.token}\r\n"
                   "Content-Range: 100000-399999\r\n"
                   "Content-Length: 300000\r\n\r\n").encode()
                  + data[100_000:250_000])
        pid = harness.wait_until(lambda: held_by(path), 10,
                                 "a worker to hold the upload")
        os.kill(pid, 9)
        harness.wait_until(lambda: held_by(path) is None, 10,
                           "the lock to go with the worker")
    finally:
        s.close()

    assert upload_rows(registry, uuid) == [("100000", "1")]
    assert alice.req("GET", loc, fresh=True).headers["Range"] == "0-99999"
    p = alice.patch(loc, data[100_000:], 100_000, 399_999, fresh=True)
    assert p.status_code == 202, p.text
    f = alice.put(loc, sha256(data), fresh=True)
    assert f.status_code == 201, f.text
    assert blob_path(registry, sha256(data)).read_bytes() == data
    assert_no_row_points_at_missing_bytes(registry)


def test_twenty_concurrent_uploads_of_one_blob_store_it_once(
        registry, alice):
    data = os.urandom(200_000)
    digest = sha256(data)

    def push(_):
        return alice.req("POST", "/v2/alice/uploads/blobs/uploads/",
                         params={"digest": digest}, data=data,
                         fresh=True).status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(push, range(20)))
    assert codes == [201] * 20
    assert registry.pg.sql(
        f"SELECT count(*) FROM imagestorage WHERE content_checksum ="
        f" '{digest}'", db=dbname(registry)) == [("1",)]
    assert blob_path(registry, digest).read_bytes() == data
    assert_no_row_points_at_missing_bytes(registry)


@pytest.mark.parametrize("mib", [
    64, pytest.param(1024, marks=pytest.mark.slow, id="1GiB")])
def test_a_big_upload_keeps_worker_memory_flat(registry, alice, mib):
    pids = worker_pids(registry)
    before = {p: rss_kib(p) for p in pids}
    block = os.urandom(MiB)
    h = hashlib.sha256()
    for _ in range(mib):
        h.update(block)

    loc = alice.start().headers["Location"]
    p = alice.patch(loc, iter([block] * mib), timeout=600)
    assert p.status_code == 202, p.text
    assert p.headers["Range"] == f"0-{mib * MiB - 1}"
    f = alice.put(loc, "sha256:" + h.hexdigest())
    assert f.status_code == 201, f.text

    for pid in pids:
        grown = rss_kib(pid) - before[pid]
        assert grown < 32 * 1024, f"worker {pid} grew by {grown} KiB"


# -------------------------------------------------------------- limits

def test_maximum_layer_size_is_413(start_registry, users):
    small = start_registry(MAXIMUM_LAYER_SIZE="1M")
    create_user(small, "carol", "carol-password")
    cli = Client(small, "carol/big", ("carol", "carol-password"))

    # announced too large
    loc = cli.start().headers["Location"]
    p = cli.patch(loc, b"x" * (MiB + 1), 0, MiB)
    assert p.status_code == 413
    assert cli.req("GET", loc).headers["Range"] == "0-0"

    # streamed past the limit
    p = cli.patch(loc, iter([b"y" * (256 * 1024)] * 5))
    assert p.status_code == 413
    assert cli.req("GET", loc).headers["Range"] == "0-0"

    # monolithic
    data = b"z" * (MiB + 1)
    r = cli.req("POST", "/v2/carol/big/blobs/uploads/",
                params={"digest": sha256(data)}, data=data)
    assert r.status_code == 413
    assert cli.blob(sha256(data), "HEAD").status_code == 404

    # exactly at the limit is fine
    data = b"w" * MiB
    assert cli.push(data) == sha256(data)
