-- 0008_autoprune: tag auto-prune policies and the worker's task rows.
--
-- Why: with FEATURE_AUTO_PRUNE, namespaces and repositories may keep only
-- their newest N tags or tags younger than a duration (quay-behaviour.md
-- 1.7, 9).  A task row per namespace is created with status 'queued' when a
-- policy is created; quay-autoprune claims the oldest with FOR UPDATE SKIP
-- LOCKED, sets last_ran_ms and status 'running', then 'success' or
-- 'failure: <error>'.
--
-- policy holds the stored (snake_case) form:
--   {"method": "number_of_tags"|"creation_date", "value": 10 | "7d",
--    "tag_pattern": "<POSIX regex>", "tag_pattern_matches": true}


CREATE TABLE namespaceautoprunepolicy (
    id              bigserial PRIMARY KEY,
    uuid            varchar(36) NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    namespace_id    bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    policy          jsonb NOT NULL
);
CREATE INDEX namespaceautoprunepolicy_namespace_id
    ON namespaceautoprunepolicy (namespace_id);

CREATE TABLE repositoryautoprunepolicy (
    id              bigserial PRIMARY KEY,
    uuid            varchar(36) NOT NULL UNIQUE DEFAULT gen_random_uuid()::text,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    namespace_id    bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    policy          jsonb NOT NULL
);
CREATE INDEX repositoryautoprunepolicy_repository_id
    ON repositoryautoprunepolicy (repository_id);
CREATE INDEX repositoryautoprunepolicy_namespace_id
    ON repositoryautoprunepolicy (namespace_id);

CREATE TABLE autoprunetaskstatus (
    id              bigserial PRIMARY KEY,
    namespace_id    bigint NOT NULL UNIQUE
                    REFERENCES "user" (id) ON DELETE CASCADE,
    last_ran_ms     bigint NULL,
    status          text NULL
);
CREATE INDEX autoprunetaskstatus_last_ran_ms
    ON autoprunetaskstatus (last_ran_ms NULLS FIRST);
