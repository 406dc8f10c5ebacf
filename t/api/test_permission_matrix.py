"""The permission matrix (issue #4), in the spirit of Quay's endpoint
security tests: every principal against every registry operation and every
REST API route, each cell with its expected status.

The setup is the issue's "done when" story, made with the API itself:
the owner creates organization acme, adds teams, creates a robot for CI,
grants permissions, and pushes; the public repository is then pulled
anonymously.

Principals:
    anonymous     no credentials
    owner         created acme: member of its owners team (admin)
    teamadmin     member of team leads (role admin)
    repoadmin     admin on acme/app only
    writer        write on acme/app
    member        member of team devs (role member), devs has write on
                  acme/app
    reader        read on acme/app
    creator       member of team builders (role creator), no grant
    outsider      a user with no relation to acme
    robot         acme+ci, write on acme/app (registry only: robots have
                  no OAuth tokens)
    superuser     in SUPER_USERS (FEATURE_SUPERUSERS_FULL_ACCESS off)
    rosuper       in GLOBAL_READONLY_SUPER_USERS
    disabled      write on acme/app, then disabled by the superuser

Mutating cells act on objects made for that cell (a team, a repository,
a tag named after the principal), so the order of cells does not matter
and a denied cell must leave its object in place.
"""

import pytest

import v2client
from api import Api, create_token, create_user

ORG = "acme"
APP = "acme/app"
PUB = "acme/pub"

USERS = ("owner", "teamadmin", "repoadmin", "writer", "member", "reader",
         "creator", "outsider", "superuser", "rosuper", "disabled",
         "grantee")
# the GET routes a read-only superuser may use in any organization
RO = {"rosuper"}
# team and member management is open to superusers (super:user scope)
# even without FEATURE_SUPERUSERS_FULL_ACCESS, as in Quay's team.py
SU = {"superuser"}

PRINCIPALS = ("anonymous", "owner", "teamadmin", "repoadmin", "writer",
              "member", "reader", "creator", "outsider", "robot",
              "superuser", "rosuper", "disabled")

ORG_ADMINS = {"owner", "teamadmin"}
REPO_ADMINS = ORG_ADMINS | {"repoadmin"}
WRITERS = REPO_ADMINS | {"writer", "member", "robot"}
READERS = WRITERS | {"reader", "rosuper"}
ORG_MEMBERS = ORG_ADMINS | {"member", "creator"}
CREATORS = ORG_ADMINS | {"creator"}
USERS_OK = set(PRINCIPALS) - {"anonymous", "disabled", "robot"}


class World:
    """Credentials of every principal and the objects of the setup."""

    def __init__(self, registry):
        self.registry = registry
        self.basic = {}
        self.api = {"anonymous": Api(registry)}
        self.digest = None


def password(name):
    return name + "-password"


@pytest.fixture(scope="module")
def world(start_registry):
    reg = start_registry(GLOBAL_READONLY_SUPER_USERS=["rosuper"],
                         SUPER_USERS=["superuser"])
    w = World(reg)
    for name in USERS:
        create_user(reg, name, password(name))
        w.basic[name] = (name, password(name))
        w.api[name] = Api(reg, create_token(reg, name))

    owner = w.api["owner"]

    # 1. an organization
    assert owner.post("/organization/", json={
        "name": ORG, "email": "acme@example.com"}).status_code == 201

    # 2. teams
    for team, role, who in (("leads", "admin", "teamadmin"),
                            ("devs", "member", "member"),
                            ("builders", "creator", "creator"),
                            ("scratch", "member", None)):
        res = owner.put(f"/organization/{ORG}/team/{team}",
                        json={"role": role})
        assert res.status_code == 200, res.text
        if who:
            res = owner.put(f"/organization/{ORG}/team/{team}/members/{who}")
            assert res.status_code == 200, res.text

    # repositories
    for repo, vis in ((APP, "private"), (PUB, "public")):
        res = owner.post("/repository", json={
            "namespace": ORG, "repository": repo.split("/")[1],
            "visibility": vis, "description": ""})
        assert res.status_code == 201, res.text

    # 3. a robot for CI
    res = owner.put(f"/organization/{ORG}/robots/ci", json={})
    assert res.status_code == 201, res.text
    w.basic["robot"] = (res.json()["name"], res.json()["token"])

    # 4. grants
    for user, role in (("repoadmin", "admin"), ("writer", "write"),
                       ("reader", "read"), ("acme+ci", "write"),
                       ("disabled", "write")):
        res = owner.put(f"/repository/{APP}/permissions/user/{user}",
                        json={"role": role})
        assert res.status_code == 200, res.text
    res = owner.put(f"/repository/{APP}/permissions/team/devs",
                    json={"role": "write"})
    assert res.status_code == 200, res.text

    # images: acme/app:v1 and acme/pub:v1
    _, tok = v2client.token_for(reg, [f"repository:{APP}:pull,push",
                                      f"repository:{PUB}:pull,push"],
                                w.basic["owner"])
    w.digest, w.manifest = v2client.push_image(reg, APP, tok, "v1")
    v2client.push_image(reg, PUB, tok, "v1")
    w.owner_token = tok

    # the disabled user, disabled by the superuser
    res = w.api["superuser"].put("/superuser/users/disabled",
                                 json={"enabled": False})
    assert res.status_code == 200, res.text
    return w


# ------------------------------------------------------------ registry

def v2_token(w, who, scopes):
    auth = None if who == "anonymous" else w.basic[who]
    return v2client.token_for(w.registry, scopes, auth)


def v2_call(w, who, scope, method, path, **kw):
    """The status of method path with a token for scope; a refused login
    at /v2/auth is that status."""
    status, token = v2_token(w, who, [scope])
    if status != 200:
        return status
    return v2client.bearer(w.registry, method, path, token, **kw).status_code


def op_pull(w, who):
    return v2_call(w, who, f"repository:{APP}:pull", "GET",
                   f"/v2/{APP}/manifests/v1",
                   headers={"Accept": v2client.OCI_MANIFEST})


def op_pull_public(w, who):
    return v2_call(w, who, f"repository:{PUB}:pull", "GET",
                   f"/v2/{PUB}/manifests/v1",
                   headers={"Accept": v2client.OCI_MANIFEST})


def op_push(w, who):
    # the blobs are in the repository: pushing a tag is a manifest PUT
    return v2_call(w, who, f"repository:{APP}:pull,push", "PUT",
                   f"/v2/{APP}/manifests/push-{who}", data=w.manifest,
                   headers={"Content-Type": v2client.OCI_MANIFEST})


def op_create(w, who):
    repo = f"{ORG}/new-{who}"
    status, token = v2_token(w, who, [f"repository:{repo}:pull,push"])
    if status != 200:
        return status
    res = v2client.bearer(w.registry, "POST", f"/v2/{repo}/blobs/uploads/",
                          token)
    if res.status_code != 202:
        return res.status_code
    # the creator keeps its rights on what it created (admin, as Quay)
    status, token = v2_token(w, who, [f"repository:{repo}:pull,push"])
    return 201 if status == 200 and token and v2client.bearer(
        w.registry, "POST", f"/v2/{repo}/blobs/uploads/",
        token).status_code == 202 else 401


def op_delete_manifest(w, who):
    digest, _ = v2client.push_image(w.registry, APP, w.owner_token,
                                    f"dm-{who}", salt=f"dm-{who}")
    return v2_call(w, who, f"repository:{APP}:*", "DELETE",
                   f"/v2/{APP}/manifests/{digest}")


def op_delete_tag(w, who):
    res = v2client.put_manifest(w.registry, APP, w.owner_token, f"dt-{who}",
                                w.manifest)
    assert res.status_code == 201
    return v2_call(w, who, f"repository:{APP}:*", "DELETE",
                   f"/v2/{APP}/manifests/dt-{who}")


def op_catalog(w, who):
    status, token = v2_token(w, who, ["registry:catalog:*"])
    if status != 200:
        return status
    res = v2client.bearer(w.registry, "GET", "/v2/_catalog", token)
    if res.status_code != 200:
        return res.status_code
    return "listed" if APP in res.json()["repositories"] else "hidden"


def expect_v2(allowed, ok, denied=401):
    return {p: (ok if p in allowed else denied) for p in PRINCIPALS}


V2_OPS = {
    "pull": (op_pull, expect_v2(READERS, 200)),
    "pull public": (op_pull_public,
                    dict(expect_v2(set(PRINCIPALS), 200), disabled=401)),
    "push": (op_push, expect_v2(WRITERS, 201)),
    "create by push": (op_create, expect_v2(CREATORS, 201)),
    # deletes need admin ("*"), stricter than Quay's write (catalogue #28)
    "delete manifest": (op_delete_manifest, expect_v2(REPO_ADMINS, 202)),
    "delete tag": (op_delete_tag, expect_v2(REPO_ADMINS, 202)),
    # the catalog lists what the caller may read by its own rights; a
    # read-only superuser's global read is not a listing (Quay's
    # get_visible_repositories)
    "catalog": (op_catalog,
                dict(expect_v2(READERS - {"rosuper"}, "listed", "hidden"),
                     disabled=401)),
}


@pytest.mark.parametrize("who", PRINCIPALS)
@pytest.mark.parametrize("op", list(V2_OPS))
def test_registry_matrix(world, op, who):
    fn, expected = V2_OPS[op]
    got = fn(world, who)
    if who == "disabled" and got == 429:
        # its failed logins are throttled like any other (issue #4)
        got = 401
    assert got == expected[who], f"{op} as {who}"


# ------------------------------------------------------------ REST API
#
# Each route: (method, path, body, allowed principals, success status,
# setup).  path and body may use {who}; setup(world, who) makes the
# cell's own object with the owner's rights.  Everyone else gets 401 when
# anonymous or disabled, 403 otherwise (some routes answer 404 to
# outsiders for objects they may not know about: listed in NOT_FOUND).

def owner_api(w):
    return w.api["owner"]


def setup_team(w, who):
    assert owner_api(w).put(f"/organization/{ORG}/team/t{who}",
                            json={"role": "member"}).status_code == 200


def setup_joiner(w, who):
    create_user(w.registry, f"joiner{who}")


def setup_leaver(w, who):
    create_user(w.registry, f"leaver{who}")
    assert owner_api(w).put(f"/organization/{ORG}/team/scratch/members/"
                            f"leaver{who}").status_code == 200


def setup_repo(w, who):
    assert owner_api(w).post("/repository", json={
        "namespace": ORG, "repository": f"del-{who}", "visibility": "private",
        "description": ""}).status_code == 201


def setup_grant(w, who):
    assert owner_api(w).put(f"/repository/{APP}/permissions/user/grantee",
                            json={"role": "read"}).status_code == 200


def setup_grant_team(w, who):
    assert owner_api(w).put(f"/organization/{ORG}/team/tg{who}",
                            json={"role": "member"}).status_code == 200


def setup_team_grant(w, who):
    assert owner_api(w).put(f"/organization/{ORG}/team/td{who}",
                            json={"role": "member"}).status_code == 200
    assert owner_api(w).put(f"/repository/{APP}/permissions/team/td{who}",
                            json={"role": "read"}).status_code == 200


def setup_tag(w, who):
    assert owner_api(w).put(f"/repository/{APP}/tag/api-{who}", json={
        "manifest_digest": w.digest}).status_code == 201


def setup_deleted_tag(w, who):
    setup_tag(w, who)
    assert owner_api(w).delete(
        f"/repository/{APP}/tag/api-{who}").status_code == 204


def setup_org_robot(w, who):
    assert owner_api(w).put(f"/organization/{ORG}/robots/rd{who}",
                            json={}).status_code == 201


def setup_org_robot_regen(w, who):
    assert owner_api(w).put(f"/organization/{ORG}/robots/rr{who}",
                            json={}).status_code == 201


def setup_su_user(w, who):
    create_user(w.registry, f"victimp{who}")


def setup_su_user_delete(w, who):
    create_user(w.registry, f"victimd{who}")


def setup_star(w, who):
    if who in USERS_OK:
        assert w.api[who].post("/user/starred", json={
            "namespace": ORG, "repository": "pub"}).status_code == 201


def setup_own_robot(w, who):
    if who in USERS_OK:
        # made here or by the PUT cell before: both are fine
        assert w.api[who].put("/user/robots/mine",
                              json={}).status_code in (201, 400)


def setup_apptoken(w, who):
    if who in USERS_OK:
        res = w.api[who].post("/user/apptoken", json={"title": "t"})
        assert res.status_code == 200
        w.apptoken = res.json()["token"]["uuid"]


def apptoken_path(w, who):
    return f"/user/apptoken/{getattr(w, 'apptoken', 'none')}"


SUPERS = {"superuser"}
SUPER_READ = {"superuser", "rosuper"}
APP_PATH = f"/repository/{APP}"

ROUTES = [
    ("GET", "/user/", None, USERS_OK, 200, None),
    ("GET", "/discovery", None, set(PRINCIPALS), 200, None),
    # organizations and teams
    ("POST", "/organization/", {"name": "org{who}"}, USERS_OK, 201, None),
    ("GET", f"/organization/{ORG}", None, set(PRINCIPALS) - {"disabled"},
     200, None),
    ("PUT", f"/organization/{ORG}", {"invoice_email": False}, ORG_ADMINS,
     200, None),
    ("GET", f"/organization/{ORG}/members", None, ORG_ADMINS | RO, 200,
     None),
    ("PUT", f"/organization/{ORG}/team/new{{who}}", {"role": "member"},
     ORG_ADMINS | SU, 200, None),
    ("DELETE", f"/organization/{ORG}/team/t{{who}}", None, ORG_ADMINS | SU,
     204, setup_team),
    ("GET", f"/organization/{ORG}/team/devs/members", None,
     ORG_ADMINS | {"member"} | SU | RO, 200, None),
    ("PUT", f"/organization/{ORG}/team/scratch/members/joiner{{who}}", None,
     ORG_ADMINS | SU, 200, setup_joiner),
    ("DELETE", f"/organization/{ORG}/team/scratch/members/leaver{{who}}",
     None, ORG_ADMINS | SU, 204, setup_leaver),
    ("GET", f"/organization/{ORG}/logs", None, ORG_ADMINS | RO, 200, None),
    # org robots
    ("GET", f"/organization/{ORG}/robots", None, ORG_MEMBERS | RO, 200,
     None),
    ("GET", f"/organization/{ORG}/robots/ci", None, ORG_ADMINS | RO, 200,
     None),
    ("PUT", f"/organization/{ORG}/robots/n{{who}}", {}, ORG_ADMINS, 201,
     None),
    ("DELETE", f"/organization/{ORG}/robots/rd{{who}}", None, ORG_ADMINS,
     204, setup_org_robot),
    ("POST", f"/organization/{ORG}/robots/rr{{who}}/regenerate", None,
     ORG_ADMINS, 200, setup_org_robot_regen),
    ("GET", f"/organization/{ORG}/robots/ci/permissions", None,
     ORG_ADMINS | RO, 200, None),
    # repositories
    ("GET", f"/repository?namespace={ORG}", None,
     set(PRINCIPALS) - {"disabled"}, 200, None),
    ("POST", "/repository", {"namespace": ORG, "repository": "r{who}",
                             "visibility": "private", "description": ""},
     CREATORS, 201, None),
    ("GET", APP_PATH, None, READERS - {"robot"}, 200, None),
    ("PUT", APP_PATH, {"description": "d"}, WRITERS - {"robot"}, 200,
     None),
    ("DELETE", f"/repository/{ORG}/del-{{who}}", None, ORG_ADMINS, 204,
     setup_repo),
    ("POST", f"{APP_PATH}/changevisibility", {"visibility": "private"},
     REPO_ADMINS, 200, None),
    ("PUT", f"{APP_PATH}/changestate", {"state": "NORMAL"}, REPO_ADMINS,
     200, None),
    ("GET", f"{APP_PATH}/logs", None, REPO_ADMINS | RO, 200, None),
    # permissions
    ("GET", f"{APP_PATH}/permissions/user/", None, REPO_ADMINS, 200, None),
    ("GET", f"{APP_PATH}/permissions/user/reader", None, REPO_ADMINS, 200,
     None),
    ("PUT", f"{APP_PATH}/permissions/user/grantee", {"role": "read"},
     REPO_ADMINS, 200, None),
    ("DELETE", f"{APP_PATH}/permissions/user/grantee", None, REPO_ADMINS,
     204, setup_grant),
    ("GET", f"{APP_PATH}/permissions/user/member/transitive", None,
     REPO_ADMINS, 200, None),
    ("GET", f"{APP_PATH}/permissions/team/", None, REPO_ADMINS, 200, None),
    ("GET", f"{APP_PATH}/permissions/team/devs", None, REPO_ADMINS, 200,
     None),
    ("PUT", f"{APP_PATH}/permissions/team/tg{{who}}", {"role": "read"},
     REPO_ADMINS, 200, setup_grant_team),
    ("DELETE", f"{APP_PATH}/permissions/team/td{{who}}", None, REPO_ADMINS,
     204, setup_team_grant),
    # tags
    ("GET", f"{APP_PATH}/tag/", None, READERS - {"robot"}, 200, None),
    ("PUT", f"{APP_PATH}/tag/new-{{who}}", "digest",
     WRITERS - {"robot"}, 201, None),
    ("DELETE", f"{APP_PATH}/tag/api-{{who}}", None, WRITERS - {"robot"},
     204, setup_tag),
    ("POST", f"{APP_PATH}/tag/api-{{who}}/restore", "digest",
     WRITERS - {"robot"}, 200, setup_deleted_tag),
    # the caller's own things
    ("GET", "/user/starred", None, USERS_OK, 200, None),
    ("POST", "/user/starred", {"namespace": ORG, "repository": "pub"},
     USERS_OK, 201, None),
    ("DELETE", f"/user/starred/{PUB}", None, USERS_OK, 204, setup_star),
    ("GET", "/user/robots", None, USERS_OK, 200, None),
    ("PUT", "/user/robots/mine", {}, USERS_OK, 201, None),
    ("GET", "/user/robots/mine", None, USERS_OK, 200, setup_own_robot),
    ("GET", "/user/logs", None, USERS_OK, 200, None),
    ("GET", "/user/apptoken", None, USERS_OK, 200, None),
    ("POST", "/user/apptoken", {"title": "ci"}, USERS_OK, 200, None),
    ("DELETE", apptoken_path, None, USERS_OK, 204, setup_apptoken),
    # superuser
    ("GET", "/superuser/users/", None, SUPER_READ, 200, None),
    ("POST", "/superuser/users/", {"username": "made{who}"}, SUPERS, 200,
     None),
    ("GET", "/superuser/users/owner", None, SUPER_READ, 200, None),
    ("PUT", "/superuser/users/victimp{who}", {"enabled": True}, SUPERS, 200,
     setup_su_user),
    ("DELETE", "/superuser/users/victimd{who}", None, SUPERS, 204,
     setup_su_user_delete),
    ("GET", "/superuser/organizations/", None, SUPER_READ, 200, None),
    ("GET", "/superuser/logs", None, SUPER_READ, 200, None),
]

API_PRINCIPALS = [p for p in PRINCIPALS if p != "robot"]


def route_id(route):
    path = route[1] if isinstance(route[1], str) else "/user/apptoken/{u}"
    return f"{route[0]} {path}"


@pytest.mark.parametrize("who", API_PRINCIPALS)
@pytest.mark.parametrize("route", ROUTES, ids=route_id)
def test_api_matrix(world, route, who):
    method, path, body, allowed, ok, setup = route
    if setup:
        setup(world, who)
    if callable(path):
        path = path(world, who)
    path = path.replace("{who}", who)
    if body == "digest":
        body = {"manifest_digest": world.digest}
    elif isinstance(body, dict):
        body = {k: v.replace("{who}", who) if isinstance(v, str) else v
                for k, v in body.items()}
    res = world.api[who].request(method, path, json=body)
    if who in allowed:
        expected = ok
    elif who in ("anonymous", "disabled"):
        expected = 401
    else:
        expected = 403
    assert res.status_code == expected, (
        f"{method} {path} as {who}: {res.status_code} {res.text[:300]}")
    if res.status_code >= 400:
        assert res.json()["status"] == res.status_code


def test_every_route_is_in_the_matrix(world):
    """A new route must get its row here."""
    doc = Api(world.registry).get("/discovery").json()
    listed = {(m.upper(), p) for p, ops in doc["paths"].items()
              for m in ops}
    covered = set()
    for method, path, *_ in ROUTES:
        if callable(path):
            path = "/user/apptoken/{token_uuid}"
        covered.add((method, "/api/v1" + path.split("?")[0]))
    missing = []
    for method, path in sorted(listed):
        if not any(m == method and matches(path, p) for m, p in covered):
            missing.append(f"{method} {path}")
    # routes deliberately left to their own contract tests
    elsewhere = {
        "GET /api/v1/user/robots/{robot_shortname}/permissions",
        "DELETE /api/v1/user/robots/{robot_shortname}",
        "POST /api/v1/user/robots/{robot_shortname}/regenerate",
        "GET /api/v1/organization/{orgname}/robots/{robot_shortname}",
        "POST /api/v1/repository/{repository}/tag/{tag}/expire",
        "GET /api/v1/user/apptoken/{token_uuid}",
        "DELETE /api/v1/organization/{orgname}",
    }
    assert sorted(set(missing) - elsewhere) == []


def matches(template, path):
    t = template.strip("/").split("/")
    p = path.strip("/").split("/")
    i = j = 0
    while i < len(t) and j < len(p):
        if t[i] == "{repository}":
            return matches("/".join(t[i + 1:]), "/".join(p[j + 2:]))
        if not (t[i].startswith("{") or t[i] == p[j]):
            return False
        i += 1
        j += 1
    return i == len(t) and j == len(p)
