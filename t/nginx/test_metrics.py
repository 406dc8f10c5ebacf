"""/metrics (issue #6, "Metrics"): Prometheus text from counters in shared
memory, updated in the log phase, counted across workers, kept across a
reload, and guarded by nginx's own access rules."""

import re

import pytest


METRICS_LOCATION = """
        location = /metrics {
            allow 127.0.0.1;
            deny all;
            quay_metrics;
        }
"""


def scrape(registry):
    r = registry.request("GET", "/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = {}
    for line in r.text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.rsplit(" ", 1)
        values[name] = int(value)
    return values


@pytest.fixture(scope="module")
def registry(start_registry):
    return start_registry(server_extra=METRICS_LOCATION)


def test_requests_are_counted_by_route_and_status(registry):
    before = scrape(registry)
    for _ in range(10):
        assert registry.request("GET", "/health/instance").status_code == 200
    for _ in range(3):
        assert registry.request("GET", "/v2/").status_code == 401
    after = scrape(registry)
    key = 'quay_http_requests_total{route="health",status="2xx"}'
    assert after[key] - before.get(key, 0) == 10
    key = 'quay_http_requests_total{route="v2_base",status="4xx"}'
    assert after[key] - before.get(key, 0) == 3
    assert after["quay_http_sent_bytes_total"] > \
        before["quay_http_sent_bytes_total"]
    assert after["quay_http_received_bytes_total"] > \
        before["quay_http_received_bytes_total"]


def test_counters_survive_a_reload(registry):
    registry.request("GET", "/health/instance")
    before = scrape(registry)
    registry.reload()
    after = scrape(registry)
    key = 'quay_http_requests_total{route="health",status="2xx"}'
    assert after[key] >= before[key]


def test_database_errors_are_counted(registry, pg):
    before = scrape(registry)["quay_db_errors_total"]
    pg.stop()
    try:
        assert registry.request("GET", "/health/instance").status_code == 503
    finally:
        pg.start()
    assert scrape(registry)["quay_db_errors_total"] > before
    registry.ignore_log.append(r"quay: db:")


def test_every_counter_is_exported_in_prometheus_format(registry):
    text = registry.request("GET", "/metrics").text
    for name in ("quay_blob_uploads_total", "quay_blob_pulls_total",
                 "quay_manifest_pushes_total", "quay_manifest_pulls_total",
                 "quay_db_waits_total", "quay_db_errors_total",
                 "quay_storage_errors_total"):
        assert f"# TYPE {name} counter" in text
        assert re.search(rf"^{name} \d+$", text, re.M)


def test_metrics_rejects_post(registry):
    assert registry.request("POST", "/metrics").status_code == 405
