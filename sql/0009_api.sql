-- 0009_api: the REST API's shared SQL functions.
--
-- Why: every /api/v1 route runs one statement, a call of its function
-- quay_api_<route>(ctx, args, body) (lib/quay_api.h).  Doing the whole
-- operation in one function call makes it one round trip from nginx and
-- one transaction: the permission check, the change and its audit row
-- commit together or not at all, and nginx holds no multi-step state.
-- This file has what those functions share; each resource group's
-- functions follow in their own migration.
--
-- The arguments, all jsonb, built by ngx_http_quay_api.c:
--   ctx   who calls: {"user_id": n|null, "username": s|null,
--         "robot": bool, "scopes": [s...], "superuser": bool,
--         "readonly_superuser": bool, "ip": s, "config": {...}} where
--         superuser means the name is in SUPER_USERS (the super:user scope
--         is checked separately) and config carries the config.yaml
--         values the functions need (see ngx_http_quay_api.c).
--   args  the path parameters, the query parameters and the secrets the
--         module generated (QUAY_API_F_GEN_*), all as strings.
--   body  the request body, a JSON object ({} when there is none).
--
-- The result, quay_api_result: status and body for a success; status,
-- error_type and message for an error, which the module turns into Quay's
-- error JSON.  A client mistake is always a 4xx from here; an unexpected
-- SQL error becomes a 500 in the module and is logged.

CREATE TYPE quay_api_result AS (
    status      integer,
    body        jsonb,
    error_type  text,
    message     text
);

CREATE FUNCTION quay_api_ok(body jsonb, status integer DEFAULT 200)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(status, body, NULL, NULL)::quay_api_result
$$;

-- 204 and friends: no body.
CREATE FUNCTION quay_api_empty(status integer DEFAULT 204)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(status, NULL, NULL, NULL)::quay_api_result
$$;

-- error_type is Quay's: invalid_request (400), invalid_token (401),
-- insufficient_scope (403), not_found (404), conflict (409) ...
CREATE FUNCTION quay_api_err(status integer, error_type text, message text)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(status, NULL, error_type, message)::quay_api_result
$$;

CREATE FUNCTION quay_api_not_found(message text DEFAULT 'Not Found')
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_err(404, 'not_found', message)
$$;

CREATE FUNCTION quay_api_forbidden(message text DEFAULT 'Unauthorized')
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_err(403, 'insufficient_scope', message)
$$;

CREATE FUNCTION quay_api_bad_request(message text)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_err(400, 'invalid_request', message)
$$;

-- An encrypted secret that the module shows in the clear
-- (QUAY_API_F_SECRETS): prefix || decrypt(ciphertext, ad).
CREATE FUNCTION quay_api_secret(ad text, prefix text, ciphertext text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT 'quay-secret:' || ad || ':' || prefix || ':' || ciphertext
$$;


-- The caller ---------------------------------------------------------------

CREATE FUNCTION quay_api_user_id(ctx jsonb)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT (ctx->>'user_id')::bigint
$$;

-- Whether the caller's token carries scope, with Quay's implications
-- (auth/scopes.py): repo:admin > repo:write > repo:read and user:admin >
-- user:read.
CREATE FUNCTION quay_api_has_scope(ctx jsonb, scope text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT ctx->'scopes' ? scope
        OR (scope = 'repo:read'
            AND ctx->'scopes' ?| ARRAY['repo:write', 'repo:admin'])
        OR (scope = 'repo:write' AND ctx->'scopes' ? 'repo:admin')
        OR (scope = 'user:read' AND ctx->'scopes' ? 'user:admin')
$$;

-- A superuser acting as one: in SUPER_USERS and holding super:user.
CREATE FUNCTION quay_api_is_superuser(ctx jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE((ctx->>'superuser')::boolean, false)
       AND quay_api_has_scope(ctx, 'super:user')
$$;

-- GLOBAL_READONLY_SUPER_USERS read everything (and take precedence when a
-- name is in both lists, as in Quay).
CREATE FUNCTION quay_api_is_readonly_superuser(ctx jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE((ctx->>'readonly_superuser')::boolean, false)
$$;


-- Rights -------------------------------------------------------------------

-- The caller's team role in organization org_id: 3 admin, 2 creator,
-- 1 member, 0 none (org membership is membership in any team).
CREATE FUNCTION quay_org_role(user_id bigint, org_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT COALESCE(max(CASE tr.name WHEN 'admin' THEN 3
                        WHEN 'creator' THEN 2 ELSE 1 END), 0)
      FROM team t
      JOIN teammember tm ON tm.team_id = t.id
      JOIN teamrole tr ON tr.id = t.role_id
     WHERE t.organization_id = org_id AND tm.user_id = quay_org_role.user_id
$$;

-- The caller's repository role, 3 admin, 2 write, 1 read, 0 none: the
-- highest of a direct grant, a team grant, organization admin and owning
-- the user namespace (auth/permissions.py).
CREATE FUNCTION quay_repo_role(user_id bigint, repo_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT GREATEST(
        COALESCE((SELECT max(CASE ro.name WHEN 'admin' THEN 3
                             WHEN 'write' THEN 2 ELSE 1 END)
                    FROM repositorypermission p
                    JOIN role ro ON ro.id = p.role_id
                    LEFT JOIN teammember tm ON tm.team_id = p.team_id
                   WHERE p.repository_id = repo_id
                     AND (p.user_id = quay_repo_role.user_id
                          OR tm.user_id = quay_repo_role.user_id)), 0),
        (SELECT CASE WHEN r.namespace_user_id = quay_repo_role.user_id
                     THEN 3
                     WHEN quay_org_role(quay_repo_role.user_id,
                                        r.namespace_user_id) = 3
                     THEN 3 ELSE 0 END
           FROM repository r WHERE r.id = repo_id))
$$;

-- What the caller may do on repository repo_id through this token: the
-- role capped by the token's repo:* scope; superusers with
-- FEATURE_SUPERUSERS_FULL_ACCESS get admin, read-only superusers read.
-- Public visibility is not counted here (see quay_api_repo_can_read).
CREATE FUNCTION quay_api_repo_role(ctx jsonb, repo_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT GREATEST(
        CASE WHEN quay_api_user_id(ctx) IS NULL THEN 0
             ELSE LEAST(quay_repo_role(quay_api_user_id(ctx), repo_id),
                        CASE WHEN quay_api_has_scope(ctx, 'repo:admin') THEN 3
                             WHEN quay_api_has_scope(ctx, 'repo:write') THEN 2
                             WHEN quay_api_has_scope(ctx, 'repo:read') THEN 1
                             ELSE 0 END) END,
        CASE WHEN quay_api_is_superuser(ctx)
              AND COALESCE((ctx->'config'->>'superusers_full_access')
                           ::boolean, false) THEN 3 ELSE 0 END,
        CASE WHEN quay_api_is_readonly_superuser(ctx) THEN 1 ELSE 0 END)
$$;

CREATE FUNCTION quay_api_repo_can_read(ctx jsonb, repo_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT quay_api_repo_role(ctx, repo_id) >= 1
        OR EXISTS (SELECT 1 FROM repository r
                    JOIN visibility v ON v.id = r.visibility_id
                   WHERE r.id = repo_id AND v.name = 'public'
                     AND (quay_api_user_id(ctx) IS NOT NULL
                          OR COALESCE((ctx->'config'->>'anonymous_access')
                                      ::boolean, true)))
$$;

-- The caller's role in an organization through this token: org:admin
-- caps at admin, repo:create at creator, anything else at member.
CREATE FUNCTION quay_api_org_role(ctx jsonb, org_id bigint)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN quay_api_user_id(ctx) IS NULL THEN 0
                ELSE LEAST(quay_org_role(quay_api_user_id(ctx), org_id),
                           CASE WHEN quay_api_has_scope(ctx, 'org:admin')
                                THEN 3
                                WHEN quay_api_has_scope(ctx, 'repo:create')
                                THEN 2 ELSE 1 END) END
$$;

-- Namespaces by name: a user or an organization, never a robot.
CREATE FUNCTION quay_namespace_id(name text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM "user" WHERE username = name AND NOT robot
$$;

-- A repository by its full path "namespace/name" (the name may nest),
-- excluding repositories marked for deletion.
CREATE FUNCTION quay_repository_id(path text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT r.id FROM repository r
      JOIN "user" ns ON ns.id = r.namespace_user_id
     WHERE ns.username = split_part(path, '/', 1)
       AND r.name = substr(path, length(split_part(path, '/', 1)) + 2)
       AND r.state <> 3 AND position('/' IN path) > 0
$$;


-- Audit --------------------------------------------------------------------

-- One logentry row of kind (a logentrykind name; an unknown name is a
-- programming error and fails the transaction).
CREATE FUNCTION quay_log(kind text, account_id bigint, performer_id bigint,
                         repository_id bigint, ip text, metadata jsonb)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO logentry (kind_id, account_id, performer_id, repository_id,
                          ip, metadata_json)
    SELECT k.id, account_id, performer_id, repository_id, ip,
           COALESCE(metadata, '{}')
      FROM logentrykind k WHERE k.name = kind
$$;

-- The same, with the performer and address taken from ctx.
CREATE FUNCTION quay_api_log(ctx jsonb, kind text, account_id bigint,
                             repository_id bigint, metadata jsonb)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM logentrykind k WHERE k.name = kind) THEN
        RAISE EXCEPTION 'unknown log kind %', kind;
    END IF;
    PERFORM quay_log(kind, account_id, quay_api_user_id(ctx), repository_id,
                     ctx->>'ip', metadata);
END
$$;


-- Shapes -------------------------------------------------------------------

-- Quay's avatar object, derived from the name (no external service).
CREATE FUNCTION quay_api_avatar(name text, kind text)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('name', name, 'hash', md5(name),
                              'color', '#' || substr(md5(name), 1, 6),
                              'kind', kind)
$$;

-- Epoch seconds to Quay's RFC 2822 date ("Sat, 28 Nov 2026 04:11:02
-- -0000"), as its API formats every date.
CREATE FUNCTION quay_api_date(t timestamptz)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS')
           || ' -0000'
$$;
