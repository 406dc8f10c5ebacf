"""Repository permissions through /api/v1 (Quay's endpoints/api/
permission.py): the user, robot and team grants of a repository, who may
manage them (repository admins only), their JSON shapes and audit rows,
and that a grant or a revocation made here changes what the next /v2/auth
token grants (security catalogue B2 #36)."""

import base64
import json

import pytest

from api import Api, assert_error, create_token, principal, sql


# ------------------------------------------------------------------ helpers

def q(text):
    """A SQL string literal (test data only)."""
    return "'" + text.replace("'", "''") + "'"


def make_org(registry, name, teams):
    """Organization name with teams {team: (role, [usernames])}."""
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


def make_robot(registry, name):
    sql(registry, 'INSERT INTO "user" (username, email, robot)'
        f" VALUES ({q(name)}, {q(name + '@robot.invalid')}, true)")


def last_log(registry):
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
    return sql(registry, "SELECT r.id FROM repository r JOIN \"user\" n ON"
               f" n.id = r.namespace_user_id WHERE n.username = {q(ns)}"
               f" AND r.name = {q(name)} AND r.state <> 3")[0][0]


def same_error(a, b):
    assert a.status_code == b.status_code
    assert a.json() == b.json()


def v2_actions(registry, user, repo, actions="pull,push"):
    """The actions /v2/auth grants user (password user-password) on
    repo."""
    res = registry.request(
        "GET", "/v2/auth",
        params=[("service", registry.url.split("//")[1]),
                ("scope", f"repository:{repo}:{actions}")],
        auth=(user, user + "-password"))
    assert res.status_code == 200, res.text
    payload = res.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(
        payload + "=" * (-len(payload) % 4)))
    return claims["access"][0]["actions"]


USER_PERM = "/repository/{}/permissions/user/{}"
TEAM_PERM = "/repository/{}/permissions/team/{}"


# ----------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


@pytest.fixture(scope="module")
def people(registry):
    """alice owns alice/app; bob, carol and dan are other users; org acme:
    olga is its admin, cris a creator, mark in team devs, nina in team
    ops; acme/svc is private; robots alice+ci and acme+bot exist."""
    apis = {n: principal(registry, n) for n in
            ("alice", "bob", "carol", "dan", "olga", "cris", "mark",
             "nina")}
    make_org(registry, "acme", {"owners": ("admin", ["olga"]),
                                "makers": ("creator", ["cris"]),
                                "devs": ("member", ["mark"]),
                                "ops": ("member", ["nina"])})
    make_org(registry, "other", {"owners": ("admin", ["dan"]),
                                 "elsewhere": ("member", ["bob"])})
    make_robot(registry, "alice+ci")
    make_robot(registry, "acme+bot")
    make_robot(registry, "other+bot")
    for api, ns, name in ((apis["alice"], "alice", "app"),
                          (apis["olga"], "acme", "svc")):
        res = api.post("/repository", json={
            "repository": name, "visibility": "private", "namespace": ns,
            "description": ""})
        assert res.status_code == 201, res.text
    apis["anon"] = Api(registry)
    return apis


# -------------------------------------------------------------- user grants

def test_list_user_permissions_shape(people):
    res = people["alice"].get("/repository/alice/app/permissions/user/")
    assert res.status_code == 200, res.text
    perms = res.json()["permissions"]
    assert perms == {"alice": {
        "role": "admin", "name": "alice", "is_robot": False,
        "avatar": perms["alice"]["avatar"]}}
    assert perms["alice"]["avatar"]["name"] == "alice"
    assert perms["alice"]["avatar"]["kind"] == "user"


def test_grant_then_change_then_revoke_a_user(registry, people):
    alice = people["alice"]
    path = USER_PERM.format("alice/app", "bob")
    assert v2_actions(registry, "bob", "alice/app") == []

    res = alice.put(path, json={"role": "read"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert {k: body[k] for k in ("role", "name", "is_robot")} == {
        "role": "read", "name": "bob", "is_robot": False}
    assert body["avatar"]["name"] == "bob"
    assert "is_org_member" not in body          # not an org repository
    kind, meta, rid, performer, account = last_log(registry)
    assert (kind, rid, performer, account) == (
        "add_repo_permission", repo_id(registry, "alice/app"), "alice",
        "alice")
    assert meta == {"username": "bob", "repo": "app", "namespace": "alice",
                    "role": "read"}
    assert v2_actions(registry, "bob", "alice/app") == ["pull"]
    assert people["bob"].get("/repository/alice/app").status_code == 200

    res = alice.put(path, json={"role": "write"})
    assert res.json()["role"] == "write"
    kind, meta, _, _, _ = last_log(registry)
    assert kind == "change_repo_permission" and meta["role"] == "write"
    assert alice.get(path).json()["role"] == "write"
    assert v2_actions(registry, "bob", "alice/app") == ["pull", "push"]
    # "*" (admin) is not granted to a writer
    assert "delete" not in v2_actions(registry, "bob", "alice/app", "*")

    res = alice.put(path, json={"role": "admin"})
    assert "delete" in v2_actions(registry, "bob", "alice/app", "*")
    # the new admin may now manage permissions too
    assert people["bob"].get(
        "/repository/alice/app/permissions/user/").status_code == 200

    res = alice.delete(path)
    assert res.status_code == 204 and res.content == b""
    kind, meta, _, performer, _ = last_log(registry)
    assert (kind, performer) == ("delete_repo_permission", "alice")
    assert meta == {"username": "bob", "repo": "app", "namespace": "alice"}
    assert v2_actions(registry, "bob", "alice/app") == []
    assert_error(people["bob"].get("/repository/alice/app"), 403)
    err = assert_error(alice.delete(path), 400, "invalid_request")
    assert err["error_message"] == "User does not have permission for repo."


def test_get_user_permission_without_grant_is_400(people):
    err = assert_error(people["alice"].get(
        USER_PERM.format("alice/app", "carol")), 400, "invalid_request")
    assert err["error_message"] == "User does not have permission for repo."
    assert_error(people["alice"].get(
        USER_PERM.format("alice/app", "nobody")), 400)


@pytest.mark.parametrize("body", [{}, {"role": "owner"}, {"role": None},
                                  {"role": ["read"]}, {"role": "READ"},
                                  {"roles": "read"}])
def test_grant_bad_role_is_400(registry, people, body):
    before = log_count(registry)
    assert_error(people["alice"].put(USER_PERM.format("alice/app", "carol"),
                                     json=body), 400, "invalid_request")
    assert log_count(registry) == before


@pytest.mark.parametrize("username, message", [
    ("nobody", "Invalid username: nobody"),
    ("acme", "Invalid username: acme"),
    ("alice", "Namespace owner must always be admin."),
    ("acme+bot", "Cannot add robot acme+bot under namespace alice"),
])
def test_grant_refusals(registry, people, username, message):
    before = log_count(registry)
    err = assert_error(people["alice"].put(
        USER_PERM.format("alice/app", username), json={"role": "read"}),
        400, "invalid_request")
    assert err["error_message"] == message
    assert log_count(registry) == before


def test_owner_grant_cannot_be_deleted(people):
    err = assert_error(people["alice"].delete(
        USER_PERM.format("alice/app", "alice")), 400)
    assert err["error_message"] == "Namespace owner must always be admin."


def test_robot_grants(registry, people):
    res = people["alice"].put(USER_PERM.format("alice/app", "alice+ci"),
                              json={"role": "write"})
    assert res.status_code == 200, res.text
    assert res.json()["is_robot"] is True
    assert res.json()["avatar"]["kind"] == "robot"
    # on an organization's repository: its own robots only
    olga = people["olga"]
    res = olga.put(USER_PERM.format("acme/svc", "acme+bot"),
                   json={"role": "read"})
    assert res.status_code == 200, res.text
    assert res.json()["is_org_member"] is True
    err = assert_error(olga.put(USER_PERM.format("acme/svc", "other+bot"),
                                json={"role": "read"}), 400)
    assert err["error_message"] == ("Cannot add robot other+bot under"
                                    " namespace acme")
    perms = olga.get("/repository/acme/svc/permissions/user/").json()[
        "permissions"]
    assert perms["acme+bot"]["role"] == "read"
    assert "other+bot" not in perms


def test_is_org_member_on_org_repositories(people):
    olga = people["olga"]
    olga.put(USER_PERM.format("acme/svc", "mark"), json={"role": "read"})
    olga.put(USER_PERM.format("acme/svc", "carol"), json={"role": "read"})
    perms = olga.get("/repository/acme/svc/permissions/user/").json()[
        "permissions"]
    assert perms["mark"]["is_org_member"] is True
    assert perms["carol"]["is_org_member"] is False
    assert perms["olga"]["is_org_member"] is True
    olga.delete(USER_PERM.format("acme/svc", "mark"))
    olga.delete(USER_PERM.format("acme/svc", "carol"))


def test_transitive_permissions(registry, people):
    olga = people["olga"]
    path = "/repository/acme/svc/permissions/user/{}/transitive"
    assert_error(olga.get(path.format("mark")), 404, "not_found")
    assert_error(olga.get(path.format("nobody")), 404, "not_found")
    olga.put(TEAM_PERM.format("acme/svc", "devs"), json={"role": "write"})
    try:
        res = olga.get(path.format("mark"))
        assert res.status_code == 200, res.text
        assert res.json() == {"permissions": [{"role": "write"}]}
        olga.put(USER_PERM.format("acme/svc", "mark"), json={"role": "read"})
        roles = olga.get(path.format("mark")).json()["permissions"]
        assert sorted(r["role"] for r in roles) == ["read", "write"]
        # the direct grant is one entry, the team grant another
        direct = olga.get(USER_PERM.format("acme/svc", "mark")).json()
        assert direct["role"] == "read"
    finally:
        olga.delete(USER_PERM.format("acme/svc", "mark"))
        olga.delete(TEAM_PERM.format("acme/svc", "devs"))


# -------------------------------------------------------------- team grants

def test_team_grant_opens_and_revocation_closes_v2(registry, people):
    olga = people["olga"]
    path = TEAM_PERM.format("acme/svc", "devs")
    assert v2_actions(registry, "mark", "acme/svc") == []
    assert_error(people["mark"].get("/repository/acme/svc"), 403)

    res = olga.put(path, json={"role": "read"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert {k: body[k] for k in ("role", "name")} == {"role": "read",
                                                      "name": "devs"}
    assert body["avatar"]["kind"] == "team"
    kind, meta, rid, performer, account = last_log(registry)
    assert (kind, rid, performer, account) == (
        "add_repo_permission", repo_id(registry, "acme/svc"), "olga", "acme")
    assert meta == {"team": "devs", "repo": "svc", "role": "read"}
    assert v2_actions(registry, "mark", "acme/svc") == ["pull"]
    assert v2_actions(registry, "nina", "acme/svc") == []   # other team

    olga.put(path, json={"role": "write"})
    assert last_log(registry)[0] == "change_repo_permission"
    assert olga.get(path).json() == {"role": "write"}
    assert v2_actions(registry, "mark", "acme/svc") == ["pull", "push"]
    mark_view = people["mark"].get("/repository/acme/svc").json()
    assert (mark_view["can_write"], mark_view["can_admin"]) == (True, False)

    perms = olga.get("/repository/acme/svc/permissions/team/").json()
    assert perms["permissions"]["devs"]["role"] == "write"
    assert perms["permissions"]["devs"]["name"] == "devs"

    res = olga.delete(path)
    assert res.status_code == 204
    kind, meta, _, _, _ = last_log(registry)
    assert kind == "delete_repo_permission"
    assert meta == {"team": "devs", "repo": "svc"}
    assert v2_actions(registry, "mark", "acme/svc") == []
    assert olga.get("/repository/acme/svc/permissions/team/").json() == {
        "permissions": {}}
    err = assert_error(olga.delete(path), 400, "invalid_request")
    assert err["error_message"] == "Team does not have permission for repo."
    err = assert_error(olga.get(path), 400)
    assert err["error_message"] == "Team does not have permission for repo."


def test_team_must_belong_to_the_repository_org(registry, people):
    before = log_count(registry)
    # team "elsewhere" is other's, not acme's
    err = assert_error(people["olga"].put(
        TEAM_PERM.format("acme/svc", "elsewhere"), json={"role": "read"}),
        400, "invalid_request")
    assert err["error_message"] == "No team elsewhere in organization acme"
    # a user namespace has no teams
    err = assert_error(people["alice"].put(
        TEAM_PERM.format("alice/app", "owners"), json={"role": "read"}),
        400)
    assert err["error_message"] == "No team owners in organization alice"
    assert_error(people["olga"].put(TEAM_PERM.format("acme/svc", "devs"),
                                    json={"role": "boss"}), 400)
    assert log_count(registry) == before
    assert v2_actions(registry, "bob", "acme/svc") == []


# -------------------------------------------------------------- who may ask

ROUTES = [
    ("get", "/repository/{}/permissions/user/", None),
    ("get", "/repository/{}/permissions/user/carol", None),
    ("put", "/repository/{}/permissions/user/carol", {"role": "admin"}),
    ("delete", "/repository/{}/permissions/user/carol", None),
    ("get", "/repository/{}/permissions/user/carol/transitive", None),
    ("get", "/repository/{}/permissions/team/", None),
    ("get", "/repository/{}/permissions/team/devs", None),
    ("put", "/repository/{}/permissions/team/devs", {"role": "admin"}),
    ("delete", "/repository/{}/permissions/team/devs", None),
]


@pytest.mark.parametrize("method, path, body", ROUTES)
def test_only_admins_manage_permissions(registry, people, method, path,
                                        body):
    before = log_count(registry)
    olga = people["olga"]
    olga.put(USER_PERM.format("acme/svc", "bob"), json={"role": "write"})
    try:
        kw = {"json": body} if body is not None else {}
        call = lambda who, repo: getattr(people[who], method)(
            path.format(repo), **kw)
        # a writer, an outsider, a creator and a member: 403, exactly as
        # for a repository that does not exist
        for who in ("bob", "carol", "cris", "mark"):
            res = call(who, "acme/svc")
            assert_error(res, 403, "insufficient_scope")
            same_error(res, call(who, "acme/nothing"))
        # anonymous: 401
        res = call("anon", "acme/svc")
        assert_error(res, 401, "invalid_token")
        same_error(res, call("anon", "acme/nothing"))
        # the organization's admin learns that a repository is missing
        assert_error(call("olga", "acme/nothing"), 404, "not_found")
        # an admin of another organization is an outsider here
        assert_error(call("dan", "acme/svc"), 403)
    finally:
        olga.delete(USER_PERM.format("acme/svc", "bob"))
    assert sql(registry, "SELECT count(*) FROM repositorypermission p"
               " JOIN \"user\" u ON u.id = p.user_id"
               " WHERE u.username = 'carol'") == [("0",)]
    # only the two grant changes of this test were logged
    assert log_count(registry) == before + 2


def test_repo_admin_scope_is_needed(registry, people):
    write_only = Api(registry, create_token(registry, "alice", "repo:write"))
    assert_error(write_only.get("/repository/alice/app/permissions/user/"),
                 403, "insufficient_scope")
    assert_error(write_only.put(USER_PERM.format("alice/app", "carol"),
                                json={"role": "read"}), 403)


def test_owner_and_org_admin_need_no_explicit_grant(registry, people):
    sql(registry, "DELETE FROM repositorypermission WHERE repository_id ="
        f" {repo_id(registry, 'acme/svc')} AND user_id = (SELECT id FROM"
        " \"user\" WHERE username = 'olga')")
    assert people["olga"].get(
        "/repository/acme/svc/permissions/user/").status_code == 200
    assert "delete" in v2_actions(registry, "olga", "acme/svc", "*")


def test_superuser_with_full_access(start_registry):
    reg = start_registry(FEATURE_SUPERUSERS_FULL_ACCESS=True)
    alice = principal(reg, "alice")
    admin = principal(reg, "admin")
    alice.post("/repository", json={"repository": "app",
                                    "visibility": "private"})
    assert admin.get("/repository/alice/app").json()["can_admin"] is True
    assert admin.put(USER_PERM.format("alice/app", "admin"),
                     json={"role": "read"}).status_code == 200
    # without super:user in the token the superuser is an outsider
    plain = Api(reg, create_token(reg, "admin", "repo:admin repo:read"))
    sql(reg, "DELETE FROM repositorypermission WHERE user_id = (SELECT id"
        " FROM \"user\" WHERE username = 'admin')")
    assert_error(plain.get("/repository/alice/app/permissions/user/"), 403)
