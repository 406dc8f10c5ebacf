"""Our SigV4 signer (lib/quay_sigv4.c) against a real S3 server: Ceph RGW
from the `rgw` fixture (t/lib/rgw.py).

Every signature here comes from t/tools/s3sign.c, a small C program
compiled by the s3sign fixture against build/libquay.a; the requests go
out through python-requests.  RGW checks signatures (the wrong-secret,
wrong-hash and anonymous cases below show it), so a 200 for a request we
signed means the signer is right: canonical request, key derivation,
header and presigned forms, encoded paths and sorted queries.
"""

import hashlib
import os
import re
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
import requests

import harness
from rgw import S3_NS, amz_now, canonical_query, s3_error_code, s3_quote


ROOT = harness.ROOT
MiB = 1024 * 1024

# A key that needs encoding: space, '+', '~', '/' and a UTF-8 letter.
ODD_KEY = "dir/sub dir/a+b~c=d\u00e9.bin"


@pytest.fixture(scope="module")
def s3sign(tmp_path_factory):
    """build/libquay.a (make lib) and t/tools/s3sign.c linked against it."""
    try:
        harness.make_build(("lib",))
    except harness.HarnessError as e:
        pytest.fail(f"make lib failed: {e}", pytrace=False)
    out = tmp_path_factory.mktemp("s3sign") / "s3sign"
    harness.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                 "-Werror", "-O1", "-g", "-I", ROOT / "lib", "-o", out,
                 ROOT / "t" / "tools" / "s3sign.c",
                 harness.BUILD / "libquay.a", "-lcrypto"], timeout=120)
    return out


class S3:
    """Requests signed by s3sign for one RGW."""

    def __init__(self, rgw, s3sign):
        self.rgw = rgw
        self.bin = s3sign
        self.http = requests.Session()

    def _base(self, date, secret, region):
        return [self.bin, "-d", date, "-a", self.rgw.access_key,
                "-s", secret or self.rgw.secret_key,
                "-r", region or self.rgw.region]

    @staticmethod
    def _query_args(query):
        args = []
        for name, value in query:
            args += ["-q", f"{name}={value}"]
        return args

    def url(self, path, query_string=""):
        return (self.rgw.endpoint + s3_quote(path)
                + (f"?{query_string}" if query_string else ""))

    def request(self, method, path, query=(), body=b"", payload=None,
                secret=None, signed_headers=None, headers=None,
                date=None, region=None):
        """Signs with s3sign and sends.  payload: the hash to sign and
        send (default: the body's SHA-256); signed_headers: extra headers
        that are sent and signed; headers: sent, not signed."""
        payload = payload or hashlib.sha256(body).hexdigest()
        date = date or amz_now()
        cmd = self._base(date, secret, region) + ["-p", payload]
        cmd += self._query_args(query)
        for name, value in (signed_headers or {}).items():
            cmd += ["-H", f"{name}:{value}"]
        cmd += [method, self.rgw.host, path]
        auth = harness.run(cmd, stderr=subprocess.PIPE).stdout.strip()
        send = {"x-amz-date": date, "x-amz-content-sha256": payload,
                "Authorization": auth, **(signed_headers or {}),
                **(headers or {})}
        return self.http.request(method, self.url(path,
                                                  canonical_query(query)),
                                 data=body, headers=send, timeout=120)

    def presign(self, method, path, expires, query=(), date=None):
        """A presigned URL made by s3sign."""
        cmd = self._base(date or amz_now(), None, None)
        cmd += ["-e", str(expires)] + self._query_args(query)
        cmd += [method, self.rgw.host, path]
        qs = harness.run(cmd, stderr=subprocess.PIPE).stdout.strip()
        return self.url(path, qs)


@pytest.fixture(scope="module")
def s3(rgw, s3sign):
    return S3(rgw, s3sign)


@pytest.fixture(scope="module")
def bucket(s3):
    """A bucket created with a request s3sign signed."""
    name = f"sigv4-{os.getpid()}"
    r = s3.request("PUT", f"/{name}")
    assert r.status_code == 200, r.text
    return name


def body_of(size, seed):
    """size deterministic pseudo-random bytes."""
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block * 64
    return bytes(out[:size])


def assert_refused(r, statuses, code):
    assert r.status_code in statuses, (r.status_code, r.text)
    assert s3_error_code(r) == code, r.text


# ------------------------------------------------------------------- tests

def test_create_bucket_and_list_it(s3, rgw):
    name = f"sigv4-create-{os.getpid()}"
    r = s3.request("PUT", f"/{name}")
    assert r.status_code == 200, r.text
    r = s3.request("GET", "/")
    assert r.status_code == 200, r.text
    names = [b.findtext(f"{S3_NS}Name")
             for b in ET.fromstring(r.content).iter(f"{S3_NS}Bucket")]
    assert name in names
    # The harness's own signer sees it too (two independent signers).
    assert rgw.list_objects(name) == []


def test_put_get_and_range_with_signed_payload(s3, rgw, bucket):
    data = body_of(300 * 1024, "put-get")
    path = f"/{bucket}/{ODD_KEY}"
    r = s3.request("PUT", path, body=data,
                   signed_headers={"content-type": "application/x-test"})
    assert r.status_code == 200, r.text
    assert r.headers["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    assert ODD_KEY in rgw.list_objects(bucket, prefix="dir/")

    r = s3.request("GET", path)
    assert r.status_code == 200, r.text
    assert r.content == data
    assert r.headers["Content-Type"] == "application/x-test"

    # Range signed as a header of the request.
    r = s3.request("GET", path, signed_headers={"range": "bytes=1000-1999"})
    assert r.status_code == 206, r.text
    assert r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"

    # A query on the GET: response-content-type override, signed.
    r = s3.request("GET", path,
                   query=[("response-content-type", "text/plain; x=1")])
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/plain; x=1"


def test_unsigned_payload_is_accepted(s3, bucket):
    data = body_of(70 * 1024, "unsigned")
    path = f"/{bucket}/unsigned.bin"
    r = s3.request("PUT", path, body=data, payload="UNSIGNED-PAYLOAD")
    assert r.status_code == 200, r.text
    r = s3.request("GET", path, payload="UNSIGNED-PAYLOAD")
    assert r.status_code == 200, r.text
    assert r.content == data


def test_wrong_secret_is_refused(s3, bucket):
    path = f"/{bucket}/wrong-secret.bin"
    r = s3.request("PUT", path, body=b"nope", secret="not-the-secret")
    assert_refused(r, (403,), "SignatureDoesNotMatch")
    # Nothing was stored, and the right secret still works.
    r = s3.request("GET", path)
    assert_refused(r, (404,), "NoSuchKey")
    r = s3.request("PUT", path, body=b"yes")
    assert r.status_code == 200, r.text
    r = s3.request("GET", path, secret="not-the-secret")
    assert_refused(r, (403,), "SignatureDoesNotMatch")


def test_wrong_payload_hash_is_refused(s3, bucket):
    path = f"/{bucket}/wrong-hash.bin"
    r = s3.request("PUT", path, body=b"the real body",
                   payload=hashlib.sha256(b"another body").hexdigest())
    assert r.status_code in (400, 403), (r.status_code, r.text)
    assert s3_error_code(r) in ("XAmzContentSHA256Mismatch",
                                "BadDigest", "SignatureDoesNotMatch"), r.text
    r = s3.request("GET", path)
    assert_refused(r, (404,), "NoSuchKey")


def test_anonymous_request_is_refused(s3, bucket):
    r = requests.get(s3.url(f"/{bucket}/unsigned.bin"), timeout=30)
    assert_refused(r, (403,), "AccessDenied")


def test_presigned_get(s3, bucket):
    data = body_of(50 * 1024, "presigned")
    path = f"/{bucket}/presigned/{ODD_KEY}"
    assert s3.request("PUT", path, body=data).status_code == 200

    url = s3.presign("GET", path, 600)
    r = requests.get(url, timeout=30)
    assert "Authorization" not in r.request.headers
    assert r.status_code == 200, r.text
    assert r.content == data

    # With a signed query parameter of the caller's own.
    url = s3.presign("GET", path, 600,
                     query=[("response-content-disposition",
                             'attachment; filename="x y.bin"')])
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Disposition"] == \
        'attachment; filename="x y.bin"'

    # Range on a presigned URL (the header is not signed).
    r = requests.get(s3.presign("GET", path, 600),
                     headers={"Range": "bytes=0-9"}, timeout=30)
    assert r.status_code == 206 and r.content == data[:10]

    # Made two minutes ago, valid an hour: still good.
    url = s3.presign("GET", path, 3600, date=amz_now(-120))
    assert requests.get(url, timeout=30).status_code == 200

    # The signature covers the path: another key is refused.
    other = url.replace("/presigned/", "/presigned-x/")
    assert other != url
    assert_refused(requests.get(other, timeout=30), (403,),
                   "SignatureDoesNotMatch")
    # ... and the expiry.
    tampered = re.sub(r"X-Amz-Expires=\d+", "X-Amz-Expires=7200", url)
    assert tampered != url
    assert requests.get(tampered, timeout=30).status_code == 403


def test_presigned_get_expires(s3, bucket):
    path = f"/{bucket}/expiring.bin"
    assert s3.request("PUT", path, body=b"soon gone").status_code == 200

    # Made an hour ago, valid for a minute.
    url = s3.presign("GET", path, 60, date=amz_now(-3600))
    assert_refused(requests.get(url, timeout=30), (403,), "AccessDenied")

    # Valid for one second: good now, refused two seconds later.
    url = s3.presign("GET", path, 1)
    r = requests.get(url, timeout=30)
    assert r.status_code == 200 and r.content == b"soon gone", r.text
    time.sleep(2.1)
    assert_refused(requests.get(url, timeout=30), (403,), "AccessDenied")


def initiate(s3, path):
    r = s3.request("POST", path, query=[("uploads", "")])
    assert r.status_code == 200, r.text
    upload_id = ET.fromstring(r.content).findtext(f"{S3_NS}UploadId")
    assert upload_id
    return upload_id


def upload_part(s3, path, upload_id, number, data):
    r = s3.request("PUT", path, body=data,
                   query=[("partNumber", str(number)),
                          ("uploadId", upload_id)])
    assert r.status_code == 200, r.text
    assert r.headers["ETag"].strip('"') == hashlib.md5(data).hexdigest()
    return r.headers["ETag"]


def test_multipart_upload_complete(s3, rgw, bucket):
    path = f"/{bucket}/multipart/{ODD_KEY}"
    part1 = body_of(5 * MiB + 17, "part1")
    part2 = body_of(123 * 1024, "part2")
    upload_id = initiate(s3, path)
    etags = [upload_part(s3, path, upload_id, 1, part1),
             upload_part(s3, path, upload_id, 2, part2)]

    xml = ("<CompleteMultipartUpload>"
           + "".join(f"<Part><PartNumber>{n}</PartNumber>"
                     f"<ETag>{etag}</ETag></Part>"
                     for n, etag in enumerate(etags, 1))
           + "</CompleteMultipartUpload>").encode()
    r = s3.request("POST", path, query=[("uploadId", upload_id)], body=xml,
                   headers={"Content-Type": "application/xml"})
    # S3 may answer 200 with an <Error> body: check for the result.
    assert r.status_code == 200, r.text
    assert ET.fromstring(r.content).tag == \
        f"{S3_NS}CompleteMultipartUploadResult", r.text

    r = s3.request("GET", path)
    assert r.status_code == 200, r.text
    assert r.content == part1 + part2
    assert r.headers["ETag"].strip('"').endswith("-2")
    assert (ODD_KEY, upload_id) not in rgw.list_multipart_uploads(bucket)

    r = s3.request("GET", path, signed_headers={
        "range": f"bytes={len(part1) - 5}-{len(part1) + 4}"})
    assert r.status_code == 206
    assert r.content == (part1 + part2)[len(part1) - 5:len(part1) + 5]


def test_multipart_upload_abort(s3, rgw, bucket):
    key = "multipart/aborted.bin"
    path = f"/{bucket}/{key}"
    upload_id = initiate(s3, path)
    upload_part(s3, path, upload_id, 1, body_of(64 * 1024, "abort"))
    assert (key, upload_id) in rgw.list_multipart_uploads(bucket)
    r = s3.request("GET", path, query=[("uploadId", upload_id)])
    assert r.status_code == 200, r.text              # ListParts
    assert ET.fromstring(r.content).findtext(
        f"{S3_NS}Part/{S3_NS}PartNumber") == "1", r.text

    r = s3.request("DELETE", path, query=[("uploadId", upload_id)])
    assert r.status_code == 204, r.text

    # ListParts: S3 says NoSuchUpload, RGW 16 NoSuchKey; both are 404.
    r = s3.request("GET", path, query=[("uploadId", upload_id)])
    assert r.status_code == 404, r.text
    assert s3_error_code(r) in ("NoSuchUpload", "NoSuchKey"), r.text
    r = s3.request("PUT", path, body=b"late part",
                   query=[("partNumber", "2"), ("uploadId", upload_id)])
    assert_refused(r, (404,), "NoSuchUpload")
    assert (key, upload_id) not in rgw.list_multipart_uploads(bucket)
    r = s3.request("GET", path)
    assert_refused(r, (404,), "NoSuchKey")
