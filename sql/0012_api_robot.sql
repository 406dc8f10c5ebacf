-- 0012_api_robot: robot accounts and app-specific tokens in /api/v1
-- (endpoints/api/robot.py, endpoints/api/appspecifictokens.py;
-- quay-behaviour.md 1.1, 3.3, 10).
--
-- Why: automation logs in to the registry without a person's password,
-- as a robot account ("namespace+short", a 64-character token) or with an
-- app-specific token ("$app", 120 characters).  These are the functions
-- behind the routes of lib/quay_api_robot.def and the apptoken rows of
-- lib/quay_api_user.def; /v2/auth checks the credentials
-- (ngx_http_quay_token.c).
--
-- Secrets never come from SQL: the module generates each token and passes
-- it twice in args, as plaintext (gen_token, shown once in the answer) and
-- encrypted (gen_token_enc, stored).  Reading a stored token back goes
-- through quay_api_secret(), which the module decrypts on the way out.
--
-- Who may do what (Quay's decorators):
--   /user/robots...          the caller, on its own namespace (user:admin)
--   /organization/{o}/robots list: any member (tokens only for admins);
--                            one robot and its permissions: admins;
--                            create, delete, regenerate: admins.
--   Superusers with FEATURE_SUPERUSERS_FULL_ACCESS act as admins;
--   GLOBAL_READONLY_SUPER_USERS read without tokens.
-- An outsider gets 403 whether or not the organization exists.  A robot
-- that does not exist is Quay's 400 "Could not find robot with username".


-- Quay's truthy_bool for query parameters: anything but a few spellings
-- of false; dflt when the parameter is absent.
CREATE FUNCTION quay_api_robot_truthy(v text, dflt boolean)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN v IS NULL THEN dflt
                ELSE v NOT IN ('false', 'False', 'FALSE', '0', '', 'null',
                               'no', 'off')
           END
$$;


-- The namespace a robot route works on, and whether the caller may do
-- need there: 'list' (see the robots), 'view' (one robot, its
-- permissions) or 'admin' (change them).  err is set (status not null)
-- when the caller may not; see_tokens says whether tokens may be shown.
CREATE FUNCTION quay_api_robot_scope(ctx jsonb, args jsonb, need text,
    OUT ns_id bigint, OUT ns_name text, OUT see_tokens boolean,
    OUT err quay_api_result)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    org         text := args->>'orgname';
    role        integer;
    full_super  boolean;
    readonly    boolean;
BEGIN
    see_tokens := false;

    IF quay_api_user_id(ctx) IS NULL THEN
        err := quay_api_err(401, 'invalid_token', 'Requires authentication');
        RETURN;
    END IF;

    IF COALESCE((ctx->>'robot')::boolean, false) THEN
        err := quay_api_forbidden();
        RETURN;
    END IF;

    IF org IS NULL THEN
        SELECT u.id, u.username INTO ns_id, ns_name
          FROM "user" u
         WHERE u.id = quay_api_user_id(ctx)
           AND NOT u.organization AND NOT u.robot;

        IF NOT FOUND THEN
            err := quay_api_forbidden();
            RETURN;
        END IF;

        see_tokens := true;
        RETURN;
    END IF;

    full_super := quay_api_is_superuser(ctx)
        AND COALESCE((ctx->'config'->>'superusers_full_access')::boolean,
                     false);
    readonly := quay_api_is_readonly_superuser(ctx);

    SELECT u.id, u.username INTO ns_id, ns_name
      FROM "user" u WHERE u.username = org AND u.organization;

    IF NOT FOUND THEN
        ns_id := NULL;
        ns_name := NULL;
        -- only those who see every organization learn that it is missing
        IF full_super OR readonly THEN
            err := quay_api_not_found();
        ELSE
            err := quay_api_forbidden();
        END IF;
        RETURN;
    END IF;

    role := quay_api_org_role(ctx, ns_id);
    see_tokens := role = 3 OR full_super;

    IF (need = 'admin' AND NOT (role = 3 OR full_super))
       OR (need = 'view' AND NOT (role = 3 OR full_super OR readonly))
       OR (need = 'list' AND NOT (role >= 1 OR full_super OR readonly))
    THEN
        ns_id := NULL;
        ns_name := NULL;
        see_tokens := false;
        err := quay_api_forbidden();
    END IF;
END
$$;


-- The robot ns_name+short, or NULL: short must be a valid short name.
CREATE FUNCTION quay_api_robot_find(ns_name text, short text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT u.id FROM "user" u
     WHERE u.username = ns_name || '+' || short AND u.robot
       AND short ~ '^[a-z][a-z0-9_]{1,254}$'
$$;


CREATE FUNCTION quay_api_robot_missing(ns_name text, short text)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_bad_request('Could not find robot with username: '
                                || ns_name || '+' || COALESCE(short, ''))
$$;


-- Quay's robot view: name, created, last_accessed, description, then the
-- token (encrypted: the route decrypts it) and the metadata when asked.
CREATE FUNCTION quay_api_robot_view(robot_id bigint, with_token boolean,
                                    with_metadata boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'name', u.username,
               'created', quay_api_date(u.creation_date),
               'last_accessed', quay_api_date(u.last_accessed),
               'description', COALESCE(m.description, ''))
           || CASE WHEN with_token THEN jsonb_build_object('token',
                  CASE WHEN t.token IS NULL THEN NULL
                       ELSE quay_api_secret('robotaccounttoken.token', '',
                                            t.token) END)
              ELSE '{}'::jsonb END
           || CASE WHEN with_metadata THEN jsonb_build_object(
                  'unstructured_metadata',
                  COALESCE(m.unstructured_json, '{}'::jsonb))
              ELSE '{}'::jsonb END
      FROM "user" u
      LEFT JOIN robotaccountmetadata m ON m.robot_account_id = u.id
      LEFT JOIN robotaccounttoken t ON t.robot_account_id = u.id
     WHERE u.id = robot_id
$$;


-- GET /user/robots, /organization/{orgname}/robots
-- ?token (default true; shown to those allowed only), ?permissions
-- (default false: teams and repositories of each robot), ?limit.
CREATE FUNCTION quay_api_robot_list(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    s           record;
    tokens      boolean;
    perms       boolean;
    lim         bigint;
    robots      jsonb;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'list');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    IF args ? 'limit' THEN
        IF args->>'limit' !~ '^[0-9]{1,9}$' THEN
            RETURN quay_api_bad_request('limit must be a whole number');
        END IF;
        lim := (args->>'limit')::bigint;
    END IF;

    tokens := s.see_tokens AND quay_api_robot_truthy(args->>'token', true);
    -- organization members who are not admins see no permissions
    perms := quay_api_robot_truthy(args->>'permissions', false)
        AND (s.see_tokens OR quay_api_is_readonly_superuser(ctx));

    SELECT COALESCE(jsonb_agg(x.robot ORDER BY x.n), '[]'::jsonb)
      INTO robots
      FROM (SELECT row_number() OVER (ORDER BY u.last_accessed DESC
                                      NULLS LAST, u.username) AS n,
                   quay_api_robot_view(u.id, tokens, true)
                   || CASE WHEN perms THEN jsonb_build_object(
                          'teams', COALESCE((
                              SELECT jsonb_agg(jsonb_build_object(
                                         'name', t.name,
                                         'avatar', quay_api_avatar(t.name,
                                                                   'team'))
                                         ORDER BY t.name)
                                FROM teammember tm
                                JOIN team t ON t.id = tm.team_id
                               WHERE tm.user_id = u.id), '[]'::jsonb),
                          'repositories', COALESCE((
                              SELECT jsonb_agg(DISTINCT r.name)
                                FROM repositorypermission p
                                JOIN repository r ON r.id = p.repository_id
                               WHERE p.user_id = u.id AND r.state <> 3),
                              '[]'::jsonb))
                      ELSE '{}'::jsonb END AS robot
              FROM "user" u
             WHERE u.robot AND starts_with(u.username, s.ns_name || '+')
             ORDER BY u.last_accessed DESC NULLS LAST, u.username
             LIMIT lim) x;

    RETURN quay_api_ok(jsonb_build_object('robots', robots));
END
$$;


-- GET .../robots/{robot_shortname}
CREATE FUNCTION quay_api_robot_get(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    s       record;
    rid     bigint;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'view');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    rid := quay_api_robot_find(s.ns_name, args->>'robot_shortname');
    IF rid IS NULL THEN
        RETURN quay_api_robot_missing(s.ns_name, args->>'robot_shortname');
    END IF;

    RETURN quay_api_ok(quay_api_robot_view(rid, s.see_tokens, true));
END
$$;


-- PUT .../robots/{robot_shortname}, body {description?,
-- unstructured_metadata?}: 201 with the new token (data/model/user.py:
-- create_robot: the user row, its token, its federated login
-- "quayrobot"/"robot:<id>" and its metadata).
CREATE FUNCTION quay_api_robot_create(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    s           record;
    short       text := args->>'robot_shortname';
    robot_name  text;
    descr       text := '';
    meta        jsonb := '{}';
    rid         bigint;
    created     timestamptz;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'admin');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    IF short IS NULL OR short !~ '^[a-z][a-z0-9_]{1,254}$' THEN
        RETURN quay_api_bad_request('Invalid robot account name: it must '
            || 'match ^[a-z][a-z0-9_]{1,254}$');
    END IF;

    robot_name := s.ns_name || '+' || short;

    IF length(robot_name) > 255 THEN
        RETURN quay_api_bad_request('The robot account name is longer than '
                                    || '255 characters with its namespace');
    END IF;

    IF body ? 'description' AND jsonb_typeof(body->'description') <> 'null'
    THEN
        IF jsonb_typeof(body->'description') <> 'string' THEN
            RETURN quay_api_bad_request('description must be a string');
        END IF;
        descr := body->>'description';
        IF length(descr) > 255 THEN
            RETURN quay_api_bad_request(
                'description is longer than 255 characters');
        END IF;
    END IF;

    IF body ? 'unstructured_metadata'
       AND jsonb_typeof(body->'unstructured_metadata') <> 'null'
    THEN
        IF jsonb_typeof(body->'unstructured_metadata') <> 'object' THEN
            RETURN quay_api_bad_request(
                'unstructured_metadata must be an object');
        END IF;
        meta := body->'unstructured_metadata';
    END IF;

    IF EXISTS (SELECT 1 FROM "user" u WHERE u.username = robot_name) THEN
        RETURN quay_api_bad_request('Existing robot with name: '
                                    || robot_name);
    END IF;

    INSERT INTO "user" (uuid, username, email, robot, verified)
    VALUES (gen_random_uuid()::text, robot_name, gen_random_uuid()::text,
            true, true)
    RETURNING id, creation_date INTO rid, created;

    INSERT INTO robotaccounttoken (robot_account_id, token, fully_migrated)
    VALUES (rid, args->>'gen_token_enc', true);

    INSERT INTO federatedlogin (user_id, service_id, service_ident)
    SELECT rid, l.id, 'robot:' || rid
      FROM loginservice l WHERE l.name = 'quayrobot';

    INSERT INTO robotaccountmetadata (robot_account_id, description,
                                      unstructured_json)
    VALUES (rid, descr, meta);

    PERFORM quay_api_log(ctx, 'create_robot', s.ns_id, NULL,
                         jsonb_build_object('robot', short,
                                            'description', descr,
                                            'unstructured_metadata', meta));

    RETURN quay_api_ok(jsonb_build_object(
        'name', robot_name,
        'created', quay_api_date(created),
        'last_accessed', NULL,
        'description', descr,
        'token', args->>'gen_token',
        'unstructured_metadata', meta), 201);

EXCEPTION WHEN unique_violation THEN
    -- a concurrent create of the same name won
    RETURN quay_api_bad_request('Existing robot with name: ' || robot_name);
END
$$;


-- POST .../robots/{robot_shortname}/regenerate: a new token; the old one
-- stops working at once.
CREATE FUNCTION quay_api_robot_regenerate(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    s       record;
    rid     bigint;
    answer  jsonb;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'admin');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    rid := quay_api_robot_find(s.ns_name, args->>'robot_shortname');
    IF rid IS NULL THEN
        RETURN quay_api_robot_missing(s.ns_name, args->>'robot_shortname');
    END IF;

    INSERT INTO robotaccounttoken (robot_account_id, token, fully_migrated)
    VALUES (rid, args->>'gen_token_enc', true)
    ON CONFLICT (robot_account_id)
    DO UPDATE SET token = EXCLUDED.token, fully_migrated = true;

    UPDATE "user" SET uuid = gen_random_uuid()::text WHERE id = rid;

    PERFORM quay_api_log(ctx, 'regenerate_robot_token', s.ns_id, NULL,
                         jsonb_build_object('robot',
                                            args->>'robot_shortname'));

    answer := quay_api_robot_view(rid, false, false)
            || jsonb_build_object('token', args->>'gen_token');

    RETURN quay_api_ok(answer);
END
$$;


-- DELETE .../robots/{robot_shortname}: the robot row; its token,
-- metadata, federated login, repository permissions and team memberships
-- go with it (ON DELETE CASCADE).  A robot a mirror pushes with stays.
CREATE FUNCTION quay_api_robot_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    s       record;
    rid     bigint;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'admin');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    rid := quay_api_robot_find(s.ns_name, args->>'robot_shortname');
    IF rid IS NULL THEN
        RETURN quay_api_robot_missing(s.ns_name, args->>'robot_shortname');
    END IF;

    IF EXISTS (SELECT 1 FROM repomirrorconfig m
                WHERE m.internal_robot_id = rid)
    THEN
        RETURN quay_api_bad_request('Robot is being used by a mirror');
    END IF;

    DELETE FROM "user" WHERE id = rid;

    PERFORM quay_api_log(ctx, 'delete_robot', s.ns_id, NULL,
                         jsonb_build_object('robot',
                                            args->>'robot_shortname'));

    RETURN quay_api_empty(204);
END
$$;


-- GET .../robots/{robot_shortname}/permissions: the robot's own
-- repository grants (data/model/permission.py: list_robot_permissions).
CREATE FUNCTION quay_api_robot_permissions(ctx jsonb, args jsonb,
                                           body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    s       record;
    rid     bigint;
    perms   jsonb;
BEGIN
    SELECT * INTO s FROM quay_api_robot_scope(ctx, args, 'view');
    IF (s.err).status IS NOT NULL THEN
        RETURN s.err;
    END IF;

    rid := quay_api_robot_find(s.ns_name, args->>'robot_shortname');
    IF rid IS NULL THEN
        RETURN quay_api_robot_missing(s.ns_name, args->>'robot_shortname');
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'repository', jsonb_build_object(
                   'name', r.name,
                   'is_public', v.name = 'public'),
               'role', ro.name) ORDER BY r.name), '[]'::jsonb)
      INTO perms
      FROM repositorypermission p
      JOIN repository r ON r.id = p.repository_id
      JOIN visibility v ON v.id = r.visibility_id
      JOIN role ro ON ro.id = p.role_id
     WHERE p.user_id = rid AND r.state <> 3;

    RETURN quay_api_ok(jsonb_build_object('permissions', perms));
END
$$;


-- App-specific tokens ------------------------------------------------------

-- The caller for an apptoken route: a user (not a robot or an
-- organization), with the feature on (Quay's show_if: else 404).
CREATE FUNCTION quay_api_user_apptoken_caller(ctx jsonb,
    OUT user_id bigint, OUT err quay_api_result)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF NOT COALESCE((ctx->'config'->>'app_specific_tokens')::boolean, true)
    THEN
        err := quay_api_not_found();
        RETURN;
    END IF;

    SELECT u.id INTO user_id FROM "user" u
     WHERE u.id = quay_api_user_id(ctx)
       AND NOT u.robot AND NOT u.organization;

    IF NOT FOUND THEN
        err := quay_api_forbidden();
    END IF;
END
$$;


-- Quay's token_view (no secret).
CREATE FUNCTION quay_api_user_apptoken_view(a appspecificauthtoken)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'uuid', a.uuid,
        'title', a.title,
        'last_accessed', quay_api_date(a.last_accessed),
        'created', quay_api_date(a.created),
        'expiration', quay_api_date(a.expiration))
$$;


-- GET /user/apptoken[?expiring=true]: expiring means within a tenth of
-- Quay's default window of four weeks (APP_SPECIFIC_TOKEN_EXPIRATION is
-- not configurable here, so tokens never expire unless the database says
-- so).
CREATE FUNCTION quay_api_user_apptoken_list(ctx jsonb, args jsonb,
                                            body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    c           record;
    expiring    boolean := quay_api_robot_truthy(args->>'expiring', false);
    tokens      jsonb;
BEGIN
    SELECT * INTO c FROM quay_api_user_apptoken_caller(ctx);
    IF (c.err).status IS NOT NULL THEN
        RETURN c.err;
    END IF;

    SELECT COALESCE(jsonb_agg(quay_api_user_apptoken_view(a)
                              ORDER BY a.created, a.id), '[]'::jsonb)
      INTO tokens
      FROM appspecificauthtoken a
     WHERE a.user_id = c.user_id
       AND (NOT expiring
            OR (a.expiration > now()
                AND a.expiration <= now() + interval '241920 seconds'));

    RETURN quay_api_ok(jsonb_build_object(
        'tokens', tokens,
        'only_expiring', CASE WHEN args ? 'expiring' THEN to_jsonb(expiring)
                              ELSE 'null'::jsonb END));
END
$$;


-- POST /user/apptoken {title}: the token code (gen_name || gen_token) is
-- in this answer and in GET /user/apptoken/{uuid}, nowhere else.
CREATE FUNCTION quay_api_user_apptoken_create(ctx jsonb, args jsonb,
                                              body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    c       record;
    a       appspecificauthtoken;
BEGIN
    SELECT * INTO c FROM quay_api_user_apptoken_caller(ctx);
    IF (c.err).status IS NOT NULL THEN
        RETURN c.err;
    END IF;

    IF jsonb_typeof(body->'title') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request('title is required and must be a '
                                    || 'string');
    END IF;

    IF length(body->>'title') > 255 THEN
        RETURN quay_api_bad_request('title is longer than 255 characters');
    END IF;

    INSERT INTO appspecificauthtoken (user_id, title, token_name,
                                      token_secret)
    VALUES (c.user_id, body->>'title', args->>'gen_name',
            args->>'gen_token_enc')
    RETURNING * INTO a;

    PERFORM quay_api_log(ctx, 'create_app_specific_token', c.user_id, NULL,
                         jsonb_build_object('app_specific_token_title',
                                            a.title,
                                            'app_specific_token', a.uuid));

    RETURN quay_api_ok(jsonb_build_object('token',
        quay_api_user_apptoken_view(a)
        || jsonb_build_object('token_code',
                              a.token_name || (args->>'gen_token'))));
END
$$;


-- GET /user/apptoken/{token_uuid}: an unexpired token of the caller, with
-- its code; anything else is 404.
CREATE FUNCTION quay_api_user_apptoken_get(ctx jsonb, args jsonb,
                                           body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    c       record;
    a       appspecificauthtoken;
BEGIN
    SELECT * INTO c FROM quay_api_user_apptoken_caller(ctx);
    IF (c.err).status IS NOT NULL THEN
        RETURN c.err;
    END IF;

    SELECT * INTO a FROM appspecificauthtoken t
     WHERE t.uuid = args->>'token_uuid' AND t.user_id = c.user_id
       AND (t.expiration IS NULL OR t.expiration > now());

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_ok(jsonb_build_object('token',
        quay_api_user_apptoken_view(a)
        || jsonb_build_object('token_code',
               quay_api_secret('appspecificauthtoken.token_secret',
                               a.token_name, a.token_secret))));
END
$$;


-- DELETE /user/apptoken/{token_uuid}: revoked at once (the row goes).
CREATE FUNCTION quay_api_user_apptoken_delete(ctx jsonb, args jsonb,
                                              body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    c       record;
    a       appspecificauthtoken;
BEGIN
    SELECT * INTO c FROM quay_api_user_apptoken_caller(ctx);
    IF (c.err).status IS NOT NULL THEN
        RETURN c.err;
    END IF;

    DELETE FROM appspecificauthtoken t
     WHERE t.uuid = args->>'token_uuid' AND t.user_id = c.user_id
    RETURNING * INTO a;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    PERFORM quay_api_log(ctx, 'revoke_app_specific_token', c.user_id, NULL,
                         jsonb_build_object('app_specific_token_title',
                                            a.title,
                                            'app_specific_token', a.uuid));

    RETURN quay_api_empty(204);
END
$$;
