"""Fixtures for every integration test under t/ (see t/lib/harness.py).

    build           session   make -s all, once
    bindir          session   absolute path of build/bin
    pg              session   PostgreSQL 15; .host .port .db_uri .sql()
                              .stop() .start() .new_database(name)
    redis           session   redis-server; .port .password .stop() .start()
    make_config     function  make_config(path, db_uri, storage_path, **keys)
    registry        module    nginx + module on its own database
    start_registry  module    start_registry(**config_keys) -> Registry
    tmp_root        session   harness.TempRoot for tests' own directories

Run with /usr/bin/python3 -m pytest (Debian's python has requests).
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))

import harness  # noqa: E402


def _terminate(signum, frame):
    # SIGTERM (CI timeouts, kill) unwinds like ^C, so finalizers stop the
    # servers.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _terminate)


@pytest.fixture(scope="session")
def tmp_root():
    root = harness.TempRoot()
    yield root
    harness._stop_everything()
    root.remove()


@pytest.fixture(scope="session")
def build():
    try:
        harness.make_build()
    except harness.HarnessError as e:
        pytest.fail(f"build failed: {e}", pytrace=False)
    return harness.ROOT


@pytest.fixture(scope="session")
def bindir(build):
    return harness.BINDIR


@pytest.fixture(scope="session")
def pg(build, tmp_root):
    server = harness.Postgres(tmp_root.mkdir("pg"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis(tmp_root):
    server = harness.Redis(tmp_root.mkdir("redis"))
    yield server
    server.stop()


@pytest.fixture
def make_config(redis):
    """make_config(path, db_uri, storage_path, **keys): writes config.yaml
    using the session Redis; returns the path."""
    def make(path, db_uri, storage_path, **extra):
        extra.setdefault("redis", redis)
        return harness.make_config(path, db_uri, storage_path, **extra)
    return make


@pytest.fixture(scope="module")
def start_registry(build, pg, redis, tmp_root):
    """start_registry(**config_keys) starts a registry whose config.yaml has
    these keys on top of the defaults (None removes a key).  Lowercase
    keywords tune nginx: worker_processes, main_extra, http_extra,
    server_extra.  Registries are closed (and their error logs checked) at
    the end of the module, or earlier with .close()."""
    started = []

    def start(**kw):
        r = harness.Registry(tmp_root, pg, redis, **kw)
        started.append(r)
        return r

    yield start
    problems = []
    for r in started:
        try:
            r.close()
        except AssertionError as e:
            problems.append(f"{r.url}: {e}")
    assert not problems, "\n\n".join(problems)


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry()


# ------------------------------------------------------------ Ceph RGW (S3)

import rgw as rgw_harness  # noqa: E402


@pytest.fixture(scope="session")
def rgw(request, tmp_root):
    """A single-node Ceph RADOS Gateway (t/lib/rgw.py): .endpoint .host
    .port .access_key .secret_key .region .create_bucket(name) .s3(...)
    .list_objects(bucket) .stop_gateway() .start_gateway() .timings;
    .add_gateway(tls=None) starts another radosgw on the same cluster
    (own port, ceph.conf section and log; ~0.3 s) and returns its Gateway
    (.endpoint .host .port .stop() .start() .s3(...)); rgw.make_tls(dir)
    makes a throw-away CA and a certificate for 127.0.0.1 for it.

    The Ceph packages are installed on first use (as root).  When they
    cannot be installed, or anything else goes wrong, the test fails with
    the reason: S3 tests never skip (issue #5), so a machine that cannot
    run them shows it."""
    try:
        installed = rgw_harness.ensure_installed()
    except rgw_harness.RgwUnavailable as e:
        pytest.fail(f"Ceph RGW cannot be installed here: {e}",
                    pytrace=False)
    try:
        server = rgw_harness.Rgw(tmp_root.mkdir("rgw"))
    except harness.HarnessError as e:
        pytest.fail(f"Ceph RGW did not start: {e}", pytrace=False)
    server.timings["install"] = installed
    plugins = request.config.pluginmanager
    reporter = plugins.get_plugin("terminalreporter")
    capture = plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(
                f"\nrgw: {server.endpoint} up in "
                f"{server.timings['start']:.1f} s"
                + (f" (Ceph packages installed in {installed:.1f} s)"
                   if installed else ""))
    yield server
    server.stop()
