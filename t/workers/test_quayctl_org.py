"""quayctl org create and quayctl org add-member against a real PostgreSQL
15 (issue #4): the rows and audit entries they make, the SQL rules they
share with the REST API (sql/0011_api_org.sql), and a one-line error with
a non-zero exit for every bad input."""

import json
import subprocess

import pytest

import harness


def quayctl(*args, stdin=None):
    return subprocess.run([str(harness.QUAYCTL), *map(str, args)],
                          input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


@pytest.fixture(scope="module")
def db(pg):
    """(name, db_uri) of a migrated database with users alice and bob and
    robots ops+bot (of a user namespace) and other+bot."""
    name = "quayctl_org_test"
    uri = pg.new_database(name)
    for user in ("alice", "bob"):
        p = quayctl("user", "create", user, "--db-uri", uri,
                    "--password-stdin", stdin=user + "-password\n")
        assert p.returncode == 0, p.stderr
    pg.sql("INSERT INTO \"user\" (username, email, robot) VALUES"
           " ('other+bot', gen_random_uuid()::text, true)", db=name)
    return name, uri


def one(pg, db, query):
    rows = pg.sql(query, db=db[0])
    return rows[0] if rows else None


def assert_fails(p, needle, status=1):
    assert p.returncode == status, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("quayctl: ")
    assert needle in lines[0], lines[0]
    assert p.stdout == ""


def test_create_makes_the_org_with_owners_and_an_audit_row(pg, db):
    p = quayctl("org", "create", "acme", "--owner", "alice", "--db-uri",
                db[1], "--email", "acme@example.com")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "created organization acme (owner alice)\n"
    org = one(pg, db, "SELECT id, organization, email,"
              " removed_tag_expiration_s FROM \"user\""
              " WHERE username = 'acme'")
    assert org[1:] == ("t", "acme@example.com", "1209600")
    assert pg.sql("SELECT t.name, tr.name, u.username FROM team t JOIN"
                  " teamrole tr ON tr.id = t.role_id JOIN teammember tm ON"
                  " tm.team_id = t.id JOIN \"user\" u ON u.id = tm.user_id"
                  f" WHERE t.organization_id = {org[0]}", db=db[0]) == [
        ("owners", "admin", "alice")]
    kind, performer, meta = one(
        pg, db, "SELECT k.name, l.performer_id, l.metadata_json FROM logentry"
        " l JOIN logentrykind k ON k.id = l.kind_id"
        f" WHERE l.account_id = {org[0]}")
    assert (kind, performer) == ("org_create", "")
    assert json.loads(meta) == {"email": "acme@example.com",
                                "namespace": "acme", "owner": "alice",
                                "source": "quayctl"}


def test_create_with_config_uses_default_tag_expiration(pg, db, tmp_path,
                                                        make_config):
    cfg = make_config(tmp_path / "config.yaml", db[1], tmp_path / "storage",
                      DEFAULT_TAG_EXPIRATION="1d")
    p = quayctl("org", "create", "daily", "--owner", "bob", "--config", cfg)
    assert p.returncode == 0, p.stderr
    assert one(pg, db, "SELECT removed_tag_expiration_s FROM \"user\""
               " WHERE username = 'daily'") == ("86400",)


def test_add_member_adds_users_and_robots_of_the_org(pg, db):
    assert quayctl("org", "create", "beta", "--owner", "alice", "--db-uri",
                   db[1]).returncode == 0
    p = quayctl("org", "add-member", "beta", "owners", "bob",
                "--db-uri", db[1])
    assert p.returncode == 0, p.stderr
    assert p.stdout == "added bob to team owners of beta\n"
    pg.sql("INSERT INTO \"user\" (username, email, robot) VALUES"
           " ('beta+deployer', gen_random_uuid()::text, true)", db=db[0])
    p = quayctl("org", "add-member", "beta", "owners", "beta+deployer",
                "--db-uri", db[1])
    assert p.returncode == 0, p.stderr
    assert pg.sql("SELECT u.username FROM teammember tm JOIN team t ON"
                  " t.id = tm.team_id JOIN \"user\" o ON o.id ="
                  " t.organization_id JOIN \"user\" u ON u.id = tm.user_id"
                  " WHERE o.username = 'beta' ORDER BY u.username",
                  db=db[0]) == [("alice",), ("beta+deployer",), ("bob",)]
    rows = pg.sql("SELECT l.metadata_json FROM logentry l JOIN logentrykind"
                  " k ON k.id = l.kind_id JOIN \"user\" o ON o.id ="
                  " l.account_id WHERE o.username = 'beta' AND k.name ="
                  " 'org_add_team_member' ORDER BY l.id", db=db[0])
    assert [json.loads(r[0]) for r in rows] == [
        {"member": "bob", "team": "owners", "source": "quayctl"},
        {"member": "beta+deployer", "team": "owners", "source": "quayctl"}]


@pytest.mark.parametrize("args,needle", [
    (["A-Corp"], "invalid organization name"),
    (["a"], "invalid organization name"),
    (["ab-"], "invalid organization name"),
    (["x" * 256], "invalid organization name"),
    (["acme"], "A user or organization with this name already exists"),
    (["alice"], "A user or organization with this name already exists"),
    (["gamma", "--owner", "nobody"], "Unknown user"),
    (["gamma", "--owner", "acme"], "Unknown user"),
    (["gamma", "--owner", "other+bot"], "Unknown user"),
    (["gamma", "--email", "not-an-address"], "Invalid email address"),
    (["gamma", "--email", "acme@example.com"], "already been used"),
])
def test_create_refuses_bad_input(pg, db, args, needle):
    if "--owner" not in args:
        args = args + ["--owner", "alice"]
    before = one(pg, db, "SELECT count(*) FROM \"user\"")
    p = quayctl("org", "create", *args, "--db-uri", db[1])
    assert_fails(p, needle)
    assert one(pg, db, "SELECT count(*) FROM \"user\"") == before


@pytest.mark.parametrize("args,needle", [
    (["nosuch", "owners", "bob"], "Organization not found"),
    (["alice", "owners", "bob"], "Organization not found"),
    (["acme", "nosuch", "bob"], "Team not found"),
    (["acme", "owners", "nobody"], "Unknown user"),
    (["acme", "owners", "beta"], "Unknown user"),
    (["acme", "owners", "other+bot"], "not a member of the organization"),
    (["acme", "owners", "alice"], "already a member of team owners"),
    (["acme", "Owners", "bob"], "invalid team or user name"),
    (["acme", "owners", "b b"], "invalid team or user name"),
    (["ACME", "owners", "bob"], "invalid organization name"),
])
def test_add_member_refuses_bad_input(pg, db, args, needle):
    before = one(pg, db, "SELECT count(*) FROM teammember")
    p = quayctl("org", "add-member", *args, "--db-uri", db[1])
    assert_fails(p, needle)
    assert one(pg, db, "SELECT count(*) FROM teammember") == before


@pytest.mark.parametrize("args,needle", [
    (["org"], None),
    (["org", "rename", "x"], "unknown command"),
    (["org", "create", "delta", "--db-uri", "x"], "needs --owner USER"),
    (["org", "create", "--owner", "alice", "--db-uri", "x"], "needs a NAME"),
    (["org", "create", "delta", "--owner", "alice"], "needs --config"),
    (["org", "create", "delta", "epsilon", "--owner", "alice"],
     "unexpected argument"),
    (["org", "create", "delta", "--owner"], "--owner needs a value"),
    (["org", "add-member", "acme", "owners", "--db-uri", "x"],
     "needs ORG TEAM USER"),
    (["org", "add-member", "acme", "owners", "bob", "--owner", "x",
      "--db-uri", "x"], "unexpected argument"),
])
def test_usage_errors_exit_2(build, args, needle):
    p = quayctl(*args)
    assert p.returncode == 2, p.stderr
    if needle is not None:
        assert_fails(p, needle, status=2)


def test_unreachable_database_is_one_line(build):
    p = quayctl("org", "create", "delta", "--owner", "alice", "--db-uri",
                "postgresql://quay@127.0.0.1:1/none")
    assert p.returncode == 1
    assert len(p.stderr.strip().splitlines()) == 1


def test_help_lists_org(build):
    p = quayctl("--help")
    assert p.returncode == 0 and "quayctl org create NAME" in p.stdout
    p = quayctl("org", "--help")
    assert p.returncode == 0 and "add-member" in p.stdout
