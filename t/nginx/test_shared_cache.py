"""The shared cache of the hot path (issue #6; ngx_http_quay_cache.c):
tokens, repository lookups and tag -> manifest answers kept in shared
memory must never let any worker or node answer from a stale entry.

Every change below is read back at once on EVERY nginx worker: requests go
out on new connections until each worker (X-Worker: its pid) has answered,
after the old answer was cached on each of them.  /metrics proves that the
cache was really in use.  A second node on the same database learns about
changes through Redis pub/sub (quay:invalidate) well within a long ttl,
and within the ttl when Redis is down.  Pull audit rows still land,
batched."""

import base64
import hashlib
import json
import re
import subprocess
import time

import pytest
import requests

import harness
from api import Api, create_token, create_user
from harness import wait_until


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

WORKERS = 4

# X-Worker names the worker that answered; /metrics for the hit counts
SERVER_EXTRA = """\
        add_header X-Worker $pid always;
        location = /metrics {
            quay_metrics;
        }
"""


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def v2_token(registry, user, scope):
    """A registry token from registry's /v2/auth (user None: anonymous)."""
    host = registry.url.split("//")[1]
    auth = (user, user + "-password") if user else None
    r = registry.request("GET", "/v2/auth", auth=auth,
                         params=[("service", host), ("scope", scope)])
    assert r.status_code == 200, r.text
    return r.json()["token"]


def fresh(registry, method, path, token=None, headers=None, **kw):
    """One request on a new connection, so that any worker may take it."""
    h = {"Connection": "close"}
    if token:
        h["Authorization"] = "Bearer " + token
    h.update(headers or {})
    with requests.Session() as s:
        return s.request(method, registry.url + path, headers=h, timeout=30,
                         allow_redirects=False, **kw)


def every_worker(registry, method, path, token, check=None,
                 workers=WORKERS, tries=2000):
    """Requests on new connections until each worker has answered; check(r)
    must hold for every answer.  Returns {worker pid: response}."""
    seen = {}
    for _ in range(tries):
        r = fresh(registry, method, path, token,
                  headers={"Accept": OCI_MANIFEST})
        if check is not None:
            check(r)
        seen.setdefault(r.headers["X-Worker"], r)
        if len(seen) == workers:
            return seen
    pytest.fail(f"only workers {sorted(seen)} answered in {tries} tries")


def metric(registry, name, **labels):
    text = registry.request("GET", "/metrics").text
    want = name
    if labels:
        want += "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return int(line.split()[1])
    return 0


class V2:
    """Pushes to and pulls from one repository with a token of its
    owner from registry's own /v2/auth."""

    def __init__(self, registry, name, user="alice"):
        self.registry = registry
        self.name = name
        self.token = v2_token(registry, user,
                              f"repository:{name}:pull,push,delete")

    def req(self, method, path, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(kw.pop("headers", {}))
        return self.registry.request(method, path, headers=h, **kw)

    def blob(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    def push(self, ref, seed):
        """A new image pushed as ref; returns (digest, bytes, response)."""
        config = dict(self.blob(json.dumps({"seed": seed}).encode()),
                      mediaType=OCI_CONFIG)
        layer = dict(self.blob(f"{seed}-layer".encode() * 40),
                     mediaType=OCI_LAYER)
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": config, "layers": [layer]},
                          indent=2).encode()
        r = self.req("PUT", f"/v2/{self.name}/manifests/{ref}",
                     headers={"Content-Type": OCI_MANIFEST}, data=body)
        assert r.status_code == 201, r.text
        return sha256(body), body, r

    def path(self, ref):
        return f"/v2/{self.name}/manifests/{ref}"


def serves(body):
    def check(r):
        assert r.status_code == 200, (r.headers.get("X-Worker"), r.text)
        assert r.content == body, r.headers.get("X-Worker")
        assert r.headers["Docker-Content-Digest"] == sha256(body)
    return check


def answers(status, code=None):
    def check(r):
        assert r.status_code == status, (r.headers.get("X-Worker"),
                                         r.status_code, r.text)
        if code is not None:
            assert r.json()["errors"][0]["code"] == code
    return check


def warm(registry, v2, ref, body):
    """Caches ref's answer on every worker and proves it is served from
    the cache afterwards."""
    every_worker(registry, "GET", v2.path(ref), v2.token, serves(body))
    hits = metric(registry, "quay_cache_hits_total", cache="tag")
    every_worker(registry, "GET", v2.path(ref), v2.token, serves(body))
    assert metric(registry, "quay_cache_hits_total",
                  cache="tag") >= hits + WORKERS


# ------------------------------------------------------------ one node

@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry(worker_processes=WORKERS,
                          server_extra=SERVER_EXTRA)


@pytest.fixture(scope="module")
def alice(registry):
    create_user(registry, "alice")
    create_user(registry, "bob")
    return V2(registry, "alice/app")


@pytest.fixture(scope="module")
def alice_api(registry, alice):
    return Api(registry, create_token(registry, "alice"))


def test_push_to_a_tag_is_read_back_on_every_worker_at_once(registry,
                                                             alice):
    d1, b1, _ = alice.push("latest", "one")
    warm(registry, alice, "latest", b1)

    d2, b2, r = alice.push("latest", "two")
    pusher = r.headers["X-Worker"]

    seen = every_worker(registry, "GET", alice.path("latest"), alice.token,
                        serves(b2))
    assert set(seen) - {pusher}, "no other worker answered"
    every_worker(registry, "HEAD", alice.path("latest"), alice.token,
                 lambda r: (r.status_code == 200
                            and r.headers["Docker-Content-Digest"] == d2)
                 or pytest.fail(r.headers.get("Docker-Content-Digest")))


def test_tag_delete_is_seen_by_every_worker_at_once(registry, alice):
    _, body, _ = alice.push("doomed", "doomed")
    warm(registry, alice, "doomed", body)

    r = alice.req("DELETE", alice.path("doomed"))
    assert r.status_code == 202, r.text

    every_worker(registry, "GET", alice.path("doomed"), alice.token,
                 answers(404, "MANIFEST_UNKNOWN"))
    every_worker(registry, "HEAD", alice.path("doomed"), alice.token,
                 answers(404))


def test_manifest_delete_is_seen_by_every_worker_at_once(registry, alice):
    digest, body, _ = alice.push("bydigest", "bydigest")
    warm(registry, alice, "bydigest", body)

    r = alice.req("DELETE", alice.path(digest))
    assert r.status_code == 202, r.text

    every_worker(registry, "GET", alice.path("bydigest"), alice.token,
                 answers(404, "MANIFEST_UNKNOWN"))


def test_tag_moved_and_deleted_through_the_api_is_seen_at_once(
        registry, alice, alice_api):
    _, b1, _ = alice.push("api-a", "api-a")
    d2, b2, _ = alice.push("api-b", "api-b")
    warm(registry, alice, "api-a", b1)

    r = alice_api.put("/repository/alice/app/tag/api-a",
                      json={"manifest_digest": d2})
    assert r.status_code == 201, r.text
    every_worker(registry, "GET", alice.path("api-a"), alice.token,
                 serves(b2))

    r = alice_api.delete("/repository/alice/app/tag/api-a")
    assert r.status_code == 204, r.text
    every_worker(registry, "GET", alice.path("api-a"), alice.token,
                 answers(404, "MANIFEST_UNKNOWN"))


def test_repository_deleted_through_the_api_is_gone_at_once(
        registry, alice, alice_api):
    # the token was issued before the delete and is still valid: only the
    # (cached) repository lookup can refuse it
    doomed = V2(registry, "alice/doomed")
    _, body, _ = doomed.push("v1", "repo-doomed")
    warm(registry, doomed, "v1", body)
    repo_hits = metric(registry, "quay_cache_hits_total", cache="repository")
    assert repo_hits >= WORKERS

    r = alice_api.delete("/repository/alice/doomed")
    assert r.status_code == 204, r.text

    every_worker(registry, "GET", doomed.path("v1"), doomed.token,
                 answers(404, "NAME_UNKNOWN"))


def test_repository_made_private_is_closed_to_anonymous_at_once(
        registry, alice, alice_api):
    pub = V2(registry, "alice/pub")
    _, body, _ = pub.push("v1", "pub")
    r = alice_api.post("/repository/alice/pub/changevisibility",
                       json={"visibility": "public"})
    assert r.status_code == 200, r.text

    anon = v2_token(registry, None, "repository:alice/pub:pull")
    every_worker(registry, "GET", pub.path("v1"), anon, serves(body))

    r = alice_api.post("/repository/alice/pub/changevisibility",
                       json={"visibility": "private"})
    assert r.status_code == 200, r.text

    # as in Quay, a token carries its grants until it expires; what
    # changes at once is what any worker grants and serves from now on
    anon = v2_token(registry, None, "repository:alice/pub:pull")
    every_worker(registry, "GET", pub.path("v1"), anon, answers(401))


def test_permission_removed_is_refused_at_once(registry, alice,
                                                alice_api):
    _, body, _ = alice.push("shared", "shared")
    path = "/repository/alice/app/permissions/user/bob"
    r = alice_api.put(path, json={"role": "read"})
    assert r.status_code == 200, r.text

    bob = v2_token(registry, "bob", "repository:alice/app:pull")
    every_worker(registry, "GET", alice.path("shared"), bob, serves(body))

    r = alice_api.delete(path)
    assert r.status_code == 204, r.text

    bob = v2_token(registry, "bob", "repository:alice/app:pull")
    every_worker(registry, "GET", alice.path("shared"), bob, answers(401))


def signed(registry, token, **changes):
    """token's header and claims with changes, signed with registry's
    instance key (as test_v2_auth.py does)."""
    header = json.loads(unb64url(token.split(".")[0]))
    claims = dict(json.loads(unb64url(token.split(".")[1])), **changes)
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    pem = registry.config_path.parent / "quay.pem"
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pem)],
                         input=f"{h}.{p}".encode(), capture_output=True,
                         check=True).stdout
    return f"{h}.{p}.{b64url(sig)}"


def test_a_cached_token_is_not_served_past_its_exp(registry, alice):
    _, body, _ = alice.push("short", "short")
    now = int(time.time())
    token = signed(registry, alice.token, iat=now, nbf=now, exp=now + 3)

    every_worker(registry, "GET", alice.path("short"), token, serves(body))
    hits = metric(registry, "quay_cache_hits_total", cache="token")
    every_worker(registry, "GET", alice.path("short"), token, serves(body))
    assert metric(registry, "quay_cache_hits_total",
                  cache="token") >= hits + WORKERS

    time.sleep(max(0, now + 4 - time.time()))

    # past exp: every worker verifies it again (the verifier's own leeway
    # still accepts it), none answers from the cache
    hits = metric(registry, "quay_cache_hits_total", cache="token")
    every_worker(registry, "GET", alice.path("short"), token, serves(body))
    assert metric(registry, "quay_cache_hits_total", cache="token") == hits


def test_a_token_past_exp_and_leeway_is_refused_by_every_worker(registry,
                                                                 alice):
    _, body, _ = alice.push("late", "late")
    now = int(time.time())
    # the verifier accepts 60 s past exp: this one for 6 more seconds
    token = signed(registry, alice.token, iat=now - 60, nbf=now - 60,
                   exp=now - 54)

    every_worker(registry, "GET", alice.path("late"), token, serves(body))

    time.sleep(max(0, now + 7 - time.time()))
    every_worker(registry, "GET", alice.path("late"), token, answers(401))


def pulls(registry, repo):
    db = registry.db_uri.rsplit("/", 1)[1]
    ns, name = repo.split("/", 1)
    return registry.pg.sql(
        "SELECT COALESCE(p.username, ''), e.ip, e.metadata_json::text,"
        " extract(epoch FROM e.datetime)"
        " FROM logentry e JOIN logentrykind k ON k.id = e.kind_id"
        " JOIN repository r ON r.id = e.repository_id"
        " JOIN \"user\" n ON n.id = r.namespace_user_id"
        " LEFT JOIN \"user\" p ON p.id = e.performer_id"
        f" WHERE k.name = 'pull_repo' AND n.username = '{ns}'"
        f" AND r.name = '{name}'", db=db)


def test_pull_audit_rows_are_written_in_batches(registry, alice):
    audited = V2(registry, "alice/audited")
    digest, body, _ = audited.push("v1", "audited")
    batches = metric(registry, "quay_audit_batches_total")

    t0 = time.time()
    for _ in range(300):
        r = audited.req("GET", audited.path("v1"),
                        headers={"Accept": OCI_MANIFEST})
        assert r.status_code == 200
    t1 = time.time()

    rows = wait_until(lambda: len(pulls(registry, "alice/audited")) >= 300
                      and pulls(registry, "alice/audited"), 10,
                      "300 pull_repo rows")
    assert len(rows) == 300
    for performer, ip, meta, at in rows:
        assert performer == "alice" and ip == "127.0.0.1"
        assert json.loads(meta) == {"reference": "v1",
                                    "manifest_digest": digest}
        # the time of the pull, not of the batch's insert
        assert t0 - 1 <= float(at) <= t1 + 1
    sent = metric(registry, "quay_audit_batches_total") - batches
    assert 1 <= sent < 300
    assert metric(registry, "quay_audit_dropped_total") == 0


def test_a_graceful_exit_sends_the_last_audit_batch(registry, alice):
    last = V2(registry, "alice/last")
    _, body, _ = last.push("v1", "last")
    for _ in range(5):
        assert last.req("GET", last.path("v1")).status_code == 200
    # the old workers quit gracefully with rows still queued
    registry.reload()
    wait_until(lambda: len(pulls(registry, "alice/last")) == 5, 10,
               "5 pull_repo rows after a reload")


def test_metrics_count_hits_and_misses_by_cache(registry, alice):
    text = registry.request("GET", "/metrics").text
    for cache in ("token", "repository", "tag"):
        for kind in ("hits", "misses"):
            m = re.search(rf'^quay_cache_{kind}_total{{cache="{cache}"}} '
                          r"(\d+)$", text, re.M)
            assert m, (kind, cache)
        assert metric(registry, "quay_cache_hits_total", cache=cache) > 0


def test_quay_cache_off_serves_without_a_cache(start_registry):
    reg = start_registry(http_extra="    quay_cache off;",
                         server_extra=SERVER_EXTRA)
    create_user(reg, "alice")
    v2 = V2(reg, "alice/app")
    _, body, _ = v2.push("v1", "off")
    for _ in range(3):
        serves(body)(v2.req("GET", v2.path("v1")))
    for cache in ("token", "repository", "tag"):
        assert metric(reg, "quay_cache_hits_total", cache=cache) == 0
        assert metric(reg, "quay_cache_misses_total", cache=cache) == 0


# ----------------------------------------------------------- two nodes

@pytest.fixture(scope="module")
def make_pair(start_registry, tmp_root):
    """make_pair(ttl) -> (a, b, redis): two nodes on one database, each
    with 2 workers and the given cache ttl, sharing a Redis of their
    own (so that stopping it troubles no other test)."""
    servers = []

    def make(ttl):
        redis = harness.Redis(tmp_root.mkdir("redis-cache"))
        servers.append(redis)
        conf = dict(BUILDLOGS_REDIS={"host": "127.0.0.1",
                                     "port": redis.port},
                    http_extra=f"    quay_cache zone=quay_cache:8m "
                               f"ttl={ttl};",
                    server_extra=SERVER_EXTRA)
        a = start_registry(**conf)
        b = start_registry(DB_URI=a.db_uri, **conf)
        create_user(a, "alice")
        return a, b, redis

    yield make
    for redis in servers:
        redis.stop()


def test_other_node_sees_a_push_through_redis_well_within_the_ttl(
        make_pair):
    a, b, redis = make_pair("60s")
    on_a = V2(a, "alice/app")
    on_b = V2(b, "alice/app")
    _, b1, _ = on_a.push("latest", "node-one")

    wait_until(lambda: int(redis.cli("PUBSUB", "NUMSUB", "quay:invalidate")
                           .split()[-1]) >= 4, 10,
               "4 workers subscribed to quay:invalidate")
    every_worker(b, "GET", on_b.path("latest"), on_b.token, serves(b1),
                 workers=2)
    hits = metric(b, "quay_cache_hits_total", cache="tag")
    every_worker(b, "GET", on_b.path("latest"), on_b.token, serves(b1),
                 workers=2)
    assert metric(b, "quay_cache_hits_total", cache="tag") >= hits + 2

    _, b2, _ = on_a.push("latest", "node-two")
    t0 = time.time()

    def all_new():
        seen = every_worker(b, "GET", on_b.path("latest"), on_b.token,
                            workers=2)
        return all(r.content == b2 for r in seen.values())
    wait_until(all_new, 5, "node b serving the new manifest")
    # the ttl is 60 s: only the message can explain this
    assert time.time() - t0 < 5

    r = on_a.req("DELETE", on_a.path("latest"))
    assert r.status_code == 202
    wait_until(lambda: all(
        r.status_code == 404 for r in every_worker(
            b, "GET", on_b.path("latest"), on_b.token, workers=2).values()),
        5, "node b answering 404 after the delete")


def test_other_node_sees_a_push_within_the_ttl_when_redis_is_down(
        make_pair):
    a, b, redis = make_pair("2s")
    on_a = V2(a, "alice/app")
    on_b = V2(b, "alice/app")
    _, b1, _ = on_a.push("latest", "down-one")
    every_worker(b, "GET", on_b.path("latest"), on_b.token, serves(b1),
                 workers=2)

    redis.stop()
    try:
        _, b2, _ = on_a.push("latest", "down-two")
        t0 = time.time()

        def all_new():
            seen = every_worker(b, "GET", on_b.path("latest"), on_b.token,
                                workers=2)
            return all(r.content == b2 for r in seen.values())
        wait_until(all_new, 2 + 3, "node b serving the new manifest")
        assert time.time() - t0 < 2 + 3
    finally:
        redis.start()

    # the subscriptions come back by themselves (and drop what was cached
    # meanwhile, since messages may have been missed)
    wait_until(lambda: b.error_log().count(
        "subscribed to quay:invalidate again") >= 2, 10,
        "node b's workers subscribed again")
