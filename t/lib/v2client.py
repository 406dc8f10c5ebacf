"""A minimal registry client for tests that need a few real /v2/
operations without skopeo: tokens from /v2/auth, Bearer requests, and a
push of a tiny one-layer OCI image."""

import hashlib
import json

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def token_for(registry, scopes, auth=None):
    """(status, token or None) from /v2/auth for scopes with Basic auth
    (None: anonymous)."""
    params = [("service", registry.url.split("//")[1])]
    params += [("scope", s) for s in scopes]
    res = registry.request("GET", "/v2/auth", params=params, auth=auth)
    if res.status_code != 200:
        return res.status_code, None
    return 200, res.json()["token"]


def bearer(registry, method, path, token, **kw):
    headers = dict(kw.pop("headers", {}) or {})
    if token:
        headers["Authorization"] = "Bearer " + token
    return registry.request(method, path, headers=headers, **kw)


def push_blob(registry, repo, token, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    res = bearer(registry, "POST", f"/v2/{repo}/blobs/uploads/?digest={digest}",
                 token, data=data,
                 headers={"Content-Type": "application/octet-stream"})
    assert res.status_code == 201, res.text
    return digest, len(data)


def image_manifest(registry, repo, token, salt):
    """Uploads a config and a layer unique to salt; returns the manifest
    bytes (not pushed)."""
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "salt": salt,
                      "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd, cs = push_blob(registry, repo, token, cfg)
    ld, ls = push_blob(registry, repo, token, f"layer {salt}".encode())
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": cs},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": ld, "size": ls}]}).encode()


def put_manifest(registry, repo, token, ref, manifest):
    return bearer(registry, "PUT", f"/v2/{repo}/manifests/{ref}", token,
                  data=manifest, headers={"Content-Type": OCI_MANIFEST})


def push_image(registry, repo, token, tag="v1", salt=None):
    """Pushes a tiny image to repo:tag; returns (digest, manifest bytes)."""
    manifest = image_manifest(registry, repo, token, salt or repo + tag)
    res = put_manifest(registry, repo, token, tag, manifest)
    assert res.status_code == 201, res.text
    return res.headers["Docker-Content-Digest"], manifest
