"""quayctl storage backfill-replication (issue #5 follow-up, Quay's
util/backfillreplication.py): blobs pushed while FEATURE_STORAGE_REPLICATION
was off get their jobs afterwards, with the manifest PUT's queue, body and
dedupe key, and quay-replicate then copies them.

Two LocalStorage locations a and b (as in test_replicate_local.py).  The
pushes happen with replication off; then config.yaml turns it on with
DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS [a, b].  The registry is not
reloaded: only quayctl and quay-replicate read the new file.
"""

import hashlib
import json
import subprocess

import pytest

import api
import harness
import v2client


QUEUE = "imagestoragereplication/"


def quayctl(*args):
    return subprocess.run([str(harness.QUAYCTL), *map(str, args)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=120)


def backfill(env, *args, config=None):
    p = quayctl("storage", "backfill-replication", "--config",
                config or env.reg.config_path, *args)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    return p.stdout


def assert_fails(p, *needles):
    assert p.returncode != 0, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("quayctl: "), lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert p.stdout == ""


def blob_path(root, digest):
    h = digest.split(":")[1]
    return root / "sha256" / h[:2] / h


def uuid_of(env, digest):
    return api.sql(env.reg, "SELECT uuid FROM imagestorage"
                   f" WHERE content_checksum = '{digest}'")[0][0]


def jobs(env):
    """{storage uuid: namespace_user_id} of the waiting jobs; asserts that
    each body is the manifest PUT's and that no blob has two."""
    rows = api.sql(env.reg, "SELECT dedupe_key, body FROM queueitem"
                   f" WHERE queue_name = '{QUEUE}' AND state = 'queued'")
    out = {}
    for key, body in rows:
        body = json.loads(body)
        assert set(body) == {"namespace_user_id", "storage_id"}, body
        assert body["storage_id"] == key and key not in out
        out[key] = body["namespace_user_id"]
    return out


def placements(env, digest):
    return sorted(r[0] for r in api.sql(
        env.reg, "SELECT l.name FROM imagestorage s"
        " JOIN imagestorageplacement p ON p.storage_id = s.id"
        " JOIN imagestoragelocation l ON l.id = p.location_id"
        f" WHERE s.content_checksum = '{digest}'"))


def replicate(env):
    p = subprocess.run([str(harness.BINDIR / "quay-replicate"), "--config",
                        str(env.reg.config_path), "--once", "--retry-base",
                        "0"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert api.sql(env.reg, "SELECT state, last_error FROM queueitem"
                   f" WHERE queue_name = '{QUEUE}'") == [], p.stdout


def image_blobs(manifest):
    m = json.loads(manifest)
    return [m["config"]["digest"]] + [l["digest"] for l in m["layers"]]


@pytest.fixture(scope="module")
def env(start_registry, tmp_path_factory):
    d = tmp_path_factory.mktemp("backfill")
    roots = {n: d / n for n in ("a", "b", "c")}
    for p in roots.values():
        p.mkdir()
    storage = {n: ["LocalStorage", {"storage_path": str(roots[n])}]
               for n in ("a", "b")}
    reg = start_registry(DISTRIBUTED_STORAGE_CONFIG=storage,
                         DISTRIBUTED_STORAGE_PREFERENCE=["a", "b"],
                         DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a"],
                         FEATURE_STORAGE_REPLICATION=False)

    class Env:
        pass

    e = Env()
    e.reg, e.roots, e.dir, e.storage = reg, roots, d, storage
    e.ids, tokens = {}, {}
    for user in ("alice", "bob"):
        password = api.create_user(reg, user)
        e.ids[user] = int(api.sql(reg, "SELECT id FROM \"user\""
                                  f" WHERE username = '{user}'")[0][0])
        status, tokens[user] = v2client.token_for(
            reg, [f"repository:{user}/app:pull,push"], auth=(user, password))
        assert status == 200

    # alice/app:v1 and v0; v0's blobs are already in b (copied by hand)
    _, m = v2client.push_image(reg, "alice/app", tokens["alice"], "v1")
    e.alice = image_blobs(m)
    _, m = v2client.push_image(reg, "alice/app", tokens["alice"], "v0")
    e.in_b = image_blobs(m)
    api.sql(reg, "INSERT INTO imagestoragelocation (name) VALUES ('b')"
            " ON CONFLICT DO NOTHING")
    for digest in e.in_b:
        dest = blob_path(roots["b"], digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(blob_path(roots["a"], digest).read_bytes())
        api.sql(reg, "INSERT INTO imagestorageplacement"
                " (storage_id, location_id) SELECT s.id, l.id FROM"
                " imagestorage s, imagestoragelocation l WHERE l.name = 'b'"
                f" AND s.content_checksum = '{digest}'")

    # bob/app:v1, and alice's layer uploaded to bob's repository too
    _, m = v2client.push_image(reg, "bob/app", tokens["bob"], "v1")
    e.bob = image_blobs(m)
    shared, _ = v2client.push_blob(reg, "bob/app", tokens["bob"],
                                   b"layer alice/appv1")
    assert shared == e.alice[1]

    # not referenced: an upload link that expired
    e.expired, _ = v2client.push_blob(reg, "alice/app", tokens["alice"],
                                      b"expired upload")
    api.sql(reg, "UPDATE uploadedblob SET expires_at = now() - interval"
            " '1 hour' WHERE blob_id = (SELECT id FROM imagestorage WHERE"
            f" content_checksum = '{e.expired}')")

    # referenced but without any placement: nothing to copy from
    e.placeholder = "sha256:" + "0" * 64
    api.sql(reg, "WITH s AS (INSERT INTO imagestorage (content_checksum,"
            f" image_size) VALUES ('{e.placeholder}', 1) RETURNING id)"
            " INSERT INTO uploadedblob (repository_id, blob_id, expires_at)"
            " SELECT r.id, s.id, now() + interval '1 day' FROM s, repository"
            " r WHERE r.name = 'app' AND r.namespace_user_id ="
            f" {e.ids['alice']}")

    assert api.sql(reg, "SELECT count(*) FROM queueitem") == [("0",)]
    for digest in e.alice + e.bob + [e.expired]:
        assert placements(e, digest) == ["a"]

    reg.write_config(FEATURE_STORAGE_REPLICATION=True,
                     DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a", "b"])
    return e


def config_with(env, name, **keys):
    cfg = dict(env.reg.config)
    for k, v in keys.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return harness.write_config(env.dir / name, cfg)


def test_dry_run_counts_and_queues_nothing(env):
    out = backfill(env, "--dry-run")
    assert out == ("4 blobs missing a placement: 4 jobs would be queued, "
                   "0 already waiting (dry run)\n")
    assert jobs(env) == {}


def test_namespace_queues_only_that_namespaces_blobs(env):
    out = backfill(env, "--namespace", "bob")
    assert out == ("3 blobs missing a placement: 3 jobs queued, "
                   "0 already waiting\n")
    want = {uuid_of(env, d) for d in env.bob + [env.alice[1]]}
    assert jobs(env) == {u: env.ids["bob"] for u in want}


def test_backfill_queues_one_job_per_blob_missing_from_b(env):
    out = backfill(env)
    assert out == ("4 blobs missing a placement: 1 jobs queued, "
                   "3 already waiting\n")
    queued = jobs(env)
    assert set(queued) == {uuid_of(env, d) for d in env.alice + env.bob}
    assert queued[uuid_of(env, env.alice[0])] == env.ids["alice"]


def test_a_second_run_queues_nothing_new(env):
    before = api.sql(env.reg, "SELECT id FROM queueitem ORDER BY id")
    out = backfill(env)
    assert out == ("4 blobs missing a placement: 0 jobs queued, "
                   "4 already waiting\n")
    assert api.sql(env.reg, "SELECT id FROM queueitem ORDER BY id") == before


def test_quay_replicate_copies_the_backfilled_blobs(env):
    replicate(env)
    for digest in env.alice + env.bob + env.in_b:
        assert placements(env, digest) == ["a", "b"]
        data = blob_path(env.roots["b"], digest).read_bytes()
        assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert placements(env, env.expired) == ["a"]
    assert placements(env, env.placeholder) == []
    assert backfill(env) == ("0 blobs missing a placement: 0 jobs queued, "
                             "0 already waiting\n")


def test_a_userregion_location_queues_with_that_namespace(env):
    # bob's namespace must also reach c, and the shared layer lost its
    # copy in b: its job names bob (whose region lacks it too), not alice
    # (the smaller id), so that one job fills both
    storage = dict(env.storage, c=["LocalStorage",
                                   {"storage_path": str(env.roots["c"])}])
    env.reg.write_config(DISTRIBUTED_STORAGE_CONFIG=storage)
    api.sql(env.reg, "WITH l AS (INSERT INTO imagestoragelocation (name)"
            " VALUES ('c') ON CONFLICT (name) DO UPDATE SET name = 'c'"
            " RETURNING id) INSERT INTO userregion (user_id, location_id)"
            f" SELECT {env.ids['bob']}, l.id FROM l")
    shared = env.alice[1]
    api.sql(env.reg, "DELETE FROM imagestorageplacement WHERE location_id ="
            " (SELECT id FROM imagestoragelocation WHERE name = 'b') AND"
            " storage_id = (SELECT id FROM imagestorage WHERE"
            f" content_checksum = '{shared}')")
    blob_path(env.roots["b"], shared).unlink()
    out = backfill(env)
    assert out == ("3 blobs missing a placement: 3 jobs queued, "
                   "0 already waiting\n")
    want = {uuid_of(env, d) for d in env.bob + [env.alice[1]]}
    assert jobs(env) == {u: env.ids["bob"] for u in want}

    replicate(env)
    for digest in env.bob + [shared]:
        assert placements(env, digest) == ["a", "b", "c"]
        for root in ("b", "c"):
            data = blob_path(env.roots[root], digest).read_bytes()
            assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    assert placements(env, env.alice[0]) == ["a", "b"]


def test_replication_off_is_refused(env):
    cfg = config_with(env, "off.yaml", FEATURE_STORAGE_REPLICATION=False)
    assert_fails(quayctl("storage", "backfill-replication", "--config", cfg),
                 "FEATURE_STORAGE_REPLICATION is off")
    assert jobs(env) == {}


def test_no_default_locations_is_refused(env):
    cfg = config_with(env, "empty.yaml",
                      DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=None)
    assert_fails(quayctl("storage", "backfill-replication", "--config", cfg),
                 "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS is empty")


def test_an_unknown_location_is_refused(env):
    cfg = config_with(env, "unknown.yaml",
                      DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["a", "mars"])
    assert_fails(quayctl("storage", "backfill-replication", "--config", cfg),
                 "DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS", "mars",
                 "DISTRIBUTED_STORAGE_CONFIG")


def test_a_missing_config_file_is_refused(env):
    path = env.dir / "no-such.yaml"
    assert_fails(quayctl("storage", "backfill-replication", "--config",
                         path), str(path))


def test_an_unreachable_database_is_refused(env):
    port = harness.free_port()
    cfg = config_with(env, "nodb.yaml",
                      DB_URI=f"postgresql://quay@127.0.0.1:{port}/quay")
    assert_fails(quayctl("storage", "backfill-replication", "--config", cfg),
                 "cannot connect to the database", str(port))


def test_an_unknown_namespace_is_refused(env):
    assert_fails(quayctl("storage", "backfill-replication", "--config",
                         env.reg.config_path, "--namespace", "nobody"),
                 "no namespace nobody")


def test_usage_errors_exit_2(env):
    p = quayctl("storage", "backfill-replication")
    assert p.returncode == 2
    assert_fails(p, "needs --config FILE")
    assert_fails(quayctl("storage", "backfill-replication", "--config",
                         env.reg.config_path, "--bogus"), "--bogus")
    assert_fails(quayctl("storage", "rebalance"), "unknown command")
    usage = quayctl("--help")
    assert "quayctl storage backfill-replication --config FILE" in usage.stdout
