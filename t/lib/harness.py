"""Integration-test harness: real PostgreSQL 15, Redis and nginx with the
quay module, each on a free 127.0.0.1 port under one temporary directory.

Every server is a direct child of the test process, started in its own
session (so a terminal ^C reaches pytest, which stops them in order) and with
a parent-death signal (so they also go away if pytest is killed outright).
Everything started is remembered and stopped at exit, even after a failure.
Waits poll a condition against a deadline; nothing sleeps blindly.

t/conftest.py turns these classes into the fixtures the tests use: build,
bindir, pg, redis, make_config, registry and start_registry.
"""

import atexit
import ctypes
import fcntl
import importlib.util
import itertools
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
BINDIR = BUILD / "bin"
QUAYCTL = BINDIR / "quayctl"
MODULE = BUILD / "ngx_http_quay_module.so"
NGINX = os.environ.get("QUAY_TEST_NGINX", "/usr/sbin/nginx")
PG_BIN = Path(os.environ.get("QUAY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
IS_ROOT = os.geteuid() == 0

# Set QUAY_TEST_KEEP=1 to keep the temporary directory (logs, configs).
KEEP = os.environ.get("QUAY_TEST_KEEP", "") not in ("", "0")

# Lines that fail a registry's teardown check.
BAD_LOG_LINE = re.compile(r"\[(alert|emerg|crit)\]")


class HarnessError(Exception):
    """A server did not start, stop or answer as expected."""


class SQLError(HarnessError):
    """psql reported an error; the message is psql's stderr."""


# ---------------------------------------------------------------- utilities

def wait_until(condition, timeout, what, interval=0.05):
    """Calls condition() until it returns a true value and returns that
    value; raises HarnessError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout} s waiting for "
                               f"{what}")
        time.sleep(interval)


_ports_given = set()


def load_test_file(relpath):
    """The module of a file under t/ (a test file or a conftest), for its
    helpers: pytest imports test files in importlib mode, so they are not
    importable by name.  Loaded once per process."""
    name = "quay_t_" + re.sub(r"\W", "_", relpath.removesuffix(".py"))
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name,
                                                      ROOT / "t" / relpath)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on, never the same one
    twice in a session."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise HarnessError("no free port on 127.0.0.1")


def port_open(port, host="127.0.0.1"):
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path, lines=40):
    """The last lines of a text file, or a note that it is missing."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def run(cmd, check=True, **kw):
    """subprocess.run with text output captured; on failure raises
    HarnessError with the command and its output."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    p = subprocess.run([str(c) for c in cmd], **kw)
    if check and p.returncode != 0:
        out = "\n".join(x for x in (p.stdout, p.stderr) if x)
        raise HarnessError(f"{' '.join(map(str, cmd))} exited "
                           f"{p.returncode}:\n{out}")
    return p


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _child_setup(sig):
    def setup():
        # Runs after the uid switch, which would clear the setting.
        _libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    return setup


def as_user(user):
    """Popen keywords that run a child as user (only when we are root)."""
    if not (IS_ROOT and user):
        return {}
    return dict(user=user, group=pwd.getpwnam(user).pw_gid, extra_groups=[])


def spawn(cmd, log_path, user=None, death_signal=signal.SIGTERM, **kw):
    """Starts a server in its own session with stdout and stderr appended to
    log_path; as root, user names the account it runs as."""
    kw.update(as_user(user))
    with open(log_path, "ab") as log:
        return subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True,
                                preexec_fn=_child_setup(death_signal), **kw)


def stop_process(proc, sig, timeout=20):
    """Sends sig, waits; escalates to SIGKILL after timeout seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def chown(path, user):
    """As root, gives path to user (the servers that write there)."""
    if IS_ROOT and user:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)


# Everything with a stop() that is still running; stopped at exit.
_live = []


def _stop_everything():
    for server in reversed(_live[:]):
        try:
            server.stop()
        except Exception as e:        # keep stopping the others
            print(f"harness: stopping {server!r}: {e}")


atexit.register(_stop_everything)


class TempRoot:
    """The session's temporary directory under /tmp, reachable by the
    postgres account (initdb refuses to run as root)."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="quay-test-", dir="/tmp"))
        self.path.chmod(0o755)
        self._counter = itertools.count(1)
        atexit.register(self.remove)

    def mkdir(self, name):
        """A new directory named name-N (mode 0755)."""
        d = self.path / f"{name}-{next(self._counter)}"
        d.mkdir(mode=0o755)
        d.chmod(0o755)
        return d

    def remove(self):
        if KEEP:
            print(f"harness: kept {self.path}")
            return
        shutil.rmtree(self.path, ignore_errors=True)


def make_build(targets=("all",)):
    """Runs make -s TARGETS at the repository root, one make at a time on
    this machine; raises HarnessError with make's output on failure."""
    BUILD.mkdir(exist_ok=True)
    with open(BUILD / ".harness-make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        run(["make", "-s", "-C", ROOT, *targets], timeout=900)


def migrate(db_uri):
    """Applies sql/ to db_uri with quayctl migrate."""
    run([QUAYCTL, "migrate", "--db-uri", db_uri], timeout=120)


# --------------------------------------------------------------- PostgreSQL

class Postgres:
    """A throw-away PostgreSQL 15 cluster: trust auth, fsync off, TCP on
    127.0.0.1 only.  Role quay is a superuser and owns database quay, which
    is migrated.  db_uri is postgresql://quay@127.0.0.1:PORT/quay."""

    user = "postgres"        # the account that runs it when we are root

    def __init__(self, dirpath, migrate_db=True):
        self.dir = Path(dirpath)
        self.data = self.dir / "data"
        self.log_path = self.dir / "postgres.log"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc = None
        _live.append(self)
        self._init()
        self.start()
        self.sql("CREATE ROLE quay SUPERUSER LOGIN", db="postgres",
                 user="postgres")
        self.sql("CREATE DATABASE quay OWNER quay", db="postgres",
                 user="postgres")
        self.db_uri = self.uri("quay")
        if migrate_db:
            migrate(self.db_uri)

    def __repr__(self):
        return f"<Postgres 127.0.0.1:{self.port}>"

    def uri(self, db):
        return f"postgresql://quay@{self.host}:{self.port}/{db}"

    def _init(self):
        self.data.mkdir(mode=0o700)
        chown(self.data, self.user)
        run([PG_BIN / "initdb", "-D", self.data, "-A", "trust", "--no-sync",
             "-U", "postgres", "-E", "UTF8", "--locale=C"],
            cwd=self.dir, timeout=120, **as_user(self.user))
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"""
# quay test harness
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = ''
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
""")

    def ready(self):
        return run([PG_BIN / "pg_isready", "-q", "-h", self.host,
                    "-p", self.port, "-t", "1"], check=False).returncode == 0

    def start(self):
        """Starts the cluster (same data, same port) and waits until it
        accepts connections."""
        if self.proc and self.proc.poll() is None:
            return
        if port_open(self.port):
            raise HarnessError(f"port {self.port} was taken while "
                               f"PostgreSQL was stopped")
        self.proc = spawn([PG_BIN / "postgres", "-D", self.data],
                          self.log_path, user=self.user,
                          death_signal=signal.SIGQUIT)

        def up():
            if self.proc.poll() is not None:
                raise HarnessError("postgres exited "
                                   f"{self.proc.returncode}:\n"
                                   f"{tail(self.log_path)}")
            return self.ready()
        wait_until(up, 60, f"PostgreSQL on port {self.port}")

    def stop(self):
        """Fast shutdown (SIGINT); waits for the postmaster to exit."""
        stop_process(self.proc, signal.SIGINT, timeout=30)

    def sql(self, query, db="quay", user="quay"):
        """Runs query with psql -c: several statements separated by ';' run
        in one transaction and the rows are those of the last one, as
        tuples of strings (NULL reads as '').  Raises SQLError on error."""
        p = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-F", "\x1f", "-R", "\x1e",
             "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
             "-U", user, "-d", db, "-c", query],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, timeout=120)
        if p.returncode != 0:
            raise SQLError(f"psql: {p.stderr.strip()}\nquery: {query}")
        # No rows print nothing; otherwise the records, then one newline.
        if not p.stdout:
            return []
        return [tuple(r.split("\x1f"))
                for r in p.stdout[:-1].split("\x1e")]

    def new_database(self, name):
        """Creates database name (owned by quay), migrates it and returns
        its db_uri."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise HarnessError(f"bad database name {name!r}")
        self.sql(f"CREATE DATABASE {name} OWNER quay", db="postgres")
        uri = self.uri(name)
        migrate(uri)
        return uri


# -------------------------------------------------------------------- Redis

class Redis:
    """redis-server on a free 127.0.0.1 port with no persistence; password
    is None unless given."""

    def __init__(self, dirpath, password=None):
        self.dir = Path(dirpath)
        self.port = free_port()
        self.password = password
        self.conf_path = self.dir / "redis.conf"
        self.log_path = self.dir / "redis.log"
        self.proc = None
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
                 'save ""', "appendonly no", "daemonize no", 'logfile ""']
        if password:
            lines.append(f"requirepass {password}")
        self.conf_path.write_text("\n".join(lines) + "\n")
        self.conf_path.chmod(0o600)
        _live.append(self)
        self.start()

    def __repr__(self):
        return f"<Redis 127.0.0.1:{self.port}>"

    def cli(self, *args):
        """Runs redis-cli against this server; returns its stdout."""
        env = dict(os.environ)
        if self.password:
            env["REDISCLI_AUTH"] = self.password
        p = run(["redis-cli", "-h", "127.0.0.1", "-p", self.port, *args],
                env=env, stderr=subprocess.PIPE, timeout=30)
        return p.stdout.strip()

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except HarnessError:
            return False

    def start(self):
        if self.proc and self.proc.poll() is None:
            return
        self.proc = spawn(["redis-server", self.conf_path], self.log_path)

        def up():
            if self.proc.poll() is not None:
                raise HarnessError("redis-server exited "
                                   f"{self.proc.returncode}:\n"
                                   f"{tail(self.log_path)}")
            return self.ping()
        wait_until(up, 30, f"Redis on port {self.port}")

    def stop(self):
        stop_process(self.proc, signal.SIGTERM)


# ------------------------------------------------------------------- config

def config_dict(db_uri, storage_path, redis=None, **extra):
    """The config.yaml keys for a registry using db_uri and a LocalStorage
    location at storage_path, with extra keys on top; an extra key whose
    value is None is removed.  redis is a Redis (or an object with port
    and password) for BUILDLOGS_REDIS and USER_EVENTS_REDIS."""
    cfg = {
        "SERVER_HOSTNAME": "localhost:8080",
        "PREFERRED_URL_SCHEME": "http",
        "DB_URI": db_uri,
        "DISTRIBUTED_STORAGE_CONFIG": {
            "default": ["LocalStorage", {"storage_path": str(storage_path)}],
        },
        "DISTRIBUTED_STORAGE_PREFERENCE": ["default"],
        "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS": ["default"],
        "SECRET_KEY": secrets.token_hex(32),
        "DATABASE_SECRET_KEY": secrets.token_hex(32),
        "SUPER_USERS": ["admin"],
        "AUTHENTICATION_TYPE": "Database",
        "FEATURE_ANONYMOUS_ACCESS": True,
        "CREATE_PRIVATE_REPO_ON_PUSH": True,
        "DEFAULT_TAG_EXPIRATION": "2w",
        "TAG_EXPIRATION_OPTIONS": ["0s", "1d", "1w", "2w", "4w"],
        "SETUP_COMPLETE": True,
    }
    if redis is not None:
        r = {"host": "127.0.0.1", "port": redis.port}
        if redis.password:
            r["password"] = redis.password
        cfg["BUILDLOGS_REDIS"] = r
        cfg["USER_EVENTS_REDIS"] = dict(r)
    for key, value in extra.items():
        if value is None:
            cfg.pop(key, None)
        else:
            cfg[key] = value
    return cfg


def write_config(path, cfg):
    """Writes cfg as YAML: one top-level key per line, each value in JSON
    flow style (which YAML parses), so line N names one key."""
    lines = ["# config.yaml written by the test harness (t/lib/harness.py)"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in cfg.items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def make_config(path, db_uri, storage_path, redis=None, **extra):
    """Writes a config.yaml at path (see config_dict); returns the path."""
    return write_config(path, config_dict(db_uri, storage_path, redis=redis,
                                          **extra))


# -------------------------------------------------------------------- nginx

def nginx_conf(prefix, port, config_path, error_log, worker_processes=2,
               main_extra="", http_extra="", server_extra="",
               log_level="info"):
    """nginx.conf text running the module under prefix on 127.0.0.1:port,
    in the foreground (daemon off)."""
    user = "user root;\n" if IS_ROOT else ""
    temps = "\n".join(f"    {t}_temp_path {prefix}/{t}_temp;"
                      for t in ("client_body", "proxy", "fastcgi", "uwsgi",
                                "scgi"))
    return f"""\
load_module {MODULE};
{user}daemon off;
master_process on;
worker_processes {worker_processes};
pid {prefix}/nginx.pid;
error_log {error_log} {log_level};
thread_pool quay threads=4;
env QUAY_DISTRIBUTED_STORAGE_PREFERENCE;
{main_extra}

events {{
    worker_connections 1024;
}}

http {{
    access_log {prefix}/access.log;
    sendfile on;
{temps}
    quay_config {config_path};
{http_extra}

    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        client_max_body_size 0;
{server_extra}

        location / {{
            quay_registry;
        }}

        # S3 driver requests and proxied pulls (conf/quay-storage.conf)
        include {ROOT / "conf" / "quay-storage.conf"};
    }}
}}
"""


class Registry:
    """nginx with the quay module on a free port, using its own database
    (pg.new_database), storage directory and config.yaml.

    Attributes: url, port, prefix, config_path, conf_path, storage_path,
    db_uri, pg, redis, session (requests.Session), ignore_log (regexes of
    error-log lines the teardown check tolerates).
    """

    _ids = itertools.count(1)

    def __init__(self, root, pg, redis, worker_processes=2, main_extra="",
                 http_extra="", server_extra="", **config):
        n = next(self._ids)
        self.pg = pg
        self.redis = redis
        self.prefix = root.mkdir("registry")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.storage_path = self.prefix / "storage"
        self.storage_path.mkdir()
        self.config_path = self.prefix / "config.yaml"
        self.conf_path = self.prefix / "nginx.conf"
        self.error_log_path = self.prefix / "error.log"
        self.db_uri = pg.new_database(f"quay_registry_{os.getpid()}_{n}")
        self.ignore_log = []
        self.proc = None
        self.session = requests.Session()
        self._nginx = dict(worker_processes=worker_processes,
                           main_extra=main_extra, http_extra=http_extra,
                           server_extra=server_extra)
        self._t = itertools.count(1)
        self.config = config_dict(self.db_uri, self.storage_path, redis=redis,
                                  SERVER_HOSTNAME=f"127.0.0.1:{self.port}")
        self.write_config(**config)
        self.conf_path.write_text(nginx_conf(
            self.prefix, self.port, self.config_path, self.error_log_path,
            **self._nginx))
        _live.append(self)
        self.start()

    def __repr__(self):
        return f"<Registry {self.url}>"

    # config

    def write_config(self, **overrides):
        """Rewrites config.yaml with overrides on top of the current keys
        (None removes a key); call reload() to apply it."""
        for key, value in overrides.items():
            if value is None:
                self.config.pop(key, None)
            else:
                self.config[key] = value
        write_config(self.config_path, self.config)

    # nginx processes

    def _cmd(self, *args, conf=None, prefix=None, error_log=None):
        return [NGINX, "-p", prefix or self.prefix,
                "-c", conf or self.conf_path,
                "-e", error_log or self.error_log_path, *args]

    def start(self):
        """Starts nginx and waits until the port accepts connections."""
        if self.proc and self.proc.poll() is None:
            return
        if port_open(self.port):
            raise HarnessError(f"port {self.port} is in use")
        self.proc = spawn(self._cmd(), self.prefix / "nginx.stderr")

        def up():
            if self.proc.poll() is not None:
                raise HarnessError(
                    f"nginx exited {self.proc.returncode}:\n"
                    f"{tail(self.prefix / 'nginx.stderr', 10)}\n"
                    f"{tail(self.error_log_path)}")
            return port_open(self.port)
        wait_until(up, 30, f"nginx on port {self.port}")

    def stop(self):
        """Graceful quit (SIGQUIT); waits for the master to exit."""
        stop_process(self.proc, signal.SIGQUIT, timeout=30)

    def reload(self, timeout=30):
        """nginx -s reload; waits until the new workers run and the old
        ones are shutting down.  Raises HarnessError if nginx refused the
        new configuration (with its [emerg] line)."""
        if not self.proc or self.proc.poll() is not None:
            raise HarnessError("reload: nginx is not running")
        offset = self.error_log_path.stat().st_size
        self.proc.send_signal(signal.SIGHUP)
        want = self._nginx["worker_processes"]

        def reloaded():
            with open(self.error_log_path, errors="replace") as f:
                f.seek(offset)
                text = f.read()
            if "[emerg]" in text or "[alert]" in text:
                bad = [l for l in text.splitlines()
                       if "[emerg]" in l or "[alert]" in l]
                raise HarnessError("reload failed: " + "\n".join(bad))
            return (text.count("start worker process") >= want
                    and text.count("gracefully shutting down") >= want)
        wait_until(reloaded, timeout, "nginx reload")

    def error_log(self):
        """The error log so far."""
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def nginx_t(self, config_path=None):
        """Runs nginx -t on a copy of this registry's nginx.conf that reads
        config_path (default: this registry's config.yaml).  Returns the
        CompletedProcess (text stdout/stderr); never raises on failure."""
        d = self.prefix / f"nginx-t-{next(self._t)}"
        d.mkdir()
        conf = d / "nginx.conf"
        conf.write_text(nginx_conf(d, self.port,
                                   config_path or self.config_path,
                                   d / "error.log", **self._nginx))
        return subprocess.run(
            [str(c) for c in self._cmd("-t", conf=conf, prefix=d,
                                       error_log=d / "error.log")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            timeout=60)

    def request(self, method, path, **kw):
        """requests' Session.request against url + path.  Defaults:
        timeout=30 and allow_redirects=False (redirects are for the test
        to inspect)."""
        kw.setdefault("timeout", 30)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, self.url + path, **kw)

    def log_problems(self):
        """[alert], [emerg] and [crit] lines not matched by ignore_log."""
        return [l for l in self.error_log().splitlines()
                if BAD_LOG_LINE.search(l)
                and not any(re.search(p, l) for p in self.ignore_log)]

    def close(self):
        """Stops nginx and asserts its error log is clean."""
        self.stop()
        self.session.close()
        if self in _live:
            _live.remove(self)
        bad = self.log_problems()
        assert not bad, ("nginx error log has [alert]/[emerg]/[crit] "
                         "lines:\n" + "\n".join(bad) + "\n--- tail of "
                         f"{self.error_log_path}:\n"
                         + tail(self.error_log_path, 60))
