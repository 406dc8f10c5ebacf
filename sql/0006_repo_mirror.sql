-- 0006_repo_mirror: repository mirroring configuration and state.
--
-- Why: a MIRROR repository (repository.state = 2) is filled by quay-mirror
-- from an upstream registry on a schedule (quay-behaviour.md 1.5, 6).  The
-- row is both the configuration (API) and the worker's lease:
-- sync_status SYNCING with sync_expiration_date as the lease end, claimed
-- and released with a compare-and-swap on sync_transaction_id.
--
-- sync_status: -2 CANCEL, -1 FAIL, 0 NEVER_RUN, 1 SUCCESS, 2 SYNCING,
-- 3 SYNC_NOW.  mirror_type: 1 PULL.  rule_type: 1 TAG_GLOB_CSV.


-- A tag filter: rule_value is a JSON array of shell globs.  Quay keeps a
-- binary tree of rules (left/right child); only the root is used today.
CREATE TABLE repomirrorrule (
    id              bigserial PRIMARY KEY,
    uuid            varchar(36) NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    creation_date   timestamptz NOT NULL DEFAULT now(),
    rule_type       integer NOT NULL DEFAULT 1 CHECK (rule_type = 1),
    rule_value      jsonb NOT NULL DEFAULT '[]',
    left_child_id   bigint NULL
                    REFERENCES repomirrorrule (id) ON DELETE SET NULL,
    right_child_id  bigint NULL
                    REFERENCES repomirrorrule (id) ON DELETE SET NULL
);
CREATE INDEX repomirrorrule_repository_id ON repomirrorrule (repository_id);

-- internal_robot_id has NO ACTION: a robot that a mirror pushes with
-- cannot be deleted until the mirror is reconfigured (as in Quay).  The
-- credentials are encrypted (v0$$...) and never returned by the API.
CREATE TABLE repomirrorconfig (
    id                          bigserial PRIMARY KEY,
    repository_id               bigint NOT NULL UNIQUE
                                REFERENCES repository (id) ON DELETE CASCADE,
    creation_date               timestamptz NOT NULL DEFAULT now(),
    is_enabled                  boolean NOT NULL DEFAULT true,
    mirror_type                 integer NOT NULL DEFAULT 1
                                CHECK (mirror_type = 1),
    internal_robot_id           bigint NOT NULL REFERENCES "user" (id),
    external_reference          text NOT NULL,
    external_registry_username  text NULL,      -- encrypted
    external_registry_password  text NULL,      -- encrypted
    -- {verify_tls, unsigned_images, proxy: {http_proxy, https_proxy,
    -- no_proxy}}
    external_registry_config    jsonb NOT NULL DEFAULT '{}',
    architecture_filter         jsonb NOT NULL DEFAULT '[]',
    sync_interval               integer NOT NULL DEFAULT 60
                                CHECK (sync_interval >= 0),
    sync_start_date             timestamptz NULL,
    sync_expiration_date        timestamptz NULL,
    sync_retries_remaining      integer NOT NULL DEFAULT 3,
    sync_status                 integer NOT NULL DEFAULT 0
                                CHECK (sync_status BETWEEN -2 AND 3),
    sync_transaction_id         varchar(36) NULL,
    root_rule_id                bigint NOT NULL REFERENCES repomirrorrule (id),
    skopeo_timeout              bigint NOT NULL DEFAULT 300
                                CHECK (skopeo_timeout > 0)
);
CREATE INDEX repomirrorconfig_internal_robot_id
    ON repomirrorconfig (internal_robot_id);
CREATE INDEX repomirrorconfig_root_rule_id ON repomirrorconfig (root_rule_id);
CREATE INDEX repomirrorconfig_sync_status ON repomirrorconfig (sync_status);
-- The worker's eligibility scan: enabled mirrors by next start.
CREATE INDEX repomirrorconfig_sync_start_date
    ON repomirrorconfig (sync_start_date) WHERE is_enabled;
