"""quay-upload-cleanup (Quay's blobuploadcleanupworker): expired upload
sessions lose their row and their uploads/<uuid> object; nothing else is
touched.  Each test builds rows by hand (a namespace user, a repository and
the 'default' imagestoragelocation, then blobupload rows aged with
now() - interval) and files under a storage directory of its own, then runs
the real binary with --once.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

import harness


QUEUE = "blobuploadcleanup"
BLOB_HEX = "ab" + "0" * 62


@pytest.fixture(scope="module")
def db(pg):
    name = f"test_upload_cleanup_{os.getpid()}"
    pg.new_database(name)
    uri = pg.uri(name)

    def sql(query):
        return pg.sql(query, db=name)

    user = sql("INSERT INTO \"user\" (username, email)"
               " VALUES ('cleanupns', 'cleanupns@example.com')"
               " RETURNING id")[0][0]
    repo = sql("INSERT INTO repository (namespace_user_id, name,"
               " visibility_id)"
               f" VALUES ({user}, 'uploads', 2) RETURNING id")[0][0]
    sql("INSERT INTO imagestoragelocation (name) VALUES ('default')"
        " ON CONFLICT (name) DO NOTHING")
    loc = sql("SELECT id FROM imagestoragelocation"
              " WHERE name = 'default'")[0][0]

    class Db:
        pass

    d = Db()
    d.uri, d.sql, d.repo, d.loc = uri, sql, repo, loc
    return d


@pytest.fixture
def env(db, make_config, bindir, tmp_path):
    """A clean table, a storage directory with uploads/ and one blob, and a
    way to add uploads and run the worker."""
    db.sql(f"DELETE FROM blobupload; DELETE FROM queueitem"
           f" WHERE queue_name = '{QUEUE}'")
    storage = tmp_path / "storage"
    (storage / "uploads").mkdir(parents=True)
    blob = storage / "sha256" / BLOB_HEX[:2] / BLOB_HEX
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"a blob that must survive")

    class Env:
        def __init__(self):
            self.storage = storage
            self.blob = blob
            self.config = make_config(tmp_path / "config.yaml", db.uri,
                                      storage)
            self.n = 0

        def config_with(self, **keys):
            return make_config(tmp_path / f"config-{self.n}.yaml", db.uri,
                               storage, **keys)

        def add(self, age, with_file=True):
            """An upload created `age` ago (SQL interval text); returns
            its uuid."""
            u = str(uuid.uuid4())
            db.sql("INSERT INTO blobupload (repository_id, uuid,"
                   " location_id, created)"
                   f" VALUES ({db.repo}, '{u}', {db.loc},"
                   f" now() - interval '{age}')")
            if with_file:
                self.upload_path(u).write_bytes(b"partial upload " * 10)
            return u

        def upload_path(self, u):
            return storage / "uploads" / u

        def rows(self):
            return {r[0] for r in db.sql("SELECT uuid FROM blobupload")}

        def jobs(self):
            return db.sql("SELECT state, retries_remaining, lease_owner,"
                          " last_error, body FROM queueitem"
                          f" WHERE queue_name = '{QUEUE}'")

        def run(self, *args, config=None, timeout=60):
            self.n += 1
            log = tmp_path / f"worker-{self.n}.log"
            p = harness.spawn([bindir / "quay-upload-cleanup", "--config",
                               config or self.config, "--once", *args], log)
            try:
                rc = p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
                raise AssertionError("quay-upload-cleanup --once hung:\n"
                                     + log.read_text(errors="replace"))
            return rc, log.read_text(errors="replace")

        def spawn(self, *args):
            self.n += 1
            log = tmp_path / f"worker-{self.n}.log"
            p = harness.spawn([bindir / "quay-upload-cleanup", "--config",
                               self.config, *args], log)
            return p, log

    return Env()


def test_expired_uploads_lose_row_and_object_while_the_rest_stays(env):
    expired = [env.add("3 days"), env.add("49 hours")]
    expired_no_file = env.add("5 days", with_file=False)
    recent = env.add("1 hour")
    just_inside = env.add("47 hours")
    orphan = env.upload_path(str(uuid.uuid4()))     # object with no row
    orphan.write_bytes(b"not ours to judge")

    rc, out = env.run()
    assert rc == 0, out

    assert env.rows() == {recent, just_inside}
    for u in expired + [expired_no_file]:
        assert not env.upload_path(u).exists()
    assert env.upload_path(recent).exists()
    assert env.upload_path(just_inside).exists()
    assert orphan.exists()
    assert env.blob.read_bytes() == b"a blob that must survive"
    assert env.jobs() == []
    assert out.count("upload cleaned") == 3

    # a second run finds nothing and changes nothing
    rc, out = env.run()
    assert rc == 0, out
    assert env.rows() == {recent, just_inside}
    assert "upload cleaned" not in out


def test_threshold_comes_from_config_and_the_option_overrides_it(env):
    old = env.add("2 hours")
    middle = env.add("30 minutes")
    young = env.add("5 minutes")

    cfg = env.config_with(BLOBUPLOAD_DELETION_DATE_THRESHOLD=60)
    rc, out = env.run(config=cfg)
    assert rc == 0, out
    assert env.rows() == {middle, young}

    rc, out = env.run("--threshold-minutes", "10", config=cfg)
    assert rc == 0, out
    assert env.rows() == {young}
    assert not env.upload_path(middle).exists()
    assert env.upload_path(young).exists()


def test_storage_error_keeps_the_row_and_retries_the_job(env):
    u = env.add("3 days", with_file=False)
    # unlink(2) on a directory fails with EISDIR: an I/O error that is
    # neither "gone" nor "storage unreachable"
    env.upload_path(u).mkdir()

    rc, out = env.run()
    assert rc == 0, out
    assert env.rows() == {u}
    [(state, retries, owner, error, body)] = env.jobs()
    assert (state, retries, owner) == ("queued", "4", "")
    assert "storage" in error and u in error
    assert json.loads(body) == {"uuid": u, "location": "default"}


def test_unreachable_storage_root_gives_the_job_back_and_exits_1(env,
                                                                tmp_path):
    u = env.add("3 days")
    cfg = env.config_with(DISTRIBUTED_STORAGE_CONFIG={
        "default": ["LocalStorage",
                    {"storage_path": str(tmp_path / "not-mounted")}]})

    rc, out = env.run(config=cfg)
    assert rc == 1, out
    assert env.rows() == {u}
    [(state, retries, owner, error, _)] = env.jobs()
    assert (state, retries, owner) == ("queued", "5", "")
    assert "not-mounted" in error


def test_a_job_for_an_upload_that_is_no_longer_expired_deletes_nothing(env,
                                                                       db):
    # The job was queued while the row was expired; since then the upload
    # was recreated under the same uuid.  The DELETE rechecks created.
    u = env.add("10 minutes")
    gone = str(uuid.uuid4())
    for x in (u, gone):
        db.sql("INSERT INTO queueitem (queue_name, body, dedupe_key)"
               f" VALUES ('{QUEUE}', '{json.dumps({'uuid': x, 'location': 'default'})}',"
               f" '{x}')")

    rc, out = env.run()
    assert rc == 0, out
    assert env.rows() == {u}
    assert env.upload_path(u).exists()
    assert env.jobs() == []
    assert "upload not expired, kept uuid=" + u in out
    assert "upload already gone uuid=" + gone in out


def test_a_job_with_a_malformed_uuid_fails_without_touching_storage(env, db):
    victim = env.storage / "victim"
    victim.write_bytes(b"x")
    db.sql("INSERT INTO queueitem (queue_name, body) VALUES"
           f" ('{QUEUE}', '{{\"uuid\": \"../victim\", \"location\": \"default\"}}')")

    rc, out = env.run()
    assert rc == 0, out
    assert victim.exists()
    [(state, retries, owner, error, _)] = env.jobs()
    assert (state, retries) == ("failed", "5")
    assert "uuid" in error


def test_two_workers_together_clean_each_upload_exactly_once(env):
    uploads = {env.add("3 days") for _ in range(40)}
    recent = env.add("1 minute")

    a, alog = env.spawn("--once")
    b, blog = env.spawn("--once")
    assert a.wait(60) == 0
    assert b.wait(60) == 0

    assert env.rows() == {recent}
    out = Path(alog).read_text() + Path(blog).read_text()
    cleaned = [line.split("uuid=")[1].split()[0]
               for line in out.splitlines() if "upload cleaned" in line]
    assert sorted(cleaned) == sorted(uploads)
    assert all(not env.upload_path(u).exists() for u in uploads)
    assert env.jobs() == []


def test_metrics_textfile_counts_the_jobs(env, tmp_path):
    """--metrics-textfile writes node_exporter's textfile format (issue
    #6, worker counters)."""
    env.add("3 days")
    env.add("4 days")
    prom = tmp_path / "quay-upload-cleanup.prom"
    rc, log = env.run("--metrics-textfile", str(prom))
    assert rc == 0, log
    values = {}
    for line in prom.read_text().splitlines():
        if not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{")[0]] = int(value)
            assert 'worker="quay-upload-cleanup"' in name
    assert values["quay_worker_jobs_claimed_total"] == 2
    assert values["quay_worker_jobs_done_total"] == 2
    assert values["quay_worker_jobs_failed_total"] == 0
    assert values["quay_worker_lease_expiries_total"] == 0
    assert not list(tmp_path.glob("*.tmp"))
