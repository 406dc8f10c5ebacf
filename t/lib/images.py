"""Offline test images for the client tests, deterministic from a seed.

Every image is built here from nothing: each layer is a tar of a few
files of pseudo-random bytes (random.Random seeded from the seed, the layer
and the file index, so the same seed always gives the same bytes), gzip'd at
level 1 with a zero mtime and no file name, so the same seed gives the same
digests on every run and machine with the same zlib.  Data is streamed to
disk while it is hashed: a 64 MiB layer never sits in memory whole.

Manifests and configs are written with a deliberately non-canonical JSON
layout (3-space indent, keys not sorted) so that a registry which
re-serialises a manifest instead of storing its bytes changes its digest and
fails the byte-exact checks.

Four on-disk forms, one function each; each returns an Image naming the
path, the client reference and the expected digests:

    oci_image(dest, seed)        OCI image layout, one image manifest;
                                 skopeo "oci:DEST:TAG"
    docker_dir_image(dest, seed) Docker schema2 manifest in skopeo's dir:
                                 transport layout; skopeo "dir:DEST"
    oci_index(dest, seed)        OCI image layout holding an image index
                                 of two platforms; skopeo "oci:DEST:TAG"
                                 (copy with --all)
    docker_archive(path, seed)   `docker save` tarball for `podman load`;
                                 "docker-archive:PATH"

and oci_artifact(dest, seed, subject=img): an OCI layout holding an
artifact manifest (artifactType, empty config, one opaque blob) whose
`subject` is another image, for the referrers API.

and readers for what a client copied back: read_dir(path) (dir:
transport) and read_oci_layout(path, tag).

Run as a script to write one by hand:
    python3 t/lib/images.py oci|docker-dir|oci-index|docker-archive DEST
        [--seed S] [--layers 1024,2048:4096] [--tag T]
"""

import gzip
import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


OCI_LAYOUT_VERSION = "1.0.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ARTIFACT_TYPE = "application/vnd.quay.test.artifact.v1"
ARTIFACT_BLOB = "application/vnd.quay.test.payload.v1"
REF_NAME = "org.opencontainers.image.ref.name"

# skopeo's dir: transport writes this file and refuses a directory whose
# version it does not know.
DIR_VERSION = "Directory Transport Version: 1.1\n"

# A layer is a list of file sizes; an image is a list of layers.
DEFAULT_LAYERS = ((1024, 3000), (5000,))

# Fixed timestamps keep tar headers and configs reproducible.
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"

CHUNK = 1 << 20


# ------------------------------------------------------------------ results

@dataclass
class Blob:
    """A blob written to disk: digest "sha256:<hex>", size in bytes, media
    type, path of the file; for layers diff_id is the digest of the
    uncompressed tar."""
    digest: str
    size: int
    media_type: str
    path: Path
    diff_id: str = ""

    def descriptor(self):
        return {"mediaType": self.media_type, "digest": self.digest,
                "size": self.size}


@dataclass
class Image:
    """What a generator wrote.

    kind          "oci", "docker-dir", "oci-index" or "docker-archive"
    path          the layout directory (or the archive file)
    ref           the source reference for skopeo/podman
    tag           the tag inside an OCI layout (or "" for dir:)
    media_type    the manifest's media type
    manifest      the manifest (or index) bytes exactly as written
    digest        sha256 over manifest ("" for docker-archive: it has
                  none; the registry's manifest digest is the client's)
    config        the config Blob (None for an index)
    layers        the layer Blobs, in order (none for an index)
    children      for an index: one Image per platform (kind "oci")
    platform      {"os": ..., "architecture": ...}
    repo_tag      for docker-archive: the name podman load gives it
    """
    kind: str
    path: Path
    ref: str
    tag: str
    media_type: str
    manifest: bytes
    digest: str
    config: Blob = None
    layers: list = field(default_factory=list)
    children: list = field(default_factory=list)
    platform: dict = None
    repo_tag: str = ""

    @property
    def image_id(self):
        """The config digest's hex, which podman uses as the image ID."""
        return self.config.digest.split(":", 1)[1] if self.config else ""

    def blob_digests(self):
        """Every blob digest this image references (config first, then
        layers; for an index, each child's in turn), without repeats."""
        seen = []
        for img in [self] + list(self.children):
            for b in ([img.config] if img.config else []) + img.layers:
                if b.digest not in seen:
                    seen.append(b.digest)
        return seen


# ------------------------------------------------------------------ helpers

def sha256_digest(data):
    """"sha256:<hex>" of bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path):
    """"sha256:<hex>" of a file's contents, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def hex_of(digest):
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return hexpart


def dump_json(obj):
    """The non-canonical JSON the generator writes (see the module doc)."""
    return (json.dumps(obj, indent=3) + "\n").encode()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through to an
    optional underlying file."""

    def __init__(self, out=None):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self):
        return True

    def write(self, b):
        b = bytes(b)
        self.sha.update(b)
        self.size += len(b)
        if self.out is not None:
            self.out.write(b)
        return len(b)

    @property
    def digest(self):
        return "sha256:" + self.sha.hexdigest()


class _RandomReader(io.RawIOBase):
    """size pseudo-random bytes from random.Random(key).  The generator is
    drawn in fixed CHUNK blocks, so the bytes do not depend on how the
    reader is called."""

    def __init__(self, key, size):
        self.rng = random.Random(key)
        self.left = size
        self.buf = b""
        self.pos = 0

    def readable(self):
        return True

    def read(self, n=-1):
        if n is None or n < 0:
            n = CHUNK
        n = min(n, self.left)
        if n <= 0:
            return b""
        if self.pos == len(self.buf):
            self.buf = self.rng.getrandbits(CHUNK * 8).to_bytes(CHUNK,
                                                                 "little")
            self.pos = 0
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        self.left -= len(data)
        return data

    def readinto(self, buf):
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)


def random_bytes(key, size):
    """size pseudo-random bytes, the same for the same key."""
    reader = _RandomReader(key, size)
    return b"".join(iter(lambda: reader.read(CHUNK), b""))


def _tarinfo(name, size=0, is_dir=False):
    ti = tarfile.TarInfo(name)
    ti.mtime = MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    if is_dir:
        ti.type = tarfile.DIRTYPE
        ti.mode = 0o755
    else:
        ti.size = size
        ti.mode = 0o644
    return ti


def _write_tar(out, seed, index, sizes):
    """Writes the layer tar to the file out: directory layer-N/ holding
    file-M.bin of sizes[M] random bytes each."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.USTAR_FORMAT) \
            as tar:
        top = f"layer-{index}"
        tar.addfile(_tarinfo(top + "/", is_dir=True))
        for i, size in enumerate(sizes):
            tar.addfile(_tarinfo(f"{top}/file-{i}.bin", size),
                        _RandomReader(f"{seed}/{index}/{i}", size))


def _store(blobdir, tmp, digest):
    """Renames the finished temporary file tmp to blobdir/<hex>; returns
    the final path."""
    final = Path(blobdir) / hex_of(digest)
    os.replace(tmp, final)
    return final


def write_layer(blobdir, seed, index, sizes, media_type=OCI_LAYER_GZIP,
                level=1, compress=True):
    """Writes one layer into blobdir, named by its digest's hex; returns its
    Blob (digest of the bytes on disk, diff_id of the uncompressed tar)."""
    blobdir = Path(blobdir)
    blobdir.mkdir(parents=True, exist_ok=True)
    tmp = blobdir / f".layer-{os.getpid()}-{index}.tmp"
    with open(tmp, "wb") as f:
        outer = _HashingWriter(f)
        if compress:
            gz = gzip.GzipFile(filename="", mode="wb", compresslevel=level,
                               fileobj=outer, mtime=0)
            inner = _HashingWriter(gz)
            _write_tar(inner, seed, index, sizes)
            gz.close()
        else:
            inner = outer
            _write_tar(inner, seed, index, sizes)
    path = _store(blobdir, tmp, outer.digest)
    return Blob(outer.digest, outer.size, media_type, path,
                diff_id=inner.digest)


def write_blob(blobdir, data, media_type):
    """Writes bytes into blobdir named by their digest's hex; returns the
    Blob."""
    blobdir = Path(blobdir)
    blobdir.mkdir(parents=True, exist_ok=True)
    digest = sha256_digest(data)
    path = blobdir / hex_of(digest)
    path.write_bytes(data)
    return Blob(digest, len(data), media_type, path)


def config_json(seed, diff_ids, platform=None):
    """The image config (same shape for OCI and Docker): the seed is in a
    label and in Env so that every seed gives a distinct config."""
    platform = platform or {"os": "linux", "architecture": "amd64"}
    cfg = {
        "created": CREATED,
        "architecture": platform["architecture"],
        "os": platform["os"],
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin",
                    f"QUAY_TEST_SEED={seed}"],
            "Cmd": ["/bin/true"],
            "Labels": {"quay.test.seed": str(seed)},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED,
                     "created_by": f"quay test layer {i}"}
                    for i in range(len(diff_ids))],
    }
    if platform.get("variant"):
        cfg["variant"] = platform["variant"]
    return dump_json(cfg)


def _manifest(config, layers, media_type):
    return dump_json({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in layers],
    })


def _build_image(blobdir, seed, layers, docker, platform=None, level=1):
    """Writes layers, config and manifest into blobdir; returns
    (manifest bytes, media type, config Blob, layer Blobs)."""
    layer_type = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    blobs = [write_layer(blobdir, seed, i, sizes, layer_type, level)
             for i, sizes in enumerate(layers)]
    config = write_blob(blobdir, config_json(seed, [b.diff_id for b in blobs],
                                             platform),
                        DOCKER_CONFIG if docker else OCI_CONFIG)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    return _manifest(config, blobs, media_type), media_type, config, blobs


def _fresh_dir(dest):
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise FileExistsError(f"{dest} exists and is not empty")
    dest.mkdir(parents=True, exist_ok=True)
    return dest


def _write_oci_layout(dest, tag, descriptor):
    (dest / "oci-layout").write_text(
        json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}))
    desc = dict(descriptor)
    desc["annotations"] = {REF_NAME: tag}
    (dest / "index.json").write_bytes(dump_json(
        {"schemaVersion": 2, "manifests": [desc]}))


# --------------------------------------------------------------- generators

def oci_image(dest, seed, layers=DEFAULT_LAYERS, tag="latest", level=1,
              platform=None):
    """An OCI image layout at dest (created; must be empty) holding one OCI
    image manifest tagged tag.  layers: one list of file sizes per layer.
    Returns an Image with ref "oci:DEST:TAG"."""
    dest = _fresh_dir(dest)
    blobdir = dest / "blobs" / "sha256"
    manifest, mt, config, blobs = _build_image(blobdir, seed, layers, False,
                                               platform, level)
    digest = write_blob(blobdir, manifest, mt).digest
    _write_oci_layout(dest, tag, {"mediaType": mt, "digest": digest,
                                  "size": len(manifest)})
    return Image("oci", dest, f"oci:{dest}:{tag}", tag, mt, manifest, digest,
                 config, blobs,
                 platform=platform or {"os": "linux",
                                       "architecture": "amd64"})


def docker_dir_image(dest, seed, layers=DEFAULT_LAYERS, level=1):
    """A Docker schema2 image in skopeo's dir: transport layout at dest
    (created; must be empty): manifest.json, one file per blob named by its
    digest's hex, and the version file.  Returns an Image with ref
    "dir:DEST"."""
    dest = _fresh_dir(dest)
    manifest, mt, config, blobs = _build_image(dest, seed, layers, True,
                                               None, level)
    (dest / "manifest.json").write_bytes(manifest)
    (dest / "version").write_text(DIR_VERSION)
    return Image("docker-dir", dest, f"dir:{dest}", "", mt, manifest,
                 sha256_digest(manifest), config, blobs,
                 platform={"os": "linux", "architecture": "amd64"})


DEFAULT_PLATFORMS = ({"os": "linux", "architecture": "amd64"},
                     {"os": "linux", "architecture": "arm64",
                      "variant": "v8"})


def oci_index(dest, seed, platforms=DEFAULT_PLATFORMS, layers=DEFAULT_LAYERS,
              tag="latest", level=1):
    """An OCI image layout at dest holding an OCI image index (tagged tag)
    of one image per platform (each with its own layers, seeded
    "<seed>/<os>/<arch>").  Returns an Image of kind "oci-index" whose
    children are the per-platform images (their ref is the layout's ref:
    they are reached through the index)."""
    dest = _fresh_dir(dest)
    blobdir = dest / "blobs" / "sha256"
    children, entries = [], []
    for p in platforms:
        sub = f"{seed}/{p['os']}/{p['architecture']}{p.get('variant', '')}"
        manifest, mt, config, blobs = _build_image(blobdir, sub, layers,
                                                   False, p, level)
        digest = write_blob(blobdir, manifest, mt).digest
        children.append(Image("oci", dest, f"oci:{dest}:{tag}", tag, mt,
                              manifest, digest, config, blobs,
                              platform=dict(p)))
        entries.append({"mediaType": mt, "digest": digest,
                         "size": len(manifest), "platform": dict(p)})
    index = dump_json({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": entries})
    digest = write_blob(blobdir, index, OCI_INDEX).digest
    _write_oci_layout(dest, tag, {"mediaType": OCI_INDEX, "digest": digest,
                                  "size": len(index)})
    return Image("oci-index", dest, f"oci:{dest}:{tag}", tag, OCI_INDEX,
                 index, digest, children=children)


def oci_artifact(dest, seed, subject=None, artifact_type=ARTIFACT_TYPE,
                 tag="latest", payload_size=512):
    """An OCI layout at dest holding an artifact: an OCI image manifest with
    artifactType, the empty config ("{}") and one opaque blob of
    payload_size random bytes, and, when subject (an Image) is given, a
    `subject` descriptor pointing at it.  Returns an Image of kind
    "oci-artifact" (config is the empty blob, layers the payload)."""
    dest = _fresh_dir(dest)
    blobdir = dest / "blobs" / "sha256"
    config = write_blob(blobdir, b"{}", OCI_EMPTY)
    payload = write_blob(blobdir,
                         random_bytes(f"{seed}/artifact", payload_size),
                         ARTIFACT_BLOB)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "artifactType": artifact_type,
           "config": config.descriptor(),
           "layers": [payload.descriptor()]}
    if subject is not None:
        doc["subject"] = {"mediaType": subject.media_type,
                          "digest": subject.digest,
                          "size": len(subject.manifest)}
    doc["annotations"] = {"org.opencontainers.image.created": CREATED,
                          "quay.test.seed": str(seed)}
    manifest = dump_json(doc)
    digest = write_blob(blobdir, manifest, OCI_MANIFEST).digest
    desc = {"mediaType": OCI_MANIFEST, "digest": digest,
            "size": len(manifest), "artifactType": artifact_type}
    _write_oci_layout(dest, tag, desc)
    return Image("oci-artifact", dest, f"oci:{dest}:{tag}", tag,
                 OCI_MANIFEST, manifest, digest, config, [payload])


def docker_archive(path, seed, layers=DEFAULT_LAYERS,
                   repo_tag="localhost/quay-test:latest"):
    """A `docker save` style tarball at path for `podman load`: the config
    as <hex>.json, each layer uncompressed as <diff_id hex>/layer.tar, and
    manifest.json naming repo_tag.  Returns an Image with ref
    "docker-archive:PATH"; its digest is "" (a client computes the
    manifest when it pushes), its config digest is the image ID and each
    layer's digest equals its diff_id."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists")
    work = path.parent / f".{path.name}.d"
    work.mkdir(parents=True)
    try:
        blobs = [write_layer(work, seed, i, sizes, compress=False,
                             media_type="application/x-tar")
                 for i, sizes in enumerate(layers)]
        config = write_blob(work, config_json(seed,
                                              [b.diff_id for b in blobs]),
                            DOCKER_CONFIG)
        cfg_name = hex_of(config.digest) + ".json"
        names = [hex_of(b.digest) + "/layer.tar" for b in blobs]
        manifest = (json.dumps([{"Config": cfg_name,
                                 "RepoTags": [repo_tag],
                                 "Layers": names}]) + "\n").encode()
        tmp = path.parent / f".{path.name}.tmp"
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            for b, name in zip(blobs, names):
                tar.addfile(_tarinfo(name.split("/")[0] + "/", is_dir=True))
                with open(b.path, "rb") as f:
                    tar.addfile(_tarinfo(name, b.size), f)
            with open(config.path, "rb") as f:
                tar.addfile(_tarinfo(cfg_name, config.size), f)
            tar.addfile(_tarinfo("manifest.json", len(manifest)),
                        io.BytesIO(manifest))
        os.replace(tmp, path)
    finally:
        for p in work.iterdir():
            p.unlink()
        work.rmdir()
    for b, name in zip(blobs, names):
        b.path = Path(f"{path}!{name}")     # inside the archive
    config.path = Path(f"{path}!{cfg_name}")
    return Image("docker-archive", path, f"docker-archive:{path}", "",
                 "", b"", "", config, blobs,
                 platform={"os": "linux", "architecture": "amd64"},
                 repo_tag=repo_tag)


# ------------------------------------------------------------------ readers

@dataclass
class Copied:
    """An image a client wrote back: manifest bytes, its digest and media
    type (from the manifest's mediaType, or guessed from its shape), config
    digest, layer digests, and blob digest -> path of each blob file
    present."""
    manifest: bytes
    digest: str
    media_type: str
    config_digest: str
    layer_digests: list
    blobs: dict


def _media_type(doc):
    if doc.get("mediaType"):
        return doc["mediaType"]
    return OCI_INDEX if "manifests" in doc else OCI_MANIFEST


def _parse(manifest, blobs):
    doc = json.loads(manifest)
    return Copied(manifest, sha256_digest(manifest), _media_type(doc),
                  doc.get("config", {}).get("digest", ""),
                  [l["digest"] for l in doc.get("layers", [])], blobs)


def read_dir(path, instance=None):
    """Reads a skopeo dir: copy: manifest.json (or, for instance=<digest>,
    the "<hex>.manifest.json" of that list entry, written with --all) and
    the blob files named by hex."""
    path = Path(path)
    name = "manifest.json" if instance is None \
        else f"{hex_of(instance)}.manifest.json"
    blobs = {f"sha256:{p.name}": p for p in path.iterdir()
             if len(p.name) == 64 and all(c in "0123456789abcdef"
                                         for c in p.name)}
    return _parse((path / name).read_bytes(), blobs)


def read_oci_layout(path, tag=None, digest=None):
    """Reads the manifest tagged tag (or with this digest, or the only one)
    from an OCI layout written by a client."""
    path = Path(path)
    blobdir = path / "blobs" / "sha256"
    index = json.loads((path / "index.json").read_bytes())
    if digest is None:
        descs = index["manifests"]
        if tag is not None:
            descs = [d for d in descs
                     if d.get("annotations", {}).get(REF_NAME) == tag]
        if len(descs) != 1:
            raise LookupError(f"{path}: {len(descs)} manifests for "
                              f"tag {tag!r}")
        digest = descs[0]["digest"]
    blobs = {f"sha256:{p.name}": p for p in blobdir.iterdir()}
    return _parse((blobdir / hex_of(digest)).read_bytes(), blobs)


# --------------------------------------------------------------------- main

def _main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description="write an offline test image")
    ap.add_argument("kind", choices=["oci", "docker-dir", "oci-index",
                                     "docker-archive"])
    ap.add_argument("dest")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--layers", default="1024,3000:5000",
                    help="file sizes: comma between files, colon between "
                         "layers (default %(default)s)")
    args = ap.parse_args(argv)
    layers = [[int(s) for s in l.split(",")] for l in args.layers.split(":")]
    if args.kind == "oci":
        img = oci_image(args.dest, args.seed, layers, args.tag)
    elif args.kind == "docker-dir":
        img = docker_dir_image(args.dest, args.seed, layers)
    elif args.kind == "oci-index":
        img = oci_index(args.dest, args.seed, layers=layers, tag=args.tag)
    else:
        img = docker_archive(args.dest, args.seed, layers)
    print(img.ref)
    if img.digest:
        print("manifest", img.digest)
    for child in img.children:
        print("child", child.platform["architecture"], child.digest)
    for d in img.blob_digests():
        print("blob", d)


if __name__ == "__main__":
    _main()
