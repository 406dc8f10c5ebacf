"""Health endpoints (/health/instance, /health/endtoend) against real
PostgreSQL, Redis and the filesystem, and the rule that nothing blocks the
event loop (issue #2, items 7 and 10)."""

import concurrent.futures
import shutil
import subprocess
import threading
import time

import pytest

from harness import wait_until


def services(resp):
    body = resp.json()
    assert body["status_code"] == resp.status_code
    return body["data"]["services"]


def test_instance_health_answers_200_with_quay_shape(registry):
    r = registry.request("GET", "/health/instance")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "application/json"
    assert services(r) == {"database": True}


def test_health_alias_and_head(registry):
    assert registry.request("GET", "/health").status_code == 200
    r = registry.request("HEAD", "/health/instance")
    assert r.status_code == 200
    assert r.content == b""


def test_endtoend_checks_database_redis_and_storage(registry):
    r = registry.request("GET", "/health/endtoend")
    assert r.status_code == 200, r.text
    assert services(r) == {"database": True, "redis": True, "storage": True}
    # the storage probe cleans up after itself
    assert not list(registry.storage_path.glob("_verify*"))


def test_health_rejects_post(registry):
    r = registry.request("POST", "/health/instance", data=b"x")
    assert r.status_code == 405


def test_unknown_path_is_a_json_404_not_a_5xx(registry):
    r = registry.request("GET", "/no/such/thing")
    assert r.status_code == 404
    assert r.json()["status"] == 404


def test_health_is_503_naming_database_when_postgresql_stops(registry, pg):
    assert registry.request("GET", "/health/instance").status_code == 200
    pg.stop()
    try:
        r = registry.request("GET", "/health/instance")
        assert r.status_code == 503
        assert services(r) == {"database": False}
        r = registry.request("GET", "/health/endtoend")
        assert r.status_code == 503
        assert services(r)["database"] is False
        assert services(r)["storage"] is True
    finally:
        pg.start()
    # the pool reconnects by itself once the database is back
    wait_until(lambda: registry.request("GET", "/health/instance")
               .status_code == 200, 30, "health 200 after PostgreSQL start")
    registry.ignore_log.append(r"quay: db:")


def test_endtoend_is_503_naming_redis_when_redis_stops(registry, redis):
    redis.stop()
    try:
        r = registry.request("GET", "/health/endtoend")
        assert r.status_code == 503
        assert services(r) == {"database": True, "redis": False,
                               "storage": True}
        # instance health does not depend on Redis (as in Quay)
        assert registry.request("GET", "/health/instance").status_code == 200
    finally:
        redis.start()
    wait_until(lambda: registry.request("GET", "/health/endtoend")
               .status_code == 200, 30, "endtoend 200 after Redis start")


def test_endtoend_is_503_naming_storage_when_storage_is_gone(registry):
    moved = registry.storage_path.with_name("storage.moved")
    registry.storage_path.rename(moved)
    try:
        r = registry.request("GET", "/health/endtoend")
        assert r.status_code == 503
        assert services(r) == {"database": True, "redis": True,
                               "storage": False}
        assert "storage probe failed" in registry.error_log()
    finally:
        moved.rename(registry.storage_path)
    assert registry.request("GET", "/health/endtoend").status_code == 200


def test_many_concurrent_health_checks_all_succeed(registry):
    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        codes = list(ex.map(
            lambda _: registry.request("GET", "/health/endtoend").status_code,
            range(200)))
    assert codes == [200] * 200


def test_slow_queries_do_not_block_the_event_loop(start_registry, pg):
    """With ONE nginx worker, 40 health checks stuck behind a table lock in
    PostgreSQL must not delay another request on the same worker."""
    reg = start_registry(worker_processes=1)
    dbname = reg.db_uri.rsplit("/", 1)[1]
    assert reg.request("GET", "/health/instance").status_code == 200

    # hold an exclusive lock on teamrole, which the health query reads
    locker = subprocess.Popen(
        ["psql", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "quay",
         "-d", dbname, "-v", "ON_ERROR_STOP=1", "-q", "-At"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    locker.stdin.write("BEGIN; LOCK TABLE teamrole IN ACCESS EXCLUSIVE MODE;"
                       " SELECT 'locked';\n")
    locker.stdin.flush()
    assert locker.stdout.readline().strip() == "locked"

    results = []

    def slow():
        results.append(reg.request("GET", "/health/instance",
                                   timeout=60).status_code)

    threads = [threading.Thread(target=slow) for _ in range(40)]
    try:
        for t in threads:
            t.start()
        # wait until the queries are really waiting on the lock
        wait_until(lambda: int(pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type"
            " = 'Lock' AND datname = '%s'" % dbname)[0][0]) >= 8,
            20, "health queries blocked on the lock")

        # the same single worker answers other requests at once
        for _ in range(5):
            start = time.monotonic()
            r = reg.request("GET", "/no/such/thing", timeout=5)
            assert r.status_code == 404
            assert time.monotonic() - start < 1.0
        assert results == []
    finally:
        locker.stdin.write("COMMIT;\n")
        locker.stdin.close()
        locker.wait(10)
        for t in threads:
            t.join(60)
    assert len(results) == 40
    assert set(results) <= {200, 503}
    assert reg.request("GET", "/health/instance").status_code == 200
    reg.ignore_log.append(r"quay: db:")


def test_nginx_t_names_a_misspelled_key(registry, tmp_path):
    bad = tmp_path / "config.yaml"
    text = registry.config_path.read_text()
    bad.write_text(text + "\nFEATURE_ANONYMOUS_ACCESS: maybe\n")
    res = registry.nginx_t(bad)
    assert res.returncode != 0
    assert "FEATURE_ANONYMOUS_ACCESS" in res.stderr


def test_nginx_t_warns_about_an_unknown_key_but_passes(registry, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(registry.config_path.read_text()
                   + "\nFEATURE_PROXY_STORGE: true\n")
    res = registry.nginx_t(cfg)
    assert res.returncode == 0, res.stderr
    assert "FEATURE_PROXY_STORGE" in res.stderr
    assert "FEATURE_PROXY_STORAGE" in res.stderr


def test_reload_with_a_bad_config_keeps_serving(registry):
    good = registry.config_path.read_text()
    registry.config_path.write_text(good + "\nV2_PAGINATION_SIZE: -5\n")
    try:
        with pytest.raises(Exception):
            registry.reload(timeout=10)
        assert registry.request("GET", "/health/instance").status_code == 200
    finally:
        registry.config_path.write_text(good)
    registry.ignore_log.append(r"V2_PAGINATION_SIZE")
