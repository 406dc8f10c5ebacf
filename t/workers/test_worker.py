"""The shared worker core (workers/worker.c): claim with a lease, crash and
signal safety, retries and backoff, database outages, log redaction.

The jobs run in a tiny worker compiled by this file (TEST_WORKER_C below)
with cc against workers/worker.c and build/libquay.a, the same way the
Makefile links a real worker.  Its job body is {"action": A, "sleep_ms": N}:

    ok      sleeps N ms (in slices, renewing the lease, stopping on
            SIGTERM), then DONE
    enqueue calls worker_enqueue() twice with dedupe key body["key"] and
            records "enqueue<r1><r2>" (the two return values)
    retry   RETRY ("synthetic transient error")
    fail    FAIL ("synthetic bad job")
    stop    STOP ("synthetic sick worker")

It appends "start <id> <pid> <time>" and "done <id> <pid> <time>" lines
to the file named by TEST_WORKER_LOG, so a test can count how often each
job ran, where and when.  TEST_WORKER_QUEUE names the queue it claims.
QUAY_WORKER_TEST_HOLD_SECONDS (worker.h) makes it hold each claimed job
before running it.

Build it by hand (what the test_worker_bin fixture does):

    cc -std=gnu11 -D_GNU_SOURCE -Ilib -Iworkers -I$(pg_config --includedir) \
       -o quay-test-worker quay_test_worker.c workers/worker.c \
       workers/worker_metrics.c build/libquay.a -lpq -lhiredis -ljansson -lcurl -lyaml -lcrypto \
       -lpthread
"""

import json
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import harness


TEST_WORKER_C = r"""
/*
 * quay-test-worker: a worker with controllable jobs for t/workers/
 * test_worker.py (see the docstring there).
 */

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "worker.h"


static void
test_record(worker_job_t *job, const char *what)
{
    const char       *path = getenv("TEST_WORKER_LOG");
    char              line[160];
    struct timespec   ts;
    int               fd, n;

    if (path == NULL) {
        return;
    }
    (void) clock_gettime(CLOCK_REALTIME, &ts);
    n = snprintf(line, sizeof(line), "%s %lld %d %lld.%06ld\n", what,
                 (long long) job->id, (int) getpid(), (long long) ts.tv_sec,
                 ts.tv_nsec / 1000);
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        (void) !write(fd, line, (size_t) n);
        (void) close(fd);
    }
}


static worker_job_result_e
test_run(worker_t *w, worker_job_t *job, void *ctx)
{
    const char  *action;
    double       left;

    (void) ctx;
    action = json_string_value(json_object_get(job->body, "action"));
    left = (double) json_integer_value(json_object_get(job->body,
                                                       "sleep_ms")) / 1000;
    if (action == NULL) {
        worker_job_error(job, "no action");
        return WORKER_JOB_FAIL;
    }
    test_record(job, "start");

    if (strcmp(action, "retry") == 0) {
        worker_job_error(job, "synthetic transient error");
        return WORKER_JOB_RETRY;
    }
    if (strcmp(action, "fail") == 0) {
        worker_job_error(job, "synthetic bad job");
        return WORKER_JOB_FAIL;
    }
    if (strcmp(action, "stop") == 0) {
        worker_job_error(job, "synthetic sick worker");
        return WORKER_JOB_STOP;
    }
    if (strcmp(action, "enqueue") == 0) {
        const char  *key = json_string_value(json_object_get(job->body,
                                                             "key"));
        char         what[32], err[256];
        int          first, second;

        first = worker_enqueue(w->conn, w->def->queue,
                               "{\"action\": \"ok\"}", key, 0, err,
                               sizeof(err));
        second = worker_enqueue(w->conn, w->def->queue,
                                "{\"action\": \"ok\"}", key, 0, err,
                                sizeof(err));
        (void) snprintf(what, sizeof(what), "enqueue%d%d", first, second);
        test_record(job, what);
        return WORKER_JOB_DONE;
    }

    while (left > 0) {
        if (!worker_sleep(0.05)) {
            return WORKER_JOB_RETRY;            /* shutdown: give back */
        }
        if (worker_job_heartbeat(job) != 0) {
            return WORKER_JOB_RETRY;            /* lease lost */
        }
        left -= 0.05;
    }
    test_record(job, "done");
    return WORKER_JOB_DONE;
}


int
main(int argc, char **argv)
{
    const char    *queue = getenv("TEST_WORKER_QUEUE");
    worker_def_t   def;

    memset(&def, 0, sizeof(def));
    def.name = "quay-test-worker";
    def.queue = queue ? queue : "test";
    def.poll_s = 1;
    def.run_job = test_run;
    return worker_main(argc, argv, &def);
}
"""


def _pg_include():
    return subprocess.run(["pg_config", "--includedir"], check=True,
                          stdout=subprocess.PIPE, text=True).stdout.strip()


@pytest.fixture(scope="module")
def test_worker_bin(build, tmp_path_factory):
    """Compiles TEST_WORKER_C against workers/worker.c and libquay.a."""
    root = Path(build)
    d = tmp_path_factory.mktemp("test-worker")
    src = d / "quay_test_worker.c"
    src.write_text(TEST_WORKER_C)
    out = d / "quay-test-worker"
    harness.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-Wall", "-Wextra",
                 "-Werror", "-Wno-unused-parameter", "-O1", "-g",
                 "-I", root / "lib", "-I", root / "workers",
                 "-I", _pg_include(), "-o", out, src,
                 root / "workers" / "worker.c",
                 root / "workers" / "worker_metrics.c",
                 root / "build" / "libquay.a",
                 "-lpq", "-lhiredis", "-ljansson", "-lcurl", "-lyaml",
                 "-lcrypto", "-lpthread"], timeout=120)
    return out


@pytest.fixture(scope="module")
def db(pg):
    name = f"test_worker_{os.getpid()}"
    uri = pg.new_database(name)

    class Db:
        def __init__(self):
            self.name = name
            self.uri = uri

        def sql(self, query):
            return pg.sql(query, db=name)

    return Db()


class Worker:
    """A running worker process; output (stdout and stderr) goes to log."""

    def __init__(self, cmd, log, env):
        self.log = log
        self.proc = harness.spawn(cmd, log, env=env)
        self.pid = self.proc.pid

    def output(self):
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait(self, timeout=30):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"worker {self.pid} still running after "
                                 f"{timeout} s:\n{self.output()[-3000:]}")

    def terminate(self, timeout=10):
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)


@pytest.fixture
def env(test_worker_bin, db, make_config, tmp_path):
    """Starts test workers on a queue of its own; kills leftovers."""

    class Env:
        def __init__(self):
            self.db = db
            self.queue = "test-" + uuid.uuid4().hex[:12]
            self.config = make_config(tmp_path / "config.yaml", db.uri,
                                      tmp_path / "storage")
            self.record = tmp_path / "jobs.log"
            self.workers = []
            self.n = 0

        def start(self, *args, hold=None, config=None):
            self.n += 1
            e = dict(os.environ, TEST_WORKER_QUEUE=self.queue,
                     TEST_WORKER_LOG=str(self.record))
            e.pop("QUAY_WORKER_TEST_HOLD_SECONDS", None)
            if hold is not None:
                e["QUAY_WORKER_TEST_HOLD_SECONDS"] = str(hold)
            cmd = [test_worker_bin, "--config", config or self.config,
                   "--poll", "1", *args]
            w = Worker(cmd, tmp_path / f"worker-{self.n}.log", e)
            self.workers.append(w)
            return w

        def run_once(self, *args, timeout=30):
            w = self.start("--once", *args)
            return w.wait(timeout), w

        def enqueue(self, body, **cols):
            names = ["queue_name", "body"] + list(cols)
            values = [self.queue, json.dumps(body)] + list(cols.values())
            lits = ", ".join("'" + str(v).replace("'", "''") + "'"
                             for v in values)
            rows = db.sql(f"INSERT INTO queueitem ({', '.join(names)}) "
                          f"VALUES ({lits}) RETURNING id")
            return int(rows[0][0])

        def enqueue_many(self, body, n):
            """n jobs in one statement (one commit); returns their ids."""
            lit = json.dumps(body).replace("'", "''")
            rows = db.sql("INSERT INTO queueitem (queue_name, body)"
                          f" SELECT '{self.queue}', '{lit}'"
                          f" FROM generate_series(1, {n}) RETURNING id")
            return [int(r[0]) for r in rows]

        def job(self, job_id):
            """(state, retries, lease_owner, lease_expires, last_error) or
            None when the row is gone."""
            rows = db.sql("SELECT state, retries_remaining, lease_owner,"
                          " lease_expires, last_error FROM queueitem"
                          f" WHERE id = {job_id}")
            if not rows:
                return None
            s, r, o, e, err = rows[0]
            return dict(state=s, retries=int(r), owner=o, expires=e,
                        error=err)

        def backoff(self, job_id):
            """available_after - updated in seconds: the backoff the
            worker chose, by the database clock."""
            rows = db.sql("SELECT extract(epoch FROM available_after -"
                          f" updated) FROM queueitem WHERE id = {job_id}")
            return float(rows[0][0])

        def make_available(self, job_id):
            db.sql("UPDATE queueitem SET available_after = now()"
                   f" WHERE id = {job_id}")

        def remaining(self):
            return int(db.sql("SELECT count(*) FROM queueitem WHERE"
                              f" queue_name = '{self.queue}'")[0][0])

        def records(self, what=None):
            """[(what, job id, pid)] in order."""
            try:
                lines = self.record.read_text().splitlines()
            except FileNotFoundError:
                return []
            out = []
            for line in lines:
                w, j, p, _ = line.split()
                if what is None or w == what:
                    out.append((w, int(j), int(p)))
            return out

        def record_time(self, what, job_id):
            """The wall-clock time of the first such record (the test
            worker and PostgreSQL share this machine's clock)."""
            for line in self.record.read_text().splitlines():
                w, j, _, t = line.split()
                if w == what and int(j) == job_id:
                    return float(t)
            raise AssertionError(f"no {what} record for job {job_id}")

    e = Env()
    yield e
    for w in e.workers:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)


def wait_leased(env, job_id, timeout=20):
    return harness.wait_until(
        lambda: (env.job(job_id) or {}).get("owner"), timeout,
        f"a worker to lease job {job_id}")


# ------------------------------------------------------------------ crashes

def test_job_of_a_worker_killed_mid_job_is_reclaimed_after_its_lease_and_done_once(env):
    job = env.enqueue({"action": "ok"})

    a = env.start("--lease", "3", hold=120)
    owner_a = wait_leased(env, job)
    assert f":{a.pid}:" in owner_a
    a.proc.kill()
    a.wait()
    assert env.records() == []

    # B starts at once, but must not take the job before A's lease
    # expires
    expires = float(env.db.sql("SELECT extract(epoch FROM lease_expires)"
                               f" FROM queueitem WHERE id = {job}")[0][0])
    b = env.start("--lease", "3")
    harness.wait_until(lambda: env.job(job) is None, 30,
                       "worker B to finish the job")
    assert b.terminate() == 0
    assert env.records() == [("start", job, b.pid), ("done", job, b.pid)]
    assert env.record_time("start", job) >= expires
    assert "reclaimed=yes" in b.output()


def test_two_workers_started_together_run_each_job_exactly_once(env):
    a = env.start()
    b = env.start()
    for w in (a, b):
        harness.wait_until(lambda: "connected to the database" in w.output(),
                           20, "both workers to connect")
    # 40 jobs of 50 ms: 2 s of work, more than either worker's poll
    # (1 s +- 20%), so both must take part
    jobs = env.enqueue_many({"action": "ok", "sleep_ms": 50}, 40)

    harness.wait_until(lambda: env.remaining() == 0, 60,
                       "the queue to drain")
    assert a.terminate() == 0
    assert b.terminate() == 0

    done = env.records("done")
    assert sorted(j for _, j, _ in done) == sorted(jobs)
    assert len(env.records("start")) == len(jobs)
    assert {p for _, _, p in done} == {a.pid, b.pid}


def test_a_job_outliving_its_lease_is_renewed_and_never_run_twice(env):
    job = env.enqueue({"action": "ok", "sleep_ms": 4000})

    a = env.start("--lease", "1")
    wait_leased(env, job)
    b = env.start("--lease", "1")
    harness.wait_until(lambda: env.job(job) is None, 30, "the job to finish")
    assert a.terminate() == 0
    assert b.terminate() == 0
    assert env.records() == [("start", job, a.pid), ("done", job, a.pid)]


# ------------------------------------------------------------------ signals

def test_sigterm_while_holding_a_job_gives_it_back_unused_and_exits_0(env):
    job = env.enqueue({"action": "ok"})

    w = env.start(hold=120)
    wait_leased(env, job)
    assert w.terminate() == 0

    row = env.job(job)
    assert row == dict(state="queued", retries=5, owner="", expires="",
                       error="")
    assert env.records() == []
    assert "given back reason=shutdown" in w.output()


def test_sigterm_while_running_a_job_gives_it_back_unused_and_exits_0(env):
    job = env.enqueue({"action": "ok", "sleep_ms": 120000})

    w = env.start()
    harness.wait_until(lambda: env.records("start"), 20, "the job to start")
    t0 = time.monotonic()
    assert w.terminate() == 0
    assert time.monotonic() - t0 < 5

    row = env.job(job)
    assert (row["state"], row["retries"], row["owner"], row["expires"]) \
        == ("queued", 5, "", "")
    assert env.records("done") == []


def test_sigterm_while_idle_exits_0_without_waiting_for_the_poll(env):
    w = env.start("--poll", "600")
    harness.wait_until(lambda: "queue=" in w.output(), 20, "the worker")
    time.sleep(0.3)       # let it reach its idle sleep: not a wait for state
    t0 = time.monotonic()
    assert w.terminate() == 0
    assert time.monotonic() - t0 < 3


# ------------------------------------------------------------ retries/fail

def test_transient_failure_is_retried_with_growing_backoff_until_failed(env):
    job = env.enqueue({"action": "retry"})

    for attempt, left in enumerate([4, 3, 2, 1]):
        rc, w = env.run_once("--retry-base", "10")
        assert rc == 0, w.output()
        row = env.job(job)
        assert (row["state"], row["retries"], row["owner"]) \
            == ("queued", left, "")
        assert row["error"] == "synthetic transient error"
        # base * 2^attempt, jittered by +-25%
        base = 10 * 2 ** attempt
        delay = env.backoff(job)
        assert 0.75 * base - 0.5 <= delay <= 1.25 * base + 0.5, delay

        if attempt == 0:
            # while it backs off, the job is not claimable
            rc, w = env.run_once()
            assert rc == 0
            assert env.job(job)["retries"] == 4

        env.make_available(job)

    rc, w = env.run_once("--retry-base", "10")
    assert rc == 0
    row = env.job(job)
    assert (row["state"], row["retries"], row["owner"]) == ("failed", 0, "")
    assert row["error"] == "synthetic transient error"
    assert len(env.records("start")) == 5

    # a failed job is never claimed again
    env.make_available(job)
    rc, w = env.run_once()
    assert rc == 0
    assert len(env.records("start")) == 5


def test_bad_job_fails_at_once_without_using_retries(env):
    job = env.enqueue({"action": "fail"})

    rc, w = env.run_once()
    assert rc == 0
    row = env.job(job)
    assert (row["state"], row["retries"], row["owner"], row["error"]) \
        == ("failed", 5, "", "synthetic bad job")


def test_sick_worker_gives_the_job_back_unused_and_exits_1(env):
    job = env.enqueue({"action": "stop"})

    rc, w = env.run_once()
    assert rc == 1
    row = env.job(job)
    assert (row["state"], row["retries"], row["owner"], row["expires"]) \
        == ("queued", 5, "", "")
    assert row["error"] == "synthetic sick worker"


def test_job_abandoned_by_crashing_workers_ends_failed(env):
    # A previous worker died holding the lease with its last retry: the
    # takeover uses that retry, so the job fails instead of looping.
    job = env.enqueue({"action": "ok"}, retries_remaining=1,
                      lease_owner="dead:1:0",
                      lease_expires="2000-01-01T00:00:00Z")

    rc, w = env.run_once()
    assert rc == 0
    row = env.job(job)
    assert (row["state"], row["retries"]) == ("failed", 0)
    assert "lease expired" in row["error"]
    assert env.records() == []


def test_enqueue_with_a_dedupe_key_queues_one_waiting_job(env):
    job = env.enqueue({"action": "enqueue", "key": "k1"})

    rc, w = env.run_once()
    assert rc == 0, w.output()
    starts = env.records("start")
    # worker_enqueue returned 1 (inserted), then 0 (deduplicated); the one
    # new job ran too
    assert env.records("enqueue10") == [("enqueue10", job, w.pid)]
    assert len(starts) == 2 and len(env.records("done")) == 1
    assert env.remaining() == 0


# ------------------------------------------------------- database and logs

def test_worker_survives_a_database_outage_and_then_runs_jobs(env, pg):
    w = env.start()
    harness.wait_until(lambda: "connected to the database" in w.output(),
                       20, "the worker to connect")
    pg.stop()
    try:
        harness.wait_until(
            lambda: w.output().count("cannot connect to the database") >= 2,
            30, "two failed reconnects")
        assert w.proc.poll() is None, w.output()
    finally:
        pg.start()

    # backoff, not a spin: a handful of attempts over the outage
    assert w.output().count("cannot connect to the database") < 10
    job = env.enqueue({"action": "ok"})
    harness.wait_until(lambda: env.job(job) is None, 60,
                       "the job to run after the outage")
    assert w.proc.poll() is None
    assert w.terminate() == 0
    assert [r[0] for r in env.records()] == ["start", "done"]


def test_database_password_never_appears_in_the_log(env, make_config,
                                                     tmp_path):
    secret = "s3cr3t-" + uuid.uuid4().hex[:8]
    port = harness.free_port()
    cfg = make_config(tmp_path / "bad.yaml",
                      f"postgresql://quay:{secret}@127.0.0.1:{port}/x"
                      f"?password={secret}", tmp_path / "storage")
    w = env.start(config=cfg)
    harness.wait_until(lambda: "cannot connect to the database"
                       in w.output(), 20, "a connection failure")
    assert w.terminate() == 0
    out = w.output()
    assert secret not in out
    assert "quay:***@127.0.0.1" in out


def test_missing_config_option_is_a_usage_error(test_worker_bin):
    p = subprocess.run([str(test_worker_bin)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=30)
    assert p.returncode == 2
    assert "--config" in p.stderr


def test_log_lines_have_time_level_name_pid_and_job(env):
    job = env.enqueue({"action": "ok"})
    rc, w = env.run_once()
    assert rc == 0
    lines = [l for l in w.output().splitlines() if f"job={job} " in l]
    assert lines, w.output()
    pat = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ [DIWE] "
                     rf"quay-test-worker\[{w.pid}\] job={job} \S")
    assert all(pat.match(l) for l in lines), lines
