"""End to end with podman 4.3 (rootful, vfs, private storage): login and
logout, then load an offline docker-archive, push it in both manifest
formats, remove it and pull it back (issue #3).  `podman run` does not
work in this sandbox and is not used.

Fixtures in t/clients/conftest.py.
"""

import json
import re

import pytest

import images


FORMATS = {"v2s2": images.DOCKER_MANIFEST, "oci": images.OCI_MANIFEST}


def test_podman_login_and_logout(target, client, podman, tmp_root):
    target.need_auth()
    c = client("alice", login=False)

    r = podman.login(c, password="wrong-password-1", check=False)
    assert r.rc != 0, r
    assert re.search(r"invalid username/password|unauthorized", r.output,
                     re.I), r
    assert target.host not in c.auth_entries()

    r = podman.login(c)
    assert "Login Succeeded" in r.output, r
    assert target.host in c.auth_entries()
    got = podman("login", "--get-login", target.host, client=c)
    assert got.text.strip() == c.user

    # logged in, podman reads a private repository
    img = images.oci_image(tmp_root.mkdir("img"), "podman-login")
    repo = c.repo("podman-login")
    c.copy(img.ref, target.ref(repo, "v1"))
    podman("pull", target.name(repo, "v1"), client=c)
    assert podman.inspect(target.name(repo, "v1"))["Digest"] == img.digest

    r = podman("logout", target.host, client=c)
    assert target.host not in c.auth_entries()
    r = podman("login", "--get-login", target.host, client=c, check=False)
    assert r.rc != 0, r

    # logged out, it does not
    r = podman("pull", target.name(repo, "v1"), client=c, check=False)
    assert r.refused(), r


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_podman_load_push_pull_round_trip(target, client, podman, tmp_root,
                                          fmt):
    alice = client("alice")
    arch = images.docker_archive(tmp_root.mkdir("img") / "image.tar",
                                 f"podman-{fmt}",
                                 layers=((3000, 70000), (1 << 20,)),
                                 repo_tag=f"localhost/quay-test-{fmt}:latest")
    diff_ids = [b.diff_id for b in arch.layers]

    r = podman("load", "-i", arch.path)
    assert f"Loaded image: {arch.repo_tag}" in r.output, r
    loaded = podman.inspect(arch.repo_tag)
    assert loaded["Id"] == arch.image_id
    assert loaded["RootFS"]["Layers"] == diff_ids

    repo = alice.repo(f"podman-{fmt}")
    name = target.name(repo, "v1")
    podman("tag", arch.repo_tag, name)
    digestfile = tmp_root.mkdir("digest") / "digest"
    podman("push", "--format", fmt, "--digestfile", digestfile, name,
           client=alice)
    digest = digestfile.read_text().strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest

    # what the registry holds is what podman says it pushed
    raw = alice.inspect_raw(target.ref(repo, "v1")).out
    assert images.sha256_digest(raw) == digest
    manifest = json.loads(raw)
    assert manifest["mediaType"] == FORMATS[fmt]
    assert len(manifest["layers"]) == len(arch.layers)
    config = json.loads(alice.skopeo("inspect", "--config", "--raw",
                                     target.ref(repo, "v1")).out)
    assert config["rootfs"]["diff_ids"] == diff_ids
    if fmt == "v2s2":
        # no conversion: the loaded config goes out unchanged
        assert manifest["config"]["digest"] == arch.config.digest

    podman("rmi", name, arch.repo_tag)
    assert not podman.exists(name)
    assert not podman.exists(arch.image_id)

    # pulled back by tag, then by digest
    for ref in (name, target.name(repo, digest=digest)):
        podman("pull", ref, client=alice)
        back = podman.inspect(ref)
        assert back["Digest"] == digest
        assert f"{target.host}/{repo}@{digest}" in back["RepoDigests"]
        assert back["RootFS"]["Layers"] == diff_ids
        assert "sha256:" + back["Id"] == manifest["config"]["digest"]
        podman("rmi", "-f", back["Id"])
