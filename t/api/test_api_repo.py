"""The repository routes of /api/v1 (Quay's endpoints/api/repository.py and
the stars of endpoints/api/user.py): list, create, get, update, change
visibility and state, delete, star.  Each route's contract (status, JSON
shape, Quay's error shape, bad input, audit row) and who may call it
(owner, organization admin, creator team, member, reader, writer,
outsider, anonymous), with private and unknown repositories answering
alike (security catalogue B2 #34)."""

import base64
import json

import pytest

from api import (ALL_SCOPES, Api, assert_error, create_token, create_user,
                 principal, sql)


# ------------------------------------------------------------------ helpers

def q(text):
    """A SQL string literal (test data only)."""
    return "'" + text.replace("'", "''") + "'"


def make_org(registry, name, teams):
    """Organization name with teams {team: (role, [usernames])}, as the
    organization API would leave them."""
    sql(registry, 'INSERT INTO "user" (username, email, organization)'
        f" VALUES ({q(name)}, {q(name + '@org.invalid')}, true)")
    for team, (role, members) in teams.items():
        sql(registry, "INSERT INTO team (name, organization_id, role_id)"
            f" SELECT {q(team)}, o.id, tr.id FROM \"user\" o, teamrole tr"
            f" WHERE o.username = {q(name)} AND tr.name = {q(role)}")
        for member in members:
            sql(registry, "INSERT INTO teammember (user_id, team_id)"
                " SELECT u.id, t.id FROM \"user\" u, team t"
                " JOIN \"user\" o ON o.id = t.organization_id"
                f" WHERE u.username = {q(member)} AND t.name = {q(team)}"
                f" AND o.username = {q(name)}")


def grant(registry, user, repo, role):
    ns, name = repo.split("/", 1)
    sql(registry, "INSERT INTO repositorypermission (user_id, repository_id,"
        " role_id) SELECT u.id, r.id, ro.id FROM \"user\" u, repository r"
        " JOIN \"user\" n ON n.id = r.namespace_user_id, role ro"
        f" WHERE u.username = {q(user)} AND n.username = {q(ns)}"
        f" AND r.name = {q(name)} AND ro.name = {q(role)}")


def last_log(registry):
    """(kind, metadata, repository_id, performer) of the newest audit
    row."""
    rows = sql(registry, "SELECT k.name, l.metadata_json::text,"
               " COALESCE(l.repository_id::text, ''), p.username,"
               " a.username FROM logentry l"
               " JOIN logentrykind k ON k.id = l.kind_id"
               " LEFT JOIN \"user\" p ON p.id = l.performer_id"
               " LEFT JOIN \"user\" a ON a.id = l.account_id"
               " ORDER BY l.id DESC LIMIT 1")
    kind, meta, repo_id, performer, account = rows[0]
    return kind, json.loads(meta), repo_id, performer, account


def log_count(registry):
    return int(sql(registry, "SELECT count(*) FROM logentry")[0][0])


def repo_id(registry, path):
    ns, name = path.split("/", 1)
    rows = sql(registry, "SELECT r.id FROM repository r JOIN \"user\" n ON"
               f" n.id = r.namespace_user_id WHERE n.username = {q(ns)}"
               f" AND r.name = {q(name)}")
    return rows[0][0] if rows else None


def create(api, name, visibility="private", **extra):
    body = {"repository": name, "visibility": visibility,
            "description": "", **extra}
    return api.post("/repository", json=body)


def same_error(a, b):
    """Two error answers are indistinguishable."""
    assert a.status_code == b.status_code
    assert a.json() == b.json()


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


@pytest.fixture(scope="module")
def people(registry):
    """alice owns her namespace; bob is an outsider; wendy writes and
    rhea reads alice/app; org acme: olga admin, cris creator, mark member.
    """
    apis = {n: principal(registry, n) for n in
            ("alice", "bob", "wendy", "rhea", "olga", "cris", "mark")}
    make_org(registry, "acme", {"owners": ("admin", ["olga"]),
                                "creators": ("creator", ["cris"]),
                                "staff": ("member", ["mark"])})
    assert create(apis["alice"], "app").status_code == 201
    assert create(apis["alice"], "pub", "public").status_code == 201
    grant(registry, "wendy", "alice/app", "write")
    grant(registry, "rhea", "alice/app", "read")
    apis["anon"] = Api(registry)
    return apis


# ------------------------------------------------------------------- create

def test_create_returns_201_and_writes_repo_grant_and_audit(registry,
                                                            people):
    res = create(people["alice"], "made", description="hello")
    assert res.status_code == 201, res.text
    assert res.json() == {"namespace": "alice", "name": "made",
                          "kind": "image"}
    rows = sql(registry, "SELECT v.name, r.description, r.state, k.name"
               " FROM repository r JOIN visibility v ON v.id ="
               " r.visibility_id JOIN repositorykind k ON k.id = r.kind_id"
               f" WHERE r.id = {repo_id(registry, 'alice/made')}")
    assert rows == [("private", "hello", "0", "image")]
    # Quay gives the creator an explicit admin grant
    rows = sql(registry, "SELECT u.username, ro.name FROM"
               " repositorypermission p JOIN \"user\" u ON u.id = p.user_id"
               " JOIN role ro ON ro.id = p.role_id WHERE p.repository_id ="
               f" {repo_id(registry, 'alice/made')}")
    assert rows == [("alice", "admin")]
    kind, meta, rid, performer, account = last_log(registry)
    assert (kind, rid, performer, account) == (
        "create_repo", repo_id(registry, "alice/made"), "alice", "alice")
    assert meta == {"repo": "made", "namespace": "alice"}


def test_create_public_and_nested_and_explicit_namespace(registry, people):
    res = create(people["alice"], "team/tools/cli", "public",
                 namespace="alice")
    assert res.status_code == 201, res.text
    assert res.json()["name"] == "team/tools/cli"
    got = people["anon"].get("/repository/alice/team/tools/cli")
    assert got.status_code == 200 and got.json()["is_public"] is True


def test_create_without_description_is_accepted(people):
    res = people["alice"].post("/repository", json={
        "repository": "nodesc", "visibility": "private"})
    assert res.status_code == 201, res.text
    got = people["alice"].get("/repository/alice/nodesc").json()
    assert got["description"] is None


def test_create_existing_is_400_as_in_quay(people, registry):
    before = log_count(registry)
    body = assert_error(create(people["alice"], "app"), 400,
                        "invalid_request")
    assert body["error_message"] == "Repository already exists"
    assert log_count(registry) == before


@pytest.mark.parametrize("body, needle", [
    ({}, "repository"),
    ({"repository": 7, "visibility": "private"}, "repository"),
    ({"repository": "x1", "visibility": "secret"}, "visibility"),
    ({"repository": "x1", "visibility": True}, "visibility"),
    ({"repository": "x1"}, "visibility"),
    ({"repository": "x1", "visibility": "private", "namespace": 3},
     "namespace"),
    ({"repository": "x1", "visibility": "private", "description": []},
     "description"),
    ({"repository": "x1", "visibility": "private", "repo_kind": "helm"},
     "kind"),
    ({"repository": "x1", "visibility": "private",
      "repo_kind": "application"}, "not supported"),
    ({"repository": "x1", "visibility": "private", "repo_kind": 1},
     "repo_kind"),
])
def test_create_bad_body_is_400(people, body, needle):
    res = people["alice"].post("/repository", json=body)
    err = assert_error(res, 400, "invalid_request")
    assert needle in err["error_message"]


@pytest.mark.parametrize("name", [
    "UPPER", ".dot", "-dash", "a b", "a//b", "a/", "/a", "x" * 256,
    "a/" + "b" * 254, "caf\u00e9", "a\nb", "",
])
def test_create_invalid_name_is_400(people, registry, name):
    before = log_count(registry)
    res = create(people["alice"], name)
    err = assert_error(res, 400, "invalid_request")
    assert err["error_message"] == "Invalid repository name"
    assert log_count(registry) == before


def test_create_name_of_255_characters_is_accepted(people):
    assert create(people["alice"], "n" * 255).status_code == 201


def test_create_elsewhere_is_403_and_unknown_namespace_alike(people,
                                                             registry):
    before = log_count(registry)
    a = create(people["bob"], "sneaky", namespace="alice")
    b = create(people["bob"], "sneaky", namespace="nosuchns")
    assert_error(a, 403, "insufficient_scope")
    same_error(a, b)
    assert repo_id(registry, "alice/sneaky") is None
    assert log_count(registry) == before


def test_create_anonymous_is_401(people):
    res = people["anon"].post("/repository", json={
        "repository": "x", "visibility": "private", "namespace": "alice"})
    assert_error(res, 401, "invalid_token")


def test_create_needs_repo_create_scope(registry, people):
    narrow = Api(registry, create_token(registry, "alice", "repo:admin"))
    assert_error(create(narrow, "scoped"), 403, "insufficient_scope")


def test_create_in_org_by_admin_and_creator_not_member(registry, people):
    res = create(people["olga"], "by-admin", namespace="acme")
    assert res.status_code == 201, res.text
    res = create(people["cris"], "by-creator", namespace="acme")
    assert res.status_code == 201, res.text
    # the creator administers what they made
    assert people["cris"].get(
        "/repository/acme/by-creator").json()["can_admin"] is True
    # ... but has no implicit access to the organization's other ones
    assert_error(people["cris"].get("/repository/acme/by-admin"), 403)
    assert_error(create(people["mark"], "by-member", namespace="acme"),
                 403, "insufficient_scope")
    # a token without org:admin caps an org admin at creator: still fine
    creator_scoped = Api(registry, create_token(
        registry, "olga", "repo:create repo:read"))
    assert create(creator_scoped, "scoped", namespace="acme"
                  ).status_code == 201


def test_create_in_org_applies_default_permissions(registry, people):
    sql(registry, "INSERT INTO permissionprototype (org_id, delegate_team_id,"
        " role_id) SELECT o.id, t.id, ro.id FROM \"user\" o JOIN team t ON"
        " t.organization_id = o.id, role ro WHERE o.username = 'acme'"
        " AND t.name = 'staff' AND ro.name = 'read'")
    try:
        assert create(people["cris"], "proto", namespace="acme"
                      ).status_code == 201
        assert people["mark"].get(
            "/repository/acme/proto").status_code == 200
    finally:
        sql(registry, "DELETE FROM permissionprototype")


# ---------------------------------------------------------------------- get

def test_get_shape_for_owner(people):
    res = people["alice"].get("/repository/alice/app")
    assert res.status_code == 200, res.text
    body = res.json()
    for key in ("namespace", "name", "kind", "description", "is_public",
                "is_organization", "is_starred", "status_token",
                "trust_enabled", "tag_expiration_s", "state", "can_write",
                "can_admin", "is_free_account", "tags"):
        assert key in body, key
    assert body["namespace"] == "alice" and body["name"] == "app"
    assert body["kind"] == "image" and body["state"] == "NORMAL"
    assert body["is_public"] is False and body["is_organization"] is False
    assert body["can_write"] is True and body["can_admin"] is True
    assert body["tag_expiration_s"] == 1209600
    assert body["status_token"] and body["tags"] == {}
    assert body["trust_enabled"] is False and body["is_free_account"] is True


def test_get_rights_of_writer_reader_and_org_admin(people):
    w = people["wendy"].get("/repository/alice/app").json()
    assert (w["can_write"], w["can_admin"]) == (True, False)
    r = people["rhea"].get("/repository/alice/app").json()
    assert (r["can_write"], r["can_admin"]) == (False, False)
    o = people["olga"].get("/repository/acme/by-creator").json()
    assert (o["can_write"], o["can_admin"]) == (True, True)
    assert o["is_organization"] is True


def test_get_lists_live_tags_and_include_tags_false_omits_them(registry,
                                                               people):
    create(people["alice"], "tagged")
    rid = repo_id(registry, "alice/tagged")
    digest = "sha256:" + "a" * 64
    sql(registry, "INSERT INTO manifest (repository_id, digest,"
        " media_type_id, manifest_bytes, layers_compressed_size)"
        f" VALUES ({rid}, {q(digest)}, 1, '{{}}', 1234)")
    sql(registry, "INSERT INTO tag (name, repository_id, manifest_id,"
        " lifetime_start_ms) SELECT 'v1', m.repository_id, m.id,"
        f" 1700000000000 FROM manifest m WHERE m.repository_id = {rid}")
    # an expired tag and a hidden one are not shown
    sql(registry, "INSERT INTO tag (name, repository_id, lifetime_start_ms,"
        f" lifetime_end_ms) VALUES ('old', {rid}, 1, 2)")
    sql(registry, "INSERT INTO tag (name, repository_id, hidden)"
        f" VALUES ('hid', {rid}, true)")
    tags = people["alice"].get("/repository/alice/tagged").json()["tags"]
    assert tags == {"v1": {"name": "v1", "size": 1234,
                           "manifest_digest": digest,
                           "last_modified": "Tue, 14 Nov 2023 22:13:20"
                                            " -0000"}}
    res = people["alice"].get("/repository/alice/tagged",
                              params={"includeTags": "false"})
    assert "tags" not in res.json()


def test_get_public_repository_anonymously(people):
    res = people["anon"].get("/repository/alice/pub")
    assert res.status_code == 200
    body = res.json()
    assert body["is_public"] is True and body["status_token"] == ""
    assert body["can_write"] is False and body["can_admin"] is False
    assert "is_starred" in body and body["is_starred"] is False
    assert people["bob"].get("/repository/alice/pub").status_code == 200


def test_private_and_unknown_look_the_same_to_outsiders(people):
    # authenticated outsider: 403 for both (Quay's Unauthorized)
    a = people["bob"].get("/repository/alice/app")
    b = people["bob"].get("/repository/alice/nope")
    c = people["bob"].get("/repository/nobody/nope")
    assert_error(a, 403, "insufficient_scope")
    same_error(a, b)
    same_error(a, c)
    # anonymous: 401 for both
    a = people["anon"].get("/repository/alice/app")
    b = people["anon"].get("/repository/alice/nope")
    assert_error(a, 401, "invalid_token")
    same_error(a, b)
    # a creator of acme cannot tell acme's private repositories either
    same_error(people["cris"].get("/repository/acme/by-admin"),
               people["cris"].get("/repository/acme/none-such"))


def test_unknown_repository_is_404_for_the_namespace_admin(people):
    assert_error(people["alice"].get("/repository/alice/nope"), 404,
                 "not_found")
    assert_error(people["olga"].get("/repository/acme/nope"), 404,
                 "not_found")


def test_get_with_token_lacking_repo_read_is_403(registry, people):
    narrow = Api(registry, create_token(registry, "alice", "user:read"))
    assert_error(narrow.get("/repository/alice/app"), 403,
                 "insufficient_scope")


# ------------------------------------------------------------------- update

def test_update_description_by_writer(registry, people):
    res = people["wendy"].put("/repository/alice/app",
                              json={"description": "new words"})
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True}
    assert people["alice"].get(
        "/repository/alice/app").json()["description"] == "new words"
    kind, meta, rid, performer, account = last_log(registry)
    assert (kind, rid, performer, account) == (
        "set_repo_description", repo_id(registry, "alice/app"), "wendy",
        "alice")
    assert meta == {"repo": "app", "namespace": "alice",
                    "description": "new words"}


@pytest.mark.parametrize("body", [{}, {"description": None},
                                  {"description": 5}])
def test_update_bad_body_is_400(people, body):
    assert_error(people["alice"].put("/repository/alice/app", json=body),
                 400, "invalid_request")


def test_update_by_reader_outsider_anonymous(people):
    body = {"description": "x"}
    assert_error(people["rhea"].put("/repository/alice/app", json=body),
                 403, "insufficient_scope")
    a = people["bob"].put("/repository/alice/app", json=body)
    same_error(a, people["bob"].put("/repository/alice/none", json=body))
    assert_error(a, 403)
    assert_error(people["anon"].put("/repository/alice/app", json=body),
                 401, "invalid_token")


def test_update_body_must_be_an_object(registry, people):
    res = people["alice"].put("/repository/alice/app", data="[1]",
                              headers={"Content-Type": "application/json"})
    assert_error(res, 400)


# --------------------------------------------------------------- visibility

def test_change_visibility(registry, people):
    create(people["alice"], "flip")
    res = people["alice"].post("/repository/alice/flip/changevisibility",
                               json={"visibility": "public"})
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True}
    assert people["anon"].get("/repository/alice/flip").status_code == 200
    kind, meta, rid, performer, _ = last_log(registry)
    assert (kind, rid, performer) == ("change_repo_visibility",
                                      repo_id(registry, "alice/flip"),
                                      "alice")
    assert meta == {"repo": "flip", "namespace": "alice",
                    "visibility": "public"}
    people["alice"].post("/repository/alice/flip/changevisibility",
                         json={"visibility": "private"})
    assert_error(people["anon"].get("/repository/alice/flip"), 401)


@pytest.mark.parametrize("body", [{}, {"visibility": "open"},
                                  {"visibility": None}])
def test_change_visibility_bad_body(people, body):
    assert_error(people["alice"].post(
        "/repository/alice/app/changevisibility", json=body), 400,
        "invalid_request")


def test_change_visibility_needs_admin(people):
    body = {"visibility": "public"}
    path = "/repository/alice/app/changevisibility"
    assert_error(people["wendy"].post(path, json=body), 403)
    assert_error(people["bob"].post(path, json=body), 403)
    assert_error(people["anon"].post(path, json=body), 401)
    assert people["anon"].get("/repository/alice/app").status_code == 401


# -------------------------------------------------------------------- state

def test_change_state_read_only_and_back(registry, people):
    create(people["alice"], "frozen")
    path = "/repository/alice/frozen"
    res = people["alice"].put(path + "/changestate",
                              json={"state": "READ_ONLY"})
    assert res.status_code == 200, res.text
    assert res.json() == {"success": True}
    body = people["alice"].get(path).json()
    assert body["state"] == "READ_ONLY" and body["can_write"] is False
    kind, meta, _, _, _ = last_log(registry)
    assert kind == "change_repo_state"
    assert meta == {"repo": "frozen", "namespace": "alice",
                    "state_changed": "READ_ONLY"}
    people["alice"].put(path + "/changestate", json={"state": "MIRROR"})
    assert people["alice"].get(path).json()["state"] == "MIRROR"
    people["alice"].put(path + "/changestate", json={"state": "NORMAL"})
    assert people["alice"].get(path).json()["can_write"] is True


@pytest.mark.parametrize("state", ["MARKED_FOR_DELETION", "ORG_MIRROR",
                                   "normal", "", 1, None])
def test_change_state_rejects_other_states(people, registry, state):
    before = log_count(registry)
    res = people["alice"].put("/repository/alice/app/changestate",
                              json={"state": state})
    assert_error(res, 400, "invalid_request")
    assert log_count(registry) == before
    assert people["alice"].get(
        "/repository/alice/app").json()["state"] == "NORMAL"


def test_change_state_needs_admin(people):
    path = "/repository/alice/app/changestate"
    assert_error(people["wendy"].put(path, json={"state": "READ_ONLY"}),
                 403)
    assert_error(people["anon"].put(path, json={"state": "READ_ONLY"}), 401)


# ------------------------------------------------------------------- delete

def test_delete_marks_queues_and_frees_the_name(registry, people):
    create(people["alice"], "doomed")
    rid = repo_id(registry, "alice/doomed")
    people["alice"].post("/user/starred", json={"namespace": "alice",
                                                "repository": "doomed"})
    res = people["alice"].delete("/repository/alice/doomed")
    assert res.status_code == 204, res.text
    assert res.content == b""
    name, state = sql(registry, "SELECT name, state FROM repository"
                      f" WHERE id = {rid}")[0]
    assert state == "3" and name != "doomed" and len(name) == 36
    marker, original, queue_id = sql(
        registry, "SELECT id, original_name, queue_id FROM"
        f" deletedrepository WHERE repository_id = {rid}")[0]
    assert original == "doomed"
    qname, body = sql(registry, "SELECT queue_name, body::text FROM"
                      f" queueitem WHERE id = {queue_id}")[0]
    assert qname == "repositorygc/"
    assert json.loads(body) == {"marker_id": int(marker),
                                "original_name": "doomed"}
    assert sql(registry, f"SELECT count(*) FROM star WHERE repository_id"
               f" = {rid}") == [("0",)]
    kind, meta, lrid, performer, _ = last_log(registry)
    assert (kind, lrid, performer) == ("delete_repo", rid, "alice")
    assert meta == {"repo": "doomed", "namespace": "alice"}
    # gone for the API, and the name can be used again
    assert_error(people["alice"].get("/repository/alice/doomed"), 404)
    assert_error(people["alice"].delete("/repository/alice/doomed"), 404)
    assert create(people["alice"], "doomed").status_code == 201
    assert repo_id(registry, "alice/doomed") != rid


def test_delete_needs_admin(registry, people):
    for who, status in (("wendy", 403), ("rhea", 403), ("bob", 403),
                        ("anon", 401)):
        assert_error(people[who].delete("/repository/alice/app"), status)
    same_error(people["bob"].delete("/repository/alice/app"),
               people["bob"].delete("/repository/alice/nope"))
    assert repo_id(registry, "alice/app") is not None


def test_org_admin_deletes_org_repository(registry, people):
    create(people["cris"], "temp", namespace="acme")
    assert people["olga"].delete(
        "/repository/acme/temp").status_code == 204


# --------------------------------------------------------------------- list

def names(res):
    assert res.status_code == 200, res.text
    return [r["namespace"] + "/" + r["name"]
            for r in res.json()["repositories"]]


def all_pages(api, params):
    seen, token = [], None
    while True:
        res = api.get("/repository", params=dict(params, **(
            {"next_page": token} if token else {})))
        seen += names(res)
        token = res.json().get("next_page")
        if not token:
            return seen


def test_list_needs_a_filter(people):
    err = assert_error(people["alice"].get("/repository"), 400,
                       "invalid_request")
    assert "namespace, starred or public" in err["error_message"]
    assert_error(people["alice"].get("/repository",
                                     params={"public": "false"}), 400)


def test_list_namespace_for_owner_reader_outsider_anonymous(people):
    mine = names(people["alice"].get("/repository",
                                     params={"namespace": "alice"}))
    assert "alice/app" in mine and "alice/pub" in mine
    assert names(people["rhea"].get("/repository",
                                    params={"namespace": "alice"})) == [
        "alice/app"]
    assert names(people["bob"].get("/repository",
                                   params={"namespace": "alice"})) == []
    outsider = names(people["bob"].get(
        "/repository", params={"namespace": "alice", "public": "true"}))
    assert "alice/pub" in outsider and "alice/app" not in outsider
    anon = names(people["anon"].get(
        "/repository", params={"namespace": "alice", "public": "1"}))
    assert "alice/pub" in anon and "alice/app" not in anon
    assert names(people["anon"].get(
        "/repository", params={"namespace": "alice"})) == []


def test_list_item_shape(people):
    res = people["alice"].get("/repository", params={
        "namespace": "alice", "last_modified": "true",
        "popularity": "true"})
    item = [r for r in res.json()["repositories"] if r["name"] == "app"][0]
    assert item["namespace"] == "alice" and item["kind"] == "image"
    assert item["is_public"] is False and item["state"] == "NORMAL"
    assert "description" in item and item["is_starred"] is False
    assert "last_modified" in item and item["last_modified"] is None
    assert isinstance(item["popularity"], float)
    plain = people["anon"].get("/repository", params={
        "namespace": "alice", "public": "true"}).json()["repositories"][0]
    assert "last_modified" not in plain and "popularity" not in plain
    assert "is_starred" not in plain


def test_list_last_modified_is_newest_live_tag(people):
    res = people["alice"].get("/repository", params={
        "namespace": "alice", "last_modified": "true"})
    item = [r for r in res.json()["repositories"]
            if r["name"] == "tagged"][0]
    assert item["last_modified"] == 1700000000


def test_list_org_for_members_and_admin(people):
    olga = names(people["olga"].get("/repository",
                                    params={"namespace": "acme"}))
    assert "acme/by-admin" in olga and "acme/by-creator" in olga
    assert names(people["mark"].get("/repository",
                                    params={"namespace": "acme"})) == [
        "acme/proto"]


def test_list_bad_repo_kind_and_next_page(people):
    assert_error(people["alice"].get("/repository", params={
        "public": "true", "repo_kind": "chart"}), 400, "invalid_request")
    for token in ("!!", "abc", "cjo6", "x" * 200, "cjotMQ",
                  base64.urlsafe_b64encode(b"r:1x").decode().rstrip("="),
                  base64.urlsafe_b64encode(b"\xff\xfe").decode()):
        err = assert_error(people["alice"].get("/repository", params={
            "public": "true", "next_page": token}), 400, "invalid_request")
        assert "next_page" in err["error_message"]


def test_list_public_pages_of_100_and_never_leaks(registry, people):
    create_user(registry, "bulk")
    sql(registry, "INSERT INTO repository (namespace_user_id, name,"
        " visibility_id) SELECT u.id, 'p' || lpad(g::text, 3, '0'),"
        " (SELECT id FROM visibility WHERE name = 'public')"
        " FROM \"user\" u, generate_series(1, 230) g"
        " WHERE u.username = 'bulk'")
    sql(registry, "INSERT INTO repository (namespace_user_id, name,"
        " visibility_id) SELECT u.id, 'secret' || g,"
        " (SELECT id FROM visibility WHERE name = 'private')"
        " FROM \"user\" u, generate_series(1, 20) g"
        " WHERE u.username = 'bulk'")
    seen, token, pages = [], None, 0
    while True:
        params = {"public": "true"}
        if token:
            params["next_page"] = token
        res = people["bob"].get("/repository", params=params)
        page = names(res)
        assert len(page) <= 100
        seen += page
        pages += 1
        token = res.json().get("next_page")
        if token is None:
            break
        assert len(page) == 100
    assert pages >= 3
    assert len(seen) == len(set(seen))
    assert all(n.startswith("bulk/p") for n in seen
               if n.startswith("bulk/"))
    assert len([n for n in seen if n.startswith("bulk/p")]) == 230
    assert "alice/pub" in seen and "alice/app" not in seen
    # bob's own private repository is listed for him, not for others
    create(people["bob"], "mine")
    assert "bob/mine" in all_pages(people["bob"], {"public": "true"})
    assert "bob/mine" not in all_pages(people["rhea"], {"public": "true"})
    # a forged cursor only moves the window: from id 0 it is page one,
    # and no page ever shows another user's private repository
    forged = base64.urlsafe_b64encode(b"r:0").decode().rstrip("=")
    res = people["bob"].get("/repository", params={"public": "true",
                                                   "next_page": forged})
    assert names(res)[:50] == seen[:50]
    for start in ("r:1", "r:150", "r:999999999"):
        forged = base64.urlsafe_b64encode(start.encode()).decode()
        res = people["anon"].get("/repository", params={
            "public": "true", "next_page": forged.rstrip("=")})
        assert not any("secret" in n or n == "alice/app"
                       for n in names(res))


def test_list_public_includes_own_private_ones(people):
    seen = all_pages(people["rhea"], {"public": "true"})
    assert "alice/app" in seen
    assert "alice/made" not in seen


# -------------------------------------------------------------------- stars

def test_star_list_and_unstar(registry, people):
    rhea = people["rhea"]
    res = rhea.post("/user/starred", json={"namespace": "alice",
                                           "repository": "app"})
    assert res.status_code == 201, res.text
    assert res.json() == {"namespace": "alice", "repository": "app"}
    # starring twice is fine
    assert rhea.post("/user/starred", json={
        "namespace": "alice", "repository": "app"}).status_code == 201
    assert rhea.post("/user/starred", json={
        "namespace": "alice", "repository": "pub"}).status_code == 201
    res = rhea.get("/user/starred")
    assert res.status_code == 200
    assert res.json()["repositories"] == [
        {"namespace": "alice", "name": "app", "description": "new words",
         "is_public": False},
        {"namespace": "alice", "name": "pub", "description": "",
         "is_public": True}]
    assert names(rhea.get("/repository", params={"starred": "true"})) == [
        "alice/app", "alice/pub"]
    assert rhea.get("/repository/alice/app").json()["is_starred"] is True
    res = rhea.delete("/user/starred/alice/app")
    assert res.status_code == 204
    assert names(rhea.get("/repository", params={"starred": "true"})) == [
        "alice/pub"]
    assert rhea.get("/repository/alice/app").json()["is_starred"] is False


def test_star_hides_repositories_the_caller_lost(registry, people):
    create_user(registry, "fan")
    fan = Api(registry, create_token(registry, "fan"))
    grant(registry, "fan", "alice/app", "read")
    assert fan.post("/user/starred", json={
        "namespace": "alice", "repository": "app"}).status_code == 201
    sql(registry, "DELETE FROM repositorypermission WHERE user_id ="
        " (SELECT id FROM \"user\" WHERE username = 'fan')")
    assert fan.get("/user/starred").json()["repositories"] == []
    assert names(fan.get("/repository", params={"starred": "1"})) == []
    # the stale star can still be removed
    assert fan.delete("/user/starred/alice/app").status_code == 204


def test_star_private_or_unknown_is_404_alike(people):
    a = people["bob"].post("/user/starred", json={"namespace": "alice",
                                                  "repository": "app"})
    b = people["bob"].post("/user/starred", json={"namespace": "alice",
                                                  "repository": "zzz"})
    assert_error(a, 404, "not_found")
    same_error(a, b)
    same_error(people["bob"].delete("/user/starred/alice/app"),
               people["bob"].delete("/user/starred/alice/zzz"))
    assert_error(people["bob"].delete("/user/starred/alice/app"), 404)


@pytest.mark.parametrize("body", [{}, {"namespace": "alice"},
                                  {"namespace": 1, "repository": "app"},
                                  {"namespace": "alice", "repository": []}])
def test_star_bad_body_is_400(people, body):
    assert_error(people["alice"].post("/user/starred", json=body), 400,
                 "invalid_request")


def test_starred_needs_a_user(registry, people):
    assert_error(people["anon"].get("/user/starred"), 401, "invalid_token")
    assert_error(people["anon"].get("/repository",
                                    params={"starred": "true"}), 400)
    narrow = Api(registry, create_token(registry, "alice", "repo:read"))
    assert_error(narrow.get("/user/starred"), 403, "insufficient_scope")
    no_repo = Api(registry, create_token(registry, "alice", "user:admin"))
    assert_error(no_repo.post("/user/starred", json={
        "namespace": "alice", "repository": "app"}), 403,
        "insufficient_scope")


def test_starred_pages(registry, people):
    create_user(registry, "stars")
    sql(registry, "INSERT INTO star (user_id, repository_id) SELECT"
        " u.id, r.id FROM \"user\" u, repository r JOIN \"user\" n ON"
        " n.id = r.namespace_user_id WHERE u.username = 'stars' AND"
        " n.username = 'bulk' AND r.name LIKE 'p%'")
    api = Api(registry, create_token(registry, "stars", ALL_SCOPES))
    first = api.get("/user/starred").json()
    assert len(first["repositories"]) == 100 and first["next_page"]
    second = api.get("/user/starred",
                     params={"next_page": first["next_page"]}).json()
    assert len(second["repositories"]) == 100
    assert first["repositories"][-1] != second["repositories"][0]
    assert_error(api.get("/user/starred", params={"next_page": "%%"}), 400)
