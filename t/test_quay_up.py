"""tools/quay-up and tools/quay-down (what make run does), from a clean copy
of the repository: the tracked files plus untracked ones that are not
ignored, so nothing already built here helps.  The copy is built once, by
the first quay-up, for the whole module.

Each test brings the stack to the state it needs (up or down) itself; the
state directory is shared, which is what lets later tests check that state
survives a restart.
"""

import os
import re
import shutil
import signal
import stat
import subprocess
import threading
from pathlib import Path

import pytest
import requests

import harness

pytestmark = pytest.mark.slow


def clean_copy(dest):
    """Copies `git ls-files -co --exclude-standard` into dest."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                         cwd=harness.ROOT, stdout=subprocess.PIPE,
                         check=True).stdout
    for name in out.decode().split("\0"):
        src = harness.ROOT / name
        if not name or not os.path.lexists(src):   # deleted, not staged
            continue
        dst = dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        else:
            shutil.copy2(src, dst)


class Stack:
    """A clean repository copy and a QUAY_VAR for it."""

    def __init__(self, base):
        self.repo = base / "repo"
        self.repo.mkdir()
        clean_copy(self.repo)
        self.var = base / "var"
        self.port = harness.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ, QUAY_VAR=str(self.var),
                        QUAY_HTTP_PORT=str(self.port))

    def tool(self, name, *args, timeout=120):
        return subprocess.run([str(self.repo / "tools" / name), *args],
                              cwd=self.repo, env=self.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=timeout)

    def up(self, expect_ok=True):
        # The first one builds the copy: nginx configure and all.
        r = self.tool("quay-up", "--detach", timeout=1200)
        if expect_ok:
            assert r.returncode == 0, r.stdout
        return r

    def down(self):
        r = self.tool("quay-down")
        assert r.returncode == 0, r.stdout
        return r

    def stack_env(self):
        pairs = (l.split("=", 1) for l in
                 (self.var / "stack.env").read_text().splitlines()
                 if "=" in l and not l.startswith("#"))
        return dict(pairs)

    def db_uri(self):
        text = (self.var / "config.yaml").read_text()
        return re.search(r'^DB_URI: "([^"]+)"', text, re.M).group(1)

    def psql(self, query):
        r = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                            self.db_uri(), "-c", query],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stdout
        return r.stdout.strip()

    def credentials(self):
        return (self.var / "credentials").read_text()

    def password(self):
        m = re.search(r"^QUAY_ADMIN_PASSWORD=(.+)$", self.credentials(), re.M)
        return m.group(1)

    def health(self):
        return requests.get(self.url + "/health/instance", timeout=10)

    def leftovers(self):
        """Processes whose command line names the state directory, and
        ports of the stack that still accept connections."""
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            cmd = cmd.replace(b"\0", b" ").decode(errors="replace")
            if str(self.var) in cmd:
                found.append(f"{pid}: {cmd}")
        env = self.stack_env()
        for name, port in (("http", self.port), ("postgres", env["PG_PORT"]),
                           ("redis", env["REDIS_PORT"])):
            if harness.port_open(int(port)):
                found.append(f"{name} port {port} still open")
        return found

    def edit_config(self, pattern, replacement):
        path = self.var / "config.yaml"
        text, n = re.subn(pattern, replacement, path.read_text(), flags=re.M)
        assert n == 1, f"{pattern!r} not in config.yaml"
        path.write_text(text)


@pytest.fixture(scope="module")
def stack(tmp_root):
    s = Stack(tmp_root.mkdir("quay-up"))
    yield s
    if (s.var / "stack.env").exists():
        s.tool("quay-down")
        assert not s.leftovers()


def test_first_start_creates_state_and_answers_health(stack):
    r = stack.up()
    assert f"localhost:{stack.port}" in r.stdout
    pw = stack.password()
    assert f"-u admin -p '{pw}' localhost:{stack.port}" in r.stdout
    assert str(stack.var / "credentials") in r.stdout
    assert "podman push --tls-verify=false" in r.stdout

    h = stack.health()
    assert h.status_code == 200, h.text
    assert h.json()["status_code"] == 200

    mode = stat.S_IMODE((stack.var / "credentials").stat().st_mode)
    assert mode == 0o600
    lines = stack.credentials().splitlines()
    assert lines[:2] == ["QUAY_ADMIN_USER=admin", f"QUAY_ADMIN_PASSWORD={pw}"]
    assert len(lines) == 3 and lines[2].startswith("QUAY_ADMIN_TOKEN=")
    assert len(pw) >= 16

    # the admin's API token works, and is the superuser's
    token = lines[2].split("=", 1)[1]
    assert "QUAY_ADMIN_TOKEN" in r.stdout
    me = requests.get(f"http://127.0.0.1:{stack.port}/api/v1/user/",
                      headers={"Authorization": "Bearer " + token},
                      timeout=10)
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "admin"
    assert me.json()["super_user"] is True

    config = (stack.var / "config.yaml").read_text()
    assert config.startswith("#")
    assert f'SERVER_HOSTNAME: "localhost:{stack.port}"' in config
    assert not (stack.var / "config.yaml").stat().st_mode & stat.S_IROTH
    assert stack.psql("SELECT username FROM \"user\" "
                      "WHERE username = 'admin'") == "admin"


def test_start_while_running_says_so(stack):
    stack.up()
    r = stack.tool("quay-up", "--detach")
    assert r.returncode == 0 and "already running" in r.stdout, r.stdout
    r = stack.tool("quay-up")
    assert r.returncode == 1 and "already running" in r.stdout, r.stdout


def test_down_stops_every_process_and_twice_is_harmless(stack):
    stack.up()
    stack.down()
    assert stack.leftovers() == []
    r = stack.down()
    assert "nothing running" in r.stdout


def test_restart_keeps_password_and_data(stack):
    stack.up()
    pw = stack.password()
    stack.psql("CREATE TABLE IF NOT EXISTS quay_up_probe (v text);"
               "INSERT INTO quay_up_probe VALUES ('survives')")
    stack.down()
    stack.up()
    assert stack.password() == pw
    assert "survives" in stack.psql("SELECT v FROM quay_up_probe")
    assert stack.psql("SELECT count(*) FROM \"user\" "
                      "WHERE username = 'admin'") == "1"
    assert stack.health().status_code == 200


def test_bad_config_value_stops_the_start_naming_the_key(stack):
    stack.down()
    original = (stack.var / "config.yaml").read_text()
    stack.edit_config(r"^FEATURE_ANONYMOUS_ACCESS: true$",
                      "FEATURE_ANONYMOUS_ACCESS: maybe")
    try:
        r = stack.up(expect_ok=False)
        assert r.returncode != 0, r.stdout
        assert "FEATURE_ANONYMOUS_ACCESS" in r.stdout
        assert stack.leftovers() == []
    finally:
        (stack.var / "config.yaml").write_text(original)


def test_config_edit_takes_effect_on_next_start(stack):
    stack.down()
    hostname = f"127.0.0.1:{stack.port}"
    stack.edit_config(r"^SERVER_HOSTNAME: .*$",
                      f'SERVER_HOSTNAME: "{hostname}"')
    stack.up()
    assert f'SERVER_HOSTNAME: "{hostname}"' in \
        (stack.var / "config.yaml").read_text()      # not regenerated
    r = requests.get(stack.url + "/v2/", timeout=10)
    assert r.status_code == 401
    assert f'service="{hostname}"' in r.headers.get("WWW-Authenticate", "")


def test_foreground_run_stops_everything_on_sigint(stack):
    stack.down()
    p = subprocess.Popen([str(stack.repo / "tools" / "run")], cwd=stack.repo,
                         env=stack.env, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, start_new_session=True)
    lines = []

    def read():
        for line in p.stdout:
            lines.append(line)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        harness.wait_until(
            lambda: p.poll() is not None
            or any(l.startswith("Attached") for l in lines),
            120, "tools/run to attach")
        assert p.poll() is None, "".join(lines)
        assert stack.health().status_code == 200
        p.send_signal(signal.SIGINT)
        assert p.wait(60) == 0, "".join(lines)
        reader.join(10)
        assert stack.leftovers() == []
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
