"""Stale S3 upload spools are swept from the node's disk
(ngx_http_quay_spool_sweep.c): one nginx worker removes, every
quay_spool_sweep_interval, each <client_body_temp_path>/uploads/<uuid> not
written for BLOBUPLOAD_DELETION_DATE_THRESHOLD minutes, unless a request
holds its lock."""

import fcntl
import os
import time
import uuid

import pytest

from harness import wait_until

HOUR = 3600


def spool(directory, age_s, name=None):
    """A spool file whose last write was age_s seconds ago."""
    path = directory / (name or str(uuid.uuid4()))
    path.write_bytes(os.urandom(1024))
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


@pytest.fixture(scope="module")
def sweeping(start_registry):
    # threshold 60 minutes; sweep every second (the first after a second)
    reg = start_registry(BLOBUPLOAD_DELETION_DATE_THRESHOLD=60,
                         http_extra="quay_spool_sweep_interval 1s;")
    spools = reg.prefix / "client_body_temp" / "uploads"
    spools.mkdir(parents=True, exist_ok=True)
    return reg, spools


def test_a_spool_older_than_the_threshold_is_removed(sweeping):
    reg, spools = sweeping
    old = spool(spools, 2 * HOUR)
    young = spool(spools, 30 * 60)
    wait_until(lambda: not old.exists(), 15, "the sweep of the old spool")
    assert young.exists()
    wait_until(lambda: "removed 1 upload spool file(s) not written for 60 "
               "minutes" in reg.error_log(), 5, "the sweep's log line")


def test_a_locked_spool_is_kept_until_its_lock_is_released(sweeping):
    reg, spools = sweeping
    held = spool(spools, 2 * HOUR)
    marker = spool(spools, 2 * HOUR)
    with open(held, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        # a sweep ran while the lock was held: the marker went, held stayed
        wait_until(lambda: not marker.exists(), 15, "a sweep")
        time.sleep(1.5)
        assert held.exists()
    wait_until(lambda: not held.exists(), 15, "the sweep after the unlock")


def test_only_upload_uuid_files_are_touched(sweeping):
    reg, spools = sweeping
    other = spool(spools, 2 * HOUR, name="notes.txt")
    upper = spool(spools, 2 * HOUR, name=str(uuid.uuid4()).upper())
    target = spool(spools, 2 * HOUR)
    link = spools / str(uuid.uuid4())
    link.symlink_to(target)
    subdir = spools / str(uuid.uuid4())
    subdir.mkdir()
    os.utime(subdir, (time.time() - 2 * HOUR,) * 2)
    marker = spool(spools, 2 * HOUR)
    wait_until(lambda: not marker.exists() and not target.exists(), 15,
               "a sweep")
    assert other.exists() and upper.exists() and subdir.is_dir()
    assert link.is_symlink()


def test_interval_zero_disables_the_sweep(start_registry):
    reg = start_registry(BLOBUPLOAD_DELETION_DATE_THRESHOLD=60,
                         http_extra="quay_spool_sweep_interval 0;")
    spools = reg.prefix / "client_body_temp" / "uploads"
    spools.mkdir(parents=True, exist_ok=True)
    old = spool(spools, 2 * HOUR)
    time.sleep(3)
    assert old.exists()
    assert "upload spool" not in reg.error_log()


def test_an_unreadable_spool_directory_is_one_error_line(start_registry):
    reg = start_registry(http_extra="quay_spool_sweep_interval 1s;")
    reg.ignore_log.append(r"sweeping upload spools")
    spools = reg.prefix / "client_body_temp" / "uploads"
    spools.mkdir(parents=True, exist_ok=True)
    # a file where the directory should be: opendir() fails with ENOTDIR
    os.rmdir(spools)
    spools.write_text("not a directory\n")
    wait_until(lambda: "sweeping upload spools: 1 failure(s), the first at "
               f"\"{spools}\"" in reg.error_log(), 15, "the error line")
    r = reg.session.get(reg.url + "/health/instance")
    assert r.status_code == 200
