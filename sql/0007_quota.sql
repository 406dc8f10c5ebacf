-- 0007_quota: namespace quotas and running size totals.
--
-- Why: with FEATURE_QUOTA_MANAGEMENT a push over a Reject limit gets 403
-- and one over a Warning limit notifies the namespace (quay-behaviour.md
-- 1.6, 8).  Totals are kept incrementally in the manifest's transaction
-- (ADD on manifest creation, SUBTRACT on manifest GC) over DISTINCT blobs,
-- and recomputed by the backfill worker when a row is missing or reset
-- (backfill_start_ms NULL, backfill_complete false).


CREATE TABLE quotatype (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO quotatype (id, name) VALUES (1, 'Warning'), (2, 'Reject');
SELECT setval('quotatype_id_seq', (SELECT max(id) FROM quotatype));

-- One quota per namespace.
CREATE TABLE userorganizationquota (
    id              bigserial PRIMARY KEY,
    namespace_id    bigint NOT NULL UNIQUE
                    REFERENCES "user" (id) ON DELETE CASCADE,
    limit_bytes     bigint NOT NULL CHECK (limit_bytes > 0)
);

-- Thresholds of a quota, in percent of limit_bytes.
CREATE TABLE quotalimits (
    id                  bigserial PRIMARY KEY,
    quota_id            bigint NOT NULL
                        REFERENCES userorganizationquota (id) ON DELETE CASCADE,
    quota_type_id       integer NOT NULL REFERENCES quotatype (id),
    percent_of_limit    integer NOT NULL
                        CHECK (percent_of_limit BETWEEN 1 AND 100)
);
CREATE INDEX quotalimits_quota_id ON quotalimits (quota_id);

CREATE TABLE quotanamespacesize (
    id                  bigserial PRIMARY KEY,
    namespace_user_id   bigint NOT NULL UNIQUE
                        REFERENCES "user" (id) ON DELETE CASCADE,
    size_bytes          bigint NOT NULL DEFAULT 0,
    backfill_start_ms   bigint NULL,
    backfill_complete   boolean NOT NULL DEFAULT false
);
CREATE INDEX quotanamespacesize_size_bytes ON quotanamespacesize (size_bytes);
CREATE INDEX quotanamespacesize_backfill_start_ms
    ON quotanamespacesize (backfill_start_ms);

CREATE TABLE quotarepositorysize (
    id                  bigserial PRIMARY KEY,
    repository_id       bigint NOT NULL UNIQUE
                        REFERENCES repository (id) ON DELETE CASCADE,
    size_bytes          bigint NOT NULL DEFAULT 0,
    backfill_start_ms   bigint NULL,
    backfill_complete   boolean NOT NULL DEFAULT false
);
CREATE INDEX quotarepositorysize_size_bytes ON quotarepositorysize (size_bytes);

-- The registry-wide total (one row, created on first request).
CREATE TABLE quotaregistrysize (
    id              bigserial PRIMARY KEY,
    size_bytes      bigint NOT NULL DEFAULT 0,
    running         boolean NOT NULL DEFAULT false,
    queued          boolean NOT NULL DEFAULT false,
    completed_ms    bigint NULL
);

-- Which thresholds have been notified, for the cooldown.
CREATE TABLE quotanotificationstate (
    id                  bigserial PRIMARY KEY,
    namespace_id        bigint NOT NULL
                        REFERENCES "user" (id) ON DELETE CASCADE,
    threshold_percent   integer NOT NULL,
    last_notified_at    timestamptz NULL,
    cleared             boolean NOT NULL DEFAULT true,
    UNIQUE (namespace_id, threshold_percent)
);
