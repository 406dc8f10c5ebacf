"""Organizations and teams in /api/v1 (issue #4; quay-behaviour.md 1.1,
1.2, 3.4, 10; Quay's endpoints/api/organization.py and team.py): every
route's statuses, shapes, errors and audit rows, for anonymous callers,
outsiders, members, creators, admins and superusers; and what team roles
grant at /v2/auth, revocation included (security catalogue B2 #33, #34,
#36)."""

import base64
import json

import pytest

from api import (ALL_SCOPES, Api, assert_error, create_token, create_user,
                 principal, random_name, sql)


ORG_KEYS_PUBLIC = {"name", "email", "avatar", "is_admin", "is_member"}
ORG_KEYS_MEMBER = ORG_KEYS_PUBLIC | {"teams", "ordered_teams"}
ORG_KEYS_ADMIN = ORG_KEYS_MEMBER | {"invoice_email", "invoice_email_address",
                                    "tag_expiration_s", "is_free_account"}
TEAM_KEYS = {"name", "description", "role", "avatar", "can_view",
             "repo_count", "member_count", "is_synced"}
MEMBER_KEYS = {"name", "kind", "is_robot", "avatar", "invited"}


# ------------------------------------------------------------------ setup

@pytest.fixture(scope="module")
def registry(start_registry):
    # 1w: organizations get DEFAULT_TAG_EXPIRATION as their window
    return start_registry(GLOBAL_READONLY_SUPER_USERS=["auditor"],
                          DEFAULT_TAG_EXPIRATION="1w")


@pytest.fixture(scope="module")
def full(start_registry):
    """A second registry with FEATURE_SUPERUSERS_FULL_ACCESS."""
    return start_registry(FEATURE_SUPERUSERS_FULL_ACCESS=True)


@pytest.fixture(scope="module")
def p(registry):
    """Principals: Api clients by role name (anonymous has no token)."""
    names = ["owner", "creator", "member", "outsider", "admin", "auditor",
             "ops", "victim"]
    who = {n: principal(registry, n) for n in names}
    who["anonymous"] = Api(registry)
    sql(registry, "UPDATE \"user\" SET email = 'outsider@example.com'"
        " WHERE username = 'outsider'")
    return who


@pytest.fixture(scope="module")
def acme(registry, p):
    """Organization acme: owner in owners, creator in builders (creator),
    member in readers (member) with robot acme+bot; repository acme/app
    (made by a push token) readable by readers, and a direct permission
    of member on it."""
    assert p["owner"].post("/organization/",
                           json={"name": "acme"}).status_code == 201
    put_team(p["owner"], "acme", "builders", "creator")
    put_team(p["owner"], "acme", "readers", "member", "Read only")
    add_member(p["owner"], "acme", "builders", "creator")
    add_member(p["owner"], "acme", "readers", "member")
    sql(registry, "INSERT INTO \"user\" (username, email, robot) VALUES"
        " ('acme+bot', gen_random_uuid()::text, true)")
    add_member(p["owner"], "acme", "readers", "acme+bot")
    granted = v2_actions(registry, "owner", "acme/app", "pull,push")
    assert granted == ["pull", "push"]
    sql(registry, "INSERT INTO repositorypermission (team_id, repository_id,"
        " role_id) SELECT t.id, r.id, ro.id FROM team t, repository r, role"
        " ro WHERE t.name = 'readers' AND r.name = 'app' AND ro.name ="
        " 'read' AND t.organization_id = r.namespace_user_id;"
        " INSERT INTO repositorypermission (user_id, repository_id, role_id)"
        " SELECT u.id, r.id, ro.id FROM \"user\" u, repository r, role ro"
        " WHERE u.username = 'member' AND r.name = 'app'"
        " AND ro.name = 'read'")
    return "acme"


def put_team(api, org, team, role, description=None):
    body = {"role": role}
    if description is not None:
        body["description"] = description
    res = api.put(f"/organization/{org}/team/{team}", json=body)
    assert res.status_code == 200, res.text
    return res.json()


def add_member(api, org, team, member):
    res = api.put(f"/organization/{org}/team/{team}/members/{member}")
    assert res.status_code == 200, res.text
    return res.json()


def new_org(api, prefix="org"):
    name = random_name(prefix)
    res = api.post("/organization/", json={"name": name})
    assert res.status_code == 201, res.text
    return name


def org_id(registry, name):
    rows = sql(registry, f"SELECT id FROM \"user\" WHERE username = '{name}'")
    return int(rows[0][0]) if rows else None


def audit(registry, kind, account_id):
    """[(performer, metadata)] of kind for account_id, oldest first."""
    rows = sql(registry, "SELECT COALESCE(p.username, ''), l.metadata_json"
               " FROM logentry l JOIN logentrykind k ON k.id = l.kind_id"
               " LEFT JOIN \"user\" p ON p.id = l.performer_id"
               f" WHERE k.name = '{kind}' AND l.account_id = {account_id}"
               " ORDER BY l.id")
    return [(r[0], json.loads(r[1])) for r in rows]


def count(registry, query):
    return int(sql(registry, query)[0][0])


def v2_actions(registry, user, repo, actions):
    """The actions /v2/auth grants user (Basic auth) on repo."""
    host = registry.url.split("//")[1]
    res = registry.request(
        "GET", "/v2/auth",
        params=[("service", host),
                ("scope", f"repository:{repo}:{actions}")],
        auth=(user, user + "-password"))
    assert res.status_code == 200, res.text
    payload = res.json()["token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload
                                                 + "=" * (-len(payload) % 4)))
    return claims["access"][0]["actions"]


def repo_exists(registry, path):
    ns, name = path.split("/", 1)
    return count(registry, "SELECT count(*) FROM repository r JOIN \"user\" u"
                 f" ON u.id = r.namespace_user_id WHERE u.username = '{ns}'"
                 f" AND r.name = '{name}'") == 1


def call_sql(registry, function, ctx, args, body):
    """Calls an API function directly with a crafted ctx (for config
    values the module does not pass yet); returns (status, body, msg)."""
    q = (f"SELECT status, body::text, message FROM {function}("
         f"'{json.dumps(ctx)}'::jsonb, '{json.dumps(args)}'::jsonb,"
         f" '{json.dumps(body)}'::jsonb)")
    status, out, msg = sql(registry, q)[0]
    return int(status), (json.loads(out) if out else None), msg


def ctx_for(registry, user, **config):
    cfg = {"superusers_full_access": False, "change_tag_expiration": True,
           "default_tag_expiration_s": 1209600}
    cfg.update(config)
    return {"user_id": org_id(registry, user), "username": user,
            "robot": False, "scopes": ALL_SCOPES.split(), "superuser": False,
            "readonly_superuser": False, "ip": "127.0.0.1", "config": cfg}


# ------------------------------------------------ POST /organization/

def test_create_makes_owners_team_with_creator_and_audit_row(registry, p):
    res = p["owner"].post("/organization/",
                          json={"name": "widgets", "email": "w@example.com"})
    assert res.status_code == 201, res.text
    assert res.json() == "Created"
    oid = org_id(registry, "widgets")
    row = sql(registry, "SELECT organization, robot, email,"
              f" removed_tag_expiration_s FROM \"user\" WHERE id = {oid}")[0]
    assert row == ("t", "f", "w@example.com", "604800")   # DEFAULT 1w
    teams = sql(registry, "SELECT t.name, tr.name, u.username FROM team t"
                " JOIN teamrole tr ON tr.id = t.role_id JOIN teammember tm"
                " ON tm.team_id = t.id JOIN \"user\" u ON u.id = tm.user_id"
                f" WHERE t.organization_id = {oid}")
    assert teams == [("owners", "admin", "owner")]
    assert audit(registry, "org_create", oid) == [
        ("owner", {"email": "w@example.com", "namespace": "widgets",
                   "owner": "owner"})]
    # the creator sees it among their organizations
    orgs = p["owner"].get("/user/").json()["organizations"]
    assert {"widgets"} <= {o["name"] for o in orgs}


def test_create_without_email_gets_a_placeholder(registry, p):
    name = new_org(p["owner"])
    email = sql(registry, "SELECT email FROM \"user\" WHERE username ="
                f" '{name}'")[0][0]
    assert len(email) == 36 and "@" not in email
    assert audit(registry, "org_create", org_id(registry, name))[0][1][
        "email"] is None


def test_create_needs_a_caller_with_user_admin(registry, p):
    assert_error(p["anonymous"].post("/organization/", json={"name": "x1"}),
                 401, "invalid_token")
    create_user(registry, "scoped")
    narrow = Api(registry, create_token(registry, "scoped",
                                        "org:admin repo:admin user:read"))
    assert_error(narrow.post("/organization/", json={"name": "x1y"}), 403,
                 "insufficient_scope")
    assert org_id(registry, "x1y") is None


BAD_CREATE_BODIES = [
    {}, {"name": None}, {"name": 12}, {"name": ["ab"]}, {"name": ""},
    {"name": "a"}, {"name": "Ab"}, {"name": "-ab"}, {"name": "ab-"},
    {"name": "a..b"}, {"name": "a b"}, {"name": "a/b"}, {"name": "x+bot"},
    {"name": "a" * 256}, {"name": "a" + "-" * 4000 + "a"},
    {"name": "okname", "email": 5}, {"name": "okname", "email": None},
    {"name": "okname", "email": "not-an-address"},
    {"name": "okname", "email": "a@b"},
    {"name": "okname", "email": "a b@c.de"},
]


def test_create_rejects_bad_input_with_400(registry, p):
    before = count(registry, "SELECT count(*) FROM \"user\"")
    for body in BAD_CREATE_BODIES:
        res = p["owner"].post("/organization/", json=body)
        assert res.status_code == 400, (body, res.text)
        assert_error(res, 400, "invalid_request")
    assert count(registry, "SELECT count(*) FROM \"user\"") == before


def test_create_rejects_a_body_that_is_not_an_object(p):
    res = p["owner"].post("/organization/", data="[1]",
                          headers={"Content-Type": "application/json"})
    assert_error(res, 400)


@pytest.mark.parametrize("taken", ["owner", "acme"])
def test_create_refuses_a_name_already_used(registry, p, acme, taken):
    body = assert_error(p["outsider"].post("/organization/",
                                           json={"name": taken}), 400)
    assert body["error_message"] == (
        "A user or organization with this name already exists")


def test_create_refuses_an_email_already_used(registry, p):
    body = assert_error(p["owner"].post(
        "/organization/", json={"name": random_name("m"),
                                "email": "outsider@example.com"}), 400)
    assert "already been used" in body["error_message"]


def test_superuser_creates_and_owns_an_organization(registry, p):
    name = new_org(p["admin"])
    assert p["admin"].get(f"/organization/{name}").json()["is_admin"]


def test_superusers_org_creation_only_keeps_it_to_superusers(registry, p):
    # SUPERUSERS_ORG_CREATION_ONLY as ctx.config would carry it
    ctx = ctx_for(registry, "outsider", superusers_org_creation_only=True)
    status, _, _ = call_sql(registry, "quay_api_org_create", ctx, {},
                            {"name": "onlysu"})
    assert status == 403 and org_id(registry, "onlysu") is None
    ctx = ctx_for(registry, "admin", superusers_org_creation_only=True)
    ctx["superuser"] = True
    status, body, _ = call_sql(registry, "quay_api_org_create", ctx, {},
                               {"name": "onlysu"})
    assert (status, body) == (201, "Created")


# ------------------------------------------- GET /organization/{org}

def test_get_as_admin_has_settings_and_every_team(registry, p, acme):
    res = p["owner"].get("/organization/acme")
    assert res.status_code == 200, res.text
    org = res.json()
    assert set(org) == ORG_KEYS_ADMIN
    assert org["is_admin"] and org["is_member"]
    assert org["email"] and org["avatar"]["name"] == "acme"
    assert org["tag_expiration_s"] == 604800
    assert org["invoice_email"] is False and org["is_free_account"] is True
    assert org["ordered_teams"] == ["owners", "builders", "readers"]
    readers = org["teams"]["readers"]
    assert set(readers) == TEAM_KEYS
    assert readers == {
        "name": "readers", "description": "Read only", "role": "member",
        "avatar": readers["avatar"], "can_view": True, "repo_count": 1,
        "member_count": 2, "is_synced": False}
    assert readers["avatar"]["kind"] == "team"
    assert org["teams"]["owners"]["role"] == "admin"
    assert org["teams"]["builders"]["member_count"] == 1


def test_get_as_member_shows_teams_but_not_settings(p, acme):
    org = p["member"].get("/organization/acme").json()
    assert set(org) == ORG_KEYS_MEMBER
    assert org["is_member"] and not org["is_admin"]
    assert org["email"] == ""
    # Quay's can_view: only the teams the caller is in
    assert org["teams"]["readers"]["can_view"] is True
    assert org["teams"]["owners"]["can_view"] is False
    org = p["creator"].get("/organization/acme").json()
    assert org["is_member"] and not org["is_admin"]
    assert org["teams"]["builders"]["can_view"] is True


@pytest.mark.parametrize("who", ["outsider", "anonymous", "admin"])
def test_get_as_outsider_is_the_public_view(p, acme, who):
    # a superuser without FEATURE_SUPERUSERS_FULL_ACCESS is an outsider
    res = p[who].get("/organization/acme")
    assert res.status_code == 200
    org = res.json()
    assert set(org) == ORG_KEYS_PUBLIC
    assert org == {"name": "acme", "email": "", "avatar": org["avatar"],
                   "is_admin": False, "is_member": False}


def test_get_as_readonly_superuser_sees_teams_and_email(p, acme):
    org = p["auditor"].get("/organization/acme").json()
    assert set(org) == ORG_KEYS_MEMBER
    assert org["email"] and not org["is_admin"] and not org["is_member"]
    assert all(t["can_view"] for t in org["teams"].values())


def test_get_as_superuser_with_full_access(full):
    owner = principal(full, "fowner")
    assert owner.post("/organization/", json={"name": "facme"}) \
        .status_code == 201
    su = principal(full, "admin")
    org = su.get("/organization/facme").json()
    assert set(org) == ORG_KEYS_MEMBER and org["email"]


@pytest.mark.parametrize("name", ["nosuchorg", "owner", "acme+bot", "A",
                                  "a" * 256])
def test_get_unknown_organization_is_404(p, acme, name):
    # a user namespace or a robot is not an organization either
    assert_error(p["owner"].get(f"/organization/{name}"), 404, "not_found")
    assert_error(p["anonymous"].get(f"/organization/{name}"), 404,
                 "not_found")


# ------------------------------------------- PUT /organization/{org}

def test_update_changes_settings_with_audit_rows(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    old = sql(registry, f"SELECT email FROM \"user\" WHERE id = {oid}")[0][0]
    res = p["owner"].put(f"/organization/{name}", json={
        "email": f"{name}@example.com", "invoice_email": True,
        "invoice_email_address": "billing@example.com",
        "tag_expiration_s": 86400})
    assert res.status_code == 200, res.text
    org = res.json()
    assert set(org) == ORG_KEYS_ADMIN
    assert org["email"] == f"{name}@example.com"
    assert org["invoice_email"] is True
    assert org["invoice_email_address"] == "billing@example.com"
    assert org["tag_expiration_s"] == 86400
    assert audit(registry, "org_change_email", oid) == [
        ("owner", {"email": f"{name}@example.com", "namespace": name,
                   "old_email": old})]
    assert audit(registry, "org_change_tag_expiration", oid) == [
        ("owner", {"tag_expiration": 86400, "namespace": name})]
    assert [m for _, m in audit(registry, "org_change_invoicing", oid)] == [
        {"invoice_email": True, "namespace": name},
        {"invoice_email_address": "billing@example.com", "namespace": name}]
    # the same values again change nothing and log no e-mail change
    res = p["owner"].put(f"/organization/{name}",
                         json={"email": f"{name}@example.com",
                               "invoice_email_address": None})
    assert res.status_code == 200
    assert res.json()["invoice_email_address"] is None
    assert len(audit(registry, "org_change_email", oid)) == 1
    # an empty body is a no-op that answers the view
    assert p["owner"].put(f"/organization/{name}", json={}).status_code == 200


BAD_UPDATE_BODIES = [
    {"tag_expiration_s": -1}, {"tag_expiration_s": "86400"},
    {"tag_expiration_s": 1.5}, {"tag_expiration_s": True},
    {"tag_expiration_s": None}, {"tag_expiration_s": 12345},
    {"tag_expiration_s": 10 ** 30},
    {"email": 5}, {"email": "nope"}, {"email": None}, {"email": ""},
    {"invoice_email": "yes"}, {"invoice_email": None},
    {"invoice_email_address": 5}, {"invoice_email_address": "x"},
    # one bad field spoils the whole request
    {"email": "fresh@example.com", "tag_expiration_s": -1},
    {"invoice_email": True, "email": "bad"},
]


def test_update_rejects_bad_input_and_changes_nothing(registry, p, acme):
    state = ("SELECT email, invoice_email, invoice_email_address,"
             " removed_tag_expiration_s FROM \"user\""
             " WHERE username = 'acme'")
    before = sql(registry, state)
    for body in BAD_UPDATE_BODIES:
        res = p["owner"].put("/organization/acme", json=body)
        assert res.status_code == 400, (body, res.text)
        assert_error(res, 400, "invalid_request")
    assert sql(registry, state) == before


def test_update_refuses_an_email_already_used(registry, p, acme):
    body = assert_error(p["owner"].put(
        "/organization/acme", json={"email": "outsider@example.com"}), 400)
    assert body["error_message"] == "E-mail address already used"


def test_update_tag_expiration_follows_the_config(registry, p):
    name = new_org(p["owner"])
    args = {"orgname": name}
    # TAG_EXPIRATION_OPTIONS as ctx.config would carry them
    ctx = ctx_for(registry, "owner", tag_expiration_options=[0, 12345])
    status, body, _ = call_sql(registry, "quay_api_org_update", ctx, args,
                               {"tag_expiration_s": 12345})
    assert status == 200 and body["tag_expiration_s"] == 12345
    status, _, msg = call_sql(registry, "quay_api_org_update", ctx, args,
                              {"tag_expiration_s": 86400})
    assert (status, msg) == (400, "Invalid tag expiration option")
    # FEATURE_CHANGE_TAG_EXPIRATION off: ignored, as in Quay
    ctx = ctx_for(registry, "owner", change_tag_expiration=False)
    status, body, _ = call_sql(registry, "quay_api_org_update", ctx, args,
                               {"tag_expiration_s": 0})
    assert status == 200 and body["tag_expiration_s"] == 12345


@pytest.mark.parametrize("who", ["member", "creator", "outsider", "admin",
                                 "auditor"])
def test_update_is_for_admins_only(registry, p, acme, who):
    before = sql(registry, "SELECT email FROM \"user\""
                 " WHERE username = 'acme'")
    assert_error(p[who].put("/organization/acme",
                            json={"email": "taken@example.com"}), 403,
                 "insufficient_scope")
    assert sql(registry, "SELECT email FROM \"user\""
               " WHERE username = 'acme'") == before


def test_update_auth_and_scope_and_unknown(registry, p, acme):
    assert_error(p["anonymous"].put("/organization/acme", json={}), 401)
    create_user(registry, "noscope")
    narrow = Api(registry, create_token(registry, "noscope", "user:admin"))
    assert_error(narrow.put("/organization/acme", json={}), 403)
    # the owner's token without org:admin is no admin either
    capped = Api(registry, create_token(registry, "owner", "user:admin"))
    assert_error(capped.put("/organization/acme", json={}), 403)
    assert capped.get("/organization/acme").json()["is_admin"] is False
    # an outsider cannot tell a missing organization from a hidden one
    a = p["outsider"].put("/organization/acme", json={})
    b = p["outsider"].put("/organization/nosuchorg", json={})
    assert a.status_code == b.status_code == 403 and a.json() == b.json()


def test_update_by_superuser_with_full_access(full):
    owner = principal(full, "fowner2")
    assert owner.post("/organization/", json={"name": "facme2"}) \
        .status_code == 201
    su = Api(full, create_token(full, "admin"))
    res = su.put("/organization/facme2", json={"tag_expiration_s": 0})
    assert res.status_code == 200, res.text
    assert owner.get("/organization/facme2").json()["tag_expiration_s"] == 0
    assert_error(su.put("/organization/nosuchorg", json={}), 404)


# ---------------------------------------- DELETE /organization/{org}

def test_delete_removes_teams_members_and_robots(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    put_team(p["owner"], name, "crew", "member")
    add_member(p["owner"], name, "crew", "member")
    sql(registry, "INSERT INTO \"user\" (username, email, robot) VALUES"
        f" ('{name}+bot', gen_random_uuid()::text, true)")
    add_member(p["owner"], name, "crew", f"{name}+bot")
    res = p["owner"].delete(f"/organization/{name}")
    assert res.status_code == 204, res.text
    assert res.content == b""
    assert org_id(registry, name) is None
    assert org_id(registry, f"{name}+bot") is None
    assert count(registry, "SELECT count(*) FROM team"
                 f" WHERE organization_id = {oid}") == 0
    assert count(registry, "SELECT count(*) FROM teammember tm"
                 " LEFT JOIN team t ON t.id = tm.team_id"
                 " WHERE t.id IS NULL") == 0
    assert audit(registry, "org_delete", oid) == [
        ("owner", {"namespace": name})]
    # the users themselves remain
    assert org_id(registry, "member") is not None
    assert_error(p["owner"].get(f"/organization/{name}"), 404)


def test_delete_refuses_while_repositories_remain(registry, p):
    name = new_org(p["owner"])
    assert v2_actions(registry, "owner", f"{name}/img", "push") == ["push"]
    body = assert_error(p["owner"].delete(f"/organization/{name}"), 400,
                        "invalid_request")
    assert "delete its repositories first" in body["error_message"]
    assert org_id(registry, name) is not None
    # a repository being purged still holds it
    sql(registry, "UPDATE repository SET state = 3 WHERE name = 'img'"
        f" AND namespace_user_id = {org_id(registry, name)}")
    body = assert_error(p["owner"].delete(f"/organization/{name}"), 400)
    assert "purged" in body["error_message"]
    sql(registry, "DELETE FROM repository WHERE name = 'img'"
        f" AND namespace_user_id = {org_id(registry, name)}")
    assert p["owner"].delete(f"/organization/{name}").status_code == 204


@pytest.mark.parametrize("who", ["member", "creator", "outsider", "admin",
                                 "auditor"])
def test_delete_is_for_admins_only(registry, p, acme, who):
    assert_error(p[who].delete("/organization/acme"), 403,
                 "insufficient_scope")
    assert org_id(registry, "acme") is not None


def test_delete_auth_and_unknown(registry, p, acme):
    assert_error(p["anonymous"].delete("/organization/acme"), 401)
    a = p["outsider"].delete("/organization/acme")
    b = p["outsider"].delete("/organization/nosuchorg")
    assert a.status_code == b.status_code == 403 and a.json() == b.json()


def test_delete_by_superuser_with_full_access(full):
    owner = principal(full, "fowner3")
    assert owner.post("/organization/", json={"name": "facme3"}) \
        .status_code == 201
    su = Api(full, create_token(full, "admin"))
    assert su.delete("/organization/facme3").status_code == 204
    assert_error(su.delete("/organization/facme3"), 404)


# ------------------------------------ GET /organization/{org}/members

def test_members_lists_humans_with_teams_and_direct_permissions(p, acme):
    res = p["owner"].get("/organization/acme/members")
    assert res.status_code == 200, res.text
    members = res.json()["members"]
    assert [m["name"] for m in members] == ["creator", "member", "owner"]
    by = {m["name"]: m for m in members}
    assert set(by["member"]) == {"name", "kind", "avatar", "teams",
                                 "repositories"}
    assert by["member"]["kind"] == "user"
    assert [t["name"] for t in by["member"]["teams"]] == ["readers"]
    assert by["member"]["teams"][0]["avatar"]["kind"] == "team"
    assert by["member"]["repositories"] == ["app"]
    # the owner created acme/app by pushing: as in Quay's
    # create_repository, the creating user gets admin on it
    assert by["owner"]["repositories"] == ["app"]
    assert [t["name"] for t in by["creator"]["teams"]] == ["builders"]


@pytest.mark.parametrize("who,status", [
    ("member", 403), ("creator", 403), ("outsider", 403), ("admin", 403),
    ("anonymous", 401), ("auditor", 200)])
def test_members_permissions(p, acme, who, status):
    res = p[who].get("/organization/acme/members")
    if status == 200:
        assert res.status_code == 200
        assert len(res.json()["members"]) == 3
    else:
        assert_error(res, status)


def test_members_of_unknown_organization(p):
    assert_error(p["outsider"].get("/organization/nosuchorg/members"), 403)
    assert_error(p["auditor"].get("/organization/nosuchorg/members"), 404)


# ---------------------------- PUT /organization/{org}/team/{team}

def test_team_create_and_update_with_audit_rows(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    res = p["owner"].put(f"/organization/{name}/team/qa",
                         json={"role": "member", "description": "Testers"})
    assert res.status_code == 200, res.text
    team = res.json()
    assert set(team) == TEAM_KEYS | {"new_team"}
    assert team == {"name": "qa", "description": "Testers", "role": "member",
                    "avatar": team["avatar"], "can_view": True,
                    "repo_count": 0, "member_count": 0, "is_synced": False,
                    "new_team": True}
    assert audit(registry, "org_create_team", oid) == [
        ("owner", {"team": "qa"})]
    team = put_team(p["owner"], name, "qa", "creator", "QA")
    assert (team["role"], team["description"], team["new_team"]) == (
        "creator", "QA", False)
    assert audit(registry, "org_set_team_role", oid) == [
        ("owner", {"team": "qa", "role": "creator"})]
    assert audit(registry, "org_set_team_description", oid) == [
        ("owner", {"team": "qa", "description": "QA"})]
    # unchanged values log nothing; a missing description keeps it
    team = put_team(p["owner"], name, "qa", "creator")
    assert team["description"] == "QA"
    assert len(audit(registry, "org_set_team_role", oid)) == 1
    assert len(audit(registry, "org_set_team_description", oid)) == 1
    assert sql(registry, "SELECT tr.name FROM team t JOIN teamrole tr ON"
               f" tr.id = t.role_id WHERE t.organization_id = {oid}"
               " AND t.name = 'qa'") == [("creator",)]


BAD_TEAM_PUTS = [
    ("qa", {}), ("qa", {"role": "owner"}), ("qa", {"role": 1}),
    ("qa", {"role": None}), ("qa", {"role": "ADMIN"}),
    ("qa", {"role": "member", "description": 5}),
    ("qa", {"role": "member", "description": None}),
    ("Qa", {"role": "member"}), ("q", {"role": "member"}),
    ("q..a", {"role": "member"}), ("a" * 256, {"role": "member"}),
]


def test_team_put_rejects_bad_input(registry, p, acme):
    before = count(registry, "SELECT count(*) FROM team")
    for team, body in BAD_TEAM_PUTS:
        res = p["owner"].put(f"/organization/acme/team/{team}", json=body)
        assert res.status_code == 400, (team, body, res.text)
        assert_error(res, 400, "invalid_request")
    assert count(registry, "SELECT count(*) FROM team") == before


def test_team_put_caps_the_description(registry, p, acme):
    # the module refuses bodies past client_body_buffer_size; the function
    # has its own cap for larger buffers
    res = p["owner"].put("/organization/acme/team/qa",
                         json={"role": "member", "description": "x" * 70000})
    assert_error(res, 413)
    ctx = ctx_for(registry, "owner")
    status, _, msg = call_sql(registry, "quay_api_org_team_put", ctx,
                              {"orgname": "acme", "teamname": "qa"},
                              {"role": "member", "description": "x" * 65536})
    assert status == 400 and "65535" in msg
    assert count(registry, "SELECT count(*) FROM team WHERE name = 'qa'"
                 f" AND organization_id = {org_id(registry, 'acme')}") == 0


@pytest.mark.parametrize("who,status", [
    ("member", 403), ("creator", 403), ("outsider", 403), ("auditor", 403),
    ("anonymous", 401)])
def test_team_put_is_for_admins(registry, p, acme, who, status):
    assert_error(p[who].put("/organization/acme/team/sneaky",
                            json={"role": "admin"}), status)
    assert_error(p[who].put("/organization/acme/team/readers",
                            json={"role": "admin"}), status)
    assert count(registry, "SELECT count(*) FROM team"
                 " WHERE name = 'sneaky'") == 0
    assert p["owner"].get("/organization/acme").json()["teams"][
        "readers"]["role"] == "member"


def test_team_put_by_superuser_and_unknown_org(registry, p):
    # Quay lets superusers manage teams (allow_if_superuser)
    name = new_org(p["owner"])
    team = put_team(p["admin"], name, "sus", "member")
    assert team["new_team"] is True and team["can_view"] is False
    assert_error(p["admin"].put("/organization/nosuchorg/team/x1",
                                json={"role": "member"}), 404)
    a = p["outsider"].put(f"/organization/{name}/team/x1",
                          json={"role": "member"})
    b = p["outsider"].put("/organization/nosuchorg/team/x1",
                          json={"role": "member"})
    assert a.status_code == b.status_code == 403 and a.json() == b.json()


def test_team_put_without_org_admin_scope_is_403(registry, p, acme):
    capped = Api(registry, create_token(registry, "owner", "repo:admin"))
    assert_error(capped.put("/organization/acme/team/readers",
                            json={"role": "admin"}), 403)


def test_demoting_the_callers_only_admin_team_is_refused(registry, p):
    name = new_org(p["owner"])
    body = assert_error(p["owner"].put(f"/organization/{name}/team/owners",
                                       json={"role": "member"}), 400)
    assert "would no longer have admin" in body["error_message"]
    # with a second admin team of the caller's, it may go
    put_team(p["owner"], name, "admins2", "admin")
    add_member(p["owner"], name, "admins2", "owner")
    assert put_team(p["owner"], name, "owners", "member")["role"] == "member"


def test_demoting_the_last_admin_team_is_refused_for_superusers_too(
        registry, p):
    name = new_org(p["owner"])
    body = assert_error(p["admin"].put(f"/organization/{name}/team/owners",
                                       json={"role": "creator"}), 400)
    assert "no admin left" in body["error_message"]
    assert p["owner"].get(f"/organization/{name}").json()["is_admin"]


# ------------------------- DELETE /organization/{org}/team/{team}

def test_team_delete_removes_memberships_and_permissions(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    put_team(p["owner"], name, "gone", "member")
    add_member(p["owner"], name, "gone", "member")
    assert v2_actions(registry, "owner", f"{name}/r", "push") == ["push"]
    sql(registry, "INSERT INTO repositorypermission (team_id, repository_id,"
        " role_id) SELECT t.id, r.id, 3 FROM team t, repository r WHERE"
        f" t.name = 'gone' AND t.organization_id = {oid}"
        f" AND r.namespace_user_id = {oid}")
    assert v2_actions(registry, "member", f"{name}/r", "pull") == ["pull"]
    res = p["owner"].delete(f"/organization/{name}/team/gone")
    assert res.status_code == 204, res.text
    assert count(registry, "SELECT count(*) FROM team WHERE name = 'gone'"
                 f" AND organization_id = {oid}") == 0
    assert audit(registry, "org_delete_team", oid) == [
        ("owner", {"team": "gone"})]
    assert v2_actions(registry, "member", f"{name}/r", "pull") == []
    assert_error(p["owner"].delete(f"/organization/{name}/team/gone"), 404)


def test_team_delete_keeps_an_admin(registry, p):
    name = new_org(p["owner"])
    body = assert_error(p["owner"].delete(f"/organization/{name}/team/owners"),
                        400)
    assert "would remove admin ability" in body["error_message"]
    body = assert_error(p["admin"].delete(f"/organization/{name}/team/owners"),
                        400)
    assert "no admin left" in body["error_message"]
    # with another admin team holding someone else, owners may go
    put_team(p["owner"], name, "heads", "admin")
    add_member(p["owner"], name, "heads", "ops")
    assert p["admin"].delete(f"/organization/{name}/team/owners") \
        .status_code == 204
    assert p["ops"].get(f"/organization/{name}").json()["is_admin"]
    assert not p["owner"].get(f"/organization/{name}").json()["is_member"]


@pytest.mark.parametrize("who,status", [
    ("member", 403), ("creator", 403), ("outsider", 403), ("auditor", 403),
    ("anonymous", 401)])
def test_team_delete_is_for_admins(registry, p, acme, who, status):
    assert_error(p[who].delete("/organization/acme/team/readers"), status)
    assert "readers" in p["owner"].get("/organization/acme").json()["teams"]


def test_team_delete_unknown(p, acme):
    assert_error(p["owner"].delete("/organization/acme/team/nosuch"), 404)
    assert_error(p["admin"].delete("/organization/nosuchorg/team/x1"), 404)
    assert_error(p["outsider"].delete("/organization/nosuchorg/team/x1"),
                 403)


# -------------------- GET /organization/{org}/team/{team}/members

def test_team_members_as_admin(p, acme):
    res = p["owner"].get("/organization/acme/team/readers/members")
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body) == {"name", "members", "can_edit"}
    assert body["name"] == "readers" and body["can_edit"] is True
    assert [m["name"] for m in body["members"]] == ["acme+bot", "member"]
    for m in body["members"]:
        assert set(m) == MEMBER_KEYS
        assert m["kind"] == "user" and m["invited"] is False
    bot, human = body["members"]
    assert bot["is_robot"] is True and bot["avatar"]["kind"] == "robot"
    assert human["is_robot"] is False


def test_team_members_as_member_of_that_team_only(p, acme):
    body = p["member"].get("/organization/acme/team/readers/members").json()
    assert body["can_edit"] is False and len(body["members"]) == 2
    # Quay's ViewTeamPermission: a member of another team may not look
    assert_error(p["creator"].get("/organization/acme/team/readers/members"),
                 403)
    assert_error(p["member"].get("/organization/acme/team/owners/members"),
                 403)


@pytest.mark.parametrize("who,status", [
    ("outsider", 403), ("anonymous", 401), ("auditor", 200),
    ("admin", 200)])
def test_team_members_permissions(p, acme, who, status):
    res = p[who].get("/organization/acme/team/readers/members")
    if status == 200:
        assert res.status_code == 200
        assert res.json()["can_edit"] is False
    else:
        assert_error(res, status)


def test_team_members_unknown(p, acme):
    assert_error(p["owner"].get("/organization/acme/team/nosuch/members"),
                 404)
    # an outsider cannot tell a missing team from a hidden one
    a = p["outsider"].get("/organization/acme/team/nosuch/members")
    b = p["outsider"].get("/organization/acme/team/readers/members")
    c = p["outsider"].get("/organization/nosuchorg/team/x1/members")
    assert a.status_code == b.status_code == c.status_code == 403
    assert a.json() == b.json() == c.json()


def test_team_members_include_pending_invites_for_admins(registry, p):
    name = new_org(p["owner"])
    put_team(p["owner"], name, "inv", "member")
    sql(registry, "INSERT INTO teammemberinvite (user_id, email, team_id,"
        " inviter_id, invite_token) SELECT NULL, 'x@example.com', t.id,"
        " (SELECT id FROM \"user\" WHERE username = 'owner'),"
        f" md5(random()::text) FROM team t WHERE t.name = 'inv'"
        f" AND t.organization_id = {org_id(registry, name)}")
    path = f"/organization/{name}/team/inv/members"
    assert p["owner"].get(path).json()["members"] == []
    members = p["owner"].get(path, params={"includePending": "true"}) \
        .json()["members"]
    assert len(members) == 1
    assert members[0]["kind"] == "invite" and members[0]["invited"] is True
    assert members[0]["email"] == "x@example.com"


# ----------- PUT /organization/{org}/team/{team}/members/{member}

def test_member_put_adds_a_user_with_an_audit_row(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    put_team(p["owner"], name, "crew", "member")
    res = p["owner"].put(f"/organization/{name}/team/crew/members/member")
    assert res.status_code == 200, res.text
    view = res.json()
    assert set(view) == MEMBER_KEYS
    assert (view["name"], view["is_robot"], view["invited"]) == (
        "member", False, False)
    assert audit(registry, "org_add_team_member", oid) == [
        ("owner", {"member": "member", "team": "crew"})]
    assert p["member"].get(f"/organization/{name}").json()["is_member"]
    body = assert_error(p["owner"].put(
        f"/organization/{name}/team/crew/members/member"), 400)
    assert "already a member" in body["error_message"]
    assert len(audit(registry, "org_add_team_member", oid)) == 1


def test_member_put_robots_only_of_this_organization(registry, p, acme):
    name = new_org(p["owner"])
    put_team(p["owner"], name, "bots", "member")
    sql(registry, "INSERT INTO \"user\" (username, email, robot) VALUES"
        f" ('{name}+builder', gen_random_uuid()::text, true),"
        " ('owner+mine', gen_random_uuid()::text, true)")
    view = add_member(p["owner"], name, "bots", f"{name}+builder")
    assert view["is_robot"] is True
    for robot in ["acme+bot", "owner+mine"]:
        body = assert_error(p["owner"].put(
            f"/organization/{name}/team/bots/members/{robot}"), 400)
        assert "not a member of the organization" in body["error_message"]


@pytest.mark.parametrize("member", ["nobody-here", "acme", "x" * 300,
                                    "acme+nobot"])
def test_member_put_unknown_user_is_400(p, acme, member):
    body = assert_error(p["owner"].put(
        f"/organization/acme/team/readers/members/{member}"), 400)
    assert body["error_message"] == "Unknown user"


def test_member_put_unknown_team_or_org(p, acme):
    assert_error(p["owner"].put(
        "/organization/acme/team/nosuch/members/member"), 404)
    assert_error(p["admin"].put(
        "/organization/nosuchorg/team/owners/members/member"), 404)


@pytest.mark.parametrize("who,status", [
    ("member", 403), ("creator", 403), ("outsider", 403), ("auditor", 403),
    ("anonymous", 401)])
def test_member_put_is_for_admins(registry, p, acme, who, status):
    assert_error(p[who].put(
        "/organization/acme/team/owners/members/outsider"), status)
    assert not p["outsider"].get("/organization/acme").json()["is_member"]


def test_member_put_by_superuser(registry, p):
    name = new_org(p["owner"])
    assert add_member(p["admin"], name, "owners", "ops")["name"] == "ops"
    assert p["ops"].get(f"/organization/{name}").json()["is_admin"]


# -------- DELETE /organization/{org}/team/{team}/members/{member}

def test_member_delete_with_audit_row(registry, p):
    name = new_org(p["owner"])
    oid = org_id(registry, name)
    put_team(p["owner"], name, "crew", "member")
    add_member(p["owner"], name, "crew", "member")
    res = p["owner"].delete(f"/organization/{name}/team/crew/members/member")
    assert res.status_code == 204, res.text
    assert audit(registry, "org_remove_team_member", oid) == [
        ("owner", {"member": "member", "team": "crew"})]
    assert not p["member"].get(f"/organization/{name}").json()["is_member"]
    body = assert_error(p["owner"].delete(
        f"/organization/{name}/team/crew/members/member"), 400)
    assert "does not belong to team" in body["error_message"]


def test_member_delete_unknown(p, acme):
    assert_error(p["owner"].delete(
        "/organization/acme/team/readers/members/nobody-here"), 404)
    assert_error(p["owner"].delete(
        "/organization/acme/team/nosuch/members/member"), 404)
    assert_error(p["admin"].delete(
        "/organization/nosuchorg/team/owners/members/owner"), 404)


@pytest.mark.parametrize("who,status", [
    ("member", 403), ("creator", 403), ("outsider", 403), ("auditor", 403),
    ("anonymous", 401)])
def test_member_delete_is_for_admins(p, acme, who, status):
    assert_error(p[who].delete(
        "/organization/acme/team/readers/members/member"), status)
    assert p["member"].get("/organization/acme").json()["is_member"]


def test_the_last_admin_cannot_be_removed(registry, p):
    name = new_org(p["owner"])
    body = assert_error(p["owner"].delete(
        f"/organization/{name}/team/owners/members/owner"), 400)
    assert body["error_message"] == (
        "User cannot remove themselves from their only admin team.")
    body = assert_error(p["admin"].delete(
        f"/organization/{name}/team/owners/members/owner"), 400)
    assert "no admin left" in body["error_message"]
    # a robot does not count as the admin that keeps the organization
    sql(registry, "INSERT INTO \"user\" (username, email, robot) VALUES"
        f" ('{name}+adm', gen_random_uuid()::text, true)")
    add_member(p["owner"], name, "owners", f"{name}+adm")
    assert_error(p["admin"].delete(
        f"/organization/{name}/team/owners/members/owner"), 400)
    # robots themselves may always be removed
    assert p["owner"].delete(
        f"/organization/{name}/team/owners/members/{name}+adm") \
        .status_code == 204
    # with a second human admin, the first may be removed
    add_member(p["owner"], name, "owners", "victim")
    assert p["victim"].delete(
        f"/organization/{name}/team/owners/members/owner").status_code == 204
    assert not p["owner"].get(f"/organization/{name}").json()["is_admin"]


def test_an_admin_of_another_org_cannot_touch_this_one(registry, p, acme):
    # security catalogue #33: rights in org B say nothing about org A
    mine = new_org(p["outsider"], "own")
    put_team(p["outsider"], mine, "crew", "admin")
    calls = [
        ("put", "/organization/acme", {"email": "x@example.com"}),
        ("delete", "/organization/acme", None),
        ("get", "/organization/acme/members", None),
        ("put", "/organization/acme/team/crew", {"role": "admin"}),
        ("delete", "/organization/acme/team/readers", None),
        ("get", "/organization/acme/team/readers/members", None),
        ("put", "/organization/acme/team/owners/members/outsider", None),
        ("delete", "/organization/acme/team/readers/members/member", None),
    ]
    for method, path, body in calls:
        res = getattr(p["outsider"], method)(path, json=body)
        assert_error(res, 403, "insufficient_scope")
    org = p["owner"].get("/organization/acme").json()
    assert "crew" not in org["teams"] and "readers" in org["teams"]
    assert org["teams"]["readers"]["member_count"] == 2
    assert not p["outsider"].get("/organization/acme").json()["is_member"]


def test_two_admins_removing_each_other_leave_one(registry, p):
    # the functions lock the organization row, so the second removal sees
    # the first and is refused (403 when its caller is no admin any more
    # by the time it runs, 400 when the last-admin check stops it);
    # without the lock both could pass
    from concurrent.futures import ThreadPoolExecutor
    for _ in range(8):
        name = new_org(p["owner"])
        add_member(p["owner"], name, "owners", "victim")
        path = f"/organization/{name}/team/owners/members/"
        with ThreadPoolExecutor(2) as pool:
            a = pool.submit(p["owner"].delete, path + "victim")
            b = pool.submit(p["victim"].delete, path + "owner")
            codes = sorted([a.result().status_code, b.result().status_code])
        assert codes in ([204, 400], [204, 403]), codes
        admins = [p[u].get(f"/organization/{name}").json()["is_admin"]
                  for u in ("owner", "victim")]
        assert sorted(admins) == [False, True]


# --------------------------------------- team roles at /v2/auth

def test_admin_team_gives_admin_on_every_repository(registry, p, acme):
    # acme/app was made by owner; ops joins an admin team that is not
    # "owners"
    put_team(p["owner"], "acme", "ops", "admin")
    add_member(p["owner"], "acme", "ops", "ops")
    assert v2_actions(registry, "ops", "acme/app", "pull,push,delete") == [
        "pull", "push", "delete"]
    # and may create repositories by pushing
    assert v2_actions(registry, "ops", "acme/made-by-ops", "pull,push") == [
        "pull", "push"]
    assert repo_exists(registry, "acme/made-by-ops")


def test_creator_team_creates_repositories_but_reads_no_others(registry, p,
                                                                 acme):
    assert v2_actions(registry, "creator", "acme/new-by-creator",
                      "push") == ["push"]
    assert repo_exists(registry, "acme/new-by-creator")
    # no implicit access to the other repositories of the organization
    assert v2_actions(registry, "creator", "acme/app", "pull,push") == []


def test_member_team_cannot_create_repositories(registry, p, acme):
    assert v2_actions(registry, "member", "acme/not-made", "pull,push") == []
    assert not repo_exists(registry, "acme/not-made")
    # readers has read on acme/app (a team permission), no push
    assert v2_actions(registry, "member", "acme/app", "pull,push") == [
        "pull"]
    assert v2_actions(registry, "outsider", "acme/app", "pull,push") == []


def test_removal_from_the_admin_team_revokes_push_at_the_next_auth(
        registry, p):
    name = new_org(p["owner"])
    assert v2_actions(registry, "owner", f"{name}/svc", "push") == ["push"]
    put_team(p["owner"], name, "deploy", "admin")
    add_member(p["owner"], name, "deploy", "victim")
    assert v2_actions(registry, "victim", f"{name}/svc", "pull,push") == [
        "pull", "push"]
    assert p["owner"].delete(
        f"/organization/{name}/team/deploy/members/victim").status_code == 204
    assert v2_actions(registry, "victim", f"{name}/svc", "pull,push") == []
    # and demoting a team revokes its members' rights the same way
    add_member(p["owner"], name, "deploy", "victim")
    assert v2_actions(registry, "victim", f"{name}/svc", "push") == ["push"]
    put_team(p["owner"], name, "deploy", "member")
    assert v2_actions(registry, "victim", f"{name}/svc", "push") == []


def test_discovery_lists_the_org_routes(registry):
    paths = Api(registry).get("/discovery").json()["paths"]
    assert paths["/api/v1/organization/"]["post"]["x-requires-scope"] == \
        "user:admin"
    team = "/api/v1/organization/{orgname}/team/{teamname}"
    assert set(paths[team]) == {"put", "delete"}
    assert paths[team + "/members/{membername}"]["put"][
        "x-requires-scope"] == "org:admin"
