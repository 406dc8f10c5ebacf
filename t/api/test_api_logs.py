"""The audit log routes (endpoints/api/logs.py, superuser.py): GET
/api/v1/repository/{repository}/logs, /api/v1/organization/{orgname}/logs,
/api/v1/user/logs and /api/v1/superuser/logs: who may read which entries,
the date window (?starttime= ?endtime= as MM/DD/YYYY in UTC), the page
cursor (?next_page=) and Quay's shapes.

Entries are made with SQL inserts at chosen times (each test uses its own
dates, so they do not see each other's rows), and once through a real
login at /v2/auth."""

import base64
import email.utils
import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from api import (Api, assert_error, create_token, create_user, principal,
                 sql)
from harness import wait_until


NO_SUPER = "org:admin repo:admin repo:create repo:read repo:write " \
           "user:admin user:read"
DATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                  r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                  r"\d{4} \d\d:\d\d:\d\d -0000$")


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry(GLOBAL_READONLY_SUPER_USERS=["auditor"])


def uid(registry, name):
    return int(sql(registry, "SELECT id FROM \"user\""
                   f" WHERE username = '{name}'")[0][0])


class World:
    """admin (superuser), auditor (read-only superuser), olga (owns
    olga/app and olga/other), rita (read on olga/app), oscar (outsider),
    org logorg with pat (admin team) and quinn (member team)."""


@pytest.fixture(scope="module")
def w(registry):
    w = World()
    w.registry = registry
    w.admin = principal(registry, "admin")
    w.admin_unscoped = Api(registry, create_token(registry, "admin",
                                                  NO_SUPER))
    w.auditor = principal(registry, "auditor")
    w.olga = principal(registry, "olga")
    w.rita = principal(registry, "rita")
    w.oscar = principal(registry, "oscar")
    w.pat = principal(registry, "pat")
    w.quinn = principal(registry, "quinn")
    w.anonymous = Api(registry)
    sql(registry,
        "INSERT INTO \"user\" (username, email, organization)"
        " VALUES ('logorg', 'logorg@example.com', true);"
        "INSERT INTO \"user\" (username, email, robot)"
        " VALUES ('logorg+bot', 'bot@robot', true)")
    w.ids = {n: uid(registry, n) for n in
             ("admin", "olga", "rita", "oscar", "pat", "quinn", "logorg",
              "logorg+bot")}
    org = w.ids["logorg"]
    sql(registry,
        "INSERT INTO team (name, organization_id, role_id) VALUES"
        f" ('owners', {org}, 1), ('readers', {org}, 3);"
        "INSERT INTO teammember (user_id, team_id) SELECT"
        f" {w.ids['pat']}, id FROM team WHERE name = 'owners';"
        "INSERT INTO teammember (user_id, team_id) SELECT"
        f" {w.ids['quinn']}, id FROM team WHERE name = 'readers';"
        "INSERT INTO repository (namespace_user_id, name, visibility_id)"
        f" VALUES ({w.ids['olga']}, 'app', 2), ({w.ids['olga']}, 'other', 1),"
        f" ({org}, 'orgrepo', 2);"
        "INSERT INTO repositorypermission (user_id, repository_id, role_id)"
        f" SELECT {w.ids['rita']}, id, 3 FROM repository WHERE name = 'app'")
    w.repo = {n: int(sql(registry, "SELECT id FROM repository"
                         f" WHERE name = '{n}'")[0][0])
              for n in ("app", "other", "orgrepo")}
    return w


def insert(w, kind, account, at, performer=None, repo=None, meta=None,
           ip="10.0.0.1", count=1):
    """count logentry rows at the UTC time at ('YYYY-MM-DD HH:MM:SS')."""
    acc = w.ids[account]
    perf = w.ids[performer] if performer else "NULL"
    rep = w.repo[repo] if repo else "NULL"
    metadata = json.dumps(meta or {}).replace("'", "''")
    sql(w.registry,
        "INSERT INTO logentry (kind_id, account_id, performer_id,"
        " repository_id, datetime, ip, metadata_json)"
        f" SELECT k.id, {acc}, {perf}, {rep},"
        f" timestamptz '{at}+00', '{ip}', '{metadata}'::jsonb"
        f" FROM logentrykind k, generate_series(1, {count})"
        f" WHERE k.name = '{kind}'")


def window(day):
    """starttime=endtime=day (MM/DD/YYYY)."""
    return {"starttime": day, "endtime": day}


def kinds(res):
    assert res.status_code == 200, res.text
    return [e["kind"] for e in res.json()["logs"]]


# Repository logs ------------------------------------------------------------

def test_repo_logs_shape(w):
    insert(w, "push_repo", "olga", "2021-06-01 10:00:00", performer="olga",
           repo="app", meta={"tag": "v1", "repo": "app"}, ip="192.0.2.7")
    insert(w, "pull_repo", "olga", "2021-06-01 11:00:00", performer=None,
           repo="app")
    res = w.olga.get("/repository/olga/app/logs",
                     params=window("06/01/2021"))
    assert res.status_code == 200, res.text
    body = res.json()
    assert set(body) == {"start_time", "end_time", "logs"}
    assert body["start_time"] == "Tue, 01 Jun 2021 00:00:00 -0000"
    assert body["end_time"] == "Wed, 02 Jun 2021 00:00:00 -0000"
    pull, push = body["logs"]        # newest first
    assert pull == {"kind": "pull_repo", "metadata": {}, "ip": "10.0.0.1",
                    "datetime": "Tue, 01 Jun 2021 11:00:00 -0000"}
    assert push["kind"] == "push_repo"
    assert push["metadata"] == {"tag": "v1", "repo": "app"}
    assert push["ip"] == "192.0.2.7"
    assert DATE.match(push["datetime"])
    assert push["performer"] == {
        "kind": "user", "name": "olga", "is_robot": False,
        "avatar": push["performer"]["avatar"]}
    assert push["performer"]["avatar"]["name"] == "olga"
    assert push["performer"]["avatar"]["kind"] == "user"
    assert "namespace" not in push


def test_repo_logs_show_only_that_repository(w):
    insert(w, "push_repo", "olga", "2021-06-02 10:00:00", "olga", "app")
    insert(w, "delete_tag", "olga", "2021-06-02 10:00:00", "olga", "other")
    insert(w, "create_repo", "olga", "2021-06-02 10:00:00", "olga")
    assert kinds(w.olga.get("/repository/olga/app/logs",
                            params=window("06/02/2021"))) == ["push_repo"]
    assert kinds(w.olga.get("/repository/olga/other/logs",
                            params=window("06/02/2021"))) == ["delete_tag"]


def test_repo_logs_robot_performer(w):
    insert(w, "push_repo", "logorg", "2021-06-03 10:00:00", "logorg+bot",
           "orgrepo")
    res = w.pat.get("/repository/logorg/orgrepo/logs",
                    params=window("06/03/2021"))
    performer = res.json()["logs"][0]["performer"]
    assert performer["name"] == "logorg+bot"
    assert performer["is_robot"] is True
    assert performer["kind"] == "user"
    assert performer["avatar"]["kind"] == "robot"


def test_repo_logs_permissions(w):
    path = "/repository/olga/app/logs"
    insert(w, "push_repo", "olga", "2021-06-04 10:00:00", "olga", "app")
    p = window("06/04/2021")
    assert kinds(w.olga.get(path, params=p)) == ["push_repo"]
    # read-only superuser reads everything
    assert kinds(w.auditor.get(path, params=p)) == ["push_repo"]
    # a reader, an outsider, an org admin elsewhere, and a superuser
    # without FEATURE_SUPERUSERS_FULL_ACCESS are not repository admins
    for api in (w.rita, w.oscar, w.pat, w.admin):
        assert_error(api.get(path, params=p), 403, "insufficient_scope")
    assert_error(w.anonymous.get(path), 401, "invalid_token")
    # the token must carry repo:admin
    narrow = Api(w.registry, create_token(w.registry, "olga", "repo:write"))
    assert_error(narrow.get(path), 403, "insufficient_scope")


def test_repo_logs_outsider_cannot_tell_missing_from_private(w):
    there = w.oscar.get("/repository/olga/app/logs")
    missing = w.oscar.get("/repository/olga/nosuchrepo/logs")
    assert_error(there, 403, "insufficient_scope")
    assert_error(missing, 403, "insufficient_scope")
    assert there.json() == missing.json()
    assert_error(w.auditor.get("/repository/olga/nosuchrepo/logs"), 404,
                 "not_found")


def test_full_access_superuser_reads_any_repository(start_registry):
    reg = start_registry(FEATURE_SUPERUSERS_FULL_ACCESS=True)
    admin = principal(reg, "admin")
    create_user(reg, "uma")
    owner = uid(reg, "uma")
    sql(reg, "INSERT INTO repository (namespace_user_id, name,"
        f" visibility_id) VALUES ({owner}, 'secret', 2)")
    res = admin.get("/repository/uma/secret/logs")
    assert res.status_code == 200, res.text
    assert res.json()["logs"] == []
    assert_error(admin.get("/repository/uma/missing/logs"), 404,
                 "not_found")
    reg.close()


# The window -------------------------------------------------------------------

def test_window_includes_whole_end_day(w):
    for at in ("2021-07-09 23:59:59", "2021-07-10 00:00:00",
               "2021-07-12 23:59:59", "2021-07-13 00:00:00"):
        insert(w, "push_repo", "olga", at, "olga", "app", {"at": at})
    res = w.olga.get("/repository/olga/app/logs",
                     params={"starttime": "07/10/2021",
                             "endtime": "07/12/2021"})
    assert [e["metadata"]["at"] for e in res.json()["logs"]] == [
        "2021-07-12 23:59:59", "2021-07-10 00:00:00"]
    assert res.json()["start_time"] == "Sat, 10 Jul 2021 00:00:00 -0000"
    assert res.json()["end_time"] == "Tue, 13 Jul 2021 00:00:00 -0000"
    # one-digit month and day, as strptime's %m/%d accept
    res = w.olga.get("/repository/olga/app/logs",
                     params={"starttime": "7/9/2021", "endtime": "7/9/2021"})
    assert [e["metadata"]["at"] for e in res.json()["logs"]] == [
        "2021-07-09 23:59:59"]


def test_default_window_is_yesterday_to_tomorrow(w):
    now = datetime.now(timezone.utc)

    def at(delta):
        return (now + delta).strftime("%Y-%m-%d %H:%M:%S")

    insert(w, "push_repo", "olga", at(timedelta(hours=-47)), "olga",
           "other", {"when": "two days ago"})
    insert(w, "push_repo", "olga", at(timedelta(hours=-23)), "olga",
           "other", {"when": "yesterday"})
    insert(w, "push_repo", "olga", at(timedelta(minutes=-1)), "olga",
           "other", {"when": "now"})
    res = w.olga.get("/repository/olga/other/logs")
    assert res.status_code == 200, res.text
    assert [e["metadata"]["when"] for e in res.json()["logs"]
            if "when" in e["metadata"]] == ["now", "yesterday"]
    # "-0000" reads as a naive datetime: it is UTC
    start = email.utils.parsedate_to_datetime(
        res.json()["start_time"]).replace(tzinfo=timezone.utc)
    end = email.utils.parsedate_to_datetime(
        res.json()["end_time"]).replace(tzinfo=timezone.utc)
    assert abs((end - start) - timedelta(days=2)) < timedelta(seconds=5)
    assert abs(start - (now - timedelta(days=1))) < timedelta(minutes=5)


@pytest.mark.parametrize("params", [
    {"starttime": "2021-07-10"},
    {"starttime": "13/01/2021"},
    {"starttime": "02/30/2021"},
    {"starttime": "00/10/2021"},
    {"starttime": "1/1/21"},
    {"starttime": "07/10/2021 UTC"},
    {"endtime": "yesterday"},
    {"endtime": "07/10/0000"},
    {"starttime": "07/12/2021", "endtime": "07/10/2021"},   # reversed
    {"starttime": "01/01/2021", "endtime": "03/01/2021"},   # > 31 days
])
def test_bad_windows_are_400(w, params):
    assert_error(w.olga.get("/repository/olga/app/logs", params=params),
                 400, "invalid_request")


def test_thirty_one_days_are_allowed(w):
    res = w.olga.get("/repository/olga/app/logs",
                     params={"starttime": "01/01/2021",
                             "endtime": "01/31/2021"})
    assert res.status_code == 200, res.text


# Paging -------------------------------------------------------------------

def walk(api, path, params):
    pages, token = [], None
    while True:
        p = dict(params)
        if token is not None:
            p["next_page"] = token
        res = api.get(path, params=p)
        assert res.status_code == 200, res.text
        body = res.json()
        pages.append(body["logs"])
        token = body.get("next_page")
        if token is None:
            return pages
        assert isinstance(token, str) and token
        assert len(pages) < 20, "the walk does not end"


def test_paging_walks_every_entry_once(w):
    # 47 entries, three to a timestamp, so pages split ties
    for i in range(16):
        insert(w, "push_repo", "olga", f"2021-08-01 10:{i:02d}:00", "olga",
               "app", {"minute": i}, count=3 if i < 15 else 2)
    pages = walk(w.olga, "/repository/olga/app/logs", window("08/01/2021"))
    assert [len(p) for p in pages] == [20, 20, 7]
    minutes = [e["metadata"]["minute"] for p in pages for e in p]
    assert minutes == sorted(minutes, reverse=True)
    assert sorted(minutes) == sorted([i for i in range(15) for _ in
                                      range(3)] + [15, 15])
    ids = sql(w.registry, "SELECT count(DISTINCT id) FROM logentry"
              " WHERE datetime >= '2021-08-01' AND datetime < '2021-08-02'")
    assert ids == [("47",)]


def test_paging_exactly_one_page_has_no_cursor(w):
    insert(w, "push_repo", "olga", "2021-08-02 10:00:00", "olga", "app",
           count=20)
    res = w.olga.get("/repository/olga/app/logs",
                     params=window("08/02/2021"))
    assert len(res.json()["logs"]) == 20
    assert "next_page" not in res.json()


def test_cursor_with_another_window_still_filters(w):
    insert(w, "push_repo", "olga", "2021-08-03 10:00:00", "olga", "app",
           count=25)
    insert(w, "push_repo", "olga", "2021-08-04 10:00:00", "olga", "other",
           count=5)
    first = w.olga.get("/repository/olga/app/logs",
                       params=window("08/03/2021")).json()
    # the cursor only marks a position: other repositories stay hidden
    res = w.olga.get("/repository/olga/app/logs",
                     params={"starttime": "08/03/2021",
                             "endtime": "08/04/2021",
                             "next_page": first["next_page"]})
    assert len(res.json()["logs"]) == 5


def b64(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


@pytest.mark.parametrize("token", [
    "garbage!",
    "Zm9v",                                      # "foo"
    "x",
    b64("2021-13-01T00:00:00.000000|5"),         # month 13
    b64("2021-08-01T10:00:00.000000|"),
    b64("2021-08-01T10:00:00|5"),
    b64("id:5"),                                 # a users-list cursor
    "A" * 300,
])
def test_malformed_cursor_is_400(w, token):
    body = assert_error(w.olga.get("/repository/olga/app/logs",
                                   params={"next_page": token}),
                        400, "invalid_request")
    assert body["error_message"] == "Invalid next_page token"


# Organization logs ---------------------------------------------------------

def test_org_logs(w):
    insert(w, "org_create_team", "logorg", "2021-09-01 10:00:00", "pat",
           meta={"team": "readers"})
    insert(w, "push_repo", "logorg", "2021-09-01 11:00:00", "quinn",
           "orgrepo")
    insert(w, "push_repo", "olga", "2021-09-01 12:00:00", "olga", "app")
    p = window("09/01/2021")
    assert kinds(w.pat.get("/organization/logorg/logs", params=p)) == [
        "push_repo", "org_create_team"]
    assert kinds(w.auditor.get("/organization/logorg/logs",
                               params=p)) == ["push_repo", "org_create_team"]
    res = w.pat.get("/organization/logorg/logs",
                    params=dict(p, performer="pat"))
    assert kinds(res) == ["org_create_team"]
    assert "namespace" not in res.json()["logs"][0]
    assert kinds(w.pat.get("/organization/logorg/logs",
                           params=dict(p, performer="nobody"))) == []


def test_org_logs_permissions(w):
    path = "/organization/logorg/logs"
    for api in (w.quinn, w.oscar, w.olga, w.admin):
        assert_error(api.get(path), 403, "insufficient_scope")
    assert_error(w.anonymous.get(path), 401, "invalid_token")
    narrow = Api(w.registry, create_token(w.registry, "pat", "repo:admin"))
    assert_error(narrow.get(path), 403, "insufficient_scope")
    # an organization that does not exist looks the same to an outsider
    assert w.oscar.get("/organization/nosuchorg/logs").json() == \
        w.oscar.get(path).json()
    assert_error(w.auditor.get("/organization/nosuchorg/logs"), 404,
                 "not_found")


def test_org_logs_of_own_user_namespace(w):
    insert(w, "create_repo", "oscar", "2021-09-02 10:00:00", "oscar")
    assert kinds(w.oscar.get("/organization/oscar/logs",
                             params=window("09/02/2021"))) == ["create_repo"]
    assert_error(w.olga.get("/organization/oscar/logs"), 403)


# User logs ----------------------------------------------------------------

def test_user_logs(w):
    insert(w, "create_repo", "rita", "2021-10-01 10:00:00", "rita")
    insert(w, "service_key_create", "rita", "2021-10-01 11:00:00", "rita")
    insert(w, "push_repo", "olga", "2021-10-01 12:00:00", "rita", "app")
    res = w.rita.get("/user/logs", params=window("10/01/2021"))
    # own namespace only, without the service key kinds
    assert kinds(res) == ["create_repo"]
    assert res.json()["logs"][0]["performer"]["name"] == "rita"
    assert kinds(w.olga.get("/user/logs", params=window("10/01/2021"))) \
        == ["push_repo"]
    assert kinds(w.olga.get("/user/logs",
                            params=dict(window("10/01/2021"),
                                        performer="olga"))) == []


def test_user_logs_permissions(w):
    assert_error(w.anonymous.get("/user/logs"), 401, "invalid_token")
    narrow = Api(w.registry, create_token(w.registry, "rita", "user:read"))
    assert_error(narrow.get("/user/logs"), 403, "insufficient_scope")


def test_real_login_shows_in_user_logs(w):
    host = w.registry.url.split("//")[1]
    assert w.registry.request("GET", "/v2/auth", params={"service": host},
                              auth=("quinn", "quinn-password")
                              ).status_code == 200

    def logged_in():
        return [e for e in w.quinn.get("/user/logs").json()["logs"]
                if e["kind"] == "login_success"]
    entry = wait_until(logged_in, 10, "login_success in /user/logs")[0]
    assert entry["performer"]["name"] == "quinn"
    assert entry["ip"] == "127.0.0.1"


# Superuser logs -----------------------------------------------------------

def test_superuser_logs_have_namespaces(w):
    insert(w, "push_repo", "logorg", "2021-11-01 10:00:00", "pat",
           "orgrepo")
    insert(w, "create_repo", "olga", "2021-11-01 11:00:00", "olga")
    sql(w.registry, "INSERT INTO logentry (kind_id, account_id, datetime)"
        " SELECT id, 999999, '2021-11-01 12:00:00+00' FROM logentrykind"
        " WHERE name = 'user_delete'")
    for api in (w.admin, w.auditor):
        res = api.get("/superuser/logs", params=window("11/01/2021"))
        assert kinds(res) == ["user_delete", "create_repo", "push_repo"]
        gone, user, org = res.json()["logs"]
        assert "namespace" not in gone and "performer" not in gone
        assert user["namespace"]["kind"] == "user"
        assert user["namespace"]["name"] == "olga"
        assert user["namespace"]["avatar"]["kind"] == "user"
        assert org["namespace"] == {"kind": "org", "name": "logorg",
                                    "avatar": org["namespace"]["avatar"]}
        assert org["namespace"]["avatar"]["kind"] == "org"


def test_superuser_logs_permissions(w):
    for api in (w.admin_unscoped, w.olga, w.pat):
        assert_error(api.get("/superuser/logs"), 403, "insufficient_scope")
    assert_error(w.anonymous.get("/superuser/logs"), 401, "invalid_token")
    everyone = Api(w.registry, create_token(
        w.registry, "oscar", "super:user user:admin"))
    assert_error(everyone.get("/superuser/logs"), 403, "insufficient_scope")


def test_superuser_logs_page_through_everything(w):
    for i in range(3):
        for who in ("olga", "logorg", "rita"):
            insert(w, "push_repo", who, f"2021-12-01 10:0{i}:00", count=4,
                   meta={"who": who, "i": i})
    pages = walk(w.admin, "/superuser/logs", window("12/01/2021"))
    assert [len(p) for p in pages] == [20, 16]
    seen = [(e["metadata"]["i"], e["namespace"]["name"]) for p in pages
            for e in p]
    assert len(seen) == 36
    assert [s[0] for s in seen] == sorted((s[0] for s in seen),
                                          reverse=True)
