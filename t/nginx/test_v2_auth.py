"""The Docker token service (/v2/auth) and Bearer checks on /v2/ (issue #3,
"GET /v2/" and "GET /v2/auth"; security catalogue B2 token attacks)."""

import base64
import hashlib
import hmac
import json
import subprocess
import time

import pytest

import harness


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def create_user(registry, name, password):
    res = subprocess.run(
        [str(harness.QUAYCTL), "user", "create", name, "--db-uri",
         registry.db_uri, "--password-stdin"],
        input=password + "\n", text=True, capture_output=True)
    assert res.returncode == 0, res.stderr


def get_token(registry, scopes=(), auth=None):
    params = [("service", registry.url.split("//")[1])]
    params += [("scope", s) for s in scopes]
    return registry.request("GET", "/v2/auth", params=params, auth=auth)


def claims(token):
    return json.loads(unb64url(token.split(".")[1]))


@pytest.fixture(scope="module")
def users(registry):
    create_user(registry, "alice", "alice-password")
    create_user(registry, "bob", "bob-password")
    return {"alice": ("alice", "alice-password"),
            "bob": ("bob", "bob-password")}


def test_v2_base_without_token_is_401_with_challenge(registry):
    r = registry.request("GET", "/v2/")
    assert r.status_code == 401
    assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    host = registry.url.split("//")[1]
    assert r.headers["WWW-Authenticate"] == (
        f'Bearer realm="http://{host}/v2/auth",service="{host}"')
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"


def test_anonymous_token_opens_v2_base(registry):
    r = get_token(registry)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert r.json()["access_token"] == token
    header = json.loads(unb64url(token.split(".")[0]))
    assert header["alg"] == "RS256" and header["kid"]
    c = claims(token)
    assert c["iss"] == "quay" and c["aud"] == registry.url.split("//")[1]
    assert c["exp"] - c["iat"] == 3600
    r = registry.request("GET", "/v2/",
                         headers={"Authorization": "Bearer " + token})
    assert r.status_code == 200


def test_wrong_password_is_401_and_unknown_user_too(registry, users):
    r = get_token(registry, auth=("alice", "wrong-password"))
    assert r.status_code == 401
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    r = get_token(registry, auth=("nobody-here", "whatever-pass"))
    assert r.status_code == 401


def test_push_scope_on_own_namespace_creates_private_repository(
        registry, users, pg):
    r = get_token(registry, ["repository:alice/app:pull,push"],
                  auth=users["alice"])
    assert r.status_code == 200, r.text
    access = claims(r.json()["token"])["access"]
    assert access == [{"type": "repository", "name": "alice/app",
                       "actions": ["pull", "push"]}]
    db = registry.db_uri.rsplit("/", 1)[1]
    rows = pg.sql("SELECT v.name FROM repository r JOIN visibility v ON"
                  " v.id = r.visibility_id JOIN \"user\" u ON u.id ="
                  " r.namespace_user_id WHERE u.username = 'alice' AND"
                  " r.name = 'app'", db=db)
    assert rows == [("private",)]


def test_asking_for_more_yields_less_not_an_error(registry, users):
    # bob may not touch alice's private repository at all
    r = get_token(registry, ["repository:alice/app:pull,push,delete"],
                  auth=users["bob"])
    assert r.status_code == 200
    assert claims(r.json()["token"])["access"][0]["actions"] == []
    # anonymous gets nothing on a private repository either
    r = get_token(registry, ["repository:alice/app:pull"])
    assert claims(r.json()["token"])["access"][0]["actions"] == []
    # and nobody can create in someone else's namespace
    r = get_token(registry, ["repository:alice/other:push"],
                  auth=users["bob"])
    assert claims(r.json()["token"])["access"][0]["actions"] == []


def test_anonymous_pull_of_a_public_repository(registry, users, pg):
    get_token(registry, ["repository:alice/pub:push"], auth=users["alice"])
    db = registry.db_uri.rsplit("/", 1)[1]
    pg.sql("UPDATE repository SET visibility_id = (SELECT id FROM"
           " visibility WHERE name = 'public') WHERE name = 'pub'", db=db)
    r = get_token(registry, ["repository:alice/pub:pull,push"])
    assert claims(r.json()["token"])["access"][0]["actions"] == ["pull"]


def test_malformed_scope_is_400(registry):
    r = get_token(registry, ["repository:Bad/Name:pull"])
    assert r.status_code == 400
    r = get_token(registry, ["nonsense"])
    assert r.status_code == 400


def bearer(registry, path, token):
    return registry.request("GET", path,
                            headers={"Authorization": "Bearer " + token})


def test_token_without_pull_gets_401_with_scope(registry, users):
    token = get_token(registry, ["repository:alice/app:pull"],
                      auth=users["bob"]).json()["token"]
    r = bearer(registry, "/v2/alice/app/tags/list", token)
    assert r.status_code == 401
    assert 'scope="repository:alice/app:pull"' in r.headers[
        "WWW-Authenticate"]


def forged(header, payload, sign=None):
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(payload).encode())
    sig = sign(f"{h}.{p}".encode()) if sign else b""
    return f"{h}.{p}.{b64url(sig)}"


def test_forged_tokens_are_refused(registry, users):
    good = get_token(registry, ["repository:alice/app:pull"],
                     auth=users["alice"]).json()["token"]
    assert bearer(registry, "/v2/", good).status_code == 200
    header = json.loads(unb64url(good.split(".")[0]))
    payload = claims(good)

    # alg none
    none = forged({"alg": "none", "typ": "JWT"}, payload)
    assert bearer(registry, "/v2/", none).status_code == 401

    # HMAC signed with the public key as the secret
    pem = (registry.config_path.parent / "quay.pem")
    pub = subprocess.run(["openssl", "pkey", "-in", str(pem), "-pubout"],
                         capture_output=True, check=True).stdout
    hs = forged({"alg": "HS256", "typ": "JWT", "kid": header["kid"]},
                payload,
                lambda m: hmac.new(pub, m, hashlib.sha256).digest())
    assert bearer(registry, "/v2/", hs).status_code == 401

    # a tampered payload under the original signature
    bigger = dict(payload, access=[{"type": "repository",
                                    "name": "bob/x", "actions": ["push"]}])
    h, _, s = good.split(".")
    tampered = f"{h}.{b64url(json.dumps(bigger).encode())}.{s}"
    assert bearer(registry, "/v2/", tampered).status_code == 401

    # an embedded key
    emb = forged(dict(header, jwk={"kty": "RSA"}), payload)
    assert bearer(registry, "/v2/", emb).status_code == 401

    # garbage
    for junk in ("x", "a.b", "a.b.c.d", "....", "Bearer"):
        assert bearer(registry, "/v2/", junk).status_code == 401


def sign_with(pem, header, payload):
    h = b64url(json.dumps(header).encode())
    p = b64url(json.dumps(payload).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(pem)],
                         input=f"{h}.{p}".encode(), capture_output=True,
                         check=True).stdout
    return f"{h}.{p}.{b64url(sig)}"


def test_claims_are_checked(registry, users):
    good = get_token(registry, auth=users["alice"]).json()["token"]
    header = json.loads(unb64url(good.split(".")[0]))
    payload = claims(good)
    pem = registry.config_path.parent / "quay.pem"
    # our own signature over good claims is accepted (the test signs right)
    assert bearer(registry, "/v2/",
                  sign_with(pem, header, payload)).status_code == 200
    now = int(time.time())
    for bad in (dict(payload, aud="elsewhere:5000"),
                dict(payload, iss="not-quay"),
                dict(payload, exp=now - 600, iat=now - 4000, nbf=now - 4000),
                dict(payload, nbf=now + 600),
                dict(payload, exp=now + 86400 * 30)):
        assert bearer(registry, "/v2/",
                      sign_with(pem, header, bad)).status_code == 401


def test_a_token_from_another_node_verifies_through_servicekey(
        registry, start_registry, users):
    other = start_registry(DB_URI=registry.db_uri)
    token = get_token(other, ["repository:alice/app:pull"],
                      auth=users["alice"]).json()["token"]
    assert (json.loads(unb64url(token.split(".")[0]))["kid"]
            != json.loads(unb64url(get_token(registry).json()["token"]
                                   .split(".")[0]))["kid"])
    host = registry.url.split("//")[1]
    # audience differs per instance in this test; sign for ours
    assert bearer(other, "/v2/", token).status_code == 200
    r = bearer(registry, "/v2/", token)
    # the other node's aud is its own host, so ours must refuse it ...
    assert r.status_code == 401
    # ... while a token the other node signs for our audience verifies
    pem = other.config_path.parent / "quay.pem"
    header = json.loads(unb64url(token.split(".")[0]))
    ok = sign_with(pem, header, dict(claims(token), aud=host))
    assert bearer(registry, "/v2/", ok).status_code == 200
