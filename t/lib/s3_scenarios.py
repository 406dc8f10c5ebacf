"""Runs test_skopeo.py's scenarios against a registry whose only storage
is Ceph RGW (issue #5, "Basic S3 path").  A test module calls
use_s3(globals(), mode) with mode "redirect" (RadosGWStorage form, pulls
follow a presigned URL) or "proxy" (S3Storage form with
FEATURE_PROXY_STORAGE, nginx streams the object): that copies every
test_* scenario in, and defines the module's `registry` fixture (which
the client fixtures of t/clients/conftest.py use) plus a check that the
blobs are in the bucket.  One module per mode, because the client
fixtures look the registry up by name and cannot take a parametrized
one."""

import importlib.util
import itertools
import os
from pathlib import Path

import pytest

import images

_buckets = itertools.count()


def _location(rgw, mode, bucket):
    if mode == "redirect":
        return ["RadosGWStorage", {
            "hostname": "127.0.0.1", "port": rgw.port, "is_secure": False,
            "access_key": rgw.access_key, "secret_key": rgw.secret_key,
            "bucket_name": bucket, "storage_path": "/registry"}]
    return ["S3Storage", {
        "s3_bucket": bucket, "s3_access_key": rgw.access_key,
        "s3_secret_key": rgw.secret_key, "s3_region": rgw.region,
        "endpoint_url": rgw.endpoint, "storage_path": "registry/"}]


def use_s3(namespace, mode):
    here = Path(__file__).resolve().parent.parent / "clients"
    spec = importlib.util.spec_from_file_location(
        f"skopeo_scenarios_{mode}", here / "test_skopeo.py")
    scenarios = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenarios)
    namespace.update({k: v for k, v in vars(scenarios).items()
                      if k.startswith("test_")})

    @pytest.fixture(scope="module")
    def registry(rgw, start_registry):
        bucket = f"quay-skopeo-{mode}-{os.getpid()}-{next(_buckets)}"
        rgw.create_bucket(bucket)
        reg = start_registry(
            DISTRIBUTED_STORAGE_CONFIG={"s3": _location(rgw, mode, bucket)},
            DISTRIBUTED_STORAGE_PREFERENCE=["s3"],
            DISTRIBUTED_STORAGE_DEFAULT_LOCATIONS=["s3"],
            FEATURE_PROXY_STORAGE=(mode == "proxy"))
        reg.bucket = bucket
        return reg

    def test_blobs_are_in_the_bucket(registry, rgw, target, client,
                                     tmp_root):
        """What skopeo pushed is in RGW at its content address, and no
        multipart upload is left open."""
        alice = client("alice")
        img = images.oci_image(tmp_root.mkdir(f"in-bucket-{mode}"),
                               f"in-bucket-{mode}")
        alice.copy(img.ref, target.ref("alice/in-bucket", "v1"))
        keys = rgw.list_objects(registry.bucket)
        for d in [img.config.digest] + [b.digest for b in img.layers]:
            hexd = d.split(":", 1)[1]
            assert f"registry/sha256/{hexd[:2]}/{hexd}" in keys
        assert rgw.list_multipart_uploads(registry.bucket) == []

    namespace["registry"] = registry
    namespace["test_blobs_are_in_the_bucket"] = test_blobs_are_in_the_bucket
