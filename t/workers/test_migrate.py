"""quayctl migrate and quayctl user against a real PostgreSQL 15.

Each test works on its own fresh, unmigrated database (fresh_db), so the
order of tests does not matter.  Migration files are checked against the
files in sql/, which the tests never change: tests that need a changed,
missing or broken file work on a copy in a temporary directory (--dir).
"""

import base64
import concurrent.futures
import hashlib
import itertools
import shutil
import subprocess

import pytest

import harness


SQL_DIR = harness.ROOT / "sql"
_names = itertools.count()


def sql_files(directory=SQL_DIR):
    return sorted(p.name for p in directory.glob("*.sql"))


def quayctl(*args, stdin=None):
    """Runs quayctl; returns the CompletedProcess (stdout, stderr apart)."""
    return subprocess.run([str(harness.QUAYCTL), *map(str, args)],
                          input=stdin, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=120)


def applied(pg, db):
    return pg.sql("SELECT version, name, checksum FROM schema_migrations "
                  "ORDER BY version", db=db)


@pytest.fixture
def fresh_db(pg):
    """(name, db_uri) of a new database with nothing applied."""
    name = f"migrate_test_{next(_names)}"
    pg.sql(f"CREATE DATABASE {name} OWNER quay", db="postgres")
    return name, pg.uri(name)


@pytest.fixture
def sql_copy(tmp_path):
    """A copy of sql/ that a test may change."""
    d = tmp_path / "sql"
    shutil.copytree(SQL_DIR, d)
    return d


def test_migrate_applies_every_file_in_order_and_records_checksums(
        pg, fresh_db):
    db, uri = fresh_db
    p = quayctl("migrate", "--db-uri", uri)
    assert p.returncode == 0, p.stderr
    names = sql_files()
    assert p.stdout.splitlines() == \
        [f"applied {n}" for n in names] + \
        [f"schema is up to date ({len(names)} migrations)"]
    want = [(str(int(n[:4])), n,
             hashlib.sha256((SQL_DIR / n).read_bytes()).hexdigest())
            for n in names]
    assert applied(pg, db) == want


def test_migrate_twice_is_a_no_op(pg, fresh_db):
    db, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    before = pg.sql("SELECT version, applied_at FROM schema_migrations", db=db)
    p = quayctl("migrate", "--db-uri", uri)
    assert p.returncode == 0, p.stderr
    assert p.stdout == \
        f"schema is up to date ({len(sql_files())} migrations)\n"
    assert pg.sql("SELECT version, applied_at FROM schema_migrations",
                  db=db) == before


def test_concurrent_migrates_apply_each_file_once(pg, fresh_db):
    db, uri = fresh_db
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        runs = list(ex.map(lambda _: quayctl("migrate", "--db-uri", uri),
                           range(4)))
    assert [r.returncode for r in runs] == [0] * 4, \
        [r.stderr for r in runs]
    lines = [line for r in runs for line in r.stdout.splitlines()]
    for name in sql_files():
        assert lines.count(f"applied {name}") == 1
    assert len(applied(pg, db)) == len(sql_files())


def test_status_lists_applied_and_pending_and_changes_nothing(
        pg, fresh_db, sql_copy):
    db, uri = fresh_db
    names = sql_files()
    (sql_copy / names[-1]).unlink()
    assert quayctl("migrate", "--db-uri", uri, "--dir",
                   sql_copy).returncode == 0
    p = quayctl("migrate", "--db-uri", uri, "--status")
    assert p.returncode == 0, p.stderr
    out = p.stdout.splitlines()
    assert [line.split()[:2] for line in out[:-1]] == \
        [["applied", n] for n in names[:-1]] + [["pending", names[-1]]]
    assert out[-1] == f"{len(names) - 1} applied, 1 pending"
    assert len(applied(pg, db)) == len(names) - 1


def test_changed_applied_file_is_refused_and_nothing_is_applied(
        pg, fresh_db, sql_copy):
    db, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    first = sql_files()[0]
    with open(sql_copy / first, "a") as f:
        f.write("-- edited after it was applied\n")
    (sql_copy / "9999_new_table.sql").write_text(
        "-- test\nCREATE TABLE migrate_test_new (id int);\n")
    p = quayctl("migrate", "--db-uri", uri, "--dir", sql_copy)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and first in p.stderr
    assert p.stderr.startswith("quayctl: ")
    assert pg.sql("SELECT to_regclass('migrate_test_new')", db=db) == [("",)]
    assert len(applied(pg, db)) == len(sql_files())
    p = quayctl("migrate", "--db-uri", uri, "--dir", sql_copy, "--status")
    assert p.returncode == 1
    assert f"CHANGED  {first}" in p.stdout


def test_missing_applied_file_is_refused(fresh_db, sql_copy):
    _, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    last = sql_files()[-1]
    (sql_copy / last).unlink()
    p = quayctl("migrate", "--db-uri", uri, "--dir", sql_copy)
    assert p.returncode == 1
    assert last in p.stderr and "missing" in p.stderr


def test_broken_file_is_rolled_back_and_error_names_file_and_line(
        pg, fresh_db, sql_copy):
    db, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    (sql_copy / "9999_broken.sql").write_text(
        "-- test\nCREATE TABLE migrate_test_partial (id int);\n\n"
        "SELECT nope FROM\n    no_such_table;\n")
    p = quayctl("migrate", "--db-uri", uri, "--dir", sql_copy)
    assert p.returncode == 1
    assert p.stderr.startswith("quayctl: 9999_broken.sql line 5: ")
    assert "no_such_table" in p.stderr
    assert pg.sql("SELECT to_regclass('migrate_test_partial')",
                  db=db) == [("",)]
    assert len(applied(pg, db)) == len(sql_files())


def test_file_with_a_bad_name_is_an_error(fresh_db, sql_copy):
    _, uri = fresh_db
    (sql_copy / "0100_Bad-Name.sql").write_text("SELECT 1;\n")
    p = quayctl("migrate", "--db-uri", uri, "--dir", sql_copy)
    assert p.returncode == 1
    assert "0100_Bad-Name.sql" in p.stderr


def test_connection_error_does_not_print_the_password():
    p = quayctl("migrate", "--db-uri",
                f"postgresql://quay:S3cretPw@127.0.0.1:{harness.free_port()}"
                "/quay")
    assert p.returncode == 1
    assert p.stderr.startswith("quayctl: ") and p.stderr.count("\n") == 1
    assert "S3cretPw" not in p.stdout + p.stderr


def test_config_adds_storage_locations(pg, fresh_db, tmp_path):
    db, uri = fresh_db
    cfg = harness.make_config(
        tmp_path / "config.yaml", uri, tmp_path / "storage",
        DISTRIBUTED_STORAGE_CONFIG={
            "default": ["LocalStorage", {"storage_path": str(tmp_path)}],
            "second": ["LocalStorage", {"storage_path": str(tmp_path)}],
        })
    p = quayctl("migrate", "--config", cfg)
    assert p.returncode == 0, p.stderr
    assert "added storage location second" in p.stdout
    assert pg.sql("SELECT name FROM imagestoragelocation ORDER BY name",
                  db=db) == [("default",), ("second",)]
    p = quayctl("migrate", "--config", cfg)
    assert p.returncode == 0 and "added" not in p.stdout


def pbkdf2_matches(stored, password):
    """Checks a $pbkdf2-sha256$ hash with hashlib (independent of C)."""
    def ab64(s):
        s = s.replace(".", "+")
        return base64.b64decode(s + "=" * (-len(s) % 4))
    scheme, rounds, salt, checksum = stored.split("$")[1:]
    assert scheme == "pbkdf2-sha256"
    return hashlib.pbkdf2_hmac("sha256", password.encode(), ab64(salt),
                               int(rounds)) == ab64(checksum)


def test_user_create_stores_a_pbkdf2_hash_of_stdin(pg, fresh_db):
    db, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    p = quayctl("user", "create", "alice", "--db-uri", uri,
                "--password-stdin", stdin="correct horse\n")
    assert p.returncode == 0, p.stderr
    [(stored, email, verified, enabled)] = pg.sql(
        "SELECT password_hash, email, verified, enabled FROM \"user\" "
        "WHERE username = 'alice'", db=db)
    assert (email, verified, enabled) == ("alice@localhost", "t", "t")
    assert pbkdf2_matches(stored, "correct horse")
    assert pg.sql("SELECT k.name FROM logentry l JOIN logentrykind k "
                  "ON k.id = l.kind_id", db=db) == [("user_create",)]


def test_user_create_existing_fails_unless_if_not_exists(pg, fresh_db):
    _, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    args = ("user", "create", "bob", "--db-uri", uri, "--password-stdin")
    assert quayctl(*args, stdin="password1\n").returncode == 0
    p = quayctl(*args, stdin="password1\n")
    assert p.returncode == 1 and "already exists" in p.stderr
    p = quayctl(*args, "--if-not-exists", stdin="password1\n")
    assert p.returncode == 0 and "already exists" in p.stdout


@pytest.mark.parametrize("name", ["a", "Alice", "-ab", "ab-", "a..b",
                                  "a+b", "a" * 256])
def test_user_create_rejects_names_outside_quays_rule(fresh_db, name):
    _, uri = fresh_db
    p = quayctl("user", "create", name, "--db-uri", uri, "--password-stdin",
                stdin="password1\n")
    assert p.returncode in (1, 2)
    assert p.stderr.startswith("quayctl: ")


def test_user_create_rejects_a_short_password(fresh_db):
    _, uri = fresh_db
    p = quayctl("user", "create", "carol", "--db-uri", uri,
                "--password-stdin", stdin="short\n")
    assert p.returncode == 1 and "8 characters" in p.stderr


def test_user_passwd_replaces_the_hash(pg, fresh_db):
    db, uri = fresh_db
    assert quayctl("migrate", "--db-uri", uri).returncode == 0
    assert quayctl("user", "create", "dave", "--db-uri", uri,
                   "--password-stdin", stdin="password1\n").returncode == 0
    p = quayctl("user", "passwd", "dave", "--db-uri", uri,
                "--password-stdin", stdin="password2\n")
    assert p.returncode == 0, p.stderr
    [(stored,)] = pg.sql("SELECT password_hash FROM \"user\" "
                         "WHERE username = 'dave'", db=db)
    assert pbkdf2_matches(stored, "password2")
    p = quayctl("user", "passwd", "nobody", "--db-uri", uri,
                "--password-stdin", stdin="password2\n")
    assert p.returncode == 1
