"""Geo-replication with a stopped gateway (issue #5): locations a and b
are served by two radosgw processes of one Ceph cluster (the `rgw`
fixture's gateway serves b, rgw.add_gateway() starts a second one for a),
each with its own bucket.  A push through a node preferring a, then
quay-replicate --once, puts every blob in both; then a's radosgw is
really stopped (SIGTERM, its port closed) and pulls through nodes that
prefer a must still succeed from b:

    redirect   prefers a; the probe (HEAD of a's bucket) fails, so the
               307 goes to b's gateway
    proxy      prefers a, FEATURE_PROXY_STORAGE; the proxied read of a
               fails (connection refused) and @quay_storage_fallback
               reads from b

Which gateway served the bytes is read from each radosgw's own log
(log/client.rgw.log, log/client.rgw2.log), not from the code under test.
/health/endtoend answers 503 with storage false and logs a's name.  Once
a's gateway is started again, reads go back to a after
quay_storage_fail_timeout (2 s here).
"""

import hashlib
import os
import re
import time

import pytest
import requests

import harness


# test_replication.py's client and database helpers
_geo = harness.load_test_file("storage/test_replication.py")
Client, blob_key, placements = _geo.Client, _geo.blob_key, _geo.placements
replicate, sha256 = _geo.replicate, _geo.sha256


MiB = 1024 * 1024
PREFIX = "registry"
FAIL_TIMEOUT = 2
PROBE_INTERVAL = 1
TUNING = (f"    quay_storage_fail_timeout {FAIL_TIMEOUT}s;\n"
          f"    quay_storage_probe_interval {PROBE_INTERVAL}s;")


class Geo:
    pass


@pytest.fixture(scope="module")
def geo(rgw, start_registry, tmp_path_factory):
    g = Geo()
    g.rgw = rgw
    g.dir = tmp_path_factory.mktemp("failover")
    g.gw = {"a": rgw.add_gateway(), "b": rgw.gateway}
    g.bucket = {}
    for name in ("a", "b"):
        g.bucket[name] = f"quay-gwfail-{name}-{os.getpid()}"
        rgw.create_bucket(g.bucket[name])

    storage = {n: rgw.location(g.bucket[n], g.gw[n], prefix=PREFIX)
               for n in ("a", "b")}
    common = dict(DISTRIBUTED_STORAGE_CONFIG=storage,
                  DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a", "b"],
                  FEATURE_STORAGE_REPLICATION=True, http_extra=TUNING,
                  # one worker: one breaker per location, so what one
                  # request learns the next one uses
                  worker_processes=1)
    g.redirect = start_registry(DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
                                **common)
    g.db_uri = g.redirect.db_uri
    g.db = g.db_uri.rsplit("/", 1)[1]
    g.proxy = start_registry(DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
                             FEATURE_PROXY_STORAGE=True, DB_URI=g.db_uri,
                             **common)
    g.node_b = start_registry(DISTRIBUTED_STORAGE_PREFERENCE=["b", "a"],
                              DB_URI=g.db_uri, **common)
    harness.run([harness.QUAYCTL, "user", "create", "alice", "--db-uri",
                 g.db_uri, "--password-stdin", "--if-not-exists"],
                input="alice-password\n", timeout=60)
    g.node_a = g.redirect
    g.config = g.redirect.config_path
    g.n = 0
    yield g
    # a test that failed half-way must not leave a's gateway down
    g.gw["a"].start()


def gateway_gets(gw, bucket, digest):
    """How many GETs of the blob's object gw's radosgw has logged."""
    try:
        text = gw.log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    return len(re.findall(r'"GET /' + re.escape(f"{bucket}/"
                                                 f"{blob_key(digest)}")
                          + r"[ ?]", text))


def served(gw, bucket, digest, before):
    """Whether gw's radosgw logged one more GET of the blob than before.
    Ceph writes its log from a thread of its own, a moment after the
    answer: wait for the line (up to 5 s), then check there is just one."""
    try:
        harness.wait_until(
            lambda: gateway_gets(gw, bucket, digest) > before, 5,
            f"{gw.name} to log the GET", interval=0.05)
    except harness.HarnessError:
        return False
    return gateway_gets(gw, bucket, digest) == before + 1


def log_since(node, offset):
    with open(node.error_log_path, errors="replace") as f:
        f.seek(offset)
        return f.read()


def log_size(node):
    return node.error_log_path.stat().st_size


def fetch(url):
    r = requests.get(url, timeout=120)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.content


def redirected_to(geo, client, digest):
    r = client.blob(digest)
    assert r.status_code == 307, r.text
    url = r.headers["Location"]
    for name in ("a", "b"):
        if url.startswith(f"{geo.gw[name].endpoint}/{geo.bucket[name]}/"
                          f"{blob_key(digest)}?"):
            return name, url
    raise AssertionError(f"redirect to neither gateway: {url}")


def test_push_to_a_and_replicate_to_b(geo):
    c = Client(geo.node_a, "alice/failover")
    geo.layers = [os.urandom(7 * MiB + 11), os.urandom(3000)]
    _, digests = c.push_image("v1", geo.layers)
    geo.digests = digests[1:]
    for d in digests:
        assert placements(geo, d) == ["a"]
    rc, log = replicate(geo)
    assert rc == 0, log
    for d in digests:
        assert placements(geo, d) == ["a", "b"], log
    # b's bucket holds the bytes, read through b's own gateway
    for d, data in zip(geo.digests, geo.layers):
        r = geo.gw["b"].s3("GET", f"/{geo.bucket['b']}/{blob_key(d)}")
        assert r.status_code == 200 and r.content == data


def test_each_node_redirects_to_its_own_gateway(geo):
    d, data = geo.digests[0], geo.layers[0]
    for node, name in ((geo.redirect, "a"), (geo.node_b, "b")):
        got, url = redirected_to(geo, Client(node, "alice/failover"), d)
        assert got == name, url
        before = gateway_gets(geo.gw[name], geo.bucket[name], d)
        assert fetch(url) == data
        assert served(geo.gw[name], geo.bucket[name], d, before)


def test_pulls_succeed_from_b_while_a_gateway_is_stopped(geo):
    gw_a = geo.gw["a"]
    c = Client(geo.redirect, "alice/failover")
    cp = Client(geo.proxy, "alice/failover")
    offsets = {n: log_size(n) for n in (geo.redirect, geo.proxy)}

    gw_a.stop()
    assert not gw_a.running()
    assert not harness.port_open(gw_a.port), "a's gateway still listens"
    stopped = time.monotonic()
    # the node's view of a may be one probe interval old (the documented
    # window of redirect mode): start after it, so the first pull probes
    time.sleep(PROBE_INTERVAL + 0.2)

    # redirect mode: every blob is sent to b's gateway, which serves it
    for d, data in zip(geo.digests, geo.layers):
        name, url = redirected_to(geo, c, d)
        assert name == "b", url
        before = gateway_gets(geo.gw["b"], geo.bucket["b"], d)
        assert sha256(fetch(url)) == d
        assert served(geo.gw["b"], geo.bucket["b"], d, before)
    log = log_since(geo.redirect, offsets[geo.redirect])
    assert re.search(r'storage location "a" is failing \(probe failed\)',
                     log), log[-3000:]

    # proxy mode: the read of a fails, the pull is served from b; after
    # quay_storage_max_fails (3) failures a is passed over directly
    for i in range(4):
        for d, data in zip(geo.digests, geo.layers):
            before = gateway_gets(geo.gw["b"], geo.bucket["b"], d)
            r = cp.blob(d)
            assert r.status_code == 200, r.text[:300]
            assert r.headers["Docker-Content-Digest"] == d
            assert hashlib.sha256(r.content).hexdigest() == d.split(":")[1]
            assert served(geo.gw["b"], geo.bucket["b"], d, before)
    d, data = geo.digests[0], geo.layers[0]
    r = cp.blob(d, headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    log = log_since(geo.proxy, offsets[geo.proxy])
    assert re.search(r'proxied read from storage location "a" failed '
                     r'\(502\)', log), log[-3000:]
    assert re.search(r'storage location "a" is failing \(proxied read '
                     r'answered 502\)', log), log[-3000:]
    assert "Connection refused" in log, log[-3000:]

    # /health/endtoend: storage is false, the log names location a
    offset = log_size(geo.redirect)
    r = geo.redirect.request("GET", "/health/endtoend")
    assert r.status_code == 503, r.text
    assert r.json()["data"]["services"]["storage"] is False, r.text
    assert r.json()["data"]["services"]["database"] is True, r.text
    log = log_since(geo.redirect, offset)
    assert re.search(r'storage location "a"', log), log
    assert not re.search(r'storage location "b"', log), log
    assert time.monotonic() - stopped < 60
    geo.down_since = stopped


def test_reads_go_back_to_a_after_fail_timeout(geo):
    gw_a = geo.gw["a"]
    d, data = geo.digests[0], geo.layers[0]
    c = Client(geo.redirect, "alice/failover")
    cp = Client(geo.proxy, "alice/failover")
    gw_a.start()
    assert harness.port_open(gw_a.port)
    restarted = time.monotonic()

    # redirect mode: b until a's down time has passed, then a again
    # (the next probe finds it answering)
    def back_to_a():
        name, url = redirected_to(geo, c, d)
        if name == "b":
            return False
        assert fetch(url) == data
        return True
    harness.wait_until(back_to_a, FAIL_TIMEOUT + PROBE_INTERVAL + 5,
                       "redirected pulls to go back to a", interval=0.2)
    assert re.search(r'storage location "a" answers again',
                     geo.redirect.error_log())

    # proxy mode: the bytes come from a's gateway again
    def proxied_from_a():
        before = {n: gateway_gets(geo.gw[n], geo.bucket[n], d)
                  for n in ("a", "b")}
        r = cp.blob(d)
        assert r.status_code == 200 and r.content == data
        harness.wait_until(
            lambda: any(gateway_gets(geo.gw[n], geo.bucket[n], d)
                        > before[n] for n in ("a", "b")), 5,
            "a gateway to log the proxied GET")
        return served(gw_a, geo.bucket["a"], d, before["a"])
    harness.wait_until(proxied_from_a, FAIL_TIMEOUT + 5,
                       "proxied pulls to go back to a", interval=0.2)
    assert time.monotonic() - restarted < FAIL_TIMEOUT + PROBE_INTERVAL + 5

    r = geo.redirect.request("GET", "/health/endtoend")
    assert r.status_code == 200, r.text
