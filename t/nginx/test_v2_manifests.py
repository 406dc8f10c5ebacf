"""Manifests and referrers over raw HTTP (issue #3 "Manifests", "Listings:
referrers"; security catalogue B1.11-B1.15 and B1.17).

Blobs are pushed with a monolithic POST ?digest= upload.  While the upload
handler is not built yet (it answers 405 UNSUPPORTED), put_blob() links
the blob to the repository the way an upload does: an imagestorage row
and an unexpired uploadedblob row.
"""

import concurrent.futures
import hashlib
import json
import re
import subprocess

import pytest

import harness


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"

MiB = 1024 * 1024


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


class Client:
    """Requests against one repository with a token for it."""

    def __init__(self, registry, name, auth, actions="pull,push,delete"):
        self.registry = registry
        self.name = name
        host = registry.url.split("//")[1]
        r = registry.request(
            "GET", "/v2/auth", auth=auth,
            params=[("service", host),
                    ("scope", f"repository:{name}:{actions}")])
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]

    def req(self, method, path, headers=None, **kw):
        h = {"Authorization": "Bearer " + self.token}
        h.update(headers or {})
        return self.registry.request(method, path, headers=h, **kw)

    def put_manifest(self, ref, body, media_type=OCI_MANIFEST, **kw):
        headers = {}
        if media_type is not None:
            headers["Content-Type"] = media_type
        return self.req("PUT", f"/v2/{self.name}/manifests/{ref}",
                        headers=headers, data=body, **kw)

    def get_manifest(self, ref, method="GET"):
        return self.req(method, f"/v2/{self.name}/manifests/{ref}",
                        headers={"Accept": ", ".join(
                            [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST,
                             DOCKER_LIST])})

    def repository_id(self):
        ns, repo = self.name.split("/", 1)
        rows = self.registry.pg.sql(
            "SELECT r.id FROM repository r JOIN \"user\" u ON u.id ="
            f" r.namespace_user_id WHERE u.username = '{ns}'"
            f" AND r.name = '{repo}'", db=dbname(self.registry))
        return int(rows[0][0])

    def put_blob(self, data):
        """Pushes data as a blob; returns its descriptor fields."""
        digest = sha256(data)
        r = self.req("POST", f"/v2/{self.name}/blobs/uploads/",
                     params={"digest": digest}, data=data,
                     headers={"Content-Type": "application/octet-stream"})
        if r.status_code == 201:
            return digest, len(data)
        # the upload handler is not there yet: link the blob directly
        assert r.status_code == 405, (r.status_code, r.text)
        repo_id = self.repository_id()
        self.registry.pg.sql(
            "WITH s AS (INSERT INTO imagestorage (content_checksum,"
            f" image_size) VALUES ('{digest}', {len(data)})"
            " ON CONFLICT (content_checksum) DO UPDATE SET"
            " content_checksum = EXCLUDED.content_checksum RETURNING id)"
            " INSERT INTO uploadedblob (repository_id, blob_id, expires_at)"
            f" SELECT {repo_id}, id, now() + interval '1 hour' FROM s",
            db=dbname(self.registry))
        return digest, len(data)


def descriptor(media_type, digest_size, **extra):
    digest, size = digest_size
    d = {"mediaType": media_type, "digest": digest, "size": size}
    d.update(extra)
    return d


def dumps(obj):
    # deliberately not canonical, so that re-serialising changes the digest
    return json.dumps(obj, indent=3).encode()


def image_manifest(cli, seed, layers=2, media_type=OCI_MANIFEST, **extra):
    """Pushes a config and layers, returns the manifest bytes."""
    docker = media_type == DOCKER_MANIFEST
    config = cli.put_blob(json.dumps({"seed": seed}).encode())
    body = {"schemaVersion": 2, "mediaType": media_type,
            "config": descriptor(DOCKER_CONFIG if docker else OCI_CONFIG,
                                 config),
            "layers": [descriptor(DOCKER_LAYER if docker else OCI_LAYER,
                                  cli.put_blob(f"{seed}-layer-{i}".encode()
                                               * 50))
                       for i in range(layers)]}
    body.update(extra)
    return dumps(body)


def error(r):
    return r.json()["errors"][0]


@pytest.fixture(scope="module")
def alice(registry):
    create_user(registry, "alice", "alice-password")
    return ("alice", "alice-password")


@pytest.fixture(scope="module")
def cli(registry, alice):
    return Client(registry, "alice/app", alice)


# -------------------------------------------------------------- push & pull

def test_put_by_tag_then_get_and_head_return_the_exact_bytes(cli):
    body = image_manifest(cli, "one")
    r = cli.put_manifest("v1", body)
    assert r.status_code == 201, r.text
    digest = sha256(body)
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/alice/app/manifests/{digest}"
    assert "OCI-Subject" not in r.headers

    for ref in ("v1", digest):
        g = cli.get_manifest(ref)
        assert g.status_code == 200
        assert g.content == body
        assert g.headers["Content-Type"] == OCI_MANIFEST
        assert g.headers["Docker-Content-Digest"] == digest
        assert g.headers["Content-Length"] == str(len(body))
        assert g.headers["ETag"] == f'"{digest}"'
        assert g.headers["Docker-Distribution-API-Version"] == "registry/2.0"

        h = cli.get_manifest(ref, method="HEAD")
        assert h.status_code == 200
        assert h.content == b""
        assert h.headers["Content-Length"] == str(len(body))
        assert h.headers["Docker-Content-Digest"] == digest
        assert h.headers["Content-Type"] == OCI_MANIFEST


def test_stored_type_is_returned_whatever_accept_says(cli):
    body = image_manifest(cli, "accept")
    assert cli.put_manifest("accept", body).status_code == 201
    g = cli.req("GET", "/v2/alice/app/manifests/accept",
                headers={"Accept": DOCKER_MANIFEST})
    assert g.status_code == 200
    assert g.headers["Content-Type"] == OCI_MANIFEST
    assert g.content == body


def test_put_by_digest_is_reachable_by_digest_only(cli):
    body = image_manifest(cli, "bydigest")
    digest = sha256(body)
    r = cli.put_manifest(digest, body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    assert r.headers["Location"] == f"/v2/alice/app/manifests/{digest}"
    assert cli.get_manifest(digest).content == body
    # a hidden temporary tag keeps it, and is not listed
    tags = cli.req("GET", "/v2/alice/app/tags/list").json()["tags"]
    assert not any(t.startswith("$temp") for t in tags)


def test_put_by_sha512_digest_keeps_that_algorithm(cli):
    body = image_manifest(cli, "sha512")
    digest = "sha512:" + hashlib.sha512(body).hexdigest()
    r = cli.put_manifest(digest, body)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == digest
    g = cli.get_manifest(digest)
    assert g.status_code == 200 and g.content == body
    assert g.headers["Docker-Content-Digest"] == digest
    # a sha256 label on sha512 content is a different, unknown name
    assert cli.get_manifest(sha256(body)).status_code == 404


def test_put_by_wrong_digest_is_400_digest_invalid(cli):
    body = image_manifest(cli, "wrongdigest")
    wrong = sha256(body + b" ")
    r = cli.put_manifest(wrong, body)
    assert r.status_code == 400
    assert error(r)["code"] == "DIGEST_INVALID"
    assert cli.get_manifest(wrong).status_code == 404
    assert cli.get_manifest(sha256(body)).status_code == 404


def test_same_manifest_twice_is_idempotent(cli):
    body = image_manifest(cli, "twice")
    assert cli.put_manifest("twice", body).status_code == 201
    r = cli.put_manifest("twice", body)
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == sha256(body)


def test_docker_schema2_manifest_and_list(cli):
    body = image_manifest(cli, "docker", media_type=DOCKER_MANIFEST)
    r = cli.put_manifest("docker", body, media_type=DOCKER_MANIFEST)
    assert r.status_code == 201, r.text
    g = cli.get_manifest("docker")
    assert g.headers["Content-Type"] == DOCKER_MANIFEST
    assert g.content == body

    lst = dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST,
                 "manifests": [{"mediaType": DOCKER_MANIFEST,
                                "digest": sha256(body), "size": len(body),
                                "platform": {"architecture": "amd64",
                                             "os": "linux"}}]})
    r = cli.put_manifest("docker-list", lst, media_type=DOCKER_LIST)
    assert r.status_code == 201, r.text
    assert cli.get_manifest("docker-list").headers["Content-Type"] == \
        DOCKER_LIST


def test_generic_content_type_uses_the_body_media_type(cli):
    body = image_manifest(cli, "generic")
    r = cli.put_manifest("generic", body, media_type=None)
    assert r.status_code == 201, r.text
    r = cli.put_manifest("generic-json", body, media_type="application/json")
    assert r.status_code == 201, r.text
    assert cli.get_manifest("generic").headers["Content-Type"] == \
        OCI_MANIFEST


# ------------------------------------------------------- references (B1.11)

def test_missing_blob_is_manifest_blob_unknown_with_its_digest(
        registry, cli, alice):
    config = cli.put_blob(b'{"config": "present"}')
    absent = sha256(b"never pushed anywhere")
    body = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": descriptor(OCI_CONFIG, config),
                  "layers": [descriptor(OCI_LAYER, (absent, 10))]})
    r = cli.put_manifest("missing", body)
    assert r.status_code == 400
    assert error(r)["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert absent in json.dumps(error(r)["detail"])
    assert cli.get_manifest("missing").status_code == 404


def test_blob_of_another_repository_is_unknown_here(registry, cli, alice):
    other = Client(registry, "alice/other", alice)
    layer = other.put_blob(b"only in alice/other" * 10)
    config = cli.put_blob(b'{"config": "here"}')
    body = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": descriptor(OCI_CONFIG, config),
                  "layers": [descriptor(OCI_LAYER, layer)]})
    r = cli.put_manifest("cross", body)
    assert r.status_code == 400
    assert error(r)["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert layer[0] in json.dumps(error(r)["detail"])


def test_descriptor_size_that_differs_from_the_blob_is_invalid(cli):
    config = cli.put_blob(b'{"config": "sized"}')
    layer = cli.put_blob(b"sized layer")
    body = dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                  "config": descriptor(OCI_CONFIG, config),
                  "layers": [descriptor(OCI_LAYER, (layer[0], 999))]})
    r = cli.put_manifest("badsize", body)
    assert r.status_code == 400
    assert error(r)["code"] == "MANIFEST_INVALID"


def test_index_with_a_missing_child_is_400_and_with_children_201(cli):
    child = image_manifest(cli, "child")
    absent = sha256(b"no such manifest")
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": OCI_MANIFEST,
                            "digest": sha256(child), "size": len(child),
                            "platform": {"architecture": "amd64",
                                         "os": "linux"}},
                           {"mediaType": OCI_MANIFEST, "digest": absent,
                            "size": 10}]}
    r = cli.put_manifest("index", dumps(index), media_type=OCI_INDEX)
    assert r.status_code == 400
    assert error(r)["code"] == "MANIFEST_BLOB_UNKNOWN"
    # the first missing one is named; the child itself is not pushed yet
    assert sha256(child) in json.dumps(error(r)["detail"]) or \
        absent in json.dumps(error(r)["detail"])

    assert cli.put_manifest(sha256(child), child).status_code == 201
    del index["manifests"][1]
    body = dumps(index)
    r = cli.put_manifest("index", body, media_type=OCI_INDEX)
    assert r.status_code == 201, r.text
    g = cli.get_manifest("index")
    assert g.content == body
    assert g.headers["Content-Type"] == OCI_INDEX
    # the child stays reachable through the tagged index
    assert cli.get_manifest(sha256(child)).status_code == 200


# ----------------------------------------------------------- size (B1.13)

def test_body_over_4_mib_is_413(cli):
    body = image_manifest(cli, "big")
    big = body[:-1] + b" " * (4 * MiB + 1 - len(body)) + b"}"
    assert len(big) == 4 * MiB + 1
    r = cli.put_manifest("big", big)
    assert r.status_code == 413
    assert error(r)["code"] == "MANIFEST_INVALID"


def test_chunked_body_over_4_mib_is_413(cli):
    def chunks():
        yield b'{"schemaVersion": 2, "x": "'
        for _ in range(5):
            yield b"a" * MiB
        yield b'"}'
    r = cli.put_manifest("bigchunked", chunks())
    assert r.status_code == 413
    assert error(r)["code"] == "MANIFEST_INVALID"


def test_manifest_of_exactly_4_mib_is_accepted_byte_exact(cli):
    body = image_manifest(cli, "four")
    padded = body[:-1] + b" " * (4 * MiB - len(body)) + b"}"
    assert len(padded) == 4 * MiB
    r = cli.put_manifest("four", padded)
    assert r.status_code == 201, r.text
    assert r.headers["Docker-Content-Digest"] == sha256(padded)
    g = cli.get_manifest("four")
    assert g.content == padded


def test_chunked_manifest_is_accepted(cli):
    body = image_manifest(cli, "chunked")

    def chunks():
        for i in range(0, len(body), 100):
            yield body[i:i + 100]
    r = cli.put_manifest("chunked", chunks())
    assert r.status_code == 201, r.text
    assert cli.get_manifest("chunked").content == body


# ------------------------------------------------ refused bodies (B1.13-14)

def test_media_type_that_disagrees_with_content_type_is_400(cli):
    body = image_manifest(cli, "mismatch")
    r = cli.put_manifest("mismatch", body, media_type=DOCKER_MANIFEST)
    assert r.status_code == 400
    assert error(r)["code"] == "MANIFEST_INVALID"
    r = cli.put_manifest("mismatch", body, media_type=OCI_INDEX)
    assert r.status_code == 400


def test_unknown_content_type_is_415(cli):
    body = image_manifest(cli, "unknown-type")
    r = cli.put_manifest("unknown", body, media_type="application/xml")
    assert r.status_code == 415
    assert error(r)["code"] == "MANIFEST_INVALID"


def test_schema1_is_refused_with_a_clear_4xx(cli):
    body = dumps({"schemaVersion": 1, "name": "alice/app", "tag": "s1",
                  "architecture": "amd64", "fsLayers": [], "history": []})
    for media_type in (SCHEMA1, SCHEMA1[:-5] + "+prettyjws", None):
        r = cli.put_manifest("s1", body, media_type=media_type)
        assert r.status_code == 400, media_type
        assert error(r)["code"] == "MANIFEST_INVALID"
        assert "schema1" in json.dumps(error(r)["detail"])


def test_ambiguous_manifest_is_400(cli):
    config = cli.put_blob(b'{"config": "ambiguous"}')
    body = dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                  "config": descriptor(OCI_CONFIG, config),
                  "layers": [], "manifests": []})
    for media_type in (OCI_INDEX, OCI_MANIFEST, None):
        r = cli.put_manifest("ambiguous", body, media_type=media_type)
        assert r.status_code == 400
        assert error(r)["code"] == "MANIFEST_INVALID"


@pytest.mark.parametrize("name,mutate", [
    ("duplicate keys",
     lambda b: b[:-1] + b', "layers": []}'),
    ("truncated", lambda b: b[:len(b) // 2]),
    ("byte order mark", lambda b: b"\xef\xbb\xbf" + b),
    ("invalid utf-8", lambda b: b[:-1] + b', "x": "\xc3\x28"}'),
    ("deep nesting", lambda b: b[:-1] + b', "x": ' + b"[" * 100000
     + b"]" * 100000 + b"}"),
    ("string where a number belongs",
     lambda b: b.replace(b'"schemaVersion": 2', b'"schemaVersion": "2"')),
    ("negative size", lambda b: b.replace(b'"size": ', b'"size": -', 1)),
    ("schemaVersion 3",
     lambda b: b.replace(b'"schemaVersion": 2', b'"schemaVersion": 3')),
    ("bad descriptor digest",
     lambda b: b.replace(b'"digest": "sha256:', b'"digest": "sha256:zz', 1)),
    ("not an object", lambda b: b"[" + b + b"]"),
])
def test_malformed_manifest_is_400_manifest_invalid(cli, name, mutate):
    body = image_manifest(cli, "malformed")
    r = cli.put_manifest("malformed", mutate(body))
    assert r.status_code == 400, name
    assert error(r)["code"] == "MANIFEST_INVALID", name
    assert cli.get_manifest("malformed").status_code == 404


def test_empty_body_is_400(cli):
    for data in (b"", None):
        r = cli.put_manifest("empty", data)
        assert r.status_code == 400
        assert error(r)["code"] == "MANIFEST_INVALID"


def test_bad_tag_in_the_url_is_400(cli):
    body = image_manifest(cli, "badtag")
    for tag in ("-lead", ".lead", "a" * 129):
        r = cli.put_manifest(tag, body)
        assert r.status_code == 400, tag
        assert error(r)["code"] in ("TAG_INVALID", "MANIFEST_INVALID")


# -------------------------------------------------------- tags (B1.15, 7.1)

def test_tag_move_keeps_history(registry, cli):
    first = image_manifest(cli, "move-1")
    second = image_manifest(cli, "move-2")
    assert cli.put_manifest("moving", first).status_code == 201
    assert cli.put_manifest("moving", second).status_code == 201
    # pushing the same manifest to the same tag again adds no row
    assert cli.put_manifest("moving", second).status_code == 201

    rows = registry.pg.sql(
        "SELECT m.digest, t.lifetime_start_ms, t.lifetime_end_ms"
        " FROM tag t JOIN manifest m ON m.id = t.manifest_id"
        f" WHERE t.repository_id = {cli.repository_id()}"
        " AND t.name = 'moving' ORDER BY t.id", db=dbname(registry))
    assert [r[0] for r in rows] == [sha256(first), sha256(second)]
    assert rows[0][2] != "" and rows[1][2] == ""
    assert int(rows[0][2]) <= int(rows[1][1]) + 1
    assert cli.get_manifest("moving").content == second
    # the old manifest is no longer reachable by digest
    assert cli.get_manifest(sha256(first)).status_code == 404


def test_concurrent_pushes_of_one_tag_all_succeed_and_leave_one_live_row(
        registry, cli):
    bodies = [image_manifest(cli, f"race-{i}", layers=1) for i in range(8)]

    def push(body):
        return cli.put_manifest("race", body).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(push, bodies))
    assert codes == [201] * 8
    rows = registry.pg.sql(
        "SELECT count(*) FILTER (WHERE lifetime_end_ms IS NULL), count(*)"
        f" FROM tag WHERE repository_id = {cli.repository_id()}"
        " AND name = 'race'", db=dbname(registry))
    assert rows == [("1", "8")]
    assert cli.get_manifest("race").content in bodies


def test_tag_parameters_on_a_push_by_digest(cli):
    body = image_manifest(cli, "tagparams")
    digest = sha256(body)
    r = cli.req("PUT", f"/v2/alice/app/manifests/{digest}",
                params=[("tag", "tp-a"), ("tag", "tp-b")], data=body,
                headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text
    assert sorted(t.strip() for t in r.headers["OCI-Tag"].split(",")) == \
        ["tp-a", "tp-b"]
    assert cli.get_manifest("tp-a").content == body
    assert cli.get_manifest("tp-b").content == body


def test_one_bad_tag_parameter_applies_none(cli):
    body = image_manifest(cli, "tagparams-bad")
    digest = sha256(body)
    r = cli.req("PUT", f"/v2/alice/app/manifests/{digest}?tag=tp-ok&tag=bad!",
                data=body, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 400
    assert cli.get_manifest("tp-ok").status_code == 404
    assert cli.get_manifest(digest).status_code == 404


# ------------------------------------------------------------------ delete

def test_delete_by_digest_is_202_then_404(cli):
    body = image_manifest(cli, "del-digest")
    digest = sha256(body)
    assert cli.put_manifest("del-a", body).status_code == 201
    assert cli.put_manifest("del-b", body).status_code == 201
    r = cli.req("DELETE", f"/v2/alice/app/manifests/{digest}")
    assert r.status_code == 202
    for ref in (digest, "del-a", "del-b"):
        assert cli.get_manifest(ref).status_code == 404
        assert error(cli.get_manifest(ref))["code"] == "MANIFEST_UNKNOWN"
    r = cli.req("DELETE", f"/v2/alice/app/manifests/{digest}")
    assert r.status_code == 404
    assert error(r)["code"] == "MANIFEST_UNKNOWN"


def test_delete_by_tag_is_202_then_404(cli):
    body = image_manifest(cli, "del-tag")
    assert cli.put_manifest("del-tag", body).status_code == 201
    assert cli.put_manifest("del-keep", body).status_code == 201
    r = cli.req("DELETE", "/v2/alice/app/manifests/del-tag")
    assert r.status_code == 202
    assert cli.get_manifest("del-tag").status_code == 404
    # the manifest stays reachable through its other tag
    assert cli.get_manifest("del-keep").status_code == 200
    assert cli.get_manifest(sha256(body)).status_code == 200
    r = cli.req("DELETE", "/v2/alice/app/manifests/del-tag")
    assert r.status_code == 404
    assert error(r)["code"] == "MANIFEST_UNKNOWN"


def test_delete_of_an_unknown_digest_is_404(cli):
    r = cli.req("DELETE", "/v2/alice/app/manifests/" + sha256(b"nothing"))
    assert r.status_code == 404
    assert error(r)["code"] == "MANIFEST_UNKNOWN"


def test_unknown_tag_and_digest_are_404_manifest_unknown(cli):
    for ref in ("no-such-tag", sha256(b"no such manifest")):
        r = cli.get_manifest(ref)
        assert r.status_code == 404
        assert error(r)["code"] == "MANIFEST_UNKNOWN"
        assert cli.get_manifest(ref, method="HEAD").status_code == 404


# ------------------------------------------------------ referrers (B1.12, 17)

def test_subject_gives_oci_subject_and_a_referrers_entry(cli):
    subject = sha256(b"a manifest that was never pushed")
    empty = cli.put_blob(b"{}")
    payload = cli.put_blob(b"signature bytes")
    typed = dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sig.v1",
        "config": descriptor(OCI_EMPTY, empty),
        "layers": [descriptor("application/vnd.example.payload", payload)],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject,
                    "size": 123},
        "annotations": {"org.example.kind": "signature"}})
    untyped = dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.example.sbom.config",
                             cli.put_blob(b'{"sbom": 1}')),
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject,
                    "size": 123}})

    for body in (typed, untyped):
        r = cli.put_manifest(sha256(body), body)
        assert r.status_code == 201, r.text
        assert r.headers["OCI-Subject"] == subject

    r = cli.req("GET", f"/v2/alice/app/referrers/{subject}")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in r.headers
    index = r.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in index["manifests"]}
    assert set(by_digest) == {sha256(typed), sha256(untyped)}
    t = by_digest[sha256(typed)]
    assert t == {"mediaType": OCI_MANIFEST, "digest": sha256(typed),
                 "size": len(typed),
                 "artifactType": "application/vnd.example.sig.v1",
                 "annotations": {"org.example.kind": "signature"}}
    # artifactType falls back to the config media type
    assert by_digest[sha256(untyped)]["artifactType"] == \
        "application/vnd.example.sbom.config"

    r = cli.req("GET", f"/v2/alice/app/referrers/{subject}",
                params={"artifactType": "application/vnd.example.sig.v1"})
    assert r.status_code == 200
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(typed)]

    r = cli.req("GET", f"/v2/alice/app/referrers/{subject}",
                params={"artifactType": "application/vnd.none"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert r.json()["manifests"] == []

    # a referrer deleted by digest is no longer listed
    assert cli.req("DELETE", f"/v2/alice/app/manifests/{sha256(untyped)}"
                   ).status_code == 202
    r = cli.req("GET", f"/v2/alice/app/referrers/{subject}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(typed)]


def test_referrers_of_an_unknown_digest_is_an_empty_index(cli):
    r = cli.req("GET", "/v2/alice/app/referrers/" + sha256(b"unknown"))
    assert r.status_code == 200
    assert r.headers["Content-Type"] == OCI_INDEX
    assert r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX,
                        "manifests": []}


def test_referrers_with_a_bad_digest_is_400(cli):
    r = cli.req("GET", "/v2/alice/app/referrers/sha256:bad")
    assert r.status_code == 400


# ------------------------------------------------------------ permissions

def test_pull_only_token_cannot_push_or_delete(registry, cli, alice):
    body = image_manifest(cli, "perm")
    assert cli.put_manifest("perm", body).status_code == 201
    reader = Client(registry, "alice/app", alice, actions="pull")
    assert reader.get_manifest("perm").status_code == 200
    assert reader.put_manifest("perm2", body).status_code == 401
    r = reader.req("DELETE", "/v2/alice/app/manifests/perm")
    assert r.status_code == 401
    assert cli.get_manifest("perm").status_code == 200


def test_no_5xx_and_no_alerts_in_the_logs(registry):
    bad = [line for line in registry.error_log().splitlines()
           if "[alert]" in line or "[crit]" in line]
    assert bad == []
    access = (registry.prefix / "access.log").read_text(errors="replace")
    statuses = re.findall(r'" (\d{3}) ', access)
    assert statuses and not [s for s in statuses if s.startswith("5")]


def test_refused_chunked_body_says_connection_close(cli):
    # the unread rest of the body makes nginx close the connection; the
    # answer must say so, or a client reuses a dying connection
    def chunks():
        yield b'{"schemaVersion": 2, "x": "'
        for _ in range(5):
            yield b"a" * MiB
        yield b'"}'
    r = cli.put_manifest("bigclose", chunks())
    assert r.status_code == 413
    assert r.headers.get("Connection", "").lower() == "close"
