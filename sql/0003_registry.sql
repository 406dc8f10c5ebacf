-- 0003_registry: blobs, manifests, tags and upload sessions.
--
-- Why: this is what /v2/ reads and writes, and what GC, quota and
-- replication walk (quay-behaviour.md 1.4, 7).  The rules the tables
-- encode:
--   * imagestorage is global and content-addressed; a blob is "in" a
--     repository only through a manifestblob or an uploadedblob row.
--   * a blob's bytes exist in a location iff an imagestorageplacement row
--     says so; rows become visible only after the digest was verified.
--   * manifests are per repository; tags are a history (one row per name
--     and lifetime), alive while lifetime_end_ms is NULL or in the future.
--   * the foreign keys stop GC from deleting what is still used: a
--     manifest a tag or a parent index points at, a blob a manifest or an
--     unexpired upload link uses (NO ACTION, see 0001).


-- Lookup tables -----------------------------------------------------------

-- Manifest, config, layer and label media types.  Manifests may only be
-- stored with a type listed here; config_media_type and artifact_type are
-- free text.
CREATE TABLE mediatype (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO mediatype (name) VALUES
    ('text/plain'),
    ('application/json'),
    ('text/markdown'),
    -- Docker schema 1
    ('application/vnd.docker.distribution.manifest.v1+json'),
    ('application/vnd.docker.distribution.manifest.v1+prettyjws'),
    -- Docker schema 2
    ('application/vnd.docker.distribution.manifest.v2+json'),
    ('application/vnd.docker.distribution.manifest.list.v2+json'),
    ('application/vnd.docker.container.image.v1+json'),
    ('application/vnd.docker.image.rootfs.diff.tar.gzip'),
    ('application/vnd.docker.image.rootfs.foreign.diff.tar.gzip'),
    ('application/vnd.docker.plugin.v1+json'),
    -- OCI image spec
    ('application/vnd.oci.image.manifest.v1+json'),
    ('application/vnd.oci.image.index.v1+json'),
    ('application/vnd.oci.image.config.v1+json'),
    ('application/vnd.oci.image.layer.v1.tar'),
    ('application/vnd.oci.image.layer.v1.tar+gzip'),
    ('application/vnd.oci.image.layer.v1.tar+zstd'),
    ('application/vnd.oci.image.layer.nondistributable.v1.tar'),
    ('application/vnd.oci.image.layer.nondistributable.v1.tar+gzip'),
    ('application/vnd.oci.image.layer.nondistributable.v1.tar+zstd'),
    ('application/vnd.oci.empty.v1+json'),
    ('application/vnd.oci.artifact.manifest.v1+json'),
    -- common artifacts (Helm, cosign)
    ('application/vnd.cncf.helm.config.v1+json'),
    ('application/vnd.cncf.helm.chart.content.v1.tar+gzip'),
    ('application/vnd.cncf.helm.chart.provenance.v1.prov'),
    ('application/tar+gzip'),
    ('application/vnd.dev.cosign.simplesigning.v1+json');

-- tag.tag_kind_id defaults to 1 = tag.
CREATE TABLE tagkind (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO tagkind (id, name) VALUES (1, 'tag');
SELECT setval('tagkind_id_seq', (SELECT max(id) FROM tagkind));

CREATE TABLE labelsourcetype (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE,
    mutable boolean NOT NULL DEFAULT false
);
INSERT INTO labelsourcetype (name, mutable) VALUES
    ('manifest', false), ('api', true), ('internal', false);

-- One row per key of DISTRIBUTED_STORAGE_CONFIG; "quayctl migrate --config"
-- inserts the configured names.
CREATE TABLE imagestoragelocation (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);


-- Blobs -------------------------------------------------------------------

-- Unlike Quay (non-unique index plus a Redis lock), content_checksum is
-- UNIQUE: two pushes of the same blob converge on one row without a lock.
-- Insert with
--   INSERT ... ON CONFLICT (content_checksum)
--       DO UPDATE SET content_checksum = EXCLUDED.content_checksum
--       RETURNING id
-- to get the row id whether it was new or not.
CREATE TABLE imagestorage (
    id                  bigserial PRIMARY KEY,
    uuid                varchar(36) NOT NULL UNIQUE
                        DEFAULT gen_random_uuid()::text,
    content_checksum    varchar(255) NOT NULL UNIQUE,   -- "sha256:<hex>"
    image_size          bigint NULL CHECK (image_size >= 0),
    uncompressed_size   bigint NULL CHECK (uncompressed_size >= 0),
    uploading           boolean NULL DEFAULT false,
    cas_path            boolean NOT NULL DEFAULT true
);

-- Which locations hold the bytes.  A blob with no placement is a
-- placeholder and is never garbage-collected.
CREATE TABLE imagestorageplacement (
    id          bigserial PRIMARY KEY,
    storage_id  bigint NOT NULL REFERENCES imagestorage (id) ON DELETE CASCADE,
    location_id integer NOT NULL REFERENCES imagestoragelocation (id),
    UNIQUE (storage_id, location_id)
);
CREATE INDEX imagestorageplacement_location_id
    ON imagestorageplacement (location_id);

-- Geo-replication: extra locations a namespace's blobs must reach.
CREATE TABLE userregion (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    location_id integer NOT NULL REFERENCES imagestoragelocation (id),
    UNIQUE (user_id, location_id)
);
CREATE INDEX userregion_location_id ON userregion (location_id);


-- Manifests ---------------------------------------------------------------

-- manifest_bytes are stored exactly as pushed (the digest is over them).
-- subject is the digest of the manifest this one refers to (referrers API).
CREATE TABLE manifest (
    id                          bigserial PRIMARY KEY,
    repository_id               bigint NOT NULL
                                REFERENCES repository (id) ON DELETE CASCADE,
    digest                      varchar(255) NOT NULL,
    media_type_id               integer NOT NULL REFERENCES mediatype (id),
    manifest_bytes              text NOT NULL,
    config_media_type           varchar(255) NULL,
    layers_compressed_size      bigint NULL,
    subject                     varchar(255) NULL,
    subject_backfilled          boolean NULL,
    artifact_type               varchar(255) NULL,
    artifact_type_backfilled    boolean NULL,
    UNIQUE (repository_id, digest)
);
CREATE INDEX manifest_digest ON manifest (digest);
CREATE INDEX manifest_media_type_id ON manifest (media_type_id);
CREATE INDEX manifest_repository_id_media_type_id
    ON manifest (repository_id, media_type_id);
CREATE INDEX manifest_repository_id_config_media_type
    ON manifest (repository_id, config_media_type);
CREATE INDEX manifest_repository_id_subject
    ON manifest (repository_id, subject) WHERE subject IS NOT NULL;
CREATE INDEX manifest_repository_id_artifact_type
    ON manifest (repository_id, artifact_type);

-- Index/list -> children.  A child cannot be deleted while a parent names
-- it (NO ACTION on child_manifest_id).
CREATE TABLE manifestchild (
    id                  bigserial PRIMARY KEY,
    repository_id       bigint NOT NULL
                        REFERENCES repository (id) ON DELETE CASCADE,
    manifest_id         bigint NOT NULL
                        REFERENCES manifest (id) ON DELETE CASCADE,
    child_manifest_id   bigint NOT NULL REFERENCES manifest (id),
    UNIQUE (manifest_id, child_manifest_id)
);
CREATE INDEX manifestchild_child_manifest_id
    ON manifestchild (child_manifest_id);
CREATE INDEX manifestchild_repository_id_child_manifest_id
    ON manifestchild (repository_id, child_manifest_id);

-- Every blob a manifest uses (config and layers).  blob_id has NO ACTION:
-- the database refuses to drop an imagestorage row a manifest still uses,
-- which is the last line of defence against GC racing a push.
CREATE TABLE manifestblob (
    id              bigserial PRIMARY KEY,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    manifest_id     bigint NOT NULL REFERENCES manifest (id) ON DELETE CASCADE,
    blob_id         bigint NOT NULL REFERENCES imagestorage (id),
    UNIQUE (manifest_id, blob_id)
);
CREATE INDEX manifestblob_blob_id ON manifestblob (blob_id);
CREATE INDEX manifestblob_repository_id_blob_id
    ON manifestblob (repository_id, blob_id);


-- Tags --------------------------------------------------------------------

-- Retarget = end the alive row and insert a new one, in one transaction
-- under pg_advisory_xact_lock(<first 8 bytes of
-- sha256("retarget_tag:<repository_id>")>).  manifest_id has NO ACTION: a
-- manifest with any tag row (alive or in the time machine) stays.
CREATE TABLE tag (
    id                  bigserial PRIMARY KEY,
    name                varchar(255) NOT NULL,
    repository_id       bigint NOT NULL
                        REFERENCES repository (id) ON DELETE CASCADE,
    manifest_id         bigint NULL REFERENCES manifest (id),
    lifetime_start_ms   bigint NOT NULL
                        DEFAULT floor(extract(epoch FROM now()) * 1000)::bigint,
    lifetime_end_ms     bigint NULL,
    hidden              boolean NOT NULL DEFAULT false,
    reversion           boolean NOT NULL DEFAULT false,
    immutable           boolean NOT NULL DEFAULT false,
    tag_kind_id         integer NOT NULL DEFAULT 1 REFERENCES tagkind (id),
    linked_tag_id       bigint NULL REFERENCES tag (id) ON DELETE SET NULL,
    -- Quay's constraint; NULL ends are distinct, hence the index below.
    UNIQUE (repository_id, name, lifetime_end_ms)
);
-- At most one row per name without an end: the tag as it is now.
CREATE UNIQUE INDEX tag_repository_id_name_alive
    ON tag (repository_id, name) WHERE lifetime_end_ms IS NULL;
CREATE INDEX tag_repository_id_name ON tag (repository_id, name);
CREATE INDEX tag_repository_id_name_hidden ON tag (repository_id, name, hidden);
CREATE INDEX tag_repository_id_lifetime_start_ms
    ON tag (repository_id, lifetime_start_ms);
CREATE INDEX tag_repository_id_lifetime_end_ms
    ON tag (repository_id, lifetime_end_ms);
CREATE INDEX tag_repository_id_immutable ON tag (repository_id, immutable);
CREATE INDEX tag_lifetime_end_ms ON tag (lifetime_end_ms);
CREATE INDEX tag_manifest_id_lifetime_end_ms
    ON tag (manifest_id, lifetime_end_ms);
CREATE INDEX tag_manifest_id_immutable ON tag (manifest_id, immutable);
CREATE INDEX tag_linked_tag_id ON tag (linked_tag_id)
    WHERE linked_tag_id IS NOT NULL;


-- Uploads -----------------------------------------------------------------

-- Keeps a freshly uploaded or mounted blob alive and linked to the
-- repository until expires_at (now + PUSH_TEMP_TAG_EXPIRATION_SEC).
CREATE TABLE uploadedblob (
    id              bigserial PRIMARY KEY,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    blob_id         bigint NOT NULL REFERENCES imagestorage (id),
    uploaded_at     timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX uploadedblob_expires_at ON uploadedblob (expires_at);
CREATE INDEX uploadedblob_blob_id ON uploadedblob (blob_id);
CREATE INDEX uploadedblob_repository_id_blob_id
    ON uploadedblob (repository_id, blob_id);

-- An upload session.  sha_state is lib/quay_sha256.h's versioned
-- serialized state (never Quay's pickle); storage_metadata is the
-- driver's JSON (S3: {"chunks": [[key, offset, length], ...]}).  Look a
-- session up by (repository_id, uuid), never by uuid alone (CVE-2026-32589).
-- piece_sha_state and piece_hashes are Quay's legacy columns, unused.
CREATE TABLE blobupload (
    id                      bigserial PRIMARY KEY,
    repository_id           bigint NOT NULL
                            REFERENCES repository (id) ON DELETE CASCADE,
    uuid                    varchar(36) NOT NULL UNIQUE,
    byte_count              bigint NOT NULL DEFAULT 0 CHECK (byte_count >= 0),
    sha_state               bytea NULL,
    location_id             integer NOT NULL
                            REFERENCES imagestoragelocation (id),
    storage_metadata        jsonb NOT NULL DEFAULT '{}',
    chunk_count             integer NOT NULL DEFAULT 0,
    uncompressed_byte_count bigint NULL,
    created                 timestamptz NOT NULL DEFAULT now(),
    piece_sha_state         text NULL,
    piece_hashes            text NULL,
    UNIQUE (repository_id, uuid)
);
CREATE INDEX blobupload_created ON blobupload (created);
CREATE INDEX blobupload_location_id ON blobupload (location_id);


-- Labels ------------------------------------------------------------------

CREATE TABLE label (
    id              bigserial PRIMARY KEY,
    uuid            varchar(36) NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    key             varchar(255) NOT NULL,
    value           text NOT NULL,
    media_type_id   integer NOT NULL REFERENCES mediatype (id),
    source_type_id  integer NOT NULL REFERENCES labelsourcetype (id)
);
CREATE INDEX label_key ON label (key);

CREATE TABLE manifestlabel (
    id              bigserial PRIMARY KEY,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    manifest_id     bigint NOT NULL REFERENCES manifest (id) ON DELETE CASCADE,
    label_id        bigint NOT NULL REFERENCES label (id),
    UNIQUE (manifest_id, label_id)
);
CREATE INDEX manifestlabel_label_id ON manifestlabel (label_id);
CREATE INDEX manifestlabel_repository_id ON manifestlabel (repository_id);
