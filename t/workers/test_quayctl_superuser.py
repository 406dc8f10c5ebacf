"""quayctl superuser list | add NAME | remove NAME --config FILE: edits
SUPER_USERS in config.yaml in place for the three shapes people write
(block list, one-line flow list, no key), keeps every other byte, writes
atomically, refuses what it cannot edit safely or what would not load,
and a reloaded registry then treats the user as a superuser."""

import os
import subprocess

import pytest

import harness
from api import Api, assert_error, create_token, create_user


BASE = """\
# config.yaml for the quayctl superuser tests
SERVER_HOSTNAME: localhost:8080   # where clients reach us
PREFERRED_URL_SCHEME: http
DB_URI: postgresql://quay@127.0.0.1:5432/quay
DISTRIBUTED_STORAGE_CONFIG:
  default:
    - LocalStorage
    - {storage_path: /var/lib/quay/storage}
DISTRIBUTED_STORAGE_PREFERENCE: [default]
AUTHENTICATION_TYPE: Database
"""

TAIL = """\
# features
FEATURE_ANONYMOUS_ACCESS: true
"""


def quayctl(*args):
    return subprocess.run([str(harness.QUAYCTL), "superuser", *map(str, args)],
                          capture_output=True, text=True)


def add(path, name):
    return quayctl("add", name, "--config", path)


def remove(path, name):
    return quayctl("remove", name, "--config", path)


def listed(path):
    res = quayctl("list", "--config", path)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def assert_refused(res, path, before, status=1):
    """One line on stderr, non-zero exit, the file byte for byte as it
    was, and no temporary file left behind."""
    assert res.returncode == status, (res.stdout, res.stderr)
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("quayctl: ")
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# The three shapes ---------------------------------------------------------

def test_add_to_a_block_list(build, tmp_path):
    block = ("SUPER_USERS:\n"
             "    - admin     # the first one\n"
             "    # ops joined later\n"
             '    - "ops"\n')
    path = write(tmp_path, BASE + block + TAIL)
    res = add(path, "bob")
    assert res.returncode == 0, res.stderr
    assert "nginx -s reload" in res.stdout
    assert path.read_text() == BASE + block + "    - bob\n" + TAIL
    assert listed(path) == ["admin", "ops", "bob"]


def test_add_to_a_block_list_at_column_zero(build, tmp_path):
    path = write(tmp_path, BASE + "SUPER_USERS:\n- admin\n" + TAIL)
    assert add(path, "bob").returncode == 0
    assert path.read_text() == (BASE + "SUPER_USERS:\n- admin\n- bob\n"
                                + TAIL)


def test_add_to_a_flow_list(build, tmp_path):
    # what the test harness itself writes (JSON style), with a comment
    path = write(tmp_path, BASE + 'SUPER_USERS: ["admin"]  # admins\n'
                 + TAIL)
    res = add(path, "bob")
    assert res.returncode == 0, res.stderr
    assert path.read_text() == (BASE + 'SUPER_USERS: ["admin", bob]'
                                "  # admins\n" + TAIL)
    assert listed(path) == ["admin", "bob"]


def test_add_to_an_empty_flow_list(build, tmp_path):
    path = write(tmp_path, BASE + "SUPER_USERS: []\n" + TAIL)
    assert add(path, "bob").returncode == 0
    assert path.read_text() == BASE + "SUPER_USERS: [bob]\n" + TAIL


def test_add_when_the_key_is_absent(build, tmp_path):
    # no final newline either
    path = write(tmp_path, BASE + "FEATURE_ANONYMOUS_ACCESS: true")
    res = add(path, "bob")
    assert res.returncode == 0, res.stderr
    assert path.read_text() == (BASE + "FEATURE_ANONYMOUS_ACCESS: true\n"
                                "SUPER_USERS:\n  - bob\n")
    assert listed(path) == ["bob"]


def test_add_keeps_crlf_line_endings(build, tmp_path):
    text = (BASE + "SUPER_USERS:\n  - admin\n" + TAIL).replace("\n", "\r\n")
    path = write(tmp_path, text)
    assert add(path, "bob").returncode == 0
    assert path.read_bytes() == text.replace(
        "  - admin\r\n", "  - admin\r\n  - bob\r\n").encode()


@pytest.mark.parametrize("name", ["true", "null", "no", "on", "yes", "1234",
                                  "0x1f", "1.5"])
def test_names_yaml_would_misread_are_quoted(build, tmp_path, name):
    path = write(tmp_path, BASE + "SUPER_USERS:\n  - admin\n")
    assert add(path, name).returncode == 0, name
    assert path.read_text().endswith(f'  - admin\n  - "{name}"\n')
    assert listed(path) == ["admin", name]


# Idempotence --------------------------------------------------------------

@pytest.mark.parametrize("shape", [
    "SUPER_USERS:\n  - admin\n", 'SUPER_USERS: ["admin"]\n', ""])
def test_adding_twice_changes_nothing_the_second_time(build, tmp_path,
                                                      shape):
    path = write(tmp_path, BASE + shape + TAIL)
    assert add(path, "bob").returncode == 0
    after_first = path.read_bytes()
    inode = path.stat().st_ino
    res = add(path, "bob")
    assert res.returncode == 0, res.stderr
    assert "nothing to do" in res.stdout
    assert path.read_bytes() == after_first
    assert path.stat().st_ino == inode          # not even rewritten
    assert listed(path).count("bob") == 1


# remove -------------------------------------------------------------------

def test_remove_from_a_block_list(build, tmp_path):
    path = write(tmp_path, BASE + "SUPER_USERS:\n  - admin\n  - bob\n"
                 + TAIL)
    assert remove(path, "admin").returncode == 0
    assert path.read_text() == BASE + "SUPER_USERS:\n  - bob\n" + TAIL
    # the last one leaves an empty list, which still loads
    assert remove(path, "bob").returncode == 0
    assert path.read_text() == BASE + "SUPER_USERS: []\n" + TAIL
    assert listed(path) == []
    res = remove(path, "bob")
    assert res.returncode == 0 and "nothing to do" in res.stdout


def test_remove_from_a_flow_list(build, tmp_path):
    path = write(tmp_path, BASE + "SUPER_USERS: [admin, 'bob', carl] # x\n"
                 + TAIL)
    assert remove(path, "bob").returncode == 0
    assert path.read_text() == (BASE + "SUPER_USERS: [admin, carl] # x\n"
                                + TAIL)


# Refusals -----------------------------------------------------------------

@pytest.mark.parametrize("name", ["Bob", "b", "-bob", "bob..x", "bob+bot",
                                  "bo b", "x" * 256, ""])
def test_bad_name_is_refused(build, tmp_path, name):
    path = write(tmp_path, BASE + "SUPER_USERS: [admin]\n")
    before = path.read_bytes()
    # "-bob" reads as an option: a usage error
    assert_refused(add(path, name), path, before,
                   status=2 if name.startswith("-") else 1)


@pytest.mark.parametrize("shape", [
    "SUPER_USERS: [admin,\n  ops]\n",              # flow over two lines
    "SUPER_USERS: admin\n",                        # a scalar
    "SUPER_USERS:\n  - admin\n  -\n    - ops\n",   # nested
    "SUPER_USERS:\n  - [admin]\n",
    "SUPER_USERS: [admin]\nSUPER_USERS: [ops]\n",  # twice
])
def test_shapes_it_cannot_edit_are_refused(build, tmp_path, shape):
    path = write(tmp_path, BASE + shape + TAIL)
    before = path.read_bytes()
    res = add(path, "bob")
    assert_refused(res, path, before)


def test_a_file_that_does_not_load_is_left_alone(build, tmp_path):
    path = write(tmp_path, BASE.replace("SERVER_HOSTNAME", "# gone")
                 + "SUPER_USERS: [admin]\n")
    before = path.read_bytes()
    res = add(path, "bob")
    assert_refused(res, path, before)
    assert "fix it first" in res.stderr


def test_an_edit_that_would_not_load_is_not_written(build, tmp_path):
    # after a document end marker, an appended key is no longer part of
    # the configuration: the check after the edit catches it
    path = write(tmp_path, BASE + "...\n")
    before = path.read_bytes()
    res = add(path, "bob")
    assert_refused(res, path, before)
    assert "unchanged" in res.stderr


@pytest.mark.parametrize("args", [
    ("add", "bob"),                                 # no --config
    ("add", "--config"),
    ("frobnicate", "bob", "--config", "x.yaml"),
    ("list", "extra", "--config", "x.yaml"),
    ("add", "--config", "x.yaml"),                  # no NAME
])
def test_usage_errors(build, args):
    res = quayctl(*args)
    assert res.returncode == 2
    assert res.stderr.startswith("quayctl: ")


def test_missing_file(build, tmp_path):
    res = add(tmp_path / "nope.yaml", "bob")
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1


# File system ------------------------------------------------------------

def test_mode_is_kept_and_a_symlink_followed(build, tmp_path):
    real = write(tmp_path, BASE + "SUPER_USERS: [admin]\n", "real.yaml")
    real.chmod(0o640)
    link = tmp_path / "config.yaml"
    link.symlink_to("real.yaml")
    assert add(link, "bob").returncode == 0
    assert link.is_symlink()
    assert real.read_text().endswith("SUPER_USERS: [admin, bob]\n")
    assert (real.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml",
                                                          "real.yaml"]


def test_concurrent_adds_lose_nothing(build, tmp_path):
    path = write(tmp_path, BASE + "SUPER_USERS:\n  - admin\n")
    names = [f"user{i}" for i in range(8)]
    procs = [subprocess.Popen([str(harness.QUAYCTL), "superuser", "add", n,
                               "--config", str(path)],
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
             for n in names]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert sorted(listed(path)) == sorted(["admin"] + names)


# The registry -------------------------------------------------------------

def test_reloaded_registry_treats_the_user_as_superuser(start_registry):
    registry = start_registry()
    create_user(registry, "vera")
    api = Api(registry, create_token(registry, "vera"))
    assert_error(api.get("/superuser/users/"), 403, "insufficient_scope")
    assert api.get("/user/").json()["super_user"] is False

    res = add(registry.config_path, "vera")
    assert res.returncode == 0, res.stderr
    assert "nginx -s reload" in res.stdout
    registry.reload()
    assert api.get("/superuser/users/").status_code == 200
    assert api.get("/user/").json()["super_user"] is True
    # the harness's own entry is still there
    users = {u["username"]: u for u in
             api.get("/superuser/users/").json()["users"]}
    assert users["vera"]["super_user"] is True

    assert remove(registry.config_path, "vera").returncode == 0
    registry.reload()
    assert_error(api.get("/superuser/users/"), 403, "insufficient_scope")
    assert "admin" in listed(registry.config_path)
