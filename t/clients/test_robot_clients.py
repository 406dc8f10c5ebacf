"""A robot account with skopeo 1.9 and podman 4.3 (quay-behaviour 3.3;
security catalogue B2 #36): the robot logs in with its token, pushes and
pulls where it has write permission, is refused where it has none, and is
refused everywhere once deleted.

Fixtures in t/clients/conftest.py.  Our registry only: the robot is made
through /api/v1 and given its permission in SQL.
"""

import json
import re

import pytest

import images
from api import Api, create_token, sql


@pytest.fixture(scope="module")
def robot(target, client):
    """alice+ci: a Client (its own authfile, pushing to alice/...) logged
    in as the robot with skopeo; .owner is alice's API client."""
    if target.external:
        pytest.skip("robot accounts are made through our own API")
    owner = Api(target.registry, create_token(target.registry, "alice"))
    res = owner.put("/user/robots/ci", json={"description": "CI"})
    assert res.status_code == 201, res.text
    c = client("alice", login=False)
    c.user, c.password = "alice+ci", res.json()["token"]
    r = c.login()
    assert "Login Succeeded" in r.output, r
    c.owner = owner
    return c


def grant_write(target, robot_name, repo):
    ns, name = repo.split("/", 1)
    sql(target.registry, f"""
        INSERT INTO repositorypermission (user_id, repository_id, role_id)
        SELECT u.id, r.id, ro.id FROM "user" u, repository r, "user" n,
               role ro
         WHERE u.username = '{robot_name}' AND n.username = '{ns}'
           AND r.namespace_user_id = n.id AND r.name = '{name}'
           AND ro.name = 'write'""")


def test_robot_login_with_a_wrong_token_fails(target, client, robot):
    c = client("alice", login=False)
    r = c.login(user=robot.user, password="A" * 64, check=False)
    assert r.rc != 0, r
    assert re.search(r"invalid username/password|unauthorized", r.output,
                     re.I), r
    assert target.host not in c.auth_entries()


def test_robot_pushes_and_pulls_with_skopeo_and_podman(target, client,
                                                       robot, podman,
                                                       tmp_root):
    alice = client("alice")
    repo = alice.repo("robot")
    first = images.oci_image(tmp_root.mkdir("img"), "robot-first")
    alice.copy(first.ref, target.ref(repo, "v1"))

    # no permission yet: the robot sees nothing and pushes nothing
    r = robot.inspect_raw(target.ref(repo, "v1"), check=False)
    assert r.refused(), r
    assert first.manifest not in r.out
    grant_write(target, "alice+ci", repo)

    # skopeo: pull what alice pushed, push its own image
    assert robot.inspect_raw(target.ref(repo, "v1")).out == first.manifest
    second = images.oci_image(tmp_root.mkdir("img"), "robot-second",
                              layers=((3000,), (70000,)))
    robot.copy(second.ref, target.ref(repo, "v2"))
    assert alice.inspect_raw(target.ref(repo, "v2")).out == second.manifest
    out = tmp_root.mkdir("pulled") / "dir"
    robot.copy(target.ref(repo, "v2"), f"dir:{out}")
    copied = images.read_dir(out)
    assert copied.manifest == second.manifest
    for d in [second.config.digest] + [b.digest for b in second.layers]:
        assert images.sha256_file(copied.blobs[d]) == d

    # podman: log in as the robot, pull, tag and push again
    r = podman.login(robot)
    assert "Login Succeeded" in r.output, r
    got = podman("login", "--get-login", target.host, client=robot)
    assert got.text.strip() == "alice+ci"
    podman("pull", target.name(repo, "v2"), client=robot)
    assert podman.inspect(target.name(repo, "v2"))["Digest"] \
        == second.digest
    podman("tag", target.name(repo, "v2"), target.name(repo, "v3"))
    podman("push", target.name(repo, "v3"), client=robot)
    assert sorted(alice.list_tags(repo)) == ["v1", "v2", "v3"]
    raw = alice.inspect_raw(target.ref(repo, "v3")).out
    assert json.loads(raw)["config"]["digest"] == second.config.digest

    # the robot's pushes are audited with the robot as performer
    rows = sql(target.registry, """
        SELECT count(*) FROM logentry e JOIN logentrykind k
            ON k.id = e.kind_id JOIN "user" p ON p.id = e.performer_id
         WHERE k.name = 'push_repo' AND p.username = 'alice+ci'""")
    assert int(rows[0][0]) >= 1


def test_robot_cannot_push_where_it_has_no_permission(target, client,
                                                      robot, tmp_root):
    img = images.oci_image(tmp_root.mkdir("img"), "robot-denied")
    # a new repository in its owner's namespace: robots create nothing
    r = robot.copy(img.ref, target.ref(robot.repo("robot-new"), "v1"),
                   check=False)
    assert r.refused(), r
    assert sql(target.registry, "SELECT count(*) FROM repository WHERE"
               f" name = '{robot.repo('robot-new').split('/', 1)[1]}'") \
        == [("0",)]
    # bob's namespace
    r = robot.copy(img.ref, target.ref(client("bob").repo("robot"), "v1"),
                   check=False)
    assert r.refused(), r


def test_deleted_robot_is_refused(target, client, robot, tmp_root):
    repo = client("alice").repo("robot")
    assert robot.inspect_raw(target.ref(repo, "v1"), check=False).rc == 0
    assert robot.owner.delete("/user/robots/ci").status_code == 204
    r = robot.inspect_raw(target.ref(repo, "v1"), check=False)
    assert r.refused(), r
    img = images.oci_image(tmp_root.mkdir("img"), "robot-after")
    r = robot.copy(img.ref, target.ref(repo, "after"), check=False)
    assert r.refused(), r
    r = robot.login(check=False)
    assert r.rc != 0, r
