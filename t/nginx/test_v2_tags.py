"""Tag list and catalog (issue #3 "Listings"; security catalogue B1.16):
lexical order, n, last, Link, n=0, bad n, and a catalog that lists only
what the caller may read."""

import hashlib
import json
import re
import subprocess

import pytest

import harness


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


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


def token(registry, auth=None, scopes=()):
    host = registry.url.split("//")[1]
    params = [("service", host)] + [("scope", s) for s in scopes]
    r = registry.request("GET", "/v2/auth", auth=auth, params=params)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def get(registry, tok, path, **kw):
    return registry.request("GET", path,
                            headers={"Authorization": "Bearer " + tok}, **kw)


def put_blob(registry, tok, name, data):
    digest = sha256(data)
    r = registry.request("POST", f"/v2/{name}/blobs/uploads/",
                         params={"digest": digest}, data=data,
                         headers={"Authorization": "Bearer " + tok,
                                  "Content-Type": "application/octet-stream"})
    if r.status_code != 201:
        # the upload handler is not there yet: link the blob directly
        assert r.status_code == 405, (r.status_code, r.text)
        ns, repo = name.split("/", 1)
        registry.pg.sql(
            "WITH s AS (INSERT INTO imagestorage (content_checksum,"
            f" image_size) VALUES ('{digest}', {len(data)})"
            " ON CONFLICT (content_checksum) DO UPDATE SET"
            " content_checksum = EXCLUDED.content_checksum RETURNING id)"
            " INSERT INTO uploadedblob (repository_id, blob_id, expires_at)"
            " SELECT r.id, s.id, now() + interval '1 hour' FROM s,"
            " repository r JOIN \"user\" u ON u.id = r.namespace_user_id"
            f" WHERE u.username = '{ns}' AND r.name = '{repo}'",
            db=dbname(registry))
    return {"mediaType": OCI_CONFIG, "digest": digest, "size": len(data)}


def push(registry, tok, name, tag, seed="x"):
    config = put_blob(registry, tok, name, json.dumps({"s": seed}).encode())
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": config, "layers": []}).encode()
    r = registry.request("PUT", f"/v2/{name}/manifests/{tag}", data=body,
                         headers={"Authorization": "Bearer " + tok,
                                  "Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    return body


def next_link(r):
    link = r.headers.get("Link")
    if link is None:
        return None
    m = re.fullmatch(r'<([^>]+)>; rel="next"', link)
    assert m, link
    return m.group(1)


TAGS = ["latest", "v1.0", "V2", "_under", "1.0", "Zeta", "a-b", "a.b",
        "a_b", "ab", "b"]


@pytest.fixture(scope="module")
def users(registry):
    create_user(registry, "alice", "alice-password")
    create_user(registry, "bob", "bob-password")
    return {"alice": ("alice", "alice-password"),
            "bob": ("bob", "bob-password")}


@pytest.fixture(scope="module")
def tagged(registry, users):
    """alice/tags with TAGS, and a token to read it."""
    tok = token(registry, users["alice"],
                ["repository:alice/tags:pull,push,delete"])
    body = push(registry, tok, "alice/tags", TAGS[0])
    for tag in TAGS[1:]:
        r = registry.request("PUT", f"/v2/alice/tags/manifests/{tag}",
                             data=body,
                             headers={"Authorization": "Bearer " + tok,
                                      "Content-Type": OCI_MANIFEST})
        assert r.status_code == 201
    return tok


# ----------------------------------------------------------------- tag list

def test_tags_are_listed_in_byte_order(registry, tagged):
    r = get(registry, tagged, "/v2/alice/tags/tags/list")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"name": "alice/tags",
                        "tags": sorted(TAGS, key=lambda t: t.encode())}
    assert "Link" not in r.headers


def test_n_pages_with_a_link_until_the_end(registry, tagged):
    seen = []
    path = "/v2/alice/tags/tags/list?n=3"
    pages = 0
    while path:
        r = get(registry, tagged, path)
        assert r.status_code == 200
        page = r.json()["tags"]
        assert len(page) <= 3
        seen += page
        pages += 1
        path = next_link(r)
        if path:
            assert path.startswith("/v2/alice/tags/tags/list?n=3&last=")
            assert path.endswith("last=" + page[-1])
    assert seen == sorted(TAGS, key=lambda t: t.encode())
    assert pages == 4


def test_exact_last_page_has_no_link_after_it(registry, tagged):
    ordered = sorted(TAGS, key=lambda t: t.encode())
    r = get(registry, tagged, "/v2/alice/tags/tags/list",
            params={"n": len(TAGS)})
    assert r.json()["tags"] == ordered
    assert "Link" not in r.headers


def test_last_that_does_not_exist_lists_what_follows(registry, tagged):
    ordered = sorted(TAGS, key=lambda t: t.encode())
    r = get(registry, tagged, "/v2/alice/tags/tags/list",
            params={"last": "aa"})
    assert r.json()["tags"] == [t for t in ordered if t.encode() > b"aa"]
    r = get(registry, tagged, "/v2/alice/tags/tags/list",
            params={"last": "zzz"})
    assert r.json()["tags"] == []


def test_n_zero_is_an_empty_list_without_link(registry, tagged):
    r = get(registry, tagged, "/v2/alice/tags/tags/list?n=0")
    assert r.status_code == 200
    assert r.json() == {"name": "alice/tags", "tags": []}
    assert "Link" not in r.headers


@pytest.mark.parametrize("n", ["-1", "abc", "1e9", "", "0x10", "1.5"])
def test_bad_n_is_400(registry, tagged, n):
    r = get(registry, tagged, f"/v2/alice/tags/tags/list?n={n}")
    assert r.status_code == 400
    assert r.json()["errors"][0]["code"] == "INVALID_REQUEST"


def test_huge_n_is_clamped(registry, tagged):
    r = get(registry, tagged,
            "/v2/alice/tags/tags/list?n=99999999999999999999")
    assert r.status_code == 200
    assert len(r.json()["tags"]) == len(TAGS)


def test_bad_last_is_400(registry, tagged):
    r = get(registry, tagged, "/v2/alice/tags/tags/list?last=a%00b")
    assert r.status_code == 400
    r = get(registry, tagged, "/v2/alice/tags/tags/list?last=%ff")
    assert r.status_code == 400


def test_deleted_and_hidden_tags_are_not_listed(registry, users):
    tok = token(registry, users["alice"],
                ["repository:alice/hidden:pull,push,delete"])
    push(registry, tok, "alice/hidden", "keep", seed="k")
    push(registry, tok, "alice/hidden", "gone", seed="g")
    # a push by digest gets a hidden temporary tag
    config = put_blob(registry, tok, "alice/hidden", b'{"d": 1}')
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": config, "layers": []}).encode()
    r = registry.request("PUT", f"/v2/alice/hidden/manifests/{sha256(body)}",
                         data=body,
                         headers={"Authorization": "Bearer " + tok,
                                  "Content-Type": OCI_MANIFEST})
    assert r.status_code == 201
    r = registry.request("DELETE", "/v2/alice/hidden/manifests/gone",
                         headers={"Authorization": "Bearer " + tok})
    assert r.status_code == 202
    r = get(registry, tok, "/v2/alice/hidden/tags/list")
    assert r.json()["tags"] == ["keep"]


def test_tag_list_of_another_users_private_repository_is_refused(
        registry, tagged, users):
    tok = token(registry, users["bob"], ["repository:alice/tags:pull"])
    r = get(registry, tok, "/v2/alice/tags/tags/list")
    assert r.status_code in (401, 403)


# ------------------------------------------------------------------ catalog

@pytest.fixture(scope="module")
def repos(registry, users, tagged):
    """alice: tags, hidden?, a1, a2 (private); bob: b1 private, b2 public."""
    for user, name in (("alice", "a1"), ("alice", "a2"), ("bob", "b1"),
                       ("bob", "b2")):
        token(registry, users[user], [f"repository:{user}/{name}:push"])
    registry.pg.sql("UPDATE repository SET visibility_id = (SELECT id FROM"
                    " visibility WHERE name = 'public') WHERE name = 'b2'",
                    db=dbname(registry))


def catalog(registry, tok, **params):
    r = get(registry, tok, "/v2/_catalog", params=params)
    assert r.status_code == 200, r.text
    return r


def test_catalog_lists_only_what_the_user_may_read(registry, users, repos):
    alice = token(registry, users["alice"])
    names = catalog(registry, alice).json()["repositories"]
    assert "alice/a1" in names and "alice/a2" in names
    assert "alice/tags" in names
    assert "bob/b1" not in names
    # public repositories of others need FEATURE_PUBLIC_CATALOG (Quay)
    assert "bob/b2" not in names
    assert names == sorted(names, key=lambda n: n.encode())

    bob = token(registry, users["bob"])
    names = catalog(registry, bob).json()["repositories"]
    assert names == ["bob/b1", "bob/b2"]


def test_catalog_follows_a_permission_grant(registry, users, repos):
    db = dbname(registry)
    registry.pg.sql(
        "INSERT INTO repositorypermission (user_id, repository_id, role_id)"
        " SELECT a.id, r.id, (SELECT id FROM role WHERE name = 'read')"
        " FROM \"user\" a, repository r JOIN \"user\" b ON"
        " b.id = r.namespace_user_id WHERE a.username = 'alice'"
        " AND b.username = 'bob' AND r.name = 'b1'", db=db)
    try:
        alice = token(registry, users["alice"])
        assert "bob/b1" in catalog(registry, alice).json()["repositories"]
    finally:
        registry.pg.sql("DELETE FROM repositorypermission", db=db)


def test_anonymous_catalog_is_empty_without_public_catalog(registry, repos):
    anon = token(registry)
    r = catalog(registry, anon)
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers


def test_catalog_pages_with_n_last_and_link(registry, users, repos):
    alice = token(registry, users["alice"])
    everything = catalog(registry, alice).json()["repositories"]
    assert len(everything) >= 3
    seen, path = [], "/v2/_catalog?n=1"
    while path:
        r = get(registry, alice, path)
        assert r.status_code == 200
        page = r.json()["repositories"]
        assert len(page) == 1
        seen += page
        path = next_link(r)
        if path:
            assert path == "/v2/_catalog?n=1&last=" + page[-1]
    assert seen == everything

    r = catalog(registry, alice, n=0)
    assert r.json() == {"repositories": []}
    assert "Link" not in r.headers

    r = catalog(registry, alice, last="alice/a1")
    assert r.json()["repositories"] == [
        n for n in everything if n.encode() > b"alice/a1"]

    r = get(registry, alice, "/v2/_catalog?n=abc")
    assert r.status_code == 400


def test_catalog_without_any_token_is_401(registry):
    r = registry.request("GET", "/v2/_catalog")
    assert r.status_code == 401


def test_public_catalog_lists_public_repositories_to_everyone(
        start_registry):
    reg = start_registry(FEATURE_PUBLIC_CATALOG=True)
    create_user(reg, "carol", "carol-password")
    create_user(reg, "dave", "dave-password")
    carol = ("carol", "carol-password")
    dave = ("dave", "dave-password")
    token(reg, carol, ["repository:carol/public:push"])
    token(reg, carol, ["repository:carol/private:push"])
    token(reg, dave, ["repository:dave/mine:push"])
    reg.pg.sql("UPDATE repository SET visibility_id = (SELECT id FROM"
               " visibility WHERE name = 'public') WHERE name = 'public'",
               db=dbname(reg))

    anon = token(reg)
    assert catalog(reg, anon).json()["repositories"] == ["carol/public"]
    names = catalog(reg, token(reg, dave)).json()["repositories"]
    assert names == ["carol/public", "dave/mine"]
    names = catalog(reg, token(reg, carol)).json()["repositories"]
    assert names == ["carol/private", "carol/public"]
