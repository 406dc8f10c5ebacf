"""Fixtures for the end-to-end tests with the real clients (skopeo 1.9,
podman 4.3) against the registry.

    target      module    the registry under test: ours (the `registry`
                          fixture of t/conftest.py, with users alice and bob
                          created by quayctl), or a peer named by
                          QUAY_TEST_REGISTRY_URL
    tools       session   runs client commands in an isolated environment
    client      module    client(name) -> Client: an identity with its own
                          authfile, logged in as name ("anonymous": never)
    podman      module    Podman: podman with private storage

Isolation: every command gets a private HOME, TMPDIR, registries.conf,
containers.conf and storage.conf, an explicit --authfile, and (as root,
when unshare(1) works) a private mount namespace in which the blob-info
cache /var/lib/containers/cache is a per-session directory, so that
nothing a client learnt in an earlier run changes what it does now.  Podman
also gets its own --root/--runroot/--tmpdir with the vfs driver.

Peer mode, to prove the tests themselves against another registry:
    QUAY_TEST_REGISTRY_URL=http://127.0.0.1:PORT   no build, no nginx
    QUAY_TEST_REGISTRY_CREDS=user:password          optional: the peer
        requires this one login (e.g. distribution with htpasswd)
Without credentials the login and access-control tests skip; with one
login only, the tests that need two distinct users skip.
"""

import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

import harness


EXTERNAL_URL = os.environ.get("QUAY_TEST_REGISTRY_URL", "").rstrip("/")
EXTERNAL_CREDS = os.environ.get("QUAY_TEST_REGISTRY_CREDS", "")

# Appended to repository names: a peer registry keeps its data between
# runs, and a run must not see the last one's tags.
RUN = secrets.token_hex(3)

PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}

# What a refused pull or push may say; a connection error is not one.
ACCESS_REFUSED = re.compile(
    r"unauthorized|denied|authentication required|forbidden|"
    r"invalid username/password|manifest unknown|name unknown|"
    r"repository name not known|not found|\b40[134]\b", re.I)
NOT_REFUSAL = re.compile(r"connection refused|no such host|timeout|EOF\b",
                         re.I)

CACHE_DIR = Path("/var/lib/containers/cache")


# ------------------------------------------------------------------ running

@dataclass
class Result:
    """A finished client command: argv, rc, out (stdout bytes), text
    (stdout decoded), err (stderr text)."""
    argv: list
    rc: int
    out: bytes
    err: str

    @property
    def text(self):
        return self.out.decode(errors="replace")

    @property
    def output(self):
        return self.text + "\n" + self.err

    def refused(self):
        """True when the command failed because access was refused (not
        because the registry was unreachable)."""
        return bool(self.rc != 0 and ACCESS_REFUSED.search(self.output)
                    and not NOT_REFUSAL.search(self.output))

    def __str__(self):
        return (f"$ {' '.join(self.argv)}\n(exit {self.rc})\n"
                f"--- stdout\n{self.text[-4000:]}\n"
                f"--- stderr\n{self.err[-6000:]}")


class ClientError(AssertionError):
    pass


class Tools:
    """Runs skopeo/podman with the isolated environment (see the module
    doc).  dir holds the private HOME, TMPDIR, config files and cache."""

    def __init__(self, dirpath):
        self.dir = Path(dirpath)
        home = self.dir / "home"
        tmp = self.dir / "tmp"
        self.cache = self.dir / "blob-info-cache"
        for d in (home, tmp, self.cache):
            d.mkdir(parents=True, exist_ok=True)
        (self.dir / "registries.conf").write_text(
            'unqualified-search-registries = []\nshort-name-mode = '
            '"disabled"\n')
        (self.dir / "containers.conf").write_text(
            '[engine]\nevents_logger = "none"\ncgroup_manager = '
            '"cgroupfs"\n')
        self.storage_conf = self.dir / "storage.conf"
        self.storage_conf.write_text(
            f'[storage]\ndriver = "vfs"\n'
            f'graphroot = "{self.dir}/storage-unused"\n'
            f'runroot = "{self.dir}/run-unused"\n')
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_DATA_HOME": str(home / ".local/share"),
            "XDG_RUNTIME_DIR": str(home / "run"),
            "TMPDIR": str(tmp),
            "DOCKER_CONFIG": str(home / ".docker"),
            "CONTAINERS_REGISTRIES_CONF": str(self.dir / "registries.conf"),
            "CONTAINERS_CONF": str(self.dir / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
            "LC_ALL": "C.UTF-8",
        }
        (home / "run").mkdir(mode=0o700, exist_ok=True)
        self.prefix = self._namespace_prefix()

    def _namespace_prefix(self):
        """The command prefix that mounts the private blob-info cache, or
        [] when that cannot be done (not root, no unshare)."""
        if not harness.IS_ROOT:
            return []
        try:
            # The clients create it on first use anyway; it stays empty.
            CACHE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError:
            return []
        prefix = ["unshare", "--mount", "--propagation", "private", "--",
                  "sh", "-c",
                  f'mount --bind "$0" {CACHE_DIR} && exec "$@"',
                  str(self.cache)]
        try:
            p = subprocess.run(prefix + ["true"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return []
        return prefix if p.returncode == 0 else []

    def run(self, argv, check=True, input=None, timeout=300):
        argv = [str(a) for a in argv]
        try:
            p = subprocess.run(self.prefix + argv, env=self.env,
                               input=input.encode() if isinstance(input, str)
                               else input,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise ClientError(f"$ {' '.join(argv)}\ntimed out after "
                              f"{timeout} s\n{(e.stderr or b'')[-4000:]!r}")
        r = Result(argv, p.returncode, p.stdout,
                   p.stderr.decode(errors="replace"))
        if check and r.rc != 0:
            raise ClientError(f"client command failed:\n{r}")
        return r


# ------------------------------------------------------------------- target

@dataclass
class Target:
    """The registry under test.

    url, host ("127.0.0.1:PORT"), external (a peer, not ours), auth (it
    takes logins), per_user (distinct users with their own namespaces),
    accounts: identity -> (username, password), registry (ours, or None).
    """
    url: str
    host: str
    external: bool
    auth: bool
    per_user: bool
    accounts: dict = field(default_factory=dict)
    registry: object = None

    def ref(self, repo, tag=None, digest=None):
        """A docker:// reference to repo (with :tag or @digest)."""
        ref = f"docker://{self.host}/{repo}"
        if digest:
            return f"{ref}@{digest}"
        return f"{ref}:{tag}" if tag else ref

    def name(self, repo, tag=None, digest=None):
        """The same without the transport (what podman takes)."""
        return self.ref(repo, tag, digest)[len("docker://"):]

    def need_auth(self):
        if not self.auth:
            pytest.skip("the peer registry takes no logins")

    def need_users(self):
        self.need_auth()
        if not self.per_user:
            pytest.skip("the peer registry has no per-user namespaces")

    # raw HTTP, for what no client command shows

    def get(self, path, account=None, headers=None):
        """GET url+path, answering a Bearer challenge with a token for
        account (an identity, or None for anonymous) as a client would."""
        s = requests.Session()
        r = s.get(self.url + path, headers=headers, timeout=30)
        if r.status_code != 401:
            return r
        auth = None
        if account and account in self.accounts:
            auth = self.accounts[account]
        challenge = r.headers.get("WWW-Authenticate", "")
        if challenge.lower().startswith("basic"):
            return s.get(self.url + path, headers=headers, auth=auth,
                         timeout=30)
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = params.pop("realm", None)
        if not realm:
            return r
        m = re.match(r"/v2/(.+?)/(manifests|blobs|tags|referrers)/", path)
        if "scope" not in params and m:
            params["scope"] = f"repository:{m.group(1)}:pull"
        t = s.get(realm, params=params, auth=auth, timeout=30)
        if t.status_code != 200:
            return t
        body = t.json()
        token = body.get("token") or body.get("access_token")
        h = dict(headers or {})
        h["Authorization"] = f"Bearer {token}"
        return s.get(self.url + path, headers=h, timeout=30)


def _create_users(reg):
    for name, password in PASSWORDS.items():
        harness.run([harness.QUAYCTL, "user", "create", name, "--db-uri",
                     reg.db_uri, "--password-stdin", "--if-not-exists"],
                    input=password + "\n", timeout=60)


@pytest.fixture(scope="module")
def target(request):
    if EXTERNAL_URL:
        u = urlparse(EXTERNAL_URL)
        accounts = {}
        if EXTERNAL_CREDS:
            user, _, password = EXTERNAL_CREDS.partition(":")
            accounts = {n: (user, password) for n in PASSWORDS}
        return Target(EXTERNAL_URL, u.netloc, True, bool(EXTERNAL_CREDS),
                      False, accounts)
    reg = request.getfixturevalue("registry")
    _create_users(reg)
    return Target(reg.url, f"127.0.0.1:{reg.port}", False, True, True,
                  {n: (n, p) for n, p in PASSWORDS.items()}, reg)


# ------------------------------------------------------------------ clients

@pytest.fixture(scope="session")
def tools(tmp_root):
    return Tools(tmp_root.mkdir("clients"))


_TLS_COPY = ["--src-tls-verify=false", "--dest-tls-verify=false"]


class Client:
    """One identity: its own authfile, used by every command it runs.

    name is the namespace it pushes to ("alice", "bob", or "anonymous"),
    user/password its login (None for anonymous or a peer without
    logins)."""

    def __init__(self, tools, target, name, workdir):
        self.tools = tools
        self.target = target
        self.name = name
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.authfile = self.dir / "auth.json"
        self.authfile.write_text("{}\n")
        self.user, self.password = target.accounts.get(name, (None, None))

    def __repr__(self):
        return f"<Client {self.name}>"

    def repo(self, name):
        """A repository name in this identity's namespace, unique to this
        run."""
        ns = "alice" if self.name == "anonymous" else self.name
        return f"{ns}/{name}-{RUN}"

    # skopeo

    def skopeo(self, cmd, *args, check=True, input=None, debug=False,
               timeout=300):
        tls = _TLS_COPY if cmd in ("copy", "sync") else ["--tls-verify=false"]
        if cmd in ("logout",):
            tls = []
        argv = ["skopeo"] + (["--debug"] if debug else []) + \
            [cmd, "--authfile", self.authfile] + tls + list(args)
        return self.tools.run(argv, check=check, input=input,
                              timeout=timeout)

    def login(self, password=None, user=None, check=True):
        return self.skopeo("login", "-u", user or self.user,
                           "--password-stdin", self.target.host,
                           input=(password or self.password) + "\n",
                           check=check)

    def copy(self, src, dst, *flags, check=True, debug=False):
        return self.skopeo("copy", *flags, src, dst, check=check,
                           debug=debug)

    def inspect_raw(self, ref, *flags, check=True):
        return self.skopeo("inspect", "--raw", *flags, ref, check=check)

    def inspect(self, ref, *flags):
        return json.loads(self.skopeo("inspect", *flags, ref).out)

    def list_tags(self, repo):
        return json.loads(self.skopeo(
            "list-tags", self.target.ref(repo)).out)["Tags"]

    def auth_entries(self):
        """The registries this identity's authfile holds credentials
        for."""
        return set(json.loads(self.authfile.read_text() or "{}")
                   .get("auths", {}))


@pytest.fixture(scope="module")
def client(tools, target, tmp_root):
    """client(name, login=True) -> Client.  "alice" and "bob" are logged
    in (when the target takes logins) once per module and shared;
    login=False or "anonymous" gives a fresh identity with an empty
    authfile."""
    made = {}

    def make(name, login=True):
        shared = login and name != "anonymous"
        if shared and name in made:
            return made[name]
        c = Client(tools, target, name, tmp_root.mkdir(f"client-{name}"))
        if shared:
            if target.auth:
                c.login()
            made[name] = c
        return c

    return make


# ------------------------------------------------------------------- podman

class Podman:
    """podman with private storage (vfs) under dir."""

    def __init__(self, tools, target, dirpath):
        self.tools = tools
        self.target = target
        self.dir = Path(dirpath)
        self.base = ["podman", "--root", self.dir / "root",
                     "--runroot", self.dir / "runroot",
                     "--storage-driver", "vfs",
                     "--tmpdir", self.dir / "tmp",
                     "--events-backend", "none",
                     "--cgroup-manager", "cgroupfs"]

    def __call__(self, cmd, *args, client=None, check=True, input=None,
                 timeout=300):
        """Runs podman CMD ARGS; with client, its --authfile (and plain
        HTTP for the commands that reach the registry)."""
        extra = []
        if client is not None:
            extra += ["--authfile", client.authfile]
        if cmd in ("login", "push", "pull"):
            extra.append("--tls-verify=false")
        return self.tools.run(self.base + [cmd] + extra + list(args),
                              check=check, input=input, timeout=timeout)

    def login(self, client, password=None, user=None, check=True):
        return self("login", "-u", user or client.user, "--password-stdin",
                    self.target.host, client=client, check=check,
                    input=(password or client.password) + "\n")

    def inspect(self, name):
        return json.loads(self("image", "inspect", name).out)[0]

    def exists(self, name):
        return self("image", "exists", name, check=False).rc == 0


@pytest.fixture(scope="module")
def podman(tools, target, tmp_root):
    return Podman(tools, target, tmp_root.mkdir("podman"))
