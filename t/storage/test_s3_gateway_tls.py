"""S3 storage over https (issue #5): RadosGWStorage with is_secure: true
and S3Storage with endpoint_url: https://..., against radosgw's beast
frontend serving TLS with a certificate for 127.0.0.1 from a throw-away CA
(rgw.make_tls(), the openssl CLI).  Two more radosgw processes on the
`rgw` fixture's cluster:

    tls     certificate signed by the test CA
    rogue   certificate signed by another CA nobody trusts

nginx verifies storage certificates against the file named by
proxy_ssl_trusted_certificate in conf/quay-storage.conf (the system bundle
as shipped).  A node that trusts the test CA does what a user with a
private CA does: it includes a copy of conf/quay-storage.conf with that
line pointing at the CA file (trust_ca() below, then nginx -s reload).
quay-replicate trusts the file in QUAY_STORAGE_CA_FILE.

Checked: push (multipart and PutObject) and pull in redirect mode (the
presigned URL is https and verifies with the test CA) and proxy mode; an
untrusted certificate (the system bundle against the test CA, the test CA
against the rogue one) is a prompt 503 naming the location, with nginx's
verify error in the log, and /health/endtoend 503; quay-replicate --once
copies a blob from the TLS location to a plain one, and without the CA
file it refuses the certificate.
"""

import os
import re
import subprocess
import time

import pytest
import requests

import harness
import rgw as rgw_lib


# test_replication.py's raw /v2/ client
_geo = harness.load_test_file("storage/test_replication.py")
Client, blob_key, sha256 = _geo.Client, _geo.blob_key, _geo.sha256

MiB = 1024 * 1024
PREFIX = "registry"
QUEUE = "imagestoragereplication/"
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STORAGE_CONF = harness.ROOT / "conf" / "quay-storage.conf"


def radosgw(gw, rgw, bucket):
    return rgw.location(bucket, gw, prefix=PREFIX)


def s3storage(gw, rgw, bucket):
    return ["S3Storage", {
        "endpoint_url": gw.endpoint, "s3_access_key": rgw.access_key,
        "s3_secret_key": rgw.secret_key, "s3_bucket": bucket,
        "storage_path": "/" + PREFIX}]


def trust_ca(registry, ca):
    """Makes registry's nginx trust ca for storage: a copy of
    conf/quay-storage.conf whose proxy_ssl_trusted_certificate lines name
    ca, included instead of the shipped file; then a reload."""
    text = STORAGE_CONF.read_text()
    assert text.count(SYSTEM_BUNDLE) == 2, "quay-storage.conf changed"
    copy = registry.prefix / "quay-storage.conf"
    copy.write_text(text.replace(SYSTEM_BUNDLE, str(ca)))
    conf = registry.conf_path.read_text()
    assert f"include {STORAGE_CONF};" in conf
    registry.conf_path.write_text(conf.replace(f"include {STORAGE_CONF};",
                                               f"include {copy};"))
    registry.reload()


class Tls:
    pass


@pytest.fixture(scope="module")
def t(rgw, start_registry, tmp_path_factory):
    g = Tls()
    g.rgw = rgw
    g.dir = tmp_path_factory.mktemp("tls")
    g.tls = rgw_lib.make_tls(g.dir / "ca")
    g.rogue_tls = rgw_lib.make_tls(g.dir / "rogue", name="rogue")
    g.gw = rgw.add_gateway(tls=g.tls)
    g.rogue = rgw.add_gateway(tls=g.rogue_tls)
    assert g.gw.endpoint.startswith("https://")
    g.bucket = f"quay-tls-{os.getpid()}"
    g.plain_bucket = f"quay-tls-plain-{os.getpid()}"
    for b in (g.bucket, g.plain_bucket):
        rgw.create_bucket(b)
    g.start_registry = start_registry
    return g


def node(t, storage, trust=True, **config):
    """A registry whose locations are storage; trusting the test CA."""
    r = t.start_registry(DISTRIBUTED_STORAGE_CONFIG=storage,
                         DISTRIBUTED_STORAGE_PREFERENCE=list(storage),
                         DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=list(storage),
                         **config)
    harness.run([harness.QUAYCTL, "user", "create", "alice", "--db-uri",
                 r.db_uri, "--password-stdin", "--if-not-exists"],
                input="alice-password\n", timeout=60)
    if trust:
        trust_ca(r, t.tls.ca)
    return r


def stored(t, digest):
    r = t.gw.s3("GET", f"/{t.bucket}/{blob_key(digest)}")
    return r.content if r.status_code == 200 else None


def test_redirect_mode_push_and_pull_over_https(t):
    reg = node(t, {"s": radosgw(t.gw, t.rgw, t.bucket)})
    c = Client(reg, "alice/tls-redirect")
    # 7 MiB: a multipart upload (5 MiB parts) and a CopyObject; 3000 B:
    # one PutObject
    layers = [os.urandom(7 * MiB + 5), os.urandom(3000)]
    _, digests = c.push_image("v1", layers)
    for d, data in zip(digests[1:], layers):
        assert stored(t, d) == data
        r = c.blob(d)
        assert r.status_code == 307, r.text
        url = r.headers["Location"]
        assert url.startswith(f"https://127.0.0.1:{t.gw.port}/{t.bucket}/"
                              f"{blob_key(d)}?"), url
        got = requests.get(url, verify=str(t.tls.ca), timeout=60)
        assert got.status_code == 200 and got.content == data
        # the presigned URL is not trusted without the test CA
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(url, verify=SYSTEM_BUNDLE, timeout=60)
    r = reg.request("GET", "/health/endtoend")
    assert r.status_code == 200, r.text


def test_proxy_mode_push_and_pull_over_https(t):
    reg = node(t, {"s": s3storage(t.gw, t.rgw, t.bucket)},
               FEATURE_PROXY_STORAGE=True)
    c = Client(reg, "alice/tls-proxy")
    layers = [os.urandom(6 * MiB + 1), os.urandom(2000)]
    _, digests = c.push_image("v1", layers)
    for d, data in zip(digests[1:], layers):
        assert stored(t, d) == data
        r = c.blob(d)
        assert r.status_code == 200, r.text[:300]
        assert r.headers["Docker-Content-Digest"] == d
        assert r.content == data
    d, data = digests[1], layers[0]
    r = c.blob(d, headers={"Range": "bytes=5242000-5243999"})
    assert r.status_code == 206 and r.content == data[5242000:5244000]
    r = reg.request("GET", "/health/endtoend")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("case", ["system-bundle", "rogue-gateway"])
def test_an_untrusted_certificate_is_a_clear_storage_error(t, case):
    if case == "system-bundle":
        # as shipped: the system bundle does not know the test CA
        reg = node(t, {"s": radosgw(t.gw, t.rgw, t.bucket)}, trust=False)
    else:
        # the test CA is trusted, the gateway's certificate is another's
        reg = node(t, {"s": radosgw(t.rogue, t.rgw, t.bucket)})
    reg.ignore_log.append(r"upstream SSL certificate verify error")
    c = Client(reg, "alice/tls-untrusted")
    offset = reg.error_log_path.stat().st_size

    started = time.monotonic()
    data = os.urandom(1500)
    digest = sha256(data)
    r = c.req("POST", f"/v2/{c.name}/blobs/uploads/",
              params={"digest": digest}, data=data, timeout=30,
              headers={"Content-Type": "application/octet-stream"})
    assert time.monotonic() - started < 15, "the error took too long"
    assert r.status_code == 503, r.text
    err = r.json()["errors"][0]
    assert err["code"] == "UNAVAILABLE", r.text
    assert 'storage location "s"' in err["detail"], r.text

    log = reg.error_log()[offset:]
    # nginx's reason (20 or 21: the issuer is not trusted), then the
    # module's line naming the location and the operation
    assert re.search(r"upstream SSL certificate verify error: \(2[01]:"
                     r"unable to (get local issuer certificate|verify the "
                     r"first certificate)\)", log), log[-3000:]
    assert re.search(r'storage location "s": PutObject "registry/sha256/'
                     + digest[7:9] + "/" + digest[7:] + r'": no answer '
                     r"from https://127\.0\.0\.1:\d+ \(no connection, or "
                     r"the TLS handshake or its certificate check failed\)",
                     log), log[-3000:]
    # nothing reached the bucket
    assert stored(t, digest) is None

    # a chunked upload fails the same way on its PATCH's first part
    r = c.req("POST", f"/v2/{c.name}/blobs/uploads/")
    assert r.status_code in (202, 503), r.text
    if r.status_code == 202:
        r = c.req("PATCH", r.headers["Location"], data=os.urandom(6 * MiB),
                  headers={"Content-Type": "application/octet-stream"},
                  timeout=30)
    assert r.status_code == 503, r.text
    assert 'storage location "s"' in r.json()["errors"][0]["detail"]

    r = reg.request("GET", "/health/endtoend")
    assert r.status_code == 503, r.text
    assert r.json()["data"]["services"]["storage"] is False
    # the worker processes are alive and serving
    assert reg.request("GET", "/health/instance").status_code == 200


def replicate(t, reg, env, retry_base=0):
    t.n = getattr(t, "n", 0) + 1
    log = t.dir / f"replicate-{t.n}.log"
    p = harness.spawn([harness.BINDIR / "quay-replicate", "--config",
                       reg.config_path, "--once", "--retry-base",
                       str(retry_base)], log, env=env)
    try:
        rc = p.wait(120)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        raise AssertionError("quay-replicate --once hung:\n"
                             + log.read_text(errors="replace"))
    return rc, log.read_text(errors="replace")


def test_quay_replicate_copies_from_a_tls_location_to_a_plain_one(t):
    storage = {"s": radosgw(t.gw, t.rgw, t.bucket),
               "p": radosgw(t.rgw.gateway, t.rgw, t.plain_bucket)}
    reg = node(t, storage, FEATURE_STORAGE_REPLICATION=True)
    db = reg.db_uri.rsplit("/", 1)[1]

    def sql(q):
        return reg.pg.sql(q, db=db)

    c = Client(reg, "alice/tls-replicate")
    layers = [os.urandom(9 * MiB + 7)]
    _, digests = c.push_image("v1", layers)
    big = digests[1]
    assert stored(t, big) == layers[0]

    # without the CA file the worker refuses the gateway's certificate:
    # a storage error, retried later (here in 60 s)
    env = {k: v for k, v in os.environ.items()
           if k != "QUAY_STORAGE_CA_FILE"}
    rc, log = replicate(t, reg, env, retry_base=60)
    assert rc == 0, log
    rows = sql("SELECT state, last_error, retries_remaining FROM queueitem"
               f" WHERE queue_name = '{QUEUE}'")
    assert len(rows) == len(digests), rows
    for state, error, retries in rows:
        assert state == "queued" and retries == "4", rows
        assert re.search(r"^no source could be read: s \(location s: "
                         r"HeadObject \S+: SSL certificate problem: unable "
                         r"to get local issuer certificate\)$", error), rows
    r = t.rgw.s3("GET", f"/{t.plain_bucket}/{blob_key(big)}")
    assert r.status_code == 404

    # with it, the blobs are copied over https and verified
    sql("UPDATE queueitem SET available_after = now()"
        f" WHERE queue_name = '{QUEUE}'")
    rc, log = replicate(t, reg, dict(env, QUAY_STORAGE_CA_FILE=str(t.tls.ca)))
    assert rc == 0, log
    assert len(re.findall(r"replicated blob=sha256:\S+ from=s to=p", log)) \
        == len(digests), log
    assert sql(f"SELECT count(*) FROM queueitem WHERE queue_name ="
               f" '{QUEUE}'") == [("0",)]
    r = t.rgw.s3("GET", f"/{t.plain_bucket}/{blob_key(big)}")
    assert r.status_code == 200 and r.content == layers[0]
    placed = sql("SELECT l.name FROM imagestorageplacement p"
                 " JOIN imagestorage s ON s.id = p.storage_id"
                 " JOIN imagestoragelocation l ON l.id = p.location_id"
                 f" WHERE s.content_checksum = '{big}' ORDER BY 1")
    assert placed == [("p",), ("s",)], placed
