"""CREATE_NAMESPACE_ON_PUSH (issue #4, quay-behaviour 3.1): a push to a
namespace that does not exist makes it an organization of the pusher, as
POST /api/v1/organization/ would; off (the default), nothing is made and
nothing is granted."""

import base64
import json

import pytest

import v2client
from api import create_user, sql


def access(token):
    """The access claim's grants, leaving out entries with no action."""
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return {a["name"]: sorted(a["actions"]) for a in claims["access"]
            if a["actions"]}


@pytest.fixture(scope="module")
def on(start_registry):
    reg = start_registry(CREATE_NAMESPACE_ON_PUSH=True)
    create_user(reg, "pusher", "pusher-password")
    return reg


@pytest.fixture(scope="module")
def off(start_registry):
    reg = start_registry()
    create_user(reg, "pusher", "pusher-password")
    return reg


def test_push_creates_the_namespace_as_an_organization(on):
    status, token = v2client.token_for(on, ["repository:neworg/app:pull,push"],
                                       ("pusher", "pusher-password"))
    assert status == 200
    assert access(token) == {"neworg/app": ["pull", "push"]}
    v2client.push_image(on, "neworg/app", token)
    assert sql(on, "SELECT organization FROM \"user\""
               " WHERE username = 'neworg'") == [("t",)]
    assert sql(on, "SELECT t.name, r.name FROM team t"
               " JOIN teamrole r ON r.id = t.role_id"
               " JOIN teammember m ON m.team_id = t.id"
               " JOIN \"user\" u ON u.id = m.user_id"
               " WHERE u.username = 'pusher'") == [("owners", "admin")]
    assert sql(on, "SELECT count(*) FROM logentry e"
               " JOIN logentrykind k ON k.id = e.kind_id"
               " WHERE k.name = 'org_create'") == [("1",)]


def test_pull_alone_creates_nothing(on):
    status, token = v2client.token_for(on, ["repository:other/app:pull"],
                                       ("pusher", "pusher-password"))
    assert status == 200 and access(token) == {}
    assert sql(on, "SELECT count(*) FROM \"user\""
               " WHERE username = 'other'") == [("0",)]


def test_invalid_namespace_name_creates_nothing(on):
    # one character: a valid repository path, not a valid namespace name
    status, token = v2client.token_for(on, ["repository:x/app:pull,push"],
                                       ("pusher", "pusher-password"))
    assert status == 200 and access(token) == {}
    assert sql(on, "SELECT count(*) FROM \"user\""
               " WHERE username = 'x'") == [("0",)]


def test_anonymous_creates_nothing(on):
    status, token = v2client.token_for(on, ["repository:anon/app:push"])
    assert status == 200 and access(token) == {}
    assert sql(on, "SELECT count(*) FROM \"user\""
               " WHERE username = 'anon'") == [("0",)]


def test_off_by_default(off):
    status, token = v2client.token_for(off, ["repository:neworg/app:push"],
                                       ("pusher", "pusher-password"))
    assert status == 200 and access(token) == {}
    assert sql(off, "SELECT count(*) FROM \"user\""
               " WHERE username = 'neworg'") == [("0",)]
