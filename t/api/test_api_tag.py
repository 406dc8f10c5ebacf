"""The tag routes of /api/v1 (Quay's endpoints/api/tag.py; quay-behaviour
1.4, 7.1, 10): the tag history, create/move/expire/immutable through PUT,
DELETE, restore from the time machine and expire out of it.

Images are pushed through /v2/ with a token from /v2/auth, as a client
does; the API then works on those manifests, and /v2/ must serve what the
API did at once, on every nginx worker.
"""

import concurrent.futures
import email.utils
import hashlib
import json
import time

import pytest
import requests

from api import Api, assert_error, create_token, create_user, sql


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX])

TWO_WEEKS = 14 * 86400


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


class V2:
    """Pushes and pulls one repository through /v2/ with a Bearer token
    from /v2/auth (user and password of its owner)."""

    def __init__(self, registry, name, user, actions="pull,push,delete"):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        r = registry.request(
            "GET", "/v2/auth", auth=(user, user + "-password"),
            params=[("service", host),
                    ("scope", f"repository:{name}:{actions}")])
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def req(self, method, path, headers=None, fresh=False, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        if fresh:
            # a new connection, so that the request may land on any worker
            h["Connection"] = "close"
            with requests.Session() as s:
                return s.request(method, self.registry.url + path,
                                 headers=h, allow_redirects=False,
                                 timeout=30, **kw)
        return self.registry.request(method, path, headers=h, **kw)

    def blob(self, data):
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
        return {"digest": digest, "size": len(data)}

    def put(self, ref, body, media_type=OCI_MANIFEST):
        return self.req("PUT", f"/v2/{self.name}/manifests/{ref}",
                        headers={"Content-Type": media_type}, data=body)

    def image(self, seed, layers=2):
        """An image manifest whose blobs are pushed; returns its bytes."""
        config = self.blob(json.dumps({"seed": seed}).encode())
        config["mediaType"] = OCI_CONFIG
        descs = []
        for i in range(layers):
            d = self.blob(f"{seed}-layer-{i}".encode() * (40 + i))
            d["mediaType"] = OCI_LAYER
            descs.append(d)
        return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": config, "layers": descs},
                          indent=3).encode()

    def push(self, ref, seed, layers=2):
        """Pushes a new image as ref; returns (digest, bytes)."""
        body = self.image(seed, layers)
        r = self.put(ref, body)
        assert r.status_code == 201, r.text
        return sha256(body), body

    def get(self, ref, fresh=False):
        return self.req("GET", f"/v2/{self.name}/manifests/{ref}",
                        headers={"Accept": ACCEPT}, fresh=fresh)


class Env:
    pass


@pytest.fixture(scope="module")
def registry(start_registry):
    # X-Worker names the nginx worker that served a response
    return start_registry(
        FEATURE_SUPERUSERS_FULL_ACCESS=True,
        GLOBAL_READONLY_SUPER_USERS=["auditor"],
        worker_processes=2,
        server_extra="        add_header X-Worker $pid always;")


@pytest.fixture(scope="module")
def env(registry):
    e = Env()
    for name in ("alice", "bob", "carol", "dave", "admin", "auditor"):
        create_user(registry, name)
        setattr(e, name, Api(registry, create_token(registry, name)))
    e.anon = Api(registry)
    e.v2 = V2(registry, "alice/app", "alice")
    # three images, each kept alive by a tag of its own
    e.d1, e.b1 = e.v2.push("one", "one")
    e.d2, e.b2 = e.v2.push("two", "two")
    e.d3, e.b3 = e.v2.push("three", "three")
    # bob reads, carol writes
    grant(registry, "bob", "alice/app", "read")
    grant(registry, "carol", "alice/app", "write")
    return e


def grant(registry, user, repo, role):
    ns, name = repo.split("/", 1)
    sql(registry,
        "INSERT INTO repositorypermission (user_id, repository_id, role_id)"
        " SELECT u.id, r.id, ro.id FROM \"user\" u, repository r"
        " JOIN \"user\" n ON n.id = r.namespace_user_id, role ro"
        f" WHERE u.username = '{user}' AND n.username = '{ns}'"
        f" AND r.name = '{name}' AND ro.name = '{role}'")


def repo_id(registry, repo):
    ns, name = repo.split("/", 1)
    return int(sql(registry,
                   "SELECT r.id FROM repository r JOIN \"user\" n"
                   " ON n.id = r.namespace_user_id"
                   f" WHERE n.username = '{ns}' AND r.name = '{name}'")[0][0])


def audit(registry, kind):
    """(metadata, performer, repository name) of kind's log rows, oldest
    first."""
    rows = sql(registry,
               "SELECT l.metadata_json::text, p.username, r.name"
               " FROM logentry l JOIN logentrykind k ON k.id = l.kind_id"
               " LEFT JOIN \"user\" p ON p.id = l.performer_id"
               " LEFT JOIN repository r ON r.id = l.repository_id"
               f" WHERE k.name = '{kind}' ORDER BY l.id")
    return [(json.loads(m), p, r) for m, p, r in rows]


def tag_rows(registry, repo, tag):
    """(digest, start_ms, end_ms or None, reversion) of tag's rows, oldest
    first."""
    rows = sql(registry,
               "SELECT m.digest, t.lifetime_start_ms, t.lifetime_end_ms,"
               " t.reversion FROM tag t JOIN manifest m"
               " ON m.id = t.manifest_id"
               f" WHERE t.repository_id = {repo_id(registry, repo)}"
               f" AND t.name = '{tag}' ORDER BY t.id")
    return [(d, int(s), int(e) if e else None, r == "t")
            for d, s, e, r in rows]


def history(api, tag=None, repo="alice/app", **params):
    if tag is not None:
        params["specificTag"] = tag
    r = api.get(f"/repository/{repo}/tag/", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def put_tag(api, tag, repo="alice/app", **body):
    return api.put(f"/repository/{repo}/tag/{tag}", json=body)


# --------------------------------------------------------------- listing

def test_list_shape_of_a_live_tag(registry, env):
    body = history(env.alice, "one")
    assert body["page"] == 1 and body["has_additional"] is False
    [t] = body["tags"]
    layers = json.loads(env.b1)["layers"]
    assert t["name"] == "one"
    assert t["manifest_digest"] == env.d1
    assert t["reversion"] is False and t["immutable"] is False
    assert t["is_manifest_list"] is False
    assert t["size"] == sum(l["size"] for l in layers)
    assert isinstance(t["start_ts"], int)
    assert abs(t["start_ts"] - time.time()) < 600
    assert "end_ts" not in t and "expiration" not in t
    # Quay's RFC 2822 date of start_ts
    assert t["last_modified"].endswith(" -0000")
    assert email.utils.parsedate_to_datetime(t["last_modified"]) \
        .timestamp() == t["start_ts"]


def test_list_of_an_index_tag_has_the_sparse_fields(registry, env):
    missing = "sha256:" + "ab" * 32
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": [
                            {"mediaType": OCI_MANIFEST, "digest": env.d1,
                             "size": len(env.b1)}]}).encode()
    r = env.v2.put("idx", index, OCI_INDEX)
    assert r.status_code == 201, r.text
    # a child the repository does not hold, written behind /v2/'s back
    sql(registry,
        "UPDATE manifest SET manifest_bytes = manifest_bytes::jsonb ||"
        " jsonb_build_object('manifests', (manifest_bytes::jsonb"
        f"->'manifests') || '[{{\"digest\": \"{missing}\"}}]'::jsonb)"
        f" WHERE digest = '{sha256(index)}'")
    [t] = history(env.alice, "idx")["tags"]
    assert t["is_manifest_list"] is True
    assert t["is_sparse"] is True
    assert t["child_manifest_count"] == 2
    assert t["present_child_count"] == 1
    assert t["child_manifests_presence"] == {env.d1: True, missing: False}


def test_hidden_tags_are_never_listed(registry, env):
    body = env.v2.image("by-digest", layers=1)
    assert env.v2.put(sha256(body), body).status_code == 201
    names = [t["name"] for t in history(env.alice, limit=100)["tags"]]
    assert names and not any(n.startswith("$temp") for n in names)
    assert sql(registry, "SELECT count(*) FROM tag WHERE hidden"
               f" AND manifest_id = (SELECT id FROM manifest WHERE digest"
               f" = '{sha256(body)}')") == [("1",)]


def test_history_of_a_tag_moved_twice_has_three_rows(registry, env):
    for digest, kind in ((env.d1, "create_tag"), (env.d2, "move_tag"),
                         (env.d3, "move_tag")):
        r = put_tag(env.alice, "hist", manifest_digest=digest)
        assert r.status_code == 201, r.text
        assert r.json() == "Updated"
        meta, performer, repo = audit(registry, kind)[-1]
        assert performer == "alice" and repo == "app"
        assert meta["tag"] == "hist" and meta["manifest_digest"] == digest
        assert meta["namespace"] == "alice" and meta["repo"] == "app"
        assert meta["username"] == "alice"
    assert audit(registry, "move_tag")[-1][0][
        "original_manifest_digest"] == env.d2

    tags = history(env.alice, "hist")["tags"]
    assert [t["manifest_digest"] for t in tags] == [env.d3, env.d2, env.d1]
    assert "end_ts" not in tags[0]
    for older, newer in ((tags[1], tags[0]), (tags[2], tags[1])):
        assert older["end_ts"] <= newer["start_ts"] + 1
        assert email.utils.parsedate_to_datetime(older["expiration"]) \
            .timestamp() == older["end_ts"]
    # Quay's order: newest start first
    assert [t["start_ts"] for t in tags] == sorted(
        [t["start_ts"] for t in tags], reverse=True)

    active = history(env.alice, "hist", onlyActiveTags="true")["tags"]
    assert [t["manifest_digest"] for t in active] == [env.d3]
    # truthy_bool: only false-like strings are false
    assert len(history(env.alice, "hist", onlyActiveTags="false")
               ["tags"]) == 3
    assert len(history(env.alice, "hist", onlyActiveTags="yes")
               ["tags"]) == 1

    # the rows in the table: three, one of them live
    rows = tag_rows(registry, "alice/app", "hist")
    assert [r[0] for r in rows] == [env.d1, env.d2, env.d3]
    assert rows[0][2] is not None and rows[1][2] is not None
    assert rows[2][2] is None
    assert env.v2.get("hist").content == env.b3


def test_paging(registry, env):
    for i in range(3):
        assert put_tag(env.alice, f"page{i}",
                       manifest_digest=env.d1).status_code == 201
    seen = []
    for page in (1, 2, 3):
        body = history(env.alice, limit=1, page=page,
                       filter_tag_name="like:page")
        assert body["page"] == page
        assert body["has_additional"] is (page < 3)
        seen += [t["name"] for t in body["tags"]]
    assert seen == ["page2", "page1", "page0"]
    assert history(env.alice, limit=1, page=4,
                   filter_tag_name="like:page")["tags"] == []
    # out-of-range values are clamped, as Quay does
    body = history(env.alice, limit=0, page=0, filter_tag_name="like:page")
    assert body["page"] == 1 and len(body["tags"]) == 1
    body = history(env.alice, limit=100000, filter_tag_name="like:page")
    assert len(body["tags"]) == 3 and body["has_additional"] is False
    assert len(history(env.alice)["tags"]) <= 50


@pytest.mark.parametrize("params", [
    {"page": "x"}, {"limit": "1.5"}, {"page": ""}, {"limit": "9" * 30},
    {"filter_tag_name": "page"}, {"filter_tag_name": "regex:p.*"},
])
def test_bad_list_parameters_are_400(env, params):
    r = env.alice.get("/repository/alice/app/tag/", params=params)
    assert_error(r, 400, "invalid_request")


def test_filter_tag_name(env):
    names = {t["name"] for t in history(env.alice,
                                        filter_tag_name="like:PAGE")["tags"]}
    assert names == {"page0", "page1", "page2"}
    names = [t["name"] for t in history(env.alice,
                                        filter_tag_name="eq:page1")["tags"]]
    assert names == ["page1"]
    assert history(env.alice, filter_tag_name="eq:page")["tags"] == []
    # "%" and "_" are plain characters, not LIKE wildcards
    assert history(env.alice, filter_tag_name="like:p_ge")["tags"] == []


# ----------------------------------------------------------- permissions

def test_read_permissions(registry, env):
    path = "/repository/alice/app/tag/"
    assert env.bob.get(path).status_code == 200       # reader
    assert env.carol.get(path).status_code == 200     # writer
    # private: anonymous 401, outsider 403, and a missing repository
    # looks exactly the same
    for api, status, kind in ((env.anon, 401, "invalid_token"),
                              (env.dave, 403, "insufficient_scope")):
        private = api.get(path)
        missing = api.get("/repository/alice/nothing/tag/")
        assert_error(private, status, kind)
        assert private.json() == missing.json()
    # a superuser learns what exists
    assert_error(env.admin.get("/repository/alice/nothing/tag/"), 404,
                 "not_found")
    assert env.admin.get(path).status_code == 200
    # the global read-only superuser reads everything, changes nothing
    assert env.auditor.get(path).status_code == 200
    assert_error(env.auditor.get("/repository/alice/nothing/tag/"), 404)
    assert_error(put_tag(env.auditor, "ro", manifest_digest=env.d1), 403,
                 "insufficient_scope")
    assert_error(env.auditor.delete("/repository/alice/app/tag/one"), 403)


def test_public_repository_is_readable_by_anyone(registry, env):
    pub = V2(registry, "alice/pub", "alice")
    digest, _ = pub.push("latest", "pub", layers=1)
    sql(registry, "UPDATE repository SET visibility_id = (SELECT id FROM"
        " visibility WHERE name = 'public') WHERE name = 'pub'")
    for api in (env.anon, env.dave):
        [t] = history(api, repo="alice/pub")["tags"]
        assert t["manifest_digest"] == digest
        # reading is not writing
        r = put_tag(api, "other", repo="alice/pub", manifest_digest=digest)
        assert r.status_code in (401, 403)
        r = api.delete("/repository/alice/pub/tag/latest")
        assert r.status_code in (401, 403)
    assert_error(put_tag(env.anon, "x", repo="alice/pub",
                         manifest_digest=digest), 401, "invalid_token")
    assert_error(put_tag(env.dave, "x", repo="alice/pub",
                         manifest_digest=digest), 403, "insufficient_scope")


def test_write_permissions(registry, env):
    # reader: 403 on every change
    assert_error(put_tag(env.bob, "perm", manifest_digest=env.d1), 403,
                 "insufficient_scope")
    assert_error(env.bob.delete("/repository/alice/app/tag/one"), 403)
    assert_error(env.bob.post("/repository/alice/app/tag/one/restore",
                              json={"manifest_digest": env.d1}), 403)
    assert_error(env.bob.post("/repository/alice/app/tag/one/expire",
                              json={"is_alive": True}), 403)
    # outsider: 403 for the private repository and for a missing one alike
    a = put_tag(env.dave, "perm", manifest_digest=env.d1)
    b = put_tag(env.dave, "perm", repo="alice/none", manifest_digest=env.d1)
    assert_error(a, 403, "insufficient_scope")
    assert a.json() == b.json()
    # anonymous: 401 before anything runs
    assert_error(put_tag(env.anon, "perm", manifest_digest=env.d1), 401,
                 "invalid_token")
    assert_error(env.anon.delete("/repository/alice/app/tag/one"), 401)
    # writer: allowed
    assert put_tag(env.carol, "perm", manifest_digest=env.d1) \
        .status_code == 201
    assert audit(registry, "create_tag")[-1][1] == "carol"
    # a token without repo:write cannot, whoever holds it
    ro = Api(registry, create_token(registry, "alice", "repo:read"))
    assert_error(put_tag(ro, "perm", manifest_digest=env.d2), 403,
                 "insufficient_scope")
    assert ro.get("/repository/alice/app/tag/").status_code == 200
    assert tag_rows(registry, "alice/app", "perm")[-1][0] == env.d1


def test_superuser_with_full_access_may_change_tags(registry, env):
    assert put_tag(env.admin, "bysuper", manifest_digest=env.d2) \
        .status_code == 201
    assert env.admin.delete("/repository/alice/app/tag/bysuper") \
        .status_code == 204


# ----------------------------------------------------------- PUT errors

@pytest.mark.parametrize("tag", ["-lead", ".lead", "a" * 129, "sp ace",
                                 "caf%C3%A9", "a%3Bb"])
def test_put_with_a_bad_tag_name_is_400(env, tag):
    r = put_tag(env.alice, tag, manifest_digest=env.d1)
    body = assert_error(r, 400, "invalid_request")
    assert "Invalid tag" in body["error_message"]


@pytest.mark.parametrize("body,status", [
    ({"manifest_digest": 5}, 400),
    ({"manifest_digest": ["sha256:x"]}, 400),
    ({"manifest_digest": "sha256:1234"}, 400),
    ({"manifest_digest": "SHA256:" + "a" * 64}, 400),
    ({"manifest_digest": "md5:" + "a" * 32}, 400),
    ({"manifest_digest": "sha256:" + "a" * 64}, 404),     # unknown here
    ({"manifest_digest": None}, 404),
    ({"expiration": "tomorrow"}, 400),
    ({"expiration": True}, 400),
    ({"expiration": {"at": 1}}, 400),
    ({"immutable": "yes"}, 400),
    ({"immutable": None}, 400),
])
def test_put_with_bad_input_changes_nothing(registry, env, body, status):
    before = tag_rows(registry, "alice/app", "one")
    r = put_tag(env.alice, "one", **body)
    assert_error(r, status)
    assert tag_rows(registry, "alice/app", "one") == before


def test_put_with_a_manifest_of_another_repository_is_404(registry, env):
    other = V2(registry, "alice/other", "alice")
    digest, _ = other.push("x", "other-only", layers=1)
    assert_error(put_tag(env.alice, "stolen", manifest_digest=digest), 404,
                 "not_found")
    assert tag_rows(registry, "alice/app", "stolen") == []


def test_put_with_a_manifest_no_live_tag_reaches_is_404(registry, env):
    digest, _ = env.v2.push("gone", "gone", layers=1)
    assert env.alice.delete("/repository/alice/app/tag/gone") \
        .status_code == 204
    assert_error(put_tag(env.alice, "revive", manifest_digest=digest), 404)


def test_put_with_an_empty_body_does_nothing(registry, env):
    before = tag_rows(registry, "alice/app", "one")
    r = put_tag(env.alice, "one")
    assert r.status_code == 201 and r.json() == "Updated"
    assert tag_rows(registry, "alice/app", "one") == before


def test_changes_on_a_mirrored_repository_are_503(registry, env):
    mirror = V2(registry, "alice/mirror", "alice")
    digest, _ = mirror.push("m", "mirror", layers=1)
    sql(registry, "UPDATE repository SET state = 2 WHERE name = 'mirror'")
    assert_error(put_tag(env.alice, "m2", repo="alice/mirror",
                         manifest_digest=digest), 503)
    assert_error(env.alice.delete("/repository/alice/mirror/tag/m"), 503)
    assert history(env.alice, repo="alice/mirror")["tags"]


# ------------------------------------------------------------ expiration

def test_put_expiration_sets_and_clears_the_end(registry, env):
    env.v2.push("exp", "exp", layers=1)
    start = tag_rows(registry, "alice/app", "exp")[-1][1]
    when = int(time.time()) + 3 * 86400
    r = put_tag(env.alice, "exp", expiration=when)
    assert r.status_code == 201, r.text
    [t] = history(env.alice, "exp")["tags"]
    assert t["end_ts"] == when
    assert email.utils.parsedate_to_datetime(t["expiration"]) \
        .timestamp() == when
    # still live, and still served
    assert env.v2.get("exp").status_code == 200
    assert history(env.alice, "exp", onlyActiveTags="1")["tags"]
    meta, performer, _ = audit(registry, "change_tag_expiration")[-1]
    assert performer == "alice"
    assert meta["tag"] == "exp" and meta["expiration_date"] == when
    assert meta["old_expiration_date"] is None

    # a float is fine; the end is whole seconds past the start
    assert put_tag(env.alice, "exp", expiration=when + 0.75) \
        .status_code == 201
    assert tag_rows(registry, "alice/app", "exp")[-1][2] == \
        start + (when - start // 1000) * 1000

    # too soon: Quay's LABELED_EXPIRATION_MINIMUM (1h from the start)
    assert put_tag(env.alice, "exp", expiration=int(time.time()) + 60) \
        .status_code == 201
    assert tag_rows(registry, "alice/app", "exp")[-1][2] == \
        start + 3600 * 1000
    # too late: LABELED_EXPIRATION_MAXIMUM (104 weeks)
    assert put_tag(env.alice, "exp",
                   expiration=int(time.time()) + 200 * 7 * 86400) \
        .status_code == 201
    assert tag_rows(registry, "alice/app", "exp")[-1][2] == \
        start + 104 * 7 * 86400 * 1000

    n = len(audit(registry, "change_tag_expiration"))
    assert put_tag(env.alice, "exp", expiration=None).status_code == 201
    [t] = history(env.alice, "exp")["tags"]
    assert "end_ts" not in t and "expiration" not in t
    assert len(audit(registry, "change_tag_expiration")) == n + 1
    # clearing what is already clear is not logged
    assert put_tag(env.alice, "exp", expiration=None).status_code == 201
    assert len(audit(registry, "change_tag_expiration")) == n + 1
    assert len(tag_rows(registry, "alice/app", "exp")) == 1


@pytest.mark.parametrize("offset", [-3600, 0, -2e9])
def test_expiration_in_the_past_is_400(registry, env, offset):
    r = put_tag(env.alice, "one", expiration=time.time() + offset)
    assert_error(r, 400, "invalid_request")
    assert tag_rows(registry, "alice/app", "one")[-1][2] is None


def test_expiration_out_of_range_is_400(registry, env):
    for value in (1e20, 10 ** 30):
        assert_error(put_tag(env.alice, "one", expiration=value), 400)
    assert tag_rows(registry, "alice/app", "one")[-1][2] is None


def test_expiration_of_an_unknown_tag_is_404(env):
    r = put_tag(env.alice, "nosuchtag", expiration=time.time() + 86400)
    assert_error(r, 404, "not_found")


# ------------------------------------------------------------- immutable

def test_immutable_tag(registry, env):
    env.v2.push("frozen", "frozen", layers=1)
    r = put_tag(env.carol, "frozen", immutable=True)      # writer may set
    assert r.status_code == 201, r.text
    meta, performer, _ = audit(registry, "change_tag_immutability")[-1]
    assert performer == "carol"
    assert meta["immutable"] is True and meta["previous_immutable"] is False
    [t] = history(env.alice, "frozen")["tags"]
    assert t["immutable"] is True

    before = tag_rows(registry, "alice/app", "frozen")
    body = assert_error(put_tag(env.alice, "frozen", manifest_digest=env.d1),
                        409, "tag_immutable")
    assert "frozen" in body["error_message"]
    assert_error(env.alice.delete("/repository/alice/app/tag/frozen"), 409,
                 "tag_immutable")
    assert_error(put_tag(env.alice, "frozen",
                         expiration=time.time() + 86400), 409,
                 "tag_immutable")
    assert_error(env.alice.post("/repository/alice/app/tag/frozen/restore",
                                json={"manifest_digest": before[0][0]}),
                 409, "tag_immutable")
    assert_error(env.alice.post("/repository/alice/app/tag/frozen/expire",
                                json={"is_alive": True}), 409)
    # /v2/ refuses too
    r = env.v2.put("frozen", env.b1)
    assert r.status_code == 409
    assert r.json()["errors"][0]["code"] == "TAG_IMMUTABLE"
    assert tag_rows(registry, "alice/app", "frozen") == before

    # a writer may not lift it; an admin may
    assert_error(put_tag(env.carol, "frozen", immutable=False), 403,
                 "insufficient_scope")
    assert put_tag(env.alice, "frozen", immutable=False).status_code == 201
    assert audit(registry, "change_tag_immutability")[-1][0][
        "previous_immutable"] is True
    assert put_tag(env.alice, "frozen", manifest_digest=env.d1) \
        .status_code == 201
    assert env.v2.get("frozen").content == env.b1


def test_an_expiring_tag_cannot_be_made_immutable(registry, env):
    env.v2.push("expfrozen", "expfrozen", layers=1)
    assert put_tag(env.alice, "expfrozen",
                   expiration=time.time() + 86400).status_code == 201
    n = len(audit(registry, "change_tag_immutability"))
    assert_error(put_tag(env.alice, "expfrozen", immutable=True), 400)
    assert len(audit(registry, "change_tag_immutability")) == n
    # clearing the expiration in the same request makes it possible
    assert put_tag(env.alice, "expfrozen", expiration=None,
                   immutable=True).status_code == 201
    [t] = history(env.alice, "expfrozen")["tags"]
    assert t["immutable"] is True and "end_ts" not in t


def test_a_failing_step_undoes_the_steps_before_it(registry, env):
    env.v2.push("atomic", "atomic", layers=1)
    before = tag_rows(registry, "alice/app", "atomic")
    n = len(audit(registry, "change_tag_immutability"))
    # immutable is applied, then the move is refused: nothing stays
    r = put_tag(env.alice, "atomic", immutable=True, manifest_digest=env.d2)
    assert_error(r, 409, "tag_immutable")
    assert tag_rows(registry, "alice/app", "atomic") == before
    assert history(env.alice, "atomic")["tags"][0]["immutable"] is False
    assert len(audit(registry, "change_tag_immutability")) == n


# ---------------------------------------------------------------- delete

def test_delete(registry, env):
    assert put_tag(env.alice, "del", manifest_digest=env.d2) \
        .status_code == 201
    assert env.v2.get("del").status_code == 200
    r = env.alice.delete("/repository/alice/app/tag/del")
    assert r.status_code == 204 and r.content == b""
    assert env.v2.get("del").status_code == 404
    [t] = history(env.alice, "del")["tags"]
    assert t["end_ts"] >= t["start_ts"]
    assert history(env.alice, "del", onlyActiveTags="true")["tags"] == []
    meta, performer, repo = audit(registry, "delete_tag")[-1]
    assert performer == "alice" and repo == "app"
    assert meta == {"username": "alice", "repo": "app",
                    "namespace": "alice", "tag": "del"}
    # again: nothing live to delete
    assert_error(env.alice.delete("/repository/alice/app/tag/del"), 404,
                 "not_found")
    assert_error(env.alice.delete("/repository/alice/app/tag/never"), 404)
    assert_error(env.alice.delete("/repository/alice/app/tag/-bad"), 404)


def test_delete_ends_the_cosign_tags_of_the_manifest(registry, env):
    digest, _ = env.v2.push("signed", "signed", layers=1)
    sig = digest.replace(":", "-") + ".sig"
    sig_digest, _ = env.v2.push(sig, "signature", layers=1)
    assert env.v2.get(sig).status_code == 200
    assert env.alice.delete("/repository/alice/app/tag/signed") \
        .status_code == 204
    assert env.v2.get(sig).status_code == 404
    assert tag_rows(registry, "alice/app", sig)[-1][2] is not None


# --------------------------------------------------------------- restore

def restore(api, tag, digest, repo="alice/app"):
    return api.post(f"/repository/{repo}/tag/{tag}/restore",
                    json={"manifest_digest": digest})


def test_restore_a_deleted_tag(registry, env):
    assert put_tag(env.alice, "rdel", manifest_digest=env.d1) \
        .status_code == 201
    assert env.alice.delete("/repository/alice/app/tag/rdel") \
        .status_code == 204
    assert env.v2.get("rdel").status_code == 404
    r = restore(env.alice, "rdel", env.d1)
    assert r.status_code == 200, r.text
    assert r.json() == {}
    g = env.v2.get("rdel")
    assert g.status_code == 200 and g.content == env.b1
    tags = history(env.alice, "rdel")["tags"]
    assert len(tags) == 2 and tags[0]["reversion"] is True
    assert "end_ts" not in tags[0]
    meta, performer, repo = audit(registry, "revert_tag")[-1]
    assert performer == "alice" and repo == "app"
    assert meta["tag"] == "rdel" and meta["manifest_digest"] == env.d1
    assert meta["repo"] == "app" and meta["username"] == "alice"


def test_restore_a_moved_tag_to_its_old_manifest(registry, env):
    assert put_tag(env.alice, "rmove", manifest_digest=env.d1) \
        .status_code == 201
    assert put_tag(env.alice, "rmove", manifest_digest=env.d2) \
        .status_code == 201
    assert env.v2.get("rmove").content == env.b2
    assert restore(env.carol, "rmove", env.d1).status_code == 200
    assert env.v2.get("rmove").content == env.b1
    rows = tag_rows(registry, "alice/app", "rmove")
    assert [r[0] for r in rows] == [env.d1, env.d2, env.d1]
    assert [r[3] for r in rows] == [False, False, True]
    assert rows[-1][2] is None and rows[1][2] is not None


def test_restore_refuses_a_manifest_the_tag_never_had(registry, env):
    assert put_tag(env.alice, "rnever", manifest_digest=env.d1) \
        .status_code == 201
    assert_error(restore(env.alice, "rnever", env.d3), 404, "not_found")
    assert env.v2.get("rnever").content == env.b1


def test_restore_outside_the_time_machine_window_is_refused(registry, env):
    v2 = V2(registry, "carol/tm", "carol")
    digest, body = v2.push("tm", "time-machine", layers=1)
    carol_admin = env.carol
    assert carol_admin.delete("/repository/carol/tm/tag/tm") \
        .status_code == 204
    sql(registry, "UPDATE \"user\" SET removed_tag_expiration_s = 0"
        " WHERE username = 'carol'")
    n = len(audit(registry, "revert_tag"))
    assert_error(restore(carol_admin, "tm", digest, repo="carol/tm"), 404)
    assert v2.get("tm").status_code == 404
    assert len(audit(registry, "revert_tag")) == n
    # inside the window again: it comes back
    sql(registry, f"UPDATE \"user\" SET removed_tag_expiration_s ="
        f" {TWO_WEEKS} WHERE username = 'carol'")
    assert restore(carol_admin, "tm", digest, repo="carol/tm") \
        .status_code == 200
    assert v2.get("tm").content == body


def test_restore_window_is_measured_from_the_end(registry, env):
    v2 = V2(registry, "carol/tm2", "carol")
    digest, _ = v2.push("old", "old-end", layers=1)
    assert env.carol.delete("/repository/carol/tm2/tag/old") \
        .status_code == 204
    # the tag ended 15 days ago, the window is 14 days
    sql(registry, "UPDATE tag SET lifetime_end_ms = lifetime_end_ms"
        f" - 15 * 86400000 WHERE name = 'old'"
        f" AND repository_id = {repo_id(registry, 'carol/tm2')}")
    assert_error(restore(env.carol, "old", digest, repo="carol/tm2"), 404)


@pytest.mark.parametrize("body,status", [
    ({}, 400),
    ({"manifest_digest": None}, 400),
    ({"manifest_digest": 12}, 400),
    ({"manifest_digest": "sha256:zz"}, 400),
    ({"manifest_digest": "sha256:" + "c" * 64}, 404),
])
def test_restore_bad_input(registry, env, body, status):
    r = env.alice.post("/repository/alice/app/tag/one/restore", json=body)
    assert_error(r, status)


def test_restore_with_a_bad_tag_name_is_400(env):
    assert_error(restore(env.alice, "-x", env.d1), 400, "invalid_request")


# ---------------------------------------------------------------- expire

def test_expire_a_deleted_tag_out_of_the_time_machine(registry, env):
    assert put_tag(env.alice, "perm1", manifest_digest=env.d3) \
        .status_code == 201
    assert env.alice.delete("/repository/alice/app/tag/perm1") \
        .status_code == 204
    r = env.alice.post("/repository/alice/app/tag/perm1/expire",
                       json={"manifest_digest": env.d3})
    assert r.status_code == 200, r.text
    assert r.json() == ""
    end = tag_rows(registry, "alice/app", "perm1")[-1][2]
    assert end < (time.time() - TWO_WEEKS + 60) * 1000
    assert_error(restore(env.alice, "perm1", env.d3), 404)
    meta, performer, _ = audit(registry, "permanently_delete_tag")[-1]
    assert performer == "alice"
    assert meta["tag"] == "perm1" and meta["manifest_digest"] == env.d3
    # nothing left in the window
    r = env.alice.post("/repository/alice/app/tag/perm1/expire",
                       json={"manifest_digest": env.d3})
    assert_error(r, 404)


def test_expire_the_live_tag(registry, env):
    assert put_tag(env.alice, "perm2", manifest_digest=env.d3) \
        .status_code == 201
    r = env.alice.post("/repository/alice/app/tag/perm2/expire",
                       json={"is_alive": True})
    assert r.status_code == 200, r.text
    assert env.v2.get("perm2").status_code == 404
    assert_error(restore(env.alice, "perm2", env.d3), 404)


@pytest.mark.parametrize("body,status", [
    ({}, 400),
    ({"is_alive": False}, 400),
    ({"is_alive": "yes"}, 400),
    ({"manifest_digest": 1}, 400),
    ({"manifest_digest": "nope"}, 400),
    ({"manifest_digest": "sha256:" + "d" * 64}, 404),
    ({"include_submanifests": 1, "is_alive": True}, 400),
])
def test_expire_bad_input(env, body, status):
    r = env.alice.post("/repository/alice/app/tag/one/expire", json=body)
    assert_error(r, status)


# --------------------------------------------------------- /v2/ agreement

def test_a_move_is_served_at_once_by_every_worker(registry, env):
    assert put_tag(env.alice, "live", manifest_digest=env.d1) \
        .status_code == 201
    for d, b in ((env.d2, env.b2), (env.d3, env.b3), (env.d1, env.b1)):
        assert put_tag(env.alice, "live", manifest_digest=d) \
            .status_code == 201
        # new connections until both workers have answered (the kernel
        # favours one of them, so it can take a few)
        workers = set()
        for _ in range(300):
            g = env.v2.get("live", fresh=True)
            assert g.status_code == 200
            assert g.headers["Docker-Content-Digest"] == d
            assert g.content == b
            workers.add(g.headers["X-Worker"])
            if len(workers) == 2:
                break
        assert len(workers) == 2, "every GET landed on one worker"


def test_v2_push_after_an_api_move_continues_the_history(registry, env):
    assert put_tag(env.alice, "mixed", manifest_digest=env.d1) \
        .status_code == 201
    digest, body = env.v2.push("mixed", "mixed-v2", layers=1)
    assert put_tag(env.alice, "mixed", manifest_digest=env.d2) \
        .status_code == 201
    rows = tag_rows(registry, "alice/app", "mixed")
    assert [r[0] for r in rows] == [env.d1, digest, env.d2]
    assert [r[2] is None for r in rows] == [False, False, True]
    assert env.v2.get("mixed").content == env.b2


def test_concurrent_moves_leave_one_live_row(registry, env):
    digests = [env.d1, env.d2, env.d3] * 4

    def move(d):
        res = put_tag(Api(registry, env.alice.token), "race",
                      manifest_digest=d)
        return res.status_code if res.status_code == 201 else res.text

    def push(i):
        return env.v2.put("race", [env.b1, env.b2, env.b3][i % 3]) \
            .status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        moves = pool.map(move, digests)
        pushes = pool.map(push, range(6))
        moves = list(moves)
        assert moves == [201] * len(digests), moves
        assert list(pushes) == [201] * 6
    rows = tag_rows(registry, "alice/app", "race")
    assert sum(1 for r in rows if r[2] is None) == 1
    ends = [r[2] for r in rows if r[2] is not None]
    assert len(ends) == len(set(ends))
    live = [r[0] for r in rows if r[2] is None][0]
    assert env.v2.get("race").headers["Docker-Content-Digest"] == live


# ------------------------------------------------------------- discovery

def test_discovery_lists_the_tag_routes(registry):
    doc = Api(registry).get("/discovery").json()
    paths = doc["paths"]
    assert paths["/api/v1/repository/{repository}/tag/"]["get"][
        "x-requires-scope"] == "repo:read"
    for method in ("put", "delete"):
        assert paths["/api/v1/repository/{repository}/tag/{tag}"][method][
            "x-requires-scope"] == "repo:write"
    for action in ("restore", "expire"):
        assert paths[f"/api/v1/repository/{{repository}}/tag/{{tag}}/"
                     f"{action}"]["post"]["x-requires-scope"] == "repo:write"


def test_changes_take_quays_advisory_lock(registry):
    # data/database.py: compute_advisory_lock_id("retarget_tag", id), so
    # that this registry and Quay serialize tag changes alike
    import struct
    want = struct.unpack(">q", hashlib.sha256(b"retarget_tag:42")
                         .digest()[:8])[0]
    [(classid, objid)] = sql(
        registry, "SELECT quay_api_tag_lock(42);"
        " SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory'"
        " AND pid = pg_backend_pid()")
    got = (int(classid) << 32) | int(objid)
    assert got == want % (1 << 64)
