"""The superuser panel's account routes (endpoints/api/superuser.py):
GET, POST /api/v1/superuser/users/; GET, PUT, DELETE
/api/v1/superuser/users/{username}; GET /api/v1/superuser/organizations/.

Principals: admin (in SUPER_USERS, token with super:user), admin with a
token lacking super:user, auditor (GLOBAL_READONLY_SUPER_USERS), carol (a
normal user whose token has every scope, super:user included), and
anonymous."""

import json

import pytest

from api import (ALL_SCOPES, Api, assert_error, create_token, create_user,
                 principal, sql)


NO_SUPER = "org:admin repo:admin repo:create repo:read repo:write " \
           "user:admin user:read"


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry(GLOBAL_READONLY_SUPER_USERS=["auditor"])


@pytest.fixture(scope="module")
def admin(registry):
    return principal(registry, "admin")


@pytest.fixture(scope="module")
def admin_unscoped(registry, admin):
    return Api(registry, create_token(registry, "admin", NO_SUPER))


@pytest.fixture(scope="module")
def auditor(registry):
    return principal(registry, "auditor")


@pytest.fixture(scope="module")
def carol(registry):
    return principal(registry, "carol")


@pytest.fixture(scope="module")
def anonymous(registry):
    return Api(registry)


def v2_login(registry, username, password):
    host = registry.url.split("//")[1]
    return registry.request("GET", "/v2/auth", params={"service": host},
                            auth=(username, password))


def log_rows(registry, kind, account_id):
    return [json.loads(r[1]) | {"performer": r[0]} for r in sql(
        registry,
        "SELECT COALESCE(p.username, ''), e.metadata_json::text"
        " FROM logentry e JOIN logentrykind k ON k.id = e.kind_id"
        " LEFT JOIN \"user\" p ON p.id = e.performer_id"
        f" WHERE k.name = '{kind}' AND e.account_id = {int(account_id)}"
        " ORDER BY e.id")]


def user_id(registry, name):
    rows = sql(registry, f"SELECT id FROM \"user\" WHERE username = '{name}'")
    return int(rows[0][0]) if rows else None


def make_org(registry, name):
    sql(registry, "INSERT INTO \"user\" (username, email, organization)"
        f" VALUES ('{name}', '{name}@example.com', true)")


USER_KEYS = {"kind", "name", "username", "email", "verified", "avatar",
             "super_user", "global_readonly_super_user", "enabled"}


# Permissions ---------------------------------------------------------------

READ_ROUTES = [("GET", "/superuser/users/"),
               ("GET", "/superuser/users/carol"),
               ("GET", "/superuser/organizations/")]
WRITE_ROUTES = [("POST", "/superuser/users/", {"username": "nobody1"}),
                ("PUT", "/superuser/users/carol", {"enabled": False}),
                ("DELETE", "/superuser/users/carol", None)]


@pytest.mark.parametrize("method,path", READ_ROUTES)
def test_reads_need_a_superuser(registry, admin, admin_unscoped, auditor,
                                carol, anonymous, method, path):
    assert admin.request(method, path).status_code == 200
    assert auditor.request(method, path).status_code == 200
    assert_error(admin_unscoped.request(method, path), 403,
                 "insufficient_scope")
    assert_error(carol.request(method, path), 403, "insufficient_scope")
    assert_error(anonymous.request(method, path), 401, "invalid_token")


@pytest.mark.parametrize("method,path,body", WRITE_ROUTES)
def test_changes_need_a_full_superuser(registry, admin, admin_unscoped,
                                       auditor, carol, anonymous, method,
                                       path, body):
    kw = {"json": body} if body is not None else {}
    for api in (admin_unscoped, auditor, carol):
        assert_error(api.request(method, path, **kw), 403,
                     "insufficient_scope")
    assert_error(anonymous.request(method, path, **kw), 401,
                 "invalid_token")
    # nothing happened
    assert user_id(registry, "nobody1") is None
    assert sql(registry, "SELECT enabled FROM \"user\""
               " WHERE username = 'carol'") == [("t",)]


def test_feature_off_hides_the_routes(start_registry):
    reg = start_registry(FEATURE_SUPER_USERS=False)
    api = principal(reg, "admin")
    assert_error(api.get("/superuser/users/"), 404, "not_found")
    assert_error(api.post("/superuser/users/", json={"username": "zed"}),
                 404, "not_found")
    reg.close()


# GET /superuser/users/ -----------------------------------------------------

def test_list_users(registry, admin, auditor, carol):
    create_user(registry, "dora")
    sql(registry, "UPDATE \"user\" SET enabled = false"
        " WHERE username = 'dora'")
    make_org(registry, "listorg")
    sql(registry, "INSERT INTO \"user\" (username, email, robot)"
        " VALUES ('carol+bot', 'carol+bot@robot', true)")
    res = admin.get("/superuser/users/")
    assert res.status_code == 200, res.text
    users = {u["username"]: u for u in res.json()["users"]}
    assert {"admin", "auditor", "carol", "dora"} <= set(users)
    assert "listorg" not in users and "carol+bot" not in users
    for u in users.values():
        assert set(u) == USER_KEYS
    assert users["admin"]["super_user"] is True
    assert users["admin"]["global_readonly_super_user"] is False
    assert users["auditor"]["super_user"] is False
    assert users["auditor"]["global_readonly_super_user"] is True
    assert users["carol"]["super_user"] is False
    assert users["dora"]["enabled"] is False
    assert users["carol"]["enabled"] is True
    assert users["carol"]["avatar"]["kind"] == "user"
    assert users["carol"]["kind"] == "user"
    assert users["carol"]["name"] == "carol"


def test_list_users_without_disabled(registry, admin):
    create_user(registry, "dora2")
    sql(registry, "UPDATE \"user\" SET enabled = false"
        " WHERE username = 'dora2'")
    names = {u["username"] for u in
             admin.get("/superuser/users/",
                       params={"disabled": "false"}).json()["users"]}
    assert "dora2" not in names and "admin" in names
    names = {u["username"] for u in
             admin.get("/superuser/users/",
                       params={"disabled": "true"}).json()["users"]}
    assert "dora2" in names


def test_list_users_pages_with_limit(registry, admin):
    for i in range(5):
        create_user(registry, f"pager{i}")
    everyone = [u["username"] for u in
                admin.get("/superuser/users/").json()["users"]]
    assert "next_page" not in admin.get("/superuser/users/").json()
    seen, token = [], None
    while True:
        params = {"limit": "2"}
        if token:
            params["next_page"] = token
        res = admin.get("/superuser/users/", params=params)
        assert res.status_code == 200, res.text
        body = res.json()
        assert len(body["users"]) <= 2
        seen += [u["username"] for u in body["users"]]
        token = body.get("next_page")
        if token is None:
            break
    assert seen == everyone


@pytest.mark.parametrize("params,message", [
    ({"limit": "101"}, "Page limit cannot be above 100"),
    ({"limit": "0"}, None),
    ({"limit": "ten"}, None),
    ({"limit": "-1"}, None),
    ({"limit": "5", "next_page": "garbage!"}, None),
    ({"limit": "5", "next_page": "Zm9v"}, None),      # "foo"
])
def test_list_users_bad_paging(admin, params, message):
    body = assert_error(admin.get("/superuser/users/", params=params), 400,
                        "invalid_request")
    if message:
        assert body["error_message"] == message


# GET /superuser/organizations/ ---------------------------------------------

def test_list_organizations(registry, admin, auditor):
    make_org(registry, "orga")
    make_org(registry, "orgb")
    res = auditor.get("/superuser/organizations/")
    assert res.status_code == 200, res.text
    orgs = {o["name"]: o for o in res.json()["organizations"]}
    assert {"orga", "orgb"} <= set(orgs)
    assert "admin" not in orgs and "carol" not in orgs
    assert orgs["orga"] == {"name": "orga", "email": "orga@example.com",
                            "avatar": orgs["orga"]["avatar"]}
    assert orgs["orga"]["avatar"]["kind"] == "org"
    page = admin.get("/superuser/organizations/", params={"limit": "1"})
    assert len(page.json()["organizations"]) == 1
    assert page.json()["next_page"]


# POST /superuser/users/ ----------------------------------------------------

def test_create_user_returns_a_password_that_logs_in(registry, admin):
    res = admin.post("/superuser/users/",
                     json={"username": "newbie",
                           "email": "newbie@example.com"})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["username"] == "newbie"
    assert body["email"] == "newbie@example.com"
    password = body["password"]
    assert isinstance(password, str) and len(password) == 24
    assert v2_login(registry, "newbie", password).status_code == 200
    assert v2_login(registry, "newbie", password + "x").status_code == 401
    row = sql(registry, "SELECT verified, enabled, organization, robot,"
              " removed_tag_expiration_s, uuid IS NOT NULL,"
              " password_hash LIKE '$pbkdf2-sha256$%'"
              " FROM \"user\" WHERE username = 'newbie'")
    assert row == [("t", "t", "f", "f", "1209600", "t", "t")]
    logs = log_rows(registry, "user_create", user_id(registry, "newbie"))
    assert logs == [{"performer": "admin", "username": "newbie",
                     "email": "newbie@example.com", "superuser": "admin"}]
    # and it shows in the superuser view
    view = admin.get("/superuser/users/newbie").json()
    assert view["email"] == "newbie@example.com" and view["enabled"]


def test_create_user_without_email(registry, admin):
    res = admin.post("/superuser/users/", json={"username": "mailless"})
    assert res.status_code == 200, res.text
    assert res.json()["email"] is None
    email = sql(registry, "SELECT email FROM \"user\""
                " WHERE username = 'mailless'")[0][0]
    assert len(email) == 36     # a UUID stands in, as in Quay


def test_create_user_ignores_privileged_fields(registry, admin):
    # security catalogue #32: mass assignment
    res = admin.post("/superuser/users/", json={
        "username": "sneaky", "super_user": True, "superuser": True,
        "enabled": False, "verified": False, "role": "admin",
        "organization": True, "robot": True, "password": "chosen-by-me"})
    assert res.status_code == 200, res.text
    assert res.json()["password"] != "chosen-by-me"
    view = admin.get("/superuser/users/sneaky").json()
    assert view["super_user"] is False and view["enabled"] is True
    assert sql(registry, "SELECT organization, robot FROM \"user\""
               " WHERE username = 'sneaky'") == [("f", "f")]
    assert v2_login(registry, "sneaky", "chosen-by-me").status_code == 401
    assert v2_login(registry, "sneaky",
                    res.json()["password"]).status_code == 200
    # and the new user's own token is no superuser's
    api = Api(registry, create_token(registry, "sneaky", ALL_SCOPES))
    assert_error(api.get("/superuser/users/"), 403, "insufficient_scope")


@pytest.mark.parametrize("body", [
    {},
    {"username": 5},
    {"username": None},
    {"username": "Upper"},
    {"username": "a"},
    {"username": "x" * 256},
    {"username": "bad..dots"},
    {"username": "-lead"},
    {"username": "has space"},
    {"username": "robot+name"},
    {"username": "fine-name", "email": 7},
    {"username": "fine-name", "email": "not-an-email"},
    {"username": "fine-name", "email": "a@nodot"},
])
def test_create_user_rejects_bad_input(registry, admin, body):
    assert_error(admin.post("/superuser/users/", json=body), 400,
                 "invalid_request")
    assert user_id(registry, "fine-name") is None


def test_create_user_rejects_taken_names(registry, admin):
    make_org(registry, "takenorg")
    body = assert_error(admin.post("/superuser/users/",
                                   json={"username": "carol"}),
                        400, "invalid_request")
    assert "taken by user" in body["error_message"]
    body = assert_error(admin.post("/superuser/users/",
                                   json={"username": "takenorg"}),
                        400, "invalid_request")
    assert "organization" in body["error_message"]
    create_user(registry, "mailer")
    sql(registry, "UPDATE \"user\" SET email = 'mailer@example.com'"
        " WHERE username = 'mailer'")
    body = assert_error(admin.post("/superuser/users/",
                                   json={"username": "mailer2",
                                         "email": "mailer@example.com"}),
                        400, "invalid_request")
    assert "already been used" in body["error_message"]


def test_create_user_body_must_be_an_object(admin):
    assert_error(admin.post("/superuser/users/", data="[1]",
                            headers={"Content-Type": "application/json"}),
                 400)


# GET /superuser/users/{username} -------------------------------------------

def test_get_user(admin, auditor, carol):
    res = auditor.get("/superuser/users/carol")
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body) == USER_KEYS
    assert body["username"] == "carol" and body["super_user"] is False
    assert admin.get("/superuser/users/admin").json()["super_user"] is True


@pytest.mark.parametrize("name", ["nosuchuser", "listorg2", "carol+bot2"])
def test_get_user_unknown_org_or_robot_is_404(registry, admin, name):
    if name == "listorg2":
        make_org(registry, name)
    if name == "carol+bot2":
        sql(registry, "INSERT INTO \"user\" (username, email, robot)"
            f" VALUES ('{name}', '{name}@robot', true)")
    assert_error(admin.get(f"/superuser/users/{name}"), 404, "not_found")


# PUT /superuser/users/{username} -------------------------------------------

def test_disable_and_enable_a_user(registry, admin):
    api = principal(registry, "frank")
    assert v2_login(registry, "frank", "frank-password").status_code == 200
    assert api.get("/user/").status_code == 200
    res = admin.put("/superuser/users/frank", json={"enabled": False})
    assert res.status_code == 200, res.text
    assert res.json()["enabled"] is False
    # at once: no login at /v2/auth, no API token
    assert v2_login(registry, "frank", "frank-password").status_code == 401
    assert_error(api.get("/user/"), 401, "invalid_token")
    res = admin.put("/superuser/users/frank", json={"enabled": True})
    assert res.status_code == 200 and res.json()["enabled"] is True
    assert v2_login(registry, "frank", "frank-password").status_code == 200
    assert api.get("/user/").status_code == 200
    uid = user_id(registry, "frank")
    assert log_rows(registry, "user_disable", uid) == [
        {"performer": "admin", "username": "frank", "superuser": "admin"}]
    assert log_rows(registry, "user_enable", uid) == [
        {"performer": "admin", "username": "frank", "superuser": "admin"}]


def test_change_email(registry, admin):
    create_user(registry, "gina")
    old = sql(registry, "SELECT email FROM \"user\""
              " WHERE username = 'gina'")[0][0]
    res = admin.put("/superuser/users/gina",
                    json={"email": "gina@example.org"})
    assert res.status_code == 200, res.text
    assert res.json()["email"] == "gina@example.org"
    assert res.json()["verified"] is True
    assert log_rows(registry, "user_change_email",
                    user_id(registry, "gina")) == [
        {"performer": "admin", "old_email": old,
         "email": "gina@example.org", "superuser": "admin"}]


def test_superusers_cannot_be_changed(registry, admin):
    # nobody disables themselves, nor another superuser
    body = assert_error(admin.put("/superuser/users/admin",
                                  json={"enabled": False}),
                        400, "invalid_request")
    assert body["error_message"] == "Cannot update a superuser"
    assert sql(registry, "SELECT enabled FROM \"user\""
               " WHERE username = 'admin'") == [("t",)]


@pytest.fixture(scope="module")
def hank(registry):
    create_user(registry, "hank")


@pytest.mark.parametrize("body", [
    {"enabled": "false"},
    {"enabled": 0},
    {"enabled": None},
    {"email": 5},
    {"email": "nope"},
    {"password": "new-password-1"},
    {"superuser": True},
    {"super_user": True},
    {"enabled": False, "password": "new-password-1"},
    {"enabled": False, "email": "nope"},
])
def test_update_rejects_bad_or_privileged_input(registry, admin, hank,
                                                body):
    assert_error(admin.put("/superuser/users/hank", json=body), 400,
                 "invalid_request")
    # nothing changed, not even the parts that were valid
    assert sql(registry, "SELECT enabled, email FROM \"user\""
               " WHERE username = 'hank'") == [("t", "hank@localhost")]
    assert v2_login(registry, "hank", "hank-password").status_code == 200


def test_update_email_in_use_is_400(registry, admin):
    create_user(registry, "ivan")
    create_user(registry, "jill")
    sql(registry, "UPDATE \"user\" SET email = 'jill@example.com'"
        " WHERE username = 'jill'")
    body = assert_error(admin.put("/superuser/users/ivan",
                                  json={"email": "jill@example.com"}),
                        400, "invalid_request")
    assert "already been used" in body["error_message"]
    # giving a user the address they already have is no conflict
    assert admin.put("/superuser/users/jill",
                     json={"email": "jill@example.com"}).status_code == 200


def test_update_unknown_user_is_404(admin):
    assert_error(admin.put("/superuser/users/nosuchuser",
                           json={"enabled": False}), 404, "not_found")


def test_update_ignores_unknown_fields(registry, admin):
    create_user(registry, "kim")
    res = admin.put("/superuser/users/kim",
                    json={"role": "admin", "organization": True})
    assert res.status_code == 200, res.text
    assert sql(registry, "SELECT organization FROM \"user\""
               " WHERE username = 'kim'") == [("f",)]


# DELETE /superuser/users/{username} ----------------------------------------

def test_delete_user_removes_everything_of_theirs(registry, admin):
    api = principal(registry, "leo")
    uid = user_id(registry, "leo")
    make_org(registry, "leoorg")
    org = user_id(registry, "leoorg")
    sql(registry,
        "INSERT INTO team (name, organization_id, role_id)"
        f" VALUES ('owners', {org}, 1);"
        "INSERT INTO teammember (user_id, team_id)"
        f" SELECT {uid}, id FROM team WHERE organization_id = {org};"
        "INSERT INTO repository (namespace_user_id, name, visibility_id)"
        f" VALUES ({org}, 'shared', 2);"
        "INSERT INTO repositorypermission (user_id, repository_id, role_id)"
        f" SELECT {uid}, id, 3 FROM repository WHERE namespace_user_id ="
        f" {org};"
        "INSERT INTO \"user\" (username, email, robot)"
        " VALUES ('leo+builder', 'leo+builder@robot', true)")
    robot = user_id(registry, "leo+builder")
    sql(registry, "INSERT INTO teammember (user_id, team_id)"
        f" SELECT {robot}, id FROM team WHERE organization_id = {org}")
    res = admin.delete("/superuser/users/leo")
    assert res.status_code == 204, res.text
    assert res.content == b""
    assert user_id(registry, "leo") is None
    assert user_id(registry, "leo+builder") is None
    for table, col in (("teammember", "user_id"),
                       ("repositorypermission", "user_id"),
                       ("oauthaccesstoken", "authorized_user_id")):
        assert sql(registry, f"SELECT count(*) FROM {table}"
                   f" WHERE {col} IN ({uid}, {robot})") == [("0",)]
    assert_error(api.get("/user/"), 401, "invalid_token")
    assert v2_login(registry, "leo", "leo-password").status_code == 401
    # the audit row outlives the user
    assert log_rows(registry, "user_delete", uid) == [
        {"performer": "admin", "username": "leo", "superuser": "admin"}]
    assert_error(admin.get("/superuser/users/leo"), 404, "not_found")


def test_delete_leaves_similar_names_alone(registry, admin):
    create_user(registry, "mo")
    create_user(registry, "mo_x")
    sql(registry, "INSERT INTO \"user\" (username, email, robot) VALUES"
        " ('mo_x+bot', 'mo_x+bot@robot', true),"
        " ('mox+bot', 'mox+bot@robot', true)")
    assert admin.delete("/superuser/users/mo").status_code == 204
    assert user_id(registry, "mo_x+bot") is not None
    assert user_id(registry, "mox+bot") is not None
    assert user_id(registry, "mo_x") is not None


def test_delete_user_with_repositories_is_400(registry, admin):
    create_user(registry, "nell")
    uid = user_id(registry, "nell")
    sql(registry, "INSERT INTO repository (namespace_user_id, name,"
        f" visibility_id) VALUES ({uid}, 'keep', 2)")
    body = assert_error(admin.delete("/superuser/users/nell"), 400,
                        "invalid_request")
    assert "repositories" in body["error_message"]
    assert user_id(registry, "nell") == uid
    assert log_rows(registry, "user_delete", uid) == []
    sql(registry, f"DELETE FROM repository WHERE namespace_user_id = {uid}")
    assert admin.delete("/superuser/users/nell").status_code == 204


def test_delete_superuser_is_400(registry, admin):
    body = assert_error(admin.delete("/superuser/users/admin"), 400,
                        "invalid_request")
    assert body["error_message"] == "Cannot delete a superuser"
    assert user_id(registry, "admin") is not None


def test_delete_unknown_org_or_robot_is_404(registry, admin):
    make_org(registry, "delorg")
    assert_error(admin.delete("/superuser/users/nosuchuser"), 404,
                 "not_found")
    assert_error(admin.delete("/superuser/users/delorg"), 404, "not_found")
    assert user_id(registry, "delorg") is not None
