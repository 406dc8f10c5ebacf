"""Robot accounts in /api/v1 (quay-behaviour 1.1, 10; endpoints/api/robot.py):
/user/robots... and /organization/{orgname}/robots...: list, get, create,
regenerate, delete and permissions, with Quay's shapes and status codes,
the audit rows, and who may do what (owner, org admin, org member,
outsider, read-only superuser, superuser, anonymous).  Logging in with the
tokens is t/nginx/test_v2_auth_credentials.py's."""

import json
import re

import pytest

from api import (Api, assert_error, create_token, create_user, principal,
                 sql)


TOKEN = re.compile(r"[A-Z0-9]{64}")
DATE = re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} "
                  r"\d\d:\d\d:\d\d -0000")


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry(GLOBAL_READONLY_SUPER_USERS=["auditor"])


def create_org(registry, name, admin, members=()):
    """Organization name with team owners (admin: admin) and team devs
    (role member: members), made in SQL (the org API is another
    branch's)."""
    sql(registry, f"""
        INSERT INTO "user" (username, email, organization)
            VALUES ('{name}', '{name}@example.com', true);
        INSERT INTO team (name, organization_id, role_id)
            SELECT t.n, o.id, r.id FROM "user" o, teamrole r,
                   (VALUES ('owners', 'admin'), ('devs', 'member')) t(n, rn)
             WHERE o.username = '{name}' AND r.name = t.rn;
        INSERT INTO teammember (user_id, team_id)
            SELECT u.id, t.id FROM "user" u, team t
              JOIN "user" o ON o.id = t.organization_id
             WHERE o.username = '{name}' AND t.name = 'owners'
               AND u.username = '{admin}';
        SELECT 1""")
    for m in members:
        sql(registry, f"""
            INSERT INTO teammember (user_id, team_id)
                SELECT u.id, t.id FROM "user" u, team t
                  JOIN "user" o ON o.id = t.organization_id
                 WHERE o.username = '{name}' AND t.name = 'devs'
                   AND u.username = '{m}'""")


def audit(registry, kind):
    """(account, performer, metadata) of the kind's logentry rows."""
    rows = sql(registry, f"""
        SELECT a.username, COALESCE(p.username, ''), e.metadata_json::text
          FROM logentry e JOIN logentrykind k ON k.id = e.kind_id
          JOIN "user" a ON a.id = e.account_id
          LEFT JOIN "user" p ON p.id = e.performer_id
         WHERE k.name = '{kind}' ORDER BY e.id""")
    return [(a, p, json.loads(m)) for a, p, m in rows]


def user_id(registry, name):
    rows = sql(registry, f"SELECT id FROM \"user\" WHERE username = '{name}'")
    return rows[0][0] if rows else None


def make_repo(registry, namespace, name, public=False):
    sql(registry, f"""
        INSERT INTO repository (namespace_user_id, name, visibility_id)
        SELECT u.id, '{name}', v.id FROM "user" u, visibility v
         WHERE u.username = '{namespace}'
           AND v.name = '{"public" if public else "private"}'""")


def grant(registry, robot, repo, role):
    ns, name = repo.split("/", 1)
    sql(registry, f"""
        INSERT INTO repositorypermission (user_id, repository_id, role_id)
        SELECT u.id, r.id, ro.id FROM "user" u, repository r, "user" n,
               role ro
         WHERE u.username = '{robot}' AND n.username = '{ns}'
           AND r.namespace_user_id = n.id AND r.name = '{name}'
           AND ro.name = '{role}'""")


@pytest.fixture(scope="module")
def alice(registry):
    return principal(registry, "alice")


@pytest.fixture(scope="module")
def acme(registry):
    """Organization acme: olivia administers it, mike is a member, eve is
    an outsider, auditor a global read-only superuser, admin a superuser
    (without FEATURE_SUPERUSERS_FULL_ACCESS)."""
    people = {n: principal(registry, n)
              for n in ("olivia", "mike", "eve", "auditor", "admin")}
    create_org(registry, "acme", "olivia", members=["mike"])
    return people


# ------------------------------------------------------ user namespace


def test_create_user_robot_is_201_with_token_and_rows(registry, alice):
    res = alice.put("/user/robots/builder",
                    json={"description": "CI builder <b>\u00e9",
                          "unstructured_metadata": {"team": "ci", "n": 1}})
    assert res.status_code == 201, res.text
    body = res.json()
    assert set(body) == {"name", "created", "last_accessed", "description",
                         "token", "unstructured_metadata"}
    assert body["name"] == "alice+builder"
    assert TOKEN.fullmatch(body["token"])
    assert DATE.fullmatch(body["created"])
    assert body["last_accessed"] is None
    # stored verbatim, escaped only by JSON
    assert body["description"] == "CI builder <b>\u00e9"
    assert body["unstructured_metadata"] == {"team": "ci", "n": 1}

    rid = user_id(registry, "alice+builder")
    rows = sql(registry, f"""
        SELECT u.robot, u.organization, t.token, t.fully_migrated,
               l.name, f.service_ident, m.description
          FROM "user" u
          JOIN robotaccounttoken t ON t.robot_account_id = u.id
          JOIN federatedlogin f ON f.user_id = u.id
          JOIN loginservice l ON l.id = f.service_id
          JOIN robotaccountmetadata m ON m.robot_account_id = u.id
         WHERE u.id = {rid}""")
    robot, org, token, migrated, service, ident, descr = rows[0]
    assert (robot, org, migrated) == ("t", "f", "t")
    # the token is stored encrypted, never in the clear
    assert token.startswith("v1$$") and body["token"] not in token
    assert (service, ident) == ("quayrobot", f"robot:{rid}")
    assert descr == "CI builder <b>\u00e9"

    assert ("alice", "alice", {"robot": "builder",
                               "description": "CI builder <b>\u00e9",
                               "unstructured_metadata": {"team": "ci",
                                                         "n": 1}}) \
        in audit(registry, "create_robot")


def test_get_user_robot_shows_the_token_decrypted(alice):
    created = alice.put("/user/robots/getter").json()
    res = alice.get("/user/robots/getter")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body == {"name": "alice+getter", "created": created["created"],
                    "last_accessed": None, "description": "",
                    "token": created["token"], "unstructured_metadata": {}}


def test_create_without_body_and_with_null_fields(alice):
    res = alice.put("/user/robots/plain")
    assert res.status_code == 201, res.text
    assert res.json()["description"] == ""
    res = alice.put("/user/robots/nulls",
                    json={"description": None,
                          "unstructured_metadata": None})
    assert res.status_code == 201, res.text
    assert res.json()["unstructured_metadata"] == {}


def test_create_existing_robot_is_400(alice):
    assert alice.put("/user/robots/twice").status_code == 201
    body = assert_error(alice.put("/user/robots/twice"), 400,
                        "invalid_request")
    assert "Existing robot with name: alice+twice" in body["error_message"]


@pytest.mark.parametrize("short", [
    "a",                 # too short
    "A" + "b" * 5,       # upper case
    "1abc",              # must start with a letter
    "ab-c", "ab.c",      # only [a-z0-9_]
    "a%2Bb",             # a '+' of its own
    "caf%C3%A9",         # not ASCII
    "x" * 250,           # alice+ and 250 is over 255
])
def test_bad_robot_names_are_400(registry, alice, short):
    assert_error(alice.put(f"/user/robots/{short}"), 400, "invalid_request")
    assert sql(registry, "SELECT count(*) FROM \"user\" WHERE robot AND"
               " username NOT LIKE 'alice+%' AND username NOT LIKE"
               " 'acme+%'") == [("0",)]


def test_longest_robot_name_fits(alice):
    short = "r" * (255 - len("alice+"))
    res = alice.put(f"/user/robots/{short}")
    assert res.status_code == 201, res.text
    assert res.json()["name"] == "alice+" + short
    assert alice.delete(f"/user/robots/{short}").status_code == 204


@pytest.mark.parametrize("body", [
    {"description": 5},
    {"description": ["x"]},
    {"description": "d" * 256},
    {"unstructured_metadata": [1, 2]},
    {"unstructured_metadata": "text"},
])
def test_bad_create_bodies_are_400(registry, alice, body):
    assert_error(alice.put("/user/robots/badbody", json=body), 400,
                 "invalid_request")
    assert user_id(registry, "alice+badbody") is None


def test_non_object_body_is_400(alice):
    res = alice.put("/user/robots/arraybody", data="[1]",
                    headers={"Content-Type": "application/json"})
    assert_error(res, 400)


def test_list_user_robots_with_tokens_by_default(alice):
    alice.put("/user/robots/lister")
    res = alice.get("/user/robots")
    assert res.status_code == 200, res.text
    robots = {r["name"]: r for r in res.json()["robots"]}
    assert "alice+lister" in robots
    item = robots["alice+lister"]
    assert TOKEN.fullmatch(item["token"])
    assert item["token"] == alice.get("/user/robots/lister").json()["token"]
    assert {"name", "created", "last_accessed", "description",
            "token"} <= set(item)
    assert "teams" not in item and "repositories" not in item
    # every robot of alice's namespace, and only those
    assert all(n.startswith("alice+") for n in robots)


def test_list_token_false_hides_tokens(alice):
    robots = alice.get("/user/robots", params={"token": "false"}).json()[
        "robots"]
    assert robots and all("token" not in r for r in robots)


def test_list_with_permissions_shows_teams_and_repositories(registry,
                                                            alice):
    alice.put("/user/robots/perm")
    make_repo(registry, "alice", "withperm")
    grant(registry, "alice+perm", "alice/withperm", "write")
    robots = {r["name"]: r for r in alice.get(
        "/user/robots", params={"permissions": "true"}).json()["robots"]}
    assert robots["alice+perm"]["repositories"] == ["withperm"]
    assert robots["alice+perm"]["teams"] == []
    assert robots["alice+lister"]["repositories"] == []


def test_list_limit(alice):
    assert len(alice.get("/user/robots", params={"limit": "1"}).json()[
        "robots"]) == 1
    assert alice.get("/user/robots", params={"limit": "0"}).json()[
        "robots"] == []
    for bad in ("abc", "-1", "1.5", "99999999999"):
        assert_error(alice.get("/user/robots", params={"limit": bad}), 400,
                     "invalid_request")


def test_robot_permissions(registry, alice):
    alice.put("/user/robots/perms")
    make_repo(registry, "alice", "pa")
    make_repo(registry, "alice", "pb", public=True)
    grant(registry, "alice+perms", "alice/pa", "read")
    grant(registry, "alice+perms", "alice/pb", "admin")
    res = alice.get("/user/robots/perms/permissions")
    assert res.status_code == 200, res.text
    assert res.json() == {"permissions": [
        {"repository": {"name": "pa", "is_public": False}, "role": "read"},
        {"repository": {"name": "pb", "is_public": True}, "role": "admin"},
    ]}
    assert alice.get("/user/robots/plain/permissions").json() == {
        "permissions": []}
    assert_error(alice.get("/user/robots/nosuch/permissions"), 400,
                 "invalid_request")


def test_regenerate_replaces_the_token(registry, alice):
    old = alice.put("/user/robots/regen").json()["token"]
    before = sql(registry, "SELECT uuid FROM \"user\" WHERE username ="
                 " 'alice+regen'")
    res = alice.post("/user/robots/regen/regenerate")
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body) == {"name", "created", "last_accessed", "description",
                         "token"}
    assert body["name"] == "alice+regen"
    assert TOKEN.fullmatch(body["token"]) and body["token"] != old
    assert alice.get("/user/robots/regen").json()["token"] == body["token"]
    assert sql(registry, "SELECT uuid FROM \"user\" WHERE username ="
               " 'alice+regen'") != before
    assert ("alice", "alice", {"robot": "regen"}) in audit(
        registry, "regenerate_robot_token")


def test_regenerate_missing_robot_is_400(alice):
    body = assert_error(alice.post("/user/robots/nosuch/regenerate"), 400,
                        "invalid_request")
    assert "Could not find robot" in body["error_message"]


def test_delete_removes_robot_token_permissions_and_teams(registry, alice,
                                                          acme):
    alice.put("/user/robots/doomed")
    rid = user_id(registry, "alice+doomed")
    make_repo(registry, "alice", "doomedrepo")
    grant(registry, "alice+doomed", "alice/doomedrepo", "write")
    sql(registry, f"""INSERT INTO teammember (user_id, team_id)
        SELECT {rid}, t.id FROM team t JOIN "user" o
            ON o.id = t.organization_id
         WHERE o.username = 'acme' AND t.name = 'devs'""")

    res = alice.delete("/user/robots/doomed")
    assert res.status_code == 204, res.text
    assert res.content == b""
    for table, column in [("\"user\"", "id"),
                          ("robotaccounttoken", "robot_account_id"),
                          ("robotaccountmetadata", "robot_account_id"),
                          ("federatedlogin", "user_id"),
                          ("repositorypermission", "user_id"),
                          ("teammember", "user_id")]:
        assert sql(registry, f"SELECT count(*) FROM {table}"
                   f" WHERE {column} = {rid}") == [("0",)], table
    assert ("alice", "alice", {"robot": "doomed"}) in audit(
        registry, "delete_robot")
    assert_error(alice.get("/user/robots/doomed"), 400, "invalid_request")
    assert_error(alice.delete("/user/robots/doomed"), 400, "invalid_request")


def test_robot_used_by_a_mirror_is_not_deleted(registry, alice):
    alice.put("/user/robots/mirrorbot")
    make_repo(registry, "alice", "mirrored")
    sql(registry, """
        WITH r AS (SELECT id FROM repository WHERE name = 'mirrored'),
             rule AS (INSERT INTO repomirrorrule (repository_id)
                      SELECT id FROM r RETURNING id)
        INSERT INTO repomirrorconfig (repository_id, internal_robot_id,
                                      external_reference, root_rule_id)
        SELECT r.id, u.id, 'quay.io/x/y', rule.id FROM r, rule, "user" u
         WHERE u.username = 'alice+mirrorbot'""")
    body = assert_error(alice.delete("/user/robots/mirrorbot"), 400,
                        "invalid_request")
    assert body["error_message"] == "Robot is being used by a mirror"
    assert user_id(registry, "alice+mirrorbot") is not None


def test_other_users_see_only_their_own_robots(registry, alice, acme):
    eve = acme["eve"]
    assert eve.get("/user/robots").json() == {"robots": []}
    # /user/robots/builder is eve+builder for eve
    assert_error(eve.get("/user/robots/builder"), 400, "invalid_request")
    assert_error(eve.delete("/user/robots/builder"), 400)
    assert_error(eve.post("/user/robots/builder/regenerate"), 400)
    assert user_id(registry, "alice+builder") is not None


def test_user_routes_need_user_admin_scope(registry, alice):
    create_user(registry, "scoped")
    narrow = Api(registry, create_token(registry, "scoped",
                                        "user:read repo:admin org:admin"))
    for method, path in [("GET", "/user/robots"),
                         ("GET", "/user/robots/x1"),
                         ("PUT", "/user/robots/x1"),
                         ("DELETE", "/user/robots/x1"),
                         ("POST", "/user/robots/x1/regenerate"),
                         ("GET", "/user/robots/x1/permissions")]:
        assert_error(narrow.request(method, path), 403, "insufficient_scope")
    assert user_id(registry, "scoped+x1") is None


@pytest.mark.parametrize("method,path", [
    ("GET", "/user/robots"), ("GET", "/user/robots/builder"),
    ("PUT", "/user/robots/anon"), ("DELETE", "/user/robots/builder"),
    ("POST", "/user/robots/builder/regenerate"),
    ("GET", "/user/robots/builder/permissions"),
    ("GET", "/organization/acme/robots"),
    ("PUT", "/organization/acme/robots/anon"),
])
def test_anonymous_gets_401(registry, alice, acme, method, path):
    assert_error(Api(registry).request(method, path), 401, "invalid_token")


# -------------------------------------------------------- organizations


def test_org_admin_creates_gets_and_lists_robots(registry, acme):
    olivia = acme["olivia"]
    res = olivia.put("/organization/acme/robots/deployer",
                     json={"description": "deploys"})
    assert res.status_code == 201, res.text
    created = res.json()
    assert created["name"] == "acme+deployer"
    assert TOKEN.fullmatch(created["token"])
    assert ("acme", "olivia", {"robot": "deployer", "description": "deploys",
                               "unstructured_metadata": {}}) \
        in audit(registry, "create_robot")

    got = olivia.get("/organization/acme/robots/deployer").json()
    assert got["token"] == created["token"]
    assert got["description"] == "deploys"

    listed = olivia.get("/organization/acme/robots").json()["robots"]
    assert [r["name"] for r in listed] == ["acme+deployer"]
    assert listed[0]["token"] == created["token"]


def test_org_list_with_permissions_shows_teams(registry, acme):
    olivia = acme["olivia"]
    olivia.put("/organization/acme/robots/teamed")
    sql(registry, """INSERT INTO teammember (user_id, team_id)
        SELECT u.id, t.id FROM "user" u, team t JOIN "user" o
            ON o.id = t.organization_id
         WHERE o.username = 'acme' AND t.name = 'devs'
           AND u.username = 'acme+teamed'""")
    robots = {r["name"]: r for r in olivia.get(
        "/organization/acme/robots",
        params={"permissions": "true"}).json()["robots"]}
    teams = robots["acme+teamed"]["teams"]
    assert [t["name"] for t in teams] == ["devs"]
    assert teams[0]["avatar"]["kind"] == "team"


def test_org_admin_regenerates_and_deletes(registry, acme):
    olivia = acme["olivia"]
    old = olivia.put("/organization/acme/robots/shortlived").json()["token"]
    res = olivia.post("/organization/acme/robots/shortlived/regenerate")
    assert res.status_code == 200 and res.json()["token"] != old
    assert ("acme", "olivia", {"robot": "shortlived"}) in audit(
        registry, "regenerate_robot_token")
    assert olivia.delete(
        "/organization/acme/robots/shortlived").status_code == 204
    assert ("acme", "olivia", {"robot": "shortlived"}) in audit(
        registry, "delete_robot")
    assert user_id(registry, "acme+shortlived") is None


def test_org_member_lists_without_tokens_and_changes_nothing(registry,
                                                              acme):
    acme["olivia"].put("/organization/acme/robots/memberview")
    mike = acme["mike"]
    res = mike.get("/organization/acme/robots")
    assert res.status_code == 200, res.text
    robots = res.json()["robots"]
    assert "acme+memberview" in [r["name"] for r in robots]
    assert all("token" not in r for r in robots)
    # not even when asked for
    robots = mike.get("/organization/acme/robots",
                      params={"token": "true",
                              "permissions": "true"}).json()["robots"]
    assert all("token" not in r and "teams" not in r for r in robots)

    for method, path in [
            ("GET", "/organization/acme/robots/memberview"),
            ("GET", "/organization/acme/robots/memberview/permissions"),
            ("PUT", "/organization/acme/robots/bymike"),
            ("DELETE", "/organization/acme/robots/memberview"),
            ("POST", "/organization/acme/robots/memberview/regenerate")]:
        assert_error(mike.request(method, path), 403, "insufficient_scope")
    assert user_id(registry, "acme+bymike") is None
    assert user_id(registry, "acme+memberview") is not None


def test_outsider_gets_the_same_403_for_real_and_missing_orgs(registry,
                                                              acme):
    acme["olivia"].put("/organization/acme/robots/secret")
    eve = acme["eve"]
    bodies = []
    for org in ("acme", "nosuchorg", "ACME", "alice"):
        for method, path in [
                ("GET", f"/organization/{org}/robots"),
                ("GET", f"/organization/{org}/robots/secret"),
                ("GET", f"/organization/{org}/robots/secret/permissions"),
                ("PUT", f"/organization/{org}/robots/byeve"),
                ("DELETE", f"/organization/{org}/robots/secret"),
                ("POST", f"/organization/{org}/robots/secret/regenerate")]:
            res = eve.request(method, path)
            bodies.append(assert_error(res, 403, "insufficient_scope"))
    assert all(b == bodies[0] for b in bodies)
    assert user_id(registry, "acme+byeve") is None
    assert user_id(registry, "acme+secret") is not None
    # alice is a user, not an organization: no robots through this route
    assert user_id(registry, "alice+byeve") is None


def test_readonly_superuser_reads_without_tokens(registry, acme):
    acme["olivia"].put("/organization/acme/robots/audited")
    auditor = acme["auditor"]
    res = auditor.get("/organization/acme/robots")
    assert res.status_code == 200, res.text
    assert all("token" not in r for r in res.json()["robots"])
    res = auditor.get("/organization/acme/robots/audited")
    assert res.status_code == 200, res.text
    assert "token" not in res.json()
    assert res.json()["name"] == "acme+audited"
    assert auditor.get("/organization/acme/robots/audited/permissions"
                       ).status_code == 200
    assert_error(auditor.get("/organization/nosuchorg/robots"), 404,
                 "not_found")
    assert_error(auditor.put("/organization/acme/robots/byauditor"), 403)
    assert_error(auditor.delete("/organization/acme/robots/audited"), 403)


def test_superuser_without_full_access_is_an_outsider(acme):
    admin = acme["admin"]
    assert_error(admin.get("/organization/acme/robots"), 403)
    assert_error(admin.put("/organization/acme/robots/byadmin"), 403)


def test_org_routes_need_org_admin_scope(registry, acme):
    olivia = Api(registry, create_token(registry, "olivia",
                                        "user:admin repo:admin"))
    assert_error(olivia.get("/organization/acme/robots"), 403,
                 "insufficient_scope")
    assert_error(olivia.put("/organization/acme/robots/noscope"), 403,
                 "insufficient_scope")
    assert user_id(registry, "acme+noscope") is None


def test_org_missing_robot_is_400_for_admins(acme):
    olivia = acme["olivia"]
    for method, path in [("GET", "/organization/acme/robots/ghost"),
                         ("DELETE", "/organization/acme/robots/ghost"),
                         ("POST", "/organization/acme/robots/ghost/regenerate"),
                         ("GET", "/organization/acme/robots/ghost/"
                                 "permissions"),
                         ("GET", "/organization/acme/robots/Bad-Name")]:
        body = assert_error(olivia.request(method, path), 400,
                            "invalid_request")
        assert "Could not find robot" in body["error_message"]


def test_user_robot_is_not_reachable_as_an_org_robot(registry, alice, acme):
    # alice+builder exists; "alice" is no organization
    assert_error(alice.get("/organization/alice/robots/builder"), 403)
    assert_error(alice.delete("/organization/alice/robots/builder"), 403)
    assert user_id(registry, "alice+builder") is not None


def test_discovery_lists_the_robot_routes(registry):
    paths = Api(registry).get("/discovery").json()["paths"]
    assert paths["/api/v1/user/robots"]["get"]["x-requires-scope"] \
        == "user:admin"
    org = paths["/api/v1/organization/{orgname}/robots/{robot_shortname}"]
    assert set(org) >= {"get", "put", "delete"}
    assert org["put"]["x-requires-scope"] == "org:admin"


def test_admin_of_one_org_cannot_touch_another_orgs_robots(registry, acme):
    """Security catalogue #33: cross-organization references."""
    gina = principal(registry, "gina")
    create_org(registry, "globex", "gina")
    token = gina.put("/organization/globex/robots/crossed").json()["token"]
    olivia = acme["olivia"]
    for method, path in [
            ("GET", "/organization/globex/robots"),
            ("GET", "/organization/globex/robots/crossed"),
            ("GET", "/organization/globex/robots/crossed/permissions"),
            ("PUT", "/organization/globex/robots/byolivia"),
            ("DELETE", "/organization/globex/robots/crossed"),
            ("POST", "/organization/globex/robots/crossed/regenerate")]:
        res = olivia.request(method, path)
        assert_error(res, 403, "insufficient_scope")
        assert token not in res.text
    assert gina.get("/organization/globex/robots/crossed").json()[
        "token"] == token
    assert user_id(registry, "globex+byolivia") is None
