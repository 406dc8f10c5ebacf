"""Login throttling at /v2/auth (issue #4): failed logins per user and
client address in Redis, 429 with Retry-After, fail-open when Redis is
down, and no way to lock a victim out from another address."""

import base64
import http.client
import json
import subprocess

import pytest

import harness


def create_user(registry, name, password):
    res = subprocess.run(
        [str(harness.QUAYCTL), "user", "create", name, "--db-uri",
         registry.db_uri, "--password-stdin"],
        input=password + "\n", text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def login(registry, user, password, source="127.0.0.1"):
    """GET /v2/auth with Basic credentials from a chosen loopback
    address; returns (status, headers)."""
    conn = http.client.HTTPConnection("127.0.0.1", registry.port, timeout=30,
                                      source_address=(source, 0))
    cred = base64.b64encode(f"{user}:{password}".encode()).decode()
    conn.request("GET", "/v2/auth?service=" + registry.url.split("//")[1],
                 headers={"Authorization": "Basic " + cred})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), body


@pytest.fixture(scope="module")
def registry(start_registry):
    reg = start_registry()
    create_user(reg, "erin", "erin-password")
    create_user(reg, "frank", "frank-password")
    return reg


def test_five_failures_then_429_with_retry_after(registry, redis):
    for _ in range(5):
        status, _, _ = login(registry, "erin", "wrong-password")
        assert status == 401
    status, headers, body = login(registry, "erin", "erin-password")
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 300
    assert json.loads(body)["errors"][0]["code"] == "TOOMANYREQUESTS"
    # the lock is bounded: the counter expires
    ttl = int(redis.cli("TTL", "quay:loginfail:erin:127.0.0.1"))
    assert 0 < ttl <= 300


def test_the_victim_logs_in_from_another_address(registry):
    for _ in range(6):
        login(registry, "frank", "wrong-password")
    assert login(registry, "frank", "frank-password")[0] == 429
    assert login(registry, "frank", "frank-password",
                 source="127.0.0.2")[0] == 200


def test_success_resets_the_count(registry, redis):
    create_user(registry, "gina", "gina-password")
    for _ in range(4):
        assert login(registry, "gina", "wrong-password")[0] == 401
    assert login(registry, "gina", "gina-password")[0] == 200
    assert redis.cli("EXISTS", "quay:loginfail:gina:127.0.0.1").strip() \
        == "0"
    for _ in range(4):
        assert login(registry, "gina", "wrong-password")[0] == 401
    assert login(registry, "gina", "gina-password")[0] == 200


def test_redis_down_fails_open(registry, redis):
    create_user(registry, "hank", "hank-password")
    redis.stop()
    try:
        for _ in range(7):
            assert login(registry, "hank", "wrong-password")[0] == 401
        assert login(registry, "hank", "hank-password")[0] == 200
    finally:
        redis.start()
    registry.ignore_log.append(r"quay: redis:")
