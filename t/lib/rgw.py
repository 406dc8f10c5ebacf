"""A single-node Ceph RADOS Gateway for the S3 tests: one monitor, one OSD
on memstore and radosgw (beast frontend), all on 127.0.0.1 under one
directory, following platform-notes.md ("S3-compatible storage for tests").

The Ceph packages are not part of tools/setup: ensure_installed() installs
them (apt-get, as root, ~25-70 s) the first time a test asks for RGW, so a
`make test` with no S3 test in it never pays for them.  It raises
RgwUnavailable only when they cannot be installed (not root, apt
unreachable); every other problem is a HarnessError, which the `rgw`
fixture turns into a failure, never a skip.

    rgw = Rgw(tmp_root.mkdir("rgw"))      # starts mon, osd, radosgw
    rgw.endpoint, rgw.host, rgw.port       # http://127.0.0.1:PORT
    rgw.access_key, rgw.secret_key, rgw.region
    rgw.create_bucket("name")              # signed PUT /name, 200
    rgw.s3("GET", "/name", query={"list-type": "2"})  # signed request
    rgw.list_objects("name")               # keys (ListObjectsV2)
    rgw.stop_gateway(); rgw.start_gateway()  # radosgw only (outage tests)
    gw = rgw.add_gateway()                 # a second radosgw, same cluster
    gw.endpoint, gw.host, gw.port, gw.stop(), gw.start(), gw.s3(...)
    tls = make_tls(dirpath)                # throw-away CA + 127.0.0.1 cert
    gw = rgw.add_gateway(tls=tls)          # https://127.0.0.1:PORT
    rgw.stop()                             # everything, idempotent

Extra gateways are radosgw processes of their own (client.rgwN sections
in ceph.conf, own log log/client.rgwN.log) serving the same cluster, so
every bucket is visible through each; stopping one really closes its
port while the others keep answering.  They start in about a second.

The requests rgw.s3() makes are signed by a small SigV4 implementation in
this file (sigv4_authorization), independent of lib/quay_sigv4.c, so the
harness can set up and inspect storage without trusting the code under
test.  Daemons are started like the other servers in harness.py: own
session, parent-death signal, registered for stopping at exit.
"""

import datetime
import fcntl
import hashlib
import hmac
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import requests

import harness
from harness import HarnessError


PACKAGES = ("radosgw", "ceph-mon", "ceph-osd", "ceph-common")
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "ceph",
            "monmaptool")

ACCESS_KEY = "QUAYTESTACCESSKEY001"
SECRET_KEY = "quay-test-secret-key-0123456789abcdefghij"
REGION = "us-east-1"            # RGW does not enforce it (platform-notes)

S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"

# The rest of every radosgw's client section in ceph.conf.
RGW_CLIENT_CONF = """\
rgw thread pool size = 32
rgw init timeout = 60
rgw enable usage log = false
# The lifecycle thread sleeps 5 s holding up a SIGTERM shutdown.
rgw enable lc threads = false
ms mon client mode = crc secure
ms client mode = crc secure
"""

# Seconds spent in the last ensure_installed() that ran apt-get (0 when the
# packages were already there); reported by the fixture.
install_seconds = 0.0


class RgwUnavailable(Exception):
    """The Ceph packages are missing and cannot be installed here."""


# ------------------------------------------------------------- installation

def missing_binaries():
    return [b for b in BINARIES if shutil.which(b) is None]


def ensure_installed():
    """Installs the Ceph packages when a binary is missing; returns the
    seconds spent installing (0 if nothing was needed).  Raises
    RgwUnavailable when they cannot be installed."""
    global install_seconds

    if not missing_binaries():
        return 0.0
    if not harness.IS_ROOT:
        raise RgwUnavailable(
            f"Ceph RGW binaries missing ({', '.join(missing_binaries())}) "
            f"and not root: install {' '.join(PACKAGES)} "
            "(apt-get install --no-install-recommends)")
    harness.BUILD.mkdir(exist_ok=True)
    started = time.monotonic()
    # One installer at a time among concurrent test sessions; dpkg's own
    # lock is waited for too (other apt users on the machine).
    with open(harness.BUILD / ".harness-ceph-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if missing_binaries():
            _apt_install()
    install_seconds = time.monotonic() - started
    if missing_binaries():
        raise RgwUnavailable("apt-get installed the Ceph packages but "
                             f"{', '.join(missing_binaries())} still "
                             "missing")
    return install_seconds


def _apt_install():
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q", "install",
               "-y", "--no-install-recommends", *PACKAGES]
    attempts = []
    for cmd in (install,
                ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q",
                 "update"],
                install):
        try:
            p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=900)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RgwUnavailable(f"{' '.join(cmd)}: {e}") from e
        attempts.append((cmd, p))
        if cmd is install and p.returncode == 0:
            return
    out = "\n".join(f"$ {' '.join(c)} -> exit {p.returncode}\n"
                    + "\n".join(p.stdout.splitlines()[-15:])
                    for c, p in attempts)
    raise RgwUnavailable(f"cannot install {' '.join(PACKAGES)}:\n{out}")


# -------------------------------------------------------------------- SigV4

def _hmac(key, text):
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def s3_quote(text, keep_slash=True):
    """URI-encodes the S3 way (RFC 3986 unreserved stay, %XX uppercase)."""
    return urllib.parse.quote(text, safe="-_.~" + ("/" if keep_slash
                                                   else ""))


def canonical_query(query):
    """query: dict or list of (name, value) pairs, raw; returns the sorted,
    encoded query string (a name without value is written name=)."""
    items = query.items() if isinstance(query, dict) else (query or [])
    pairs = sorted((s3_quote(str(k), False), s3_quote(str(v), False))
                   for k, v in items)
    return "&".join(f"{k}={v}" for k, v in pairs)


def sigv4_authorization(method, path, query, headers, payload_hash,
                        access_key, secret_key, region, amz_date,
                        service="s3"):
    """The Authorization header value for a request whose headers (a dict,
    including host and x-amz-date) are all signed."""
    names = sorted(h.lower() for h in headers)
    values = {k.lower(): " ".join(str(v).split()) for k, v in
              headers.items()}
    canonical = "\n".join([
        method, s3_quote(path), canonical_query(query),
        "".join(f"{n}:{values[n]}\n" for n in names),
        ";".join(names), payload_hash])
    date = amz_date[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}")


def amz_now(offset=0):
    """The current UTC time (plus offset seconds) as YYYYMMDDTHHMMSSZ."""
    t = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(seconds=offset)
    return t.strftime("%Y%m%dT%H%M%SZ")


def s3_error_code(response):
    """The <Code> of an S3 error body, or '' when there is none."""
    m = re.search(rb"<Code>([^<]*)</Code>", response.content or b"")
    return m.group(1).decode() if m else ""


def _s3_request(cluster, session, endpoint, host, method, path, query,
                body, headers, secret_key, unsigned_payload, timeout):
    payload = ("UNSIGNED-PAYLOAD" if unsigned_payload
               else hashlib.sha256(body).hexdigest())
    amz_date = amz_now()
    signed = {"host": host, "x-amz-date": amz_date,
              "x-amz-content-sha256": payload}
    auth = sigv4_authorization(method, path, query or {}, signed, payload,
                               cluster.access_key,
                               secret_key or cluster.secret_key,
                               cluster.region, amz_date)
    url = endpoint + s3_quote(path)
    if query:
        url += "?" + canonical_query(query)
    send = dict(signed, Authorization=auth, **(headers or {}))
    # verify explicitly: a session's verify loses to REQUESTS_CA_BUNDLE
    return session.request(method, url, data=body, headers=send,
                           timeout=timeout, verify=session.verify)


# ---------------------------------------------------------------------- TLS

class Tls:
    """Files of a throw-away certificate authority and of a server
    certificate it signed for 127.0.0.1 (PEM): ca, cert, key."""

    def __init__(self, ca, cert, key):
        self.ca, self.cert, self.key = Path(ca), Path(cert), Path(key)

    def __repr__(self):
        return f"<Tls {self.cert}>"


def make_tls(dirpath, name="quay-test"):
    """Creates, with the openssl CLI, a CA ("<name> CA", ca.pem) and a
    server certificate for IP 127.0.0.1 signed by it (server.pem,
    server.key) under dirpath; returns a Tls.  EC keys: ~50 ms."""
    d = Path(dirpath)
    d.mkdir(parents=True, exist_ok=True)
    ext = d / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n"
                   "basicConstraints = CA:FALSE\n"
                   "keyUsage = digitalSignature, keyEncipherment\n"
                   "extendedKeyUsage = serverAuth\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    harness.run(["openssl", "req", "-x509", *ec, "-keyout", d / "ca.key",
                 "-out", d / "ca.pem", "-days", "2", "-subj",
                 f"/CN={name} CA", "-addext",
                 "basicConstraints=critical,CA:TRUE", "-addext",
                 "keyUsage=critical,keyCertSign,cRLSign"],
                stderr=subprocess.PIPE)
    harness.run(["openssl", "req", "-new", *ec, "-keyout",
                 d / "server.key", "-out", d / "server.csr", "-subj",
                 "/CN=127.0.0.1"], stderr=subprocess.PIPE)
    harness.run(["openssl", "x509", "-req", "-in", d / "server.csr",
                 "-CA", d / "ca.pem", "-CAkey", d / "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out",
                 d / "server.pem"], stderr=subprocess.PIPE)
    return Tls(d / "ca.pem", d / "server.pem", d / "server.key")


# ---------------------------------------------------------------------- RGW

class Gateway:
    """One radosgw process of an Rgw cluster: name (its ceph.conf section,
    e.g. client.rgw2), port, host, endpoint (https:// with tls), tls (the
    Tls or None), proc.  start() waits until it answers; stop() is SIGTERM
    and waits for the process to exit (its port is closed then)."""

    def __init__(self, cluster, name, port, tls=None):
        self.cluster = cluster
        self.name = name
        self.port = port
        self.tls = tls
        self.host = f"127.0.0.1:{port}"
        self.endpoint = f"{'https' if tls else 'http'}://{self.host}"
        self.proc = None
        self.session = requests.Session()
        if tls:
            self.session.verify = str(tls.ca)

    def __repr__(self):
        return f"<Gateway {self.name} {self.endpoint}>"

    @property
    def log(self):
        return self.cluster.log_dir / f"{self.name}.log"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.running():
            return
        if harness.port_open(self.port):
            raise HarnessError(f"port {self.port} was taken while {self.name}"
                               " was stopped")
        short = self.name.split(".", 1)[1]
        self.proc = self.cluster._spawn(["radosgw", "-n", self.name],
                                        f"{short}.out")

        def up():
            self.cluster._alive(self.proc, f"radosgw {self.name}",
                                self.log.name)
            try:
                return self.session.get(self.endpoint + "/", timeout=2,
                                        verify=self.session.verify
                                        ).status_code < 500
            except requests.RequestException:
                return False
        harness.wait_until(up, 90, f"radosgw on {self.endpoint}",
                           interval=0.1)

    def stop(self):
        harness.stop_process(self.proc, signal.SIGTERM, timeout=10)
        self.proc = None

    def s3(self, method, path, query=None, body=b"", headers=None,
           secret_key=None, unsigned_payload=False, timeout=60):
        """Like Rgw.s3(), through this gateway."""
        return _s3_request(self.cluster, self.session, self.endpoint,
                           self.host, method, path, query, body, headers,
                           secret_key, unsigned_payload, timeout)



class Rgw:
    """A throw-away Ceph cluster with radosgw on 127.0.0.1:port and one S3
    user (access_key, secret_key).  Started by the constructor; timings
    holds the seconds each phase took ("mon", "osd", "user", "gateway",
    "start" = all of them).  The OSD keeps objects in memory (memstore),
    at most memstore_bytes; the cluster's files and logs are in dirpath
    (log/ has mon.a.log, osd.0.log, client.rgw.log)."""

    def __init__(self, dirpath, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                 region=REGION, memstore_bytes=4 << 30):
        missing = missing_binaries()
        if missing:
            raise HarnessError(f"Ceph binaries missing: {missing} "
                               "(call rgw.ensure_installed() first)")
        self.dir = Path(dirpath)
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.memstore_bytes = int(memstore_bytes)
        self.fsid = str(uuid.uuid4())
        self.mon_port = harness.free_port()
        self.port = harness.free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.endpoint = f"http://{self.host}"
        self.conf_path = self.dir / "ceph.conf"
        self.log_dir = self.dir / "log"
        self.run_dir = self.dir / "run"
        self.mon_proc = self.osd_proc = None
        self.gateway = Gateway(self, "client.rgw", self.port)
        self.gateways = [self.gateway]
        self.session = requests.Session()
        self.timings = {}
        for d in ("log", "run", "crash", "mon", "osd", "rgw"):
            (self.dir / d).mkdir(mode=0o755, exist_ok=True)
        self._write_conf()
        harness._live.append(self)
        started = time.monotonic()
        try:
            self._phase("mon", self._start_mon)
            self._phase("osd", self._start_osd)
            self._phase("user", self._create_user)
            self._phase("gateway", self.start_gateway)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - started

    def __repr__(self):
        return f"<Rgw {self.endpoint}>"

    def _phase(self, name, fn):
        t = time.monotonic()
        fn()
        self.timings[name] = time.monotonic() - t

    # -- configuration

    def _write_conf(self):
        d = self.dir
        self.conf_path.write_text(f"""\
# ceph.conf written by the test harness (t/lib/rgw.py)
[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind msgr1 = false
ms bind msgr2 = true
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
keyring = {d}/keyring
run dir = {self.run_dir}
pid file = {self.run_dir}/$name.pid
admin socket = {self.run_dir}/$name.$pid.asok
log file = {self.log_dir}/$name.log
log to stderr = false
err to stderr = true
mon cluster log file = {self.log_dir}/cluster.log
mon cluster log to file = true
crash dir = {d}/crash
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon data avail warn = 1
mon data avail crit = 0
# Each pool RGW creates waits for a monitor proposal: 0.1 s instead of
# 1 s between them starts the cluster in ~3.5 s instead of ~13 s.
paxos propose interval = 0.1

[mon]
mon data = {d}/mon/$cluster-$id

[osd]
osd data = {d}/osd/$cluster-$id
osd objectstore = memstore
# Objects live in RAM, allocated as written; this is only the cap.
memstore device bytes = {self.memstore_bytes}
osd crush update on start = true
osd crush initial weight = 1
osd op num shards = 1
osd op num threads per shard = 2

[client.rgw]
rgw data = {d}/rgw
rgw frontends = beast endpoint=127.0.0.1:{self.port}
{RGW_CLIENT_CONF}""")

    def _env(self):
        return dict(os.environ, CEPH_CONF=str(self.conf_path))

    def _cmd(self, args, timeout=60):
        """Runs a Ceph command line tool against this cluster under
        timeout(1) (they block forever when the cluster is unwell)."""
        return harness.run(["timeout", "-k", "5", str(timeout), *args,
                            "-c", self.conf_path],
                           env=self._env(), stderr=subprocess.PIPE,
                           timeout=timeout + 15).stdout

    def ceph(self, *args, timeout=60):
        """Runs the ceph CLI; returns its stdout."""
        return self._cmd(["ceph", *args], timeout)

    def admin(self, *args, timeout=60):
        """Runs radosgw-admin (as client.rgw); returns its stdout."""
        return self._cmd(["radosgw-admin", "-n", "client.rgw", *args],
                         timeout)

    def _spawn(self, cmd, log):
        return harness.spawn([*cmd, "-f", "-c", self.conf_path],
                             self.log_dir / log, env=self._env())

    def _alive(self, proc, what, log):
        if proc.poll() is not None:
            raise HarnessError(f"{what} exited {proc.returncode}:\n"
                               f"{harness.tail(self.log_dir / log)}")

    # -- daemons

    def _start_mon(self):
        monmap = self.dir / "monmap"
        self._cmd(["monmaptool", "--create", "--clobber", "--fsid",
                   self.fsid, "--addv", "a",
                   f"[v2:127.0.0.1:{self.mon_port}]", monmap])
        self._cmd(["ceph-mon", "--mkfs", "-i", "a", "--monmap", monmap])
        self.mon_proc = self._spawn(["ceph-mon", "-i", "a"], "mon.out")

        def up():
            self._alive(self.mon_proc, "ceph-mon", "mon.a.log")
            return harness.port_open(self.mon_port)
        harness.wait_until(up, 30, f"ceph-mon on port {self.mon_port}")

    def _start_osd(self):
        osd_uuid = str(uuid.uuid4())
        (self.dir / "osd" / "ceph-0").mkdir(mode=0o755, exist_ok=True)
        osd_id = self.ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise HarnessError(f"ceph osd new gave id {osd_id!r}")
        self._cmd(["ceph-osd", "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
                  timeout=60)
        self.osd_proc = self._spawn(["ceph-osd", "-i", "0"], "osd.out")

        def up():
            self._alive(self.osd_proc, "ceph-osd", "osd.0.log")
            return '"num_up_osds":1' in self.ceph("osd", "stat", "-f",
                                                  "json").replace(" ", "")
        harness.wait_until(up, 60, "osd.0 up", interval=0.3)

    def _create_user(self):
        self.admin("user", "create", "--uid", "quay-test",
                   "--display-name", "quay test", "--access-key",
                   self.access_key, "--secret-key", self.secret_key,
                   timeout=120)

    @property
    def rgw_proc(self):
        return self.gateway.proc

    def start_gateway(self):
        """Starts the first radosgw (again) on the same port and waits
        until it answers HTTP."""
        self.gateway.start()

    def stop_gateway(self):
        """Stops the first radosgw only (the cluster and its data stay)."""
        self.gateway.stop()

    def location(self, bucket, gateway=None, prefix="registry", **extra):
        """A RadosGWStorage entry of DISTRIBUTED_STORAGE_CONFIG for
        bucket, served by gateway (default: the first one); extra
        overrides parameters (e.g. secret_key)."""
        gw = gateway or self.gateway
        params = {"hostname": "127.0.0.1", "port": gw.port,
                  "is_secure": gw.tls is not None,
                  "access_key": self.access_key,
                  "secret_key": self.secret_key, "bucket_name": bucket,
                  "storage_path": "/" + prefix}
        params.update(extra)
        return ["RadosGWStorage", params]

    def add_gateway(self, tls=None):
        """Starts another radosgw on this cluster, on a port of its own
        (https with tls, a Tls from make_tls(), else http); returns its
        Gateway.  Stopped with the cluster."""
        n = len(self.gateways) + 1
        name = f"client.rgw{n}"
        gw = Gateway(self, name, harness.free_port(), tls=tls)
        (self.dir / f"rgw{n}").mkdir(mode=0o755, exist_ok=True)
        if tls:
            # beast also needs a plain port; nobody uses it
            frontend = (f"beast endpoint=127.0.0.1:{harness.free_port()} "
                        f"ssl_endpoint=127.0.0.1:{gw.port} "
                        f"ssl_certificate={tls.cert} "
                        f"ssl_private_key={tls.key}")
        else:
            frontend = f"beast endpoint=127.0.0.1:{gw.port}"
        with open(self.conf_path, "a") as f:
            f.write(f"""
[{name}]
rgw data = {self.dir}/rgw{n}
rgw frontends = {frontend}
{RGW_CLIENT_CONF}""")
        self.gateways.append(gw)
        gw.start()
        return gw

    def stop(self):
        """Stops every radosgw, the OSD and the monitor (idempotent)."""
        for gw in reversed(self.gateways):
            gw.stop()
        for attr in ("osd_proc", "mon_proc"):
            harness.stop_process(getattr(self, attr), signal.SIGTERM,
                                 timeout=10)
            setattr(self, attr, None)
        for gw in self.gateways:
            gw.session.close()
        self.session.close()
        if self in harness._live:
            harness._live.remove(self)

    def pids(self):
        """PIDs of the daemons still running."""
        procs = [self.mon_proc, self.osd_proc] + [g.proc for g in
                                                  self.gateways]
        return [p.pid for p in procs if p is not None and p.poll() is None]

    # -- S3 (signed by this file's SigV4, not by lib/)

    def s3(self, method, path, query=None, body=b"", headers=None,
           secret_key=None, unsigned_payload=False, timeout=60):
        """Sends a SigV4-signed request for path (raw, e.g. "/bucket/key")
        through the first gateway; query is a dict or list of pairs (raw).
        Returns the Response."""
        return _s3_request(self, self.session, self.endpoint, self.host,
                           method, path, query, body, headers, secret_key,
                           unsigned_payload, timeout)

    def create_bucket(self, name):
        """Creates bucket name (3-63 characters); raises HarnessError unless
        RGW answers 200."""
        r = self.s3("PUT", f"/{name}")
        if r.status_code != 200:
            raise HarnessError(f"create bucket {name}: {r.status_code} "
                               f"{r.text[:500]}")

    def list_objects(self, bucket, prefix=""):
        """Every key in bucket under prefix (ListObjectsV2, all pages)."""
        keys, token = [], None
        while True:
            q = {"list-type": "2", "prefix": prefix}
            if token:
                q["continuation-token"] = token
            r = self.s3("GET", f"/{bucket}", query=q)
            if r.status_code != 200:
                raise HarnessError(f"list {bucket}: {r.status_code} "
                                   f"{r.text[:500]}")
            root = ET.fromstring(r.content)
            keys += [c.findtext(f"{S3_NS}Key")
                     for c in root.iter(f"{S3_NS}Contents")]
            if root.findtext(f"{S3_NS}IsTruncated") != "true":
                return keys
            token = root.findtext(f"{S3_NS}NextContinuationToken")

    def list_multipart_uploads(self, bucket):
        """(key, upload id) of every multipart upload in progress."""
        r = self.s3("GET", f"/{bucket}", query={"uploads": ""})
        if r.status_code != 200:
            raise HarnessError(f"list uploads {bucket}: {r.status_code} "
                               f"{r.text[:500]}")
        root = ET.fromstring(r.content)
        return [(u.findtext(f"{S3_NS}Key"), u.findtext(f"{S3_NS}UploadId"))
                for u in root.iter(f"{S3_NS}Upload")]
