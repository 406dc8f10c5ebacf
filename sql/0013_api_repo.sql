-- 0013_api_repo: the repository and repository-permission routes of
-- /api/v1 (Quay's endpoints/api/repository.py and permission.py) and the
-- user's stars (endpoints/api/user.py: StarredRepositoryList).
--
-- Why: repositories are what users manage through the API: list, create,
-- describe, make public or private, freeze (READ_ONLY), delete, and grant
-- users, robots and teams read, write or admin on them.  A grant made
-- here is a repositorypermission row, which /v2/auth reads on every token
-- request, so a grant or a revocation takes effect at the next token.
--
-- Rules every function here follows (security-catalogue B2 #34):
--   * a repository the caller may not see and one that does not exist
--     answer the same: 401 "Requires authentication" for anonymous, 403
--     "Unauthorized" for anyone else (Quay's Unauthorized), as Quay's
--     require_repo_* decorators do;  only a caller who holds the needed
--     role on every repository of the namespace (its owner, an
--     organization admin, a superuser with full access) learns "404 Not
--     Found", which tells them nothing they could not list;
--   * the body is checked field by field (jsonb_typeof) before use, and
--     names with Quay's regular expressions (util/names.py);
--   * every change writes its audit row in the same transaction.
--
-- Deletion is Quay's mark_repository_for_deletion: the repository is
-- renamed to a UUID (so the name can be reused at once), set to state 3
-- MARKED_FOR_DELETION, which /v2 and this API treat as gone, and a
-- deletedrepository marker plus a queueitem on queue "repositorygc/"
-- ({"marker_id", "original_name"}) hand the purge to the GC worker.
-- Quay names its queue items "repositorygc/<ns>/<id>/"; ours is the bare
-- queue name because the claim in 0004_queue.sql matches queue_name
-- exactly.
--
-- Pagination (the repository list and the stars): 100 per page, ordered
-- by repository id; next_page is base64url("r:<last id>").  Quay
-- encrypts its token; ours needs no secret because it only says where
-- the next window starts: a forged one moves the window, and every row
-- is still filtered by what the caller may read.


-- Helpers ------------------------------------------------------------------

-- Quay's RepositoryState names.
CREATE FUNCTION quay_api_repo_state_name(state smallint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE state WHEN 0 THEN 'NORMAL' WHEN 1 THEN 'READ_ONLY'
                      WHEN 2 THEN 'MIRROR' WHEN 3 THEN 'MARKED_FOR_DELETION'
                      WHEN 4 THEN 'ORG_MIRROR' END
$$;

-- Quay's truthy_bool (util/parsing.py) for a query parameter; absent is
-- false.
CREATE FUNCTION quay_api_repo_truthy(value text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT value IS NOT NULL
       AND value NOT IN ('false', 'False', '0', 'FALSE', '', 'null')
$$;

-- Quay's repository name rules: one segment, or nested segments when
-- FEATURE_EXTENDED_REPOSITORY_NAMES (default true); 255 characters at
-- most.
CREATE FUNCTION quay_api_repo_name_valid(ctx jsonb, name text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN COALESCE((ctx->'config'->>'extended_repository_names')
                      ::boolean, true)
        THEN length(name) <= 255
             AND name ~ '^[a-z0-9][.a-z0-9_-]*(/[a-z0-9][.a-z0-9_-]*)*$'
        ELSE name ~ '^[a-z0-9][.a-z0-9_-]{0,254}$' END
$$;

-- Quay's Unauthorized: 401 for anonymous, 403 for a user.
CREATE FUNCTION quay_api_repo_unauthorized(ctx jsonb)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN quay_api_user_id(ctx) IS NULL
                THEN quay_api_err(401, 'invalid_token',
                                  'Requires authentication')
                ELSE quay_api_forbidden('Unauthorized') END
$$;

-- The role the caller holds on every repository of namespace ns (3 admin,
-- 2 write, 1 read, 0 none) through this token: owning it or being an
-- organization admin, capped by the token's repo:* scope, as
-- quay_api_repo_role counts them; superusers as there.
CREATE FUNCTION quay_api_repo_ns_role(ctx jsonb, ns text)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT GREATEST(
        COALESCE((SELECT LEAST(3,
                     CASE WHEN quay_api_has_scope(ctx, 'repo:admin') THEN 3
                          WHEN quay_api_has_scope(ctx, 'repo:write') THEN 2
                          WHEN quay_api_has_scope(ctx, 'repo:read') THEN 1
                          ELSE 0 END)
                    FROM "user" n
                   WHERE n.username = ns AND NOT n.robot
                     AND quay_api_user_id(ctx) IS NOT NULL
                     AND (n.id = quay_api_user_id(ctx)
                          OR quay_org_role(quay_api_user_id(ctx), n.id) = 3)),
                 0),
        CASE WHEN quay_api_is_superuser(ctx)
              AND COALESCE((ctx->'config'->>'superusers_full_access')
                           ::boolean, false) THEN 3 ELSE 0 END,
        CASE WHEN quay_api_is_readonly_superuser(ctx) THEN 1 ELSE 0 END)
$$;

-- The id of repository path ("ns/name") when the caller holds role need
-- on it (1 read counts public repositories), else NULL.
CREATE FUNCTION quay_api_repo_access(ctx jsonb, path text, need integer)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
BEGIN
    v_repo := quay_repository_id(path);

    IF v_repo IS NULL THEN
        RETURN NULL;
    END IF;

    IF need <= 1 AND quay_api_repo_can_read(ctx, v_repo) THEN
        RETURN v_repo;
    END IF;

    IF quay_api_repo_role(ctx, v_repo) >= need THEN
        RETURN v_repo;
    END IF;

    RETURN NULL;
END
$$;

-- The answer when quay_api_repo_access gave NULL (see the rules above).
CREATE FUNCTION quay_api_repo_denied(ctx jsonb, path text, need integer)
RETURNS quay_api_result LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN quay_repository_id(path) IS NULL
                 AND quay_api_repo_ns_role(ctx, split_part(path, '/', 1))
                     >= need
                THEN quay_api_not_found()
                ELSE quay_api_repo_unauthorized(ctx) END
$$;

CREATE FUNCTION quay_api_repo_cursor(repo_id bigint)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT translate(rtrim(encode(convert_to('r:' || repo_id, 'UTF8'),
                                  'base64'), '='), '+/', '-_')
$$;

-- The repository id a next_page token starts after; NULL when the token
-- is malformed.
CREATE FUNCTION quay_api_repo_cursor_start(token text)
RETURNS bigint LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_b64   text;
    v_raw   text;
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{4,64}$' THEN
        RETURN NULL;
    END IF;

    v_b64 := translate(token, '-_', '+/');
    v_b64 := v_b64 || repeat('=', (4 - length(v_b64) % 4) % 4);

    BEGIN
        v_raw := convert_from(decode(v_b64, 'base64'), 'UTF8');
    EXCEPTION WHEN data_exception THEN
        RETURN NULL;
    END;

    IF v_raw !~ '^r:[0-9]{1,18}$' THEN
        RETURN NULL;
    END IF;

    RETURN substr(v_raw, 3)::bigint;
END
$$;

-- Quay's list element (RepositoryBaseElement.to_dict): is_starred for a
-- signed-in caller; last_modified (epoch seconds of the newest live tag)
-- and popularity (audit rows of the last week; Quay sums its
-- repositoryactioncount rows, which count the same log entries) when
-- asked for.
CREATE FUNCTION quay_api_repo_item(ctx jsonb, repo_id bigint,
                                   last_modified boolean, popularity boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'namespace', ns.username,
               'name', r.name,
               'description', r.description,
               'is_public', v.name = 'public',
               'kind', k.name,
               'state', quay_api_repo_state_name(r.state))
        || CASE WHEN quay_api_user_id(ctx) IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('is_starred', EXISTS (
                         SELECT 1 FROM star s
                          WHERE s.repository_id = r.id
                            AND s.user_id = quay_api_user_id(ctx))) END
        || CASE WHEN NOT last_modified THEN '{}'::jsonb
                ELSE jsonb_build_object('last_modified', (
                         SELECT max(t.lifetime_start_ms) / 1000 FROM tag t
                          WHERE t.repository_id = r.id AND NOT t.hidden
                            AND (t.lifetime_end_ms IS NULL
                                 OR t.lifetime_end_ms
                                    > extract(epoch FROM now()) * 1000)))
                END
        || CASE WHEN NOT popularity THEN '{}'::jsonb
                ELSE jsonb_build_object('popularity', (
                         SELECT count(*)::numeric(20, 1) FROM logentry l
                          WHERE l.repository_id = r.id
                            AND l.datetime >= now() - interval '7 days'))
                END
      FROM repository r
      JOIN "user" ns ON ns.id = r.namespace_user_id
      JOIN visibility v ON v.id = r.visibility_id
      JOIN repositorykind k ON k.id = r.kind_id
     WHERE r.id = repo_id
$$;

-- A user's or robot's direct grant (permission_models_interface:
-- UserPermission.to_dict): is_org_member only for organization
-- repositories, where robots always count as members.
CREATE FUNCTION quay_api_repo_user_permission(repo_id bigint, user_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'role', ro.name,
               'name', u.username,
               'is_robot', u.robot,
               'avatar', quay_api_avatar(u.username,
                                         CASE WHEN u.robot THEN 'robot'
                                              ELSE 'user' END))
        || CASE WHEN NOT ns.organization THEN '{}'::jsonb
                ELSE jsonb_build_object('is_org_member',
                         u.robot OR quay_org_role(u.id, ns.id) > 0) END
      FROM repositorypermission p
      JOIN role ro ON ro.id = p.role_id
      JOIN "user" u ON u.id = p.user_id
      JOIN repository r ON r.id = p.repository_id
      JOIN "user" ns ON ns.id = r.namespace_user_id
     WHERE p.repository_id = repo_id
       AND p.user_id = quay_api_repo_user_permission.user_id
$$;

CREATE FUNCTION quay_api_repo_team_permission(repo_id bigint, team_id bigint)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('role', ro.name, 'name', t.name,
                              'avatar', quay_api_avatar(t.name, 'team'))
      FROM repositorypermission p
      JOIN role ro ON ro.id = p.role_id
      JOIN team t ON t.id = p.team_id
     WHERE p.repository_id = repo_id
       AND p.team_id = quay_api_repo_team_permission.team_id
$$;

-- A role name from a body: the role id, or NULL when it is not one.
CREATE FUNCTION quay_api_repo_role_id(body jsonb)
RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT ro.id FROM role ro
     WHERE jsonb_typeof(body->'role') = 'string'
       AND ro.name = body->>'role'
$$;


-- GET /api/v1/repository ---------------------------------------------------

-- Quay's listRepos: namespace, starred or public is required.  starred
-- lists the caller's stars they may still read; namespace lists that
-- namespace's repositories the caller may read (with public, every public
-- one too), unpaginated as in Quay; otherwise public=true lists, 100 per
-- page, the public repositories and those the caller holds a role on.
CREATE FUNCTION quay_api_repo_list(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_uid       bigint := quay_api_user_id(ctx);
    v_ns        text := NULLIF(args->>'namespace', '');
    v_public    boolean := quay_api_repo_truthy(args->>'public');
    v_starred   boolean := quay_api_repo_truthy(args->>'starred');
    v_lastmod   boolean := quay_api_repo_truthy(args->>'last_modified');
    v_popular   boolean := quay_api_repo_truthy(args->>'popularity');
    v_kind      integer;
    v_pub_id    integer;
    v_pub_ok    boolean;
    v_start     bigint := 0;
    v_ids       bigint[];
    v_next      text;
    v_items     jsonb;
BEGIN
    IF v_ns IS NULL AND NOT v_public AND NOT v_starred THEN
        RETURN quay_api_bad_request(
            'namespace, starred or public are required for this API call');
    END IF;

    IF v_starred AND v_uid IS NULL THEN
        RETURN quay_api_bad_request('starred requires a signed-in user');
    END IF;

    SELECT id INTO v_kind FROM repositorykind
     WHERE name = COALESCE(NULLIF(args->>'repo_kind', ''), 'image');

    IF v_kind IS NULL THEN
        RETURN quay_api_bad_request('Unknown repository kind');
    END IF;

    IF COALESCE(args->>'next_page', '') <> '' THEN
        v_start := quay_api_repo_cursor_start(args->>'next_page');

        IF v_start IS NULL THEN
            RETURN quay_api_bad_request('Invalid next_page token');
        END IF;
    END IF;

    SELECT id INTO v_pub_id FROM visibility WHERE name = 'public';

    v_pub_ok := v_public
                AND (v_uid IS NOT NULL
                     OR COALESCE((ctx->'config'->>'anonymous_access')
                                 ::boolean, true));

    IF v_starred THEN
        SELECT array_agg(r.id ORDER BY r.id) INTO v_ids
          FROM star s
          JOIN repository r ON r.id = s.repository_id
         WHERE s.user_id = v_uid AND r.state <> 3 AND r.kind_id = v_kind
           AND quay_api_repo_can_read(ctx, r.id);

    ELSIF v_ns IS NOT NULL THEN
        SELECT array_agg(r.id ORDER BY r.name) INTO v_ids
          FROM repository r
          JOIN "user" ns ON ns.id = r.namespace_user_id
         WHERE ns.username = v_ns AND r.state <> 3 AND r.kind_id = v_kind
           AND ((v_pub_ok AND r.visibility_id = v_pub_id)
                OR quay_api_repo_role(ctx, r.id) >= 1);

    ELSE
        -- Each branch is an index lookup: public repositories in id
        -- order, then the caller's grants, teams, own namespace and
        -- organizations they administer (the same sources as
        -- quay_repo_role).
        WITH mine AS (
            SELECT p.repository_id AS id FROM repositorypermission p
             WHERE p.user_id = v_uid
            UNION
            SELECT p.repository_id FROM repositorypermission p
              JOIN teammember tm ON tm.team_id = p.team_id
             WHERE tm.user_id = v_uid
            UNION
            SELECT r.id FROM repository r WHERE r.namespace_user_id = v_uid
            UNION
            SELECT r.id FROM repository r
              JOIN team t ON t.organization_id = r.namespace_user_id
              JOIN teamrole tr ON tr.id = t.role_id AND tr.name = 'admin'
              JOIN teammember tm ON tm.team_id = t.id
             WHERE tm.user_id = v_uid
        ), candidates AS (
            SELECT id FROM (
                SELECT r.id FROM repository r
                 WHERE v_pub_ok AND r.visibility_id = v_pub_id
                   AND r.id > v_start AND r.state <> 3
                   AND r.kind_id = v_kind
                 ORDER BY r.id LIMIT 101) pub
            UNION
            SELECT id FROM mine WHERE id > v_start
        )
        SELECT array_agg(id ORDER BY id) INTO v_ids
          FROM (SELECT r.id FROM candidates c
                  JOIN repository r ON r.id = c.id
                 WHERE r.state <> 3 AND r.kind_id = v_kind
                 ORDER BY r.id LIMIT 101) page;

        IF cardinality(v_ids) > 100 THEN
            v_ids := v_ids[1:100];
            v_next := quay_api_repo_cursor(v_ids[100]);
        END IF;
    END IF;

    SELECT COALESCE(jsonb_agg(quay_api_repo_item(ctx, u.id, v_lastmod,
                                                 v_popular)
                              ORDER BY u.ord), '[]')
      INTO v_items
      FROM unnest(v_ids) WITH ORDINALITY AS u(id, ord);

    RETURN quay_api_ok(jsonb_build_object('repositories', v_items)
                       || CASE WHEN v_next IS NULL THEN '{}'::jsonb
                               ELSE jsonb_build_object('next_page', v_next)
                               END);
END
$$;


-- POST /api/v1/repository --------------------------------------------------

-- Quay's createRepo: in the caller's own namespace, or in an organization
-- where the caller is admin or in a creator team.  The creator gets an
-- admin grant and, in an organization, the default permissions
-- (permissionprototype), as data/model/repository.py create_repository
-- does.  description may be left out (Quay's schema requires it).
CREATE FUNCTION quay_api_repo_create(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_uid       bigint := quay_api_user_id(ctx);
    v_name      text;
    v_ns_name   text;
    v_ns        "user";
    v_kind      text;
    v_repo      bigint;
    v_admin     integer;
BEGIN
    IF jsonb_typeof(body->'repository') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request('repository is required (a string)');
    END IF;

    IF jsonb_typeof(body->'visibility') IS DISTINCT FROM 'string'
       OR body->>'visibility' NOT IN ('public', 'private')
    THEN
        RETURN quay_api_bad_request(
            'visibility is required: "public" or "private"');
    END IF;

    IF body ? 'namespace'
       AND jsonb_typeof(body->'namespace') IS DISTINCT FROM 'string'
    THEN
        RETURN quay_api_bad_request('namespace must be a string');
    END IF;

    IF body ? 'description'
       AND jsonb_typeof(body->'description') IS DISTINCT FROM 'string'
    THEN
        RETURN quay_api_bad_request('description must be a string');
    END IF;

    IF body ? 'repo_kind'
       AND jsonb_typeof(body->'repo_kind') NOT IN ('string', 'null')
    THEN
        RETURN quay_api_bad_request('repo_kind must be a string');
    END IF;

    v_kind := COALESCE(body->>'repo_kind', 'image');

    IF v_kind = 'application' THEN
        RETURN quay_api_bad_request(
            'Application repositories are not supported');
    END IF;

    IF v_kind <> 'image' THEN
        RETURN quay_api_bad_request('Unknown repository kind');
    END IF;

    v_name := body->>'repository';
    v_ns_name := COALESCE(body->>'namespace', ctx->>'username');

    SELECT * INTO v_ns FROM "user" WHERE username = v_ns_name AND NOT robot;

    -- CreateRepositoryPermission: an unknown namespace looks like a
    -- foreign one
    IF NOT FOUND
       OR NOT (v_ns.id = v_uid
               OR (v_ns.organization AND quay_api_org_role(ctx, v_ns.id) >= 2))
    THEN
        RETURN quay_api_repo_unauthorized(ctx);
    END IF;

    IF quay_repository_id(v_ns.username || '/' || v_name) IS NOT NULL THEN
        RETURN quay_api_bad_request('Repository already exists');
    END IF;

    IF NOT quay_api_repo_name_valid(ctx, v_name) THEN
        RETURN quay_api_bad_request('Invalid repository name');
    END IF;

    INSERT INTO repository (namespace_user_id, name, visibility_id,
                            description, kind_id)
    SELECT v_ns.id, v_name, v.id, body->>'description', k.id
      FROM visibility v, repositorykind k
     WHERE v.name = body->>'visibility' AND k.name = v_kind
    ON CONFLICT (namespace_user_id, name) DO NOTHING
    RETURNING id INTO v_repo;

    IF v_repo IS NULL THEN
        -- a concurrent request made it first
        RETURN quay_api_bad_request('Repository already exists');
    END IF;

    SELECT id INTO v_admin FROM role WHERE name = 'admin';

    INSERT INTO repositorypermission (user_id, repository_id, role_id)
    VALUES (v_uid, v_repo, v_admin);

    -- Default permissions: a prototype for this creator wins over one for
    -- anyone that names the same delegate; the creator keeps admin.
    IF v_ns.organization THEN
        INSERT INTO repositorypermission (team_id, repository_id, role_id)
        SELECT DISTINCT ON (pp.delegate_team_id)
               pp.delegate_team_id, v_repo, pp.role_id
          FROM permissionprototype pp
         WHERE pp.org_id = v_ns.id AND pp.delegate_team_id IS NOT NULL
           AND (pp.activating_user_id IS NULL
                OR pp.activating_user_id = v_uid)
         ORDER BY pp.delegate_team_id, pp.activating_user_id NULLS LAST,
                  pp.id DESC;

        INSERT INTO repositorypermission (user_id, repository_id, role_id)
        SELECT DISTINCT ON (pp.delegate_user_id)
               pp.delegate_user_id, v_repo, pp.role_id
          FROM permissionprototype pp
         WHERE pp.org_id = v_ns.id AND pp.delegate_user_id IS NOT NULL
           AND pp.delegate_user_id <> v_uid
           AND (pp.activating_user_id IS NULL
                OR pp.activating_user_id = v_uid)
         ORDER BY pp.delegate_user_id, pp.activating_user_id NULLS LAST,
                  pp.id DESC;
    END IF;

    PERFORM quay_api_log(ctx, 'create_repo', v_ns.id, v_repo,
                         jsonb_build_object('repo', v_name,
                                            'namespace', v_ns.username));

    RETURN quay_api_ok(jsonb_build_object('namespace', v_ns.username,
                                          'name', v_name,
                                          'kind', v_kind), 201);
END
$$;


-- GET /api/v1/repository/{repository} --------------------------------------

-- Quay's getRepo (ImageRepositoryRepository.to_dict).  includeTags
-- defaults to true as in Quay: up to 500 live tags.
CREATE FUNCTION quay_api_repo_get(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo      bigint;
    v_role      integer;
    v_out       jsonb;
    v_tags      jsonb;
    v_now_ms    bigint := floor(extract(epoch FROM now()) * 1000)::bigint;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 1);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 1);
    END IF;

    v_role := quay_api_repo_role(ctx, v_repo);

    SELECT jsonb_build_object(
               'namespace', ns.username,
               'name', r.name,
               'kind', k.name,
               'description', r.description,
               'is_public', v.name = 'public',
               'is_organization', ns.organization,
               'is_starred', EXISTS (SELECT 1 FROM star s
                                      WHERE s.repository_id = r.id
                                        AND s.user_id
                                            = quay_api_user_id(ctx)),
               'status_token', CASE WHEN v.name = 'public' THEN ''
                                    ELSE r.badge_token END,
               'trust_enabled', false,
               'tag_expiration_s', ns.removed_tag_expiration_s,
               'is_free_account', ns.stripe_id IS NULL,
               'state', quay_api_repo_state_name(r.state),
               'can_write', v_role >= 2 AND r.state = 0,
               'can_admin', v_role >= 3)
      INTO v_out
      FROM repository r
      JOIN "user" ns ON ns.id = r.namespace_user_id
      JOIN visibility v ON v.id = r.visibility_id
      JOIN repositorykind k ON k.id = r.kind_id
     WHERE r.id = v_repo;

    IF NOT args ? 'includeTags'
       OR quay_api_repo_truthy(args->>'includeTags')
    THEN
        SELECT COALESCE(jsonb_object_agg(t.name,
                   jsonb_build_object('name', t.name,
                                      'size', m.layers_compressed_size)
                   || CASE WHEN t.lifetime_start_ms > 0
                           THEN jsonb_build_object('last_modified',
                                    quay_api_date(to_timestamp(
                                        t.lifetime_start_ms / 1000)))
                           ELSE '{}'::jsonb END
                   || CASE WHEN t.lifetime_end_ms IS NOT NULL
                           THEN jsonb_build_object('expiration',
                                    quay_api_date(to_timestamp(
                                        t.lifetime_end_ms / 1000)))
                           ELSE '{}'::jsonb END
                   || CASE WHEN m.digest IS NOT NULL
                           THEN jsonb_build_object('manifest_digest',
                                                   m.digest)
                           ELSE '{}'::jsonb END), '{}')
          INTO v_tags
          FROM (SELECT * FROM tag
                 WHERE repository_id = v_repo AND NOT hidden
                   AND (lifetime_end_ms IS NULL
                        OR lifetime_end_ms > v_now_ms)
                 ORDER BY lifetime_start_ms DESC, id DESC
                 LIMIT 500) t
          LEFT JOIN manifest m ON m.id = t.manifest_id;

        v_out := v_out || jsonb_build_object('tags', v_tags);
    END IF;

    RETURN quay_api_ok(v_out);
END
$$;


-- PUT /api/v1/repository/{repository} --------------------------------------

-- Quay's updateRepo: the description, for writers.
CREATE FUNCTION quay_api_repo_update(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
    v_ns    "user";
    v_name  text;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 2);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 2);
    END IF;

    IF jsonb_typeof(body->'description') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request('description is required (a string)');
    END IF;

    UPDATE repository SET description = body->>'description'
     WHERE id = v_repo AND state <> 3
    RETURNING name INTO v_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT ns.* INTO v_ns FROM "user" ns
      JOIN repository r ON r.namespace_user_id = ns.id WHERE r.id = v_repo;

    PERFORM quay_api_log(ctx, 'set_repo_description', v_ns.id, v_repo,
                         jsonb_build_object('repo', v_name,
                                            'namespace', v_ns.username,
                                            'description',
                                            body->>'description'));

    RETURN quay_api_ok(jsonb_build_object('success', true));
END
$$;


-- DELETE /api/v1/repository/{repository} -----------------------------------

-- Quay's deleteRepository (mark_repository_for_deletion); see the top of
-- this file.  The state check in the UPDATE makes a concurrent second
-- DELETE find nothing.
CREATE FUNCTION quay_api_repo_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo      bigint;
    v_ns        "user";
    v_name      text;
    v_marker    bigint;
    v_queue     bigint;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT name INTO v_name FROM repository WHERE id = v_repo;

    UPDATE repository SET name = gen_random_uuid()::text, state = 3
     WHERE id = v_repo AND state <> 3;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    DELETE FROM star WHERE repository_id = v_repo;

    INSERT INTO deletedrepository (repository_id, original_name)
    VALUES (v_repo, v_name)
    RETURNING id INTO v_marker;

    INSERT INTO queueitem (queue_name, body)
    VALUES ('repositorygc/', jsonb_build_object('marker_id', v_marker,
                                                'original_name', v_name))
    RETURNING id INTO v_queue;

    UPDATE deletedrepository SET queue_id = v_queue::text
     WHERE id = v_marker;

    SELECT ns.* INTO v_ns FROM "user" ns
      JOIN repository r ON r.namespace_user_id = ns.id WHERE r.id = v_repo;

    PERFORM quay_api_log(ctx, 'delete_repo', v_ns.id, v_repo,
                         jsonb_build_object('repo', v_name,
                                            'namespace', v_ns.username));

    RETURN quay_api_empty(204);
END
$$;


-- POST /api/v1/repository/{repository}/changevisibility --------------------

CREATE FUNCTION quay_api_repo_change_visibility(ctx jsonb, args jsonb,
                                                body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
    v_ns    "user";
    v_name  text;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    IF jsonb_typeof(body->'visibility') IS DISTINCT FROM 'string'
       OR body->>'visibility' NOT IN ('public', 'private')
    THEN
        RETURN quay_api_bad_request(
            'visibility is required: "public" or "private"');
    END IF;

    UPDATE repository r SET visibility_id = v.id
      FROM visibility v
     WHERE r.id = v_repo AND r.state <> 3 AND v.name = body->>'visibility'
    RETURNING r.name INTO v_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT ns.* INTO v_ns FROM "user" ns
      JOIN repository r ON r.namespace_user_id = ns.id WHERE r.id = v_repo;

    PERFORM quay_api_log(ctx, 'change_repo_visibility', v_ns.id, v_repo,
                         jsonb_build_object('repo', v_name,
                                            'namespace', v_ns.username,
                                            'visibility',
                                            body->>'visibility'));

    RETURN quay_api_ok(jsonb_build_object('success', true));
END
$$;


-- PUT /api/v1/repository/{repository}/changestate --------------------------

-- Quay's changeRepoState: NORMAL, READ_ONLY or MIRROR (the states a user
-- may pick; MARKED_FOR_DELETION and ORG_MIRROR are set by the registry).
CREATE FUNCTION quay_api_repo_change_state(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
    v_ns    "user";
    v_name  text;
    v_state smallint;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    IF jsonb_typeof(body->'state') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request('state is required (a string)');
    END IF;

    v_state := CASE body->>'state' WHEN 'NORMAL' THEN 0
                                   WHEN 'READ_ONLY' THEN 1
                                   WHEN 'MIRROR' THEN 2 END;

    IF v_state IS NULL THEN
        RETURN quay_api_bad_request(left(body->>'state', 64)
                                    || ' is not a valid Repository state.');
    END IF;

    UPDATE repository SET state = v_state
     WHERE id = v_repo AND state <> 3
    RETURNING name INTO v_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT ns.* INTO v_ns FROM "user" ns
      JOIN repository r ON r.namespace_user_id = ns.id WHERE r.id = v_repo;

    PERFORM quay_api_log(ctx, 'change_repo_state', v_ns.id, v_repo,
                         jsonb_build_object('repo', v_name,
                                            'namespace', v_ns.username,
                                            'state_changed',
                                            body->>'state'));

    RETURN quay_api_ok(jsonb_build_object('success', true));
END
$$;


-- Permissions: users and robots --------------------------------------------

-- GET .../permissions/user/: the direct grants of users and robots.
CREATE FUNCTION quay_api_repo_user_permissions(ctx jsonb, args jsonb,
                                               body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
    v_perms jsonb;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT COALESCE(jsonb_object_agg(u.username,
                        quay_api_repo_user_permission(v_repo, u.id)), '{}')
      INTO v_perms
      FROM repositorypermission p
      JOIN "user" u ON u.id = p.user_id
     WHERE p.repository_id = v_repo;

    RETURN quay_api_ok(jsonb_build_object('permissions', v_perms));
END
$$;

-- GET .../permissions/user/{username}: Quay answers 400 when there is no
-- direct grant.
CREATE FUNCTION quay_api_repo_user_permission_get(ctx jsonb, args jsonb,
                                                  body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
    v_perm  jsonb;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT quay_api_repo_user_permission(v_repo, u.id) INTO v_perm
      FROM "user" u WHERE u.username = args->>'username';

    IF v_perm IS NULL THEN
        RETURN quay_api_bad_request('User does not have permission for repo.');
    END IF;

    RETURN quay_api_ok(v_perm);
END
$$;

-- PUT .../permissions/user/{username} {role}: Quay's
-- set_user_repo_permission.  The namespace owner stays admin; a robot
-- only gets rights in its own namespace; organizations get none.
CREATE FUNCTION quay_api_repo_user_permission_put(ctx jsonb, args jsonb,
                                                  body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo      bigint;
    v_r         repository;
    v_ns        "user";
    v_user      "user";
    v_role      integer;
    v_old       integer;
    v_username  text := args->>'username';
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    v_role := quay_api_repo_role_id(body);

    IF v_role IS NULL THEN
        RETURN quay_api_bad_request(
            'role is required: "read", "write" or "admin"');
    END IF;

    SELECT * INTO v_r FROM repository WHERE id = v_repo;
    SELECT * INTO v_ns FROM "user" WHERE id = v_r.namespace_user_id;

    IF v_username = v_ns.username THEN
        RETURN quay_api_bad_request('Namespace owner must always be admin.');
    END IF;

    SELECT * INTO v_user FROM "user"
     WHERE username = v_username AND NOT organization;

    IF NOT FOUND THEN
        RETURN quay_api_bad_request('Invalid username: '
                                    || left(v_username, 255));
    END IF;

    IF v_user.robot
       AND split_part(v_user.username, '+', 1) <> v_ns.username
    THEN
        RETURN quay_api_bad_request('Cannot add robot ' || v_user.username
                                    || ' under namespace '
                                    || v_ns.username);
    END IF;

    SELECT role_id INTO v_old FROM repositorypermission
     WHERE repository_id = v_repo AND user_id = v_user.id
       FOR UPDATE;

    INSERT INTO repositorypermission (user_id, repository_id, role_id)
    VALUES (v_user.id, v_repo, v_role)
    ON CONFLICT (user_id, repository_id)
    DO UPDATE SET role_id = EXCLUDED.role_id;

    PERFORM quay_api_log(ctx,
                         CASE WHEN v_old IS NULL THEN 'add_repo_permission'
                              ELSE 'change_repo_permission' END,
                         v_ns.id, v_repo,
                         jsonb_build_object('username', v_user.username,
                                            'repo', v_r.name,
                                            'namespace', v_ns.username,
                                            'role', body->>'role'));

    RETURN quay_api_ok(quay_api_repo_user_permission(v_repo, v_user.id));
END
$$;

CREATE FUNCTION quay_api_repo_user_permission_delete(ctx jsonb, args jsonb,
                                                     body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo      bigint;
    v_r         repository;
    v_ns        "user";
    v_user_id   bigint;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT * INTO v_r FROM repository WHERE id = v_repo;
    SELECT * INTO v_ns FROM "user" WHERE id = v_r.namespace_user_id;

    IF args->>'username' = v_ns.username THEN
        RETURN quay_api_bad_request('Namespace owner must always be admin.');
    END IF;

    DELETE FROM repositorypermission p
     USING "user" u
     WHERE p.repository_id = v_repo AND p.user_id = u.id
       AND u.username = args->>'username'
    RETURNING u.id INTO v_user_id;

    IF v_user_id IS NULL THEN
        RETURN quay_api_bad_request('User does not have permission for repo.');
    END IF;

    PERFORM quay_api_log(ctx, 'delete_repo_permission', v_ns.id, v_repo,
                         jsonb_build_object('username', args->>'username',
                                            'repo', v_r.name,
                                            'namespace', v_ns.username));

    RETURN quay_api_empty(204);
END
$$;

-- GET .../permissions/user/{username}/transitive: the grants that give
-- the user access, directly or through a team (Quay's
-- get_user_repo_permissions); 404 when there are none.
CREATE FUNCTION quay_api_repo_user_permission_transitive(ctx jsonb,
                                                         args jsonb,
                                                         body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
    v_roles jsonb;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT jsonb_agg(jsonb_build_object('role', ro.name) ORDER BY p.id)
      INTO v_roles
      FROM "user" u
      JOIN repositorypermission p ON p.repository_id = v_repo
      JOIN role ro ON ro.id = p.role_id
     WHERE u.username = args->>'username'
       AND (p.user_id = u.id
            OR EXISTS (SELECT 1 FROM teammember tm
                        WHERE tm.team_id = p.team_id AND tm.user_id = u.id));

    IF v_roles IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_ok(jsonb_build_object('permissions', v_roles));
END
$$;


-- Permissions: teams -------------------------------------------------------

CREATE FUNCTION quay_api_repo_team_permissions(ctx jsonb, args jsonb,
                                               body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
    v_perms jsonb;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT COALESCE(jsonb_object_agg(t.name,
                        quay_api_repo_team_permission(v_repo, t.id)), '{}')
      INTO v_perms
      FROM repositorypermission p
      JOIN team t ON t.id = p.team_id
     WHERE p.repository_id = v_repo;

    RETURN quay_api_ok(jsonb_build_object('permissions', v_perms));
END
$$;

-- The team teamname of the repository's organization, or NULL.
CREATE FUNCTION quay_api_repo_team_id(repo_id bigint, teamname text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT t.id FROM team t
      JOIN repository r ON r.namespace_user_id = t.organization_id
     WHERE r.id = repo_id AND t.name = teamname
$$;

-- GET .../permissions/team/{teamname}: Quay answers {"role"} only.
CREATE FUNCTION quay_api_repo_team_permission_get(ctx jsonb, args jsonb,
                                                  body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_repo  bigint;
    v_role  text;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT ro.name INTO v_role
      FROM repositorypermission p
      JOIN role ro ON ro.id = p.role_id
     WHERE p.repository_id = v_repo
       AND p.team_id = quay_api_repo_team_id(v_repo, args->>'teamname');

    IF v_role IS NULL THEN
        RETURN quay_api_bad_request('Team does not have permission for repo.');
    END IF;

    RETURN quay_api_ok(jsonb_build_object('role', v_role));
END
$$;

CREATE FUNCTION quay_api_repo_team_permission_put(ctx jsonb, args jsonb,
                                                  body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
    v_r     repository;
    v_ns    "user";
    v_team  bigint;
    v_role  integer;
    v_old   integer;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    v_role := quay_api_repo_role_id(body);

    IF v_role IS NULL THEN
        RETURN quay_api_bad_request(
            'role is required: "read", "write" or "admin"');
    END IF;

    SELECT * INTO v_r FROM repository WHERE id = v_repo;
    SELECT * INTO v_ns FROM "user" WHERE id = v_r.namespace_user_id;

    v_team := quay_api_repo_team_id(v_repo, args->>'teamname');

    IF v_team IS NULL THEN
        RETURN quay_api_bad_request('No team ' || left(args->>'teamname', 255)
                                    || ' in organization '
                                    || v_ns.username);
    END IF;

    SELECT role_id INTO v_old FROM repositorypermission
     WHERE repository_id = v_repo AND team_id = v_team
       FOR UPDATE;

    INSERT INTO repositorypermission (team_id, repository_id, role_id)
    VALUES (v_team, v_repo, v_role)
    ON CONFLICT (team_id, repository_id)
    DO UPDATE SET role_id = EXCLUDED.role_id;

    PERFORM quay_api_log(ctx,
                         CASE WHEN v_old IS NULL THEN 'add_repo_permission'
                              ELSE 'change_repo_permission' END,
                         v_ns.id, v_repo,
                         jsonb_build_object('team', args->>'teamname',
                                            'repo', v_r.name,
                                            'role', body->>'role'));

    RETURN quay_api_ok(quay_api_repo_team_permission(v_repo, v_team));
END
$$;

CREATE FUNCTION quay_api_repo_team_permission_delete(ctx jsonb, args jsonb,
                                                     body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
    v_r     repository;
    v_team  bigint;
BEGIN
    v_repo := quay_api_repo_access(ctx, args->>'repository', 3);

    IF v_repo IS NULL THEN
        RETURN quay_api_repo_denied(ctx, args->>'repository', 3);
    END IF;

    SELECT * INTO v_r FROM repository WHERE id = v_repo;

    DELETE FROM repositorypermission
     WHERE repository_id = v_repo
       AND team_id = quay_api_repo_team_id(v_repo, args->>'teamname')
    RETURNING team_id INTO v_team;

    IF v_team IS NULL THEN
        RETURN quay_api_bad_request('Team does not have permission for repo.');
    END IF;

    PERFORM quay_api_log(ctx, 'delete_repo_permission',
                         v_r.namespace_user_id, v_repo,
                         jsonb_build_object('team', args->>'teamname',
                                            'repo', v_r.name));

    RETURN quay_api_empty(204);
END
$$;


-- Stars --------------------------------------------------------------------

-- GET /api/v1/user/starred: the caller's stars on repositories they may
-- still read (Quay lists every star; a star must not reveal a repository
-- the caller lost access to), 100 per page.
CREATE FUNCTION quay_api_repo_starred_list(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_start bigint := 0;
    v_ids   bigint[];
    v_next  text;
    v_items jsonb;
BEGIN
    IF COALESCE(args->>'next_page', '') <> '' THEN
        v_start := quay_api_repo_cursor_start(args->>'next_page');

        IF v_start IS NULL THEN
            RETURN quay_api_bad_request('Invalid next_page token');
        END IF;
    END IF;

    SELECT array_agg(id ORDER BY id) INTO v_ids
      FROM (SELECT r.id FROM star s
              JOIN repository r ON r.id = s.repository_id
             WHERE s.user_id = quay_api_user_id(ctx) AND r.state <> 3
               AND r.id > v_start AND quay_api_repo_can_read(ctx, r.id)
             ORDER BY r.id LIMIT 101) page;

    IF cardinality(v_ids) > 100 THEN
        v_ids := v_ids[1:100];
        v_next := quay_api_repo_cursor(v_ids[100]);
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
                        'namespace', ns.username,
                        'name', r.name,
                        'description', r.description,
                        'is_public', v.name = 'public')
                    ORDER BY r.id), '[]')
      INTO v_items
      FROM repository r
      JOIN "user" ns ON ns.id = r.namespace_user_id
      JOIN visibility v ON v.id = r.visibility_id
     WHERE r.id = ANY (v_ids);

    RETURN quay_api_ok(jsonb_build_object('repositories', v_items)
                       || CASE WHEN v_next IS NULL THEN '{}'::jsonb
                               ELSE jsonb_build_object('next_page', v_next)
                               END);
END
$$;

-- POST /api/v1/user/starred {namespace, repository}: 201, also when the
-- star was there.  Quay stars any existing repository; here the caller
-- must be able to read it, and anything else is 404, so starring is no
-- existence oracle.  Quay also requires repo:read besides user:admin.
CREATE FUNCTION quay_api_repo_star(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
BEGIN
    IF jsonb_typeof(body->'namespace') IS DISTINCT FROM 'string'
       OR jsonb_typeof(body->'repository') IS DISTINCT FROM 'string'
    THEN
        RETURN quay_api_bad_request(
            'namespace and repository are required (strings)');
    END IF;

    IF NOT quay_api_has_scope(ctx, 'repo:read') THEN
        RETURN quay_api_forbidden('The access token lacks the scope this '
                                  || 'operation requires');
    END IF;

    v_repo := quay_api_repo_access(ctx, (body->>'namespace') || '/'
                                        || (body->>'repository'), 1);

    IF v_repo IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    INSERT INTO star (user_id, repository_id)
    VALUES (quay_api_user_id(ctx), v_repo)
    ON CONFLICT (user_id, repository_id) DO NOTHING;

    RETURN quay_api_ok(jsonb_build_object('namespace', body->>'namespace',
                                          'repository',
                                          body->>'repository'), 201);
END
$$;

-- DELETE /api/v1/user/starred/{repository}: 204 when the star is gone;
-- 404 when the repository is unknown, or unreadable and not starred.
CREATE FUNCTION quay_api_repo_unstar(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    v_repo  bigint;
BEGIN
    v_repo := quay_repository_id(args->>'repository');

    IF v_repo IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    DELETE FROM star
     WHERE user_id = quay_api_user_id(ctx) AND repository_id = v_repo;

    IF NOT FOUND AND NOT quay_api_repo_can_read(ctx, v_repo) THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_empty(204);
END
$$;
