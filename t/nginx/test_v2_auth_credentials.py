"""/v2/auth with every kind of Basic credentials (quay-behaviour 3.1, 3.3,
3.4, 2.8; security catalogue B2 #35, #36): robot accounts ("ns+short" and
their 64-character token), app-specific tokens ("$app"), OAuth tokens
("$oauthtoken", capped by their scopes), revocation at the next /v2/auth,
the throttle and audit rows for failures of every kind, and which pushes
mirrored and read-only repositories take."""

import base64
import json

import pytest

from api import Api, create_token, create_user, principal, sql
from harness import wait_until


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


def get_token(registry, scopes=(), auth=None):
    params = [("service", registry.url.split("//")[1])]
    params += [("scope", s) for s in scopes]
    return registry.request("GET", "/v2/auth", params=params, auth=auth)


def claims(token):
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def actions(registry, auth, repo, asked="pull,push"):
    """The actions /v2/auth grants auth on repo (it must log in)."""
    r = get_token(registry, [f"repository:{repo}:{asked}"], auth=auth)
    assert r.status_code == 200, r.text
    return claims(r.json()["token"])["access"][0]["actions"]


def refused(registry, auth):
    r = get_token(registry, ["repository:acme/app:pull"], auth=auth)
    assert r.status_code == 401, r.text
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    return r


def grant(registry, who, repo, role):
    ns, name = repo.split("/", 1)
    sql(registry, f"""
        INSERT INTO repositorypermission (user_id, repository_id, role_id)
        SELECT u.id, r.id, ro.id FROM "user" u, repository r, "user" n,
               role ro
         WHERE u.username = '{who}' AND n.username = '{ns}'
           AND r.namespace_user_id = n.id AND r.name = '{name}'
           AND ro.name = '{role}'""")


def audit(registry, kind):
    rows = sql(registry, f"""
        SELECT a.username, COALESCE(p.username, ''), e.metadata_json::text
          FROM logentry e JOIN logentrykind k ON k.id = e.kind_id
          JOIN "user" a ON a.id = e.account_id
          LEFT JOIN "user" p ON p.id = e.performer_id
         WHERE k.name = '{kind}' ORDER BY e.id""")
    return [(a, p, json.loads(m)) for a, p, m in rows]


@pytest.fixture(scope="module")
def world(registry):
    """alice (a user with alice/app), olivia administering organization
    acme (with acme/app), and API clients for both."""
    apis = {n: principal(registry, n) for n in ("alice", "olivia", "bob")}
    sql(registry, """
        INSERT INTO "user" (username, email, organization)
            VALUES ('acme', 'acme@example.com', true);
        INSERT INTO team (name, organization_id, role_id)
            SELECT t.n, o.id, r.id FROM "user" o, teamrole r,
                   (VALUES ('owners', 'admin'), ('pushers', 'member'))
                   t(n, rn)
             WHERE o.username = 'acme' AND r.name = t.rn;
        INSERT INTO teammember (user_id, team_id)
            SELECT u.id, t.id FROM "user" u, team t
             WHERE u.username = 'olivia' AND t.name = 'owners';
        SELECT 1""")
    for user, repo in (("alice", "alice/app"), ("olivia", "acme/app")):
        assert actions(registry, (user, user + "-password"), repo) \
            == ["pull", "push"]
    return apis


def robot(world, name, org="acme"):
    """Creates robot org+name through the API; returns (login, token)."""
    api = world["olivia"] if org == "acme" else world[org]
    path = (f"/organization/{org}/robots/{name}" if org == "acme"
            else f"/user/robots/{name}")
    res = api.put(path)
    assert res.status_code == 201, res.text
    return (f"{org}+{name}", res.json()["token"])


# ------------------------------------------------------------------ robots


def test_robot_with_write_permission_pulls_and_pushes(registry, world):
    creds = robot(world, "writer")
    grant(registry, "acme+writer", "acme/app", "write")
    r = get_token(registry, ["repository:acme/app:pull,push,delete"],
                  auth=creds)
    assert r.status_code == 200, r.text
    c = claims(r.json()["token"])
    assert c["sub"] == "acme+writer"
    assert c["access"][0]["actions"] == ["pull", "push"]
    assert c["context"]["entity_kind"] == "robot"
    assert c["context"]["entity_reference"] == "acme+writer"
    assert c["context"]["kind"] == "user"
    assert c["context"]["user"] == "acme+writer"
    rid = sql(registry, "SELECT id FROM \"user\" WHERE username ="
              " 'acme+writer'")[0][0]
    assert c["context"]["user_id"] == rid

    # the token works on /v2/
    tags = registry.request("GET", "/v2/acme/app/tags/list", headers={
        "Authorization": "Bearer " + r.json()["token"]})
    assert tags.status_code in (200, 404), tags.text

    ok = wait_until(lambda: [a for a in audit(registry, "login_success")
                             if a[1] == "acme+writer"], 10,
                    "robot login_success row")
    assert ok[0][0] == "acme"
    wait_until(lambda: sql(registry, "SELECT last_accessed IS NOT NULL"
                           " FROM \"user\" WHERE username = 'acme+writer'")
               == [("t",)], 10, "robot last_accessed")
    listed = world["olivia"].get("/organization/acme/robots").json()
    assert [r["last_accessed"] for r in listed["robots"]
            if r["name"] == "acme+writer"][0] is not None


def test_robot_rights_come_only_from_its_permissions(registry, world):
    creds = robot(world, "reader")
    # no permission: a login, but nothing on the repository
    assert actions(registry, creds, "acme/app") == []
    grant(registry, "acme+reader", "acme/app", "read")
    assert actions(registry, creds, "acme/app", "pull,push,delete") \
        == ["pull"]
    # and never the rights of its namespace: no creation on push either
    assert actions(registry, creds, "acme/newrepo") == []
    assert sql(registry, "SELECT count(*) FROM repository WHERE name ="
               " 'newrepo'") == [("0",)]


def test_robot_rights_through_a_team(registry, world):
    creds = robot(world, "teamed")
    sql(registry, """
        INSERT INTO teammember (user_id, team_id)
            SELECT u.id, t.id FROM "user" u, team t
             WHERE u.username = 'acme+teamed' AND t.name = 'pushers';
        INSERT INTO repositorypermission (team_id, repository_id, role_id)
            SELECT t.id, r.id, ro.id FROM team t, repository r, role ro,
                   "user" o
             WHERE t.name = 'pushers' AND o.username = 'acme'
               AND r.namespace_user_id = o.id AND r.name = 'app'
               AND ro.name = 'write'""")
    assert actions(registry, creds, "acme/app") == ["pull", "push"]


def test_user_namespace_robot_is_not_its_owner(registry, world):
    creds = robot(world, "helper", org="alice")
    assert actions(registry, creds, "alice/app", "pull,push,delete") == []
    assert actions(registry, creds, "alice/created-by-robot") == []
    grant(registry, "alice+helper", "alice/app", "write")
    assert actions(registry, creds, "alice/app") == ["pull", "push"]


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),   # last character
    lambda t: ("A" if t[0] != "A" else "B") + t[1:],     # first character
    lambda t: t[:-1],                                     # 63 characters
    lambda t: t + "A",                                    # 65 characters
    lambda t: t.lower(),
    lambda t: "\u00e9" * 64,
], ids=["last", "first", "short", "long", "lower", "unicode"])
def test_wrong_robot_tokens_are_401(registry, world, mangle):
    login, token = robot(world, "wrong" + str(abs(hash(mangle)) % 10000))
    grant(registry, login, "acme/app", "write")
    refused(registry, (login, mangle(token)))
    assert actions(registry, (login, token), "acme/app") == ["pull", "push"]


def test_a_robot_token_is_only_its_own(registry, world):
    one = robot(world, "one")
    two = robot(world, "two")
    refused(registry, (one[0], two[1]))
    refused(registry, ("acme+nosuchrobot", one[1]))
    # the namespace part matters too
    refused(registry, ("alice+one", one[1]))
    for odd in ("acme+", "+one", "acme++one", "acme+one+x", "ACME+one",
                "acme+one\u00e9", "acme +one"):
        refused(registry, (odd, one[1]))


def test_failed_robot_login_is_audited(registry, world):
    login, token = robot(world, "audited")
    refused(registry, (login, "X" * 64))
    rows = wait_until(lambda: [a for a in audit(registry, "login_failure")
                               if a[2].get("username") == login], 10,
                      "robot login_failure row")
    assert rows[0][0] == "acme"
    assert rows[0][2] == {"type": "v2auth", "kind": "robot",
                          "username": login}
    assert token not in json.dumps(rows)


def test_regenerated_token_replaces_the_old_one(registry, world):
    login, old = robot(world, "regen")
    grant(registry, login, "acme/app", "read")
    assert actions(registry, (login, old), "acme/app") == ["pull"]
    res = world["olivia"].post("/organization/acme/robots/regen/regenerate")
    new = res.json()["token"]
    refused(registry, (login, old))
    assert actions(registry, (login, new), "acme/app") == ["pull"]


def test_deleted_robot_is_refused_at_the_next_login(registry, world):
    login, token = robot(world, "deleted")
    grant(registry, login, "acme/app", "write")
    assert actions(registry, (login, token), "acme/app") == ["pull", "push"]
    assert world["olivia"].delete(
        "/organization/acme/robots/deleted").status_code == 204
    refused(registry, (login, token))
    # a robot made again under the same name does not take the old token
    again = robot(world, "deleted")
    refused(registry, (login, token))
    assert actions(registry, again, "acme/app") == []


def test_robot_of_a_disabled_namespace_is_refused(registry, world):
    create_user(registry, "carol")
    carol = Api(registry, create_token(registry, "carol"))
    token = carol.put("/user/robots/bot").json()["token"]
    assert get_token(registry, auth=("carol+bot", token)).status_code == 200
    sql(registry, "UPDATE \"user\" SET enabled = false WHERE username ="
        " 'carol'")
    refused(registry, ("carol+bot", token))


def test_disabled_robot_is_refused(registry, world):
    login, token = robot(world, "disabled")
    sql(registry, f"UPDATE \"user\" SET enabled = false WHERE username ="
        f" '{login}'")
    refused(registry, (login, token))


def test_robot_failures_are_throttled(registry, world):
    login, token = robot(world, "throttled")
    other = robot(world, "unthrottled")
    for _ in range(5):
        refused(registry, (login, "Y" * 64))
    r = get_token(registry, auth=(login, token))
    assert r.status_code == 429, r.text
    assert int(r.headers["Retry-After"]) > 0
    # per login: another robot is not slowed down
    assert get_token(registry, auth=other).status_code == 200


def test_app_and_oauth_failures_are_throttled_per_client(registry, world,
                                                          redis):
    """Failures count against the login "$app" or "$oauthtoken" from this
    address, as a password's count against its username."""
    token = app_token(world, title="throttle")
    for _ in range(5):
        refused(registry, ("$app", token["token_code"][:60] + "Z" * 60))
    r = get_token(registry, auth=("$app", token["token_code"]))
    assert r.status_code == 429, r.text
    # the window is Redis's: drop it so later tests start afresh
    redis.cli("DEL", "quay:loginfail:$app:127.0.0.1")
    assert get_token(registry, auth=("$app", token["token_code"])) \
        .status_code == 200


# ------------------------------------------------------ app-specific tokens


def app_token(world, user="alice", title="ci"):
    res = world[user].post("/user/apptoken", json={"title": title})
    assert res.status_code == 200, res.text
    return res.json()["token"]


def test_app_token_logs_in_as_its_user(registry, world):
    token = app_token(world)
    r = get_token(registry, ["repository:alice/app:pull,push"],
                  auth=("$app", token["token_code"]))
    assert r.status_code == 200, r.text
    c = claims(r.json()["token"])
    assert c["sub"] == "alice"
    assert c["access"][0]["actions"] == ["pull", "push"]
    assert c["context"]["entity_kind"] == "appspecifictoken"
    assert c["context"]["entity_reference"] == token["uuid"]
    assert c["context"]["kind"] == "user"
    wait_until(lambda: world["alice"].get(
        f"/user/apptoken/{token['uuid']}").json()["token"]["last_accessed"],
        10, "app token last_accessed")
    rows = wait_until(lambda: [a for a in audit(registry, "login_success")
                               if a[:2] == ("alice", "alice")], 10,
                      "login_success row")
    assert rows


@pytest.mark.parametrize("mangle", [
    lambda c: c[:60] + ("A" if c[60] != "A" else "B") + c[61:],
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),
    lambda c: c[:-1],
    lambda c: c + "A",
    lambda c: c[:60],
    lambda c: c[:59],
    lambda c: ("A" if c[0] != "A" else "B") + c[1:],
    lambda c: c[:60] + "\u00e9" * 60,
], ids=["secret-first", "secret-last", "119", "121", "name-only", "59",
        "name-first", "unicode"])
def test_wrong_app_tokens_are_401(registry, world, mangle):
    token = app_token(world)
    refused(registry, ("$app", mangle(token["token_code"])))
    assert get_token(registry, auth=("$app", token["token_code"])) \
        .status_code == 200


def test_expired_revoked_and_disabled_app_tokens_are_401(registry, world):
    expired = app_token(world, title="expired")
    sql(registry, "UPDATE appspecificauthtoken SET expiration = now()"
        f" - interval '1 second' WHERE uuid = '{expired['uuid']}'")
    refused(registry, ("$app", expired["token_code"]))

    revoked = app_token(world, title="revoked")
    assert get_token(registry, auth=("$app", revoked["token_code"])) \
        .status_code == 200
    assert world["alice"].delete(
        f"/user/apptoken/{revoked['uuid']}").status_code == 204
    refused(registry, ("$app", revoked["token_code"]))

    bobs = app_token(world, user="bob")
    sql(registry, "UPDATE \"user\" SET enabled = false WHERE username ="
        " 'bob'")
    try:
        refused(registry, ("$app", bobs["token_code"]))
    finally:
        sql(registry, "UPDATE \"user\" SET enabled = true WHERE username ="
            " 'bob'")
    rows = wait_until(lambda: [a for a in audit(registry, "login_failure")
                               if a[2].get("kind") == "app_specific_token"],
                      10, "app token login_failure rows")
    assert {a[0] for a in rows} >= {"alice", "bob"}


def test_app_tokens_need_the_feature(registry, start_registry, world):
    token = app_token(world, title="feature")
    off = start_registry(DB_URI=registry.db_uri,
                         FEATURE_APP_SPECIFIC_TOKENS=False)
    refused(off, ("$app", token["token_code"]))
    assert get_token(registry, auth=("$app", token["token_code"])) \
        .status_code == 200


# ------------------------------------------------------------ OAuth tokens


def test_oauth_token_with_repo_read_only_pulls(registry, world):
    token = create_token(registry, "alice", "repo:read")
    r = get_token(registry, ["repository:alice/app:pull,push,delete"],
                  auth=("$oauthtoken", token))
    assert r.status_code == 200, r.text
    c = claims(r.json()["token"])
    assert c["sub"] == "alice"
    assert c["access"][0]["actions"] == ["pull"]
    assert c["context"]["entity_kind"] == "oauthtoken"
    assert c["context"]["kind"] == "oauth"
    uuid = sql(registry, "SELECT uuid FROM oauthaccesstoken WHERE"
               f" token_name = '{token[:20]}'")[0][0]
    assert c["context"]["oauth"] == uuid == c["context"]["entity_reference"]


def test_oauth_token_scopes_cap_rights(registry, world):
    for scopes, expected in [
            ("repo:write", ["pull", "push"]),
            ("repo:admin", ["pull", "push", "delete"]),
            ("user:admin org:admin", []),
    ]:
        token = create_token(registry, "alice", scopes)
        assert actions(registry, ("$oauthtoken", token), "alice/app",
                       "pull,push,delete") == expected, scopes


def test_oauth_token_creates_on_push_only_with_repo_create(registry, world):
    token = create_token(registry, "alice", "repo:write")
    assert actions(registry, ("$oauthtoken", token), "alice/oauth-new") \
        == []
    token = create_token(registry, "alice", "repo:write repo:create")
    assert actions(registry, ("$oauthtoken", token), "alice/oauth-new") \
        == ["pull", "push"]


def test_wrong_expired_and_disabled_oauth_tokens_are_401(registry, world):
    token = create_token(registry, "alice", "repo:read")
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"),
                token[:-1], token + "A", token[:20], "A" * 40,
                token[:20] + "\u00e9" * 20):
        refused(registry, ("$oauthtoken", bad))
        # a good login clears the throttle's count for "$oauthtoken"
        assert get_token(registry, auth=("$oauthtoken", token)) \
            .status_code == 200
    sql(registry, "UPDATE oauthaccesstoken SET expires_at = now()"
        f" - interval '1 second' WHERE token_name = '{token[:20]}'")
    refused(registry, ("$oauthtoken", token))


def test_a_password_is_not_an_oauth_or_app_token(registry, world):
    refused(registry, ("$oauthtoken", "alice-password"))
    refused(registry, ("$app", "alice-password"))
    refused(registry, ("$token", "alice-password"))


# ------------------------------------------------- repository states (2.8)


def set_state(registry, repo, state):
    ns, name = repo.split("/", 1)
    sql(registry, f"""UPDATE repository SET state = {state}
        WHERE name = '{name}' AND namespace_user_id =
              (SELECT id FROM "user" WHERE username = '{ns}')""")


def test_mirror_repository_takes_pushes_only_from_its_robot(registry,
                                                             world):
    olivia = ("olivia", "olivia-password")
    assert actions(registry, olivia, "acme/mirror") == ["pull", "push"]
    mirror_bot = robot(world, "mirrorbot")
    other_bot = robot(world, "otherbot")
    for login, _ in (mirror_bot, other_bot):
        grant(registry, login, "acme/mirror", "write")
    sql(registry, """
        WITH r AS (SELECT id FROM repository WHERE name = 'mirror'),
             rule AS (INSERT INTO repomirrorrule (repository_id)
                      SELECT id FROM r RETURNING id)
        INSERT INTO repomirrorconfig (repository_id, internal_robot_id,
                                      external_reference, root_rule_id)
        SELECT r.id, u.id, 'quay.io/x/y', rule.id FROM r, rule, "user" u
         WHERE u.username = 'acme+mirrorbot'""")
    set_state(registry, "acme/mirror", 2)

    assert actions(registry, mirror_bot, "acme/mirror") == ["pull", "push"]
    assert actions(registry, other_bot, "acme/mirror") == ["pull"]
    # even the organization's admin does not push into a mirror
    assert actions(registry, olivia, "acme/mirror", "pull,push,delete") \
        == ["pull"]

    # the mirror robot still needs write permission (Quay's
    # ModifyRepositoryPermission)
    sql(registry, """DELETE FROM repositorypermission WHERE user_id =
        (SELECT id FROM "user" WHERE username = 'acme+mirrorbot')""")
    assert actions(registry, mirror_bot, "acme/mirror") == []


def test_read_only_repository_takes_no_push_or_delete(registry, world):
    olivia = ("olivia", "olivia-password")
    assert actions(registry, olivia, "acme/frozen", "pull,push,delete") \
        == ["pull", "push", "delete"]
    set_state(registry, "acme/frozen", 1)
    assert actions(registry, olivia, "acme/frozen", "pull,push,delete") \
        == ["pull"]
    writer = robot(world, "frozenwriter")
    grant(registry, writer[0], "acme/frozen", "write")
    assert actions(registry, writer, "acme/frozen") == ["pull"]


@pytest.mark.parametrize("login", [b"\xff\xfe", b"caf\xc3\xa9", b"a\x01b",
                                   b"acme+\xff", b"$app\xff"])
def test_odd_bytes_in_the_login_are_401_not_5xx(registry, login):
    header = "Basic " + base64.b64encode(login + b":some-password").decode()
    r = registry.request("GET", "/v2/auth", headers={
        "Authorization": header},
        params={"service": registry.url.split("//")[1]})
    assert r.status_code == 401, r.text
