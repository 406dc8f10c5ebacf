-- 0004_queue: the generic job queue and the deletion markers it serves.
--
-- Why: the module and the API hand background work (repository and
-- namespace GC, replication, notifications, ...) to the worker binaries
-- through one table, as Quay does with queueitem (data/queue.py), but with
-- PostgreSQL's row locks instead of Quay's state_id compare-and-swap:
--
--   claim:    UPDATE queueitem SET lease_owner = $worker,
--                    lease_expires = now() + $lease,
--                    retries_remaining = retries_remaining - 1,
--                    updated = now()
--             WHERE id = (SELECT id FROM queueitem
--                         WHERE queue_name = $q AND state = 'queued'
--                           AND available_after <= now()
--                           AND (lease_expires IS NULL
--                                OR lease_expires <= now())
--                           AND retries_remaining > 0
--                         ORDER BY available_after
--                         FOR UPDATE SKIP LOCKED LIMIT 1)
--             RETURNING ...
--   done:     DELETE the row.
--   retry:    clear the lease, push available_after, optionally give the
--             retry back.
--   fail:     state = 'failed' (kept for inspection), last_error set.
--
-- A worker killed mid-job leaves a row whose lease expires; the next claim
-- takes it again.  queue_name keeps Quay's "<queue>/<path>/.../" form.
-- dedupe_key lets a producer enqueue "at most one waiting job per key".


CREATE TABLE queueitem (
    id                  bigserial PRIMARY KEY,
    queue_name          varchar(1024) NOT NULL,
    body                jsonb NOT NULL DEFAULT '{}',
    dedupe_key          text NULL,
    state               varchar(16) NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'failed')),
    available_after     timestamptz NOT NULL DEFAULT now(),
    lease_owner         text NULL,
    lease_expires       timestamptz NULL,
    retries_remaining   int NOT NULL DEFAULT 5,
    last_error          text NULL,
    created             timestamptz NOT NULL DEFAULT now(),
    updated             timestamptz NOT NULL DEFAULT now()
);
-- The claim's predicate and order.
CREATE INDEX queueitem_claim ON queueitem (queue_name, available_after)
    WHERE state = 'queued';
-- Finding expired leases (reclaim, metrics, cleanup).
CREATE INDEX queueitem_lease_expires ON queueitem (lease_expires)
    WHERE state = 'queued';
-- One waiting job per (queue, key): INSERT ... ON CONFLICT
-- (queue_name, dedupe_key) WHERE dedupe_key IS NOT NULL AND state =
-- 'queued' DO NOTHING.
CREATE UNIQUE INDEX queueitem_dedupe ON queueitem (queue_name, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state = 'queued';
CREATE INDEX queueitem_failed ON queueitem (queue_name, updated)
    WHERE state = 'failed';


-- A repository marked for deletion (renamed to a UUID, state 3) and the
-- queue item that will purge it.  queue_id is the queueitem id as text,
-- like Quay's.
CREATE TABLE deletedrepository (
    id              bigserial PRIMARY KEY,
    repository_id   bigint NOT NULL UNIQUE
                    REFERENCES repository (id) ON DELETE CASCADE,
    marked          timestamptz NOT NULL DEFAULT now(),
    original_name   varchar(255) NOT NULL,
    queue_id        varchar(255) NULL
);
CREATE INDEX deletedrepository_original_name
    ON deletedrepository (original_name);
CREATE INDEX deletedrepository_queue_id ON deletedrepository (queue_id);

-- Same for a namespace (user or organization) being deleted.
CREATE TABLE deletednamespace (
    id                  bigserial PRIMARY KEY,
    namespace_id        bigint NOT NULL UNIQUE
                        REFERENCES "user" (id) ON DELETE CASCADE,
    marked              timestamptz NOT NULL DEFAULT now(),
    original_username   varchar(255) NOT NULL,
    original_email      varchar(255) NOT NULL,
    queue_id            varchar(255) NULL
);
CREATE INDEX deletednamespace_original_username
    ON deletednamespace (original_username);
CREATE INDEX deletednamespace_original_email
    ON deletednamespace (original_email);
CREATE INDEX deletednamespace_queue_id ON deletednamespace (queue_id);
