-- 0015_api_superuser: the superuser panel's user and organization routes
-- (endpoints/api/superuser.py) and the audit log routes
-- (endpoints/api/logs.py, superuser.py: SuperUserLogs).
--
-- Why: an administrator manages accounts without database access (create
-- a user with a generated password, disable, re-enable, change the e-mail,
-- delete), and every namespace owner reads what happened in it.  Both
-- are Quay's routes with Quay's shapes, so Quay's UI and scripts work.
--
-- Superusers are not a database flag in Quay: they are the SUPER_USERS
-- (and GLOBAL_READONLY_SUPER_USERS) lists of config.yaml.  The module
-- passes both lists in ctx->'config' as "super_user_names" and
-- "readonly_super_user_names"; quayctl superuser add/remove edits them.
--
-- Deviations from Quay, on purpose:
--   * DELETE of a user who still owns repositories is a 400: Quay marks the
--     namespace and lets a namespace GC worker purge it, which this
--     registry does not have yet.  An empty namespace is deleted at once.
--   * PUT with "password" is a 400 (a hash cannot be made in SQL: use
--     quayctl user passwd); "superuser" is a 400 (SUPER_USERS is a file:
--     use quayctl superuser add).  Quay honours both.
--   * The generated password is 24 characters (Quay: 32) and there is no
--     "encrypted_password" (Quay's Fernet-encrypted docker login secret).
--   * Logs: a malformed starttime or endtime is a 400 (Quay silently uses
--     its default), and a window longer than 31 days is a 400 (Quay's
--     MAXIMUM_RANGE_SIZE, which Quay applies to aggregated counts only).
--   * next_page is an opaque base64url cursor over (datetime, id), not a
--     Fernet token: it carries only a position, and every page is still
--     filtered by the caller's rights, so it needs no secrecy.


-- Helpers ------------------------------------------------------------------

-- Whether name is in SUPER_USERS (usermanager.is_superuser).
CREATE FUNCTION quay_api_superuser_listed(ctx jsonb, name text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(ctx->'config'->'super_user_names' ? name, false)
$$;

-- Whether name is in GLOBAL_READONLY_SUPER_USERS.
CREATE FUNCTION quay_api_superuser_readonly_listed(ctx jsonb, name text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(ctx->'config'->'readonly_super_user_names' ? name,
                    false)
$$;

-- The caller's access to the superuser panel: NULL (status NULL) when
-- allowed, else the error to return.  Reads (allow_if_any_superuser) are
-- open to read-only superusers too; changes (SuperUserPermission) only to
-- superusers acting as one (super:user).  FEATURE_SUPER_USERS off: the
-- routes do not exist (Quay's show_if).
CREATE FUNCTION quay_api_superuser_check(ctx jsonb, change boolean)
RETURNS quay_api_result LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF NOT COALESCE((ctx->'config'->>'super_users')::boolean, true) THEN
        RETURN quay_api_not_found();
    END IF;

    IF quay_api_is_superuser(ctx) THEN
        RETURN NULL;
    END IF;

    IF NOT change AND quay_api_is_readonly_superuser(ctx)
       AND quay_api_has_scope(ctx, 'super:user')
    THEN
        RETURN NULL;
    END IF;

    RETURN quay_api_forbidden();
END
$$;

-- Quay's superuser user view (superuser_models_interface.py: User.to_dict).
CREATE FUNCTION quay_api_superuser_user_view(ctx jsonb, u "user")
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object(
        'kind', 'user',
        'name', u.username,
        'username', u.username,
        'email', u.email,
        'verified', u.verified,
        'avatar', quay_api_avatar(u.username, 'user'),
        'super_user', quay_api_superuser_listed(ctx, u.username),
        'global_readonly_super_user',
            quay_api_superuser_readonly_listed(ctx, u.username),
        'enabled', u.enabled)
$$;

-- Quay's util/validation.py validate_email: one "@", a non-empty local
-- part and a domain of at least two non-empty labels, 254 characters at
-- most.
CREATE FUNCTION quay_api_superuser_email_valid(email text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT email IS NOT NULL AND length(email) BETWEEN 1 AND 254
       AND email ~ '^[^@]+@[^@.]+(\.[^@.]+)+$'
$$;

-- An opaque page cursor: payload in base64url without padding.
CREATE FUNCTION quay_api_log_cursor_encode(payload text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT rtrim(translate(encode(convert_to(payload, 'UTF8'), 'base64'),
                           E'+/\n', '-_'), '=')
$$;

-- The payload of a cursor, or NULL when it is not one of ours.
CREATE FUNCTION quay_api_log_cursor_decode(token text)
RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF token IS NULL OR token !~ '^[A-Za-z0-9_-]{2,200}$' THEN
        RETURN NULL;
    END IF;

    RETURN convert_from(decode(translate(token, '-_', '+/')
                               || repeat('=', (4 - length(token) % 4) % 4),
                               'base64'), 'UTF8');
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The ?limit= and ?next_page= of the superuser lists (Quay: limit at most
-- 100; no limit, no paging).  Sets error for a bad value.
CREATE FUNCTION quay_api_superuser_paging(args jsonb,
    OUT page_limit integer, OUT after_id bigint, OUT error text)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    payload text;
BEGIN
    IF args->>'limit' IS NULL THEN
        RETURN;
    END IF;

    IF args->>'limit' !~ '^[0-9]{1,9}$' THEN
        error := 'limit must be an integer';
        RETURN;
    END IF;

    page_limit := (args->>'limit')::integer;

    IF page_limit > 100 THEN
        error := 'Page limit cannot be above 100';
        RETURN;
    END IF;

    IF page_limit < 1 THEN
        error := 'Page limit must be at least 1';
        RETURN;
    END IF;

    IF COALESCE(args->>'next_page', '') <> '' THEN
        payload := quay_api_log_cursor_decode(args->>'next_page');

        IF payload IS NULL OR payload !~ '^id:[0-9]{1,18}$' THEN
            error := 'Invalid next_page token';
            RETURN;
        END IF;

        after_id := substr(payload, 4)::bigint;
    END IF;
END
$$;


-- Superuser: users ---------------------------------------------------------

-- GET /api/v1/superuser/users/ (SuperUserList.get): every user, disabled
-- ones too unless ?disabled=false, without robots, organizations and
-- namespaces being deleted.
CREATE FUNCTION quay_api_superuser_user_list(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    denied          quay_api_result;
    paging          record;
    with_disabled   boolean;
    users           jsonb;
    last_id         bigint;
    n               integer;
BEGIN
    denied := quay_api_superuser_check(ctx, false);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    paging := quay_api_superuser_paging(args);
    IF paging.error IS NOT NULL THEN
        RETURN quay_api_bad_request(paging.error);
    END IF;

    -- Quay's truthy_bool
    with_disabled := COALESCE(args->>'disabled', 'true')
                     NOT IN ('false', 'False', 'FALSE', '0', '', 'null');

    SELECT COALESCE(jsonb_agg(quay_api_superuser_user_view(ctx, s.u)
                              ORDER BY s.id), '[]'),
           max(s.id), count(*)
      INTO users, last_id, n
      FROM (SELECT x AS u, x.id FROM "user" x
             WHERE NOT x.organization AND NOT x.robot
               AND (with_disabled OR x.enabled)
               AND (paging.after_id IS NULL OR x.id > paging.after_id)
               AND NOT EXISTS (SELECT 1 FROM deletednamespace d
                                WHERE d.namespace_id = x.id)
             ORDER BY x.id
             LIMIT paging.page_limit) s;

    IF paging.page_limit IS NOT NULL AND n = paging.page_limit
       AND EXISTS (SELECT 1 FROM "user" x
                    WHERE NOT x.organization AND NOT x.robot
                      AND (with_disabled OR x.enabled) AND x.id > last_id
                      AND NOT EXISTS (SELECT 1 FROM deletednamespace d
                                       WHERE d.namespace_id = x.id))
    THEN
        RETURN quay_api_ok(jsonb_build_object(
            'users', users,
            'next_page', quay_api_log_cursor_encode('id:' || last_id)));
    END IF;

    RETURN quay_api_ok(jsonb_build_object('users', users));
END
$$;

-- POST /api/v1/superuser/users/ (SuperUserList.post): a user with a
-- password generated by the module (QUAY_API_F_GEN_PASSWORD: gen_token in
-- the clear, gen_password_hash in lib/quay_password's format).  Only
-- username and email are read from the body: super_user, enabled, role,
-- password and anything else a client sends are ignored (security
-- catalogue #32).  No mail is sent, so the account is verified at once
-- and an e-mail address is optional (Quay with FEATURE_MAILING off: a
-- random UUID stands in for it).
CREATE FUNCTION quay_api_superuser_user_create(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    denied      quay_api_result;
    new_name    text;
    new_email   text;
    existing    "user";
    new_id      bigint;
BEGIN
    denied := quay_api_superuser_check(ctx, true);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    IF jsonb_typeof(body->'username') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request(
            'username is required and must be a string');
    END IF;

    new_name := body->>'username';

    IF length(new_name) > 255 THEN
        RETURN quay_api_bad_request(
            'Invalid namespace: Namespace must be between 2 and 255 '
            || 'characters in length');
    END IF;

    IF new_name !~ '^([a-z0-9]+(?:[._-][a-z0-9]+)*)$' THEN
        RETURN quay_api_bad_request(
            'Invalid namespace ' || new_name || ': Namespace must match '
            || 'expression ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$');
    END IF;

    IF length(new_name) < 2 THEN
        RETURN quay_api_bad_request(
            'Invalid namespace ' || new_name || ': Namespace must be between '
            || '2 and 255 characters in length');
    END IF;

    IF body ? 'email' AND jsonb_typeof(body->'email') <> 'null' THEN
        IF jsonb_typeof(body->'email') <> 'string' THEN
            RETURN quay_api_bad_request('email must be a string');
        END IF;

        new_email := body->>'email';

        IF NOT quay_api_superuser_email_valid(new_email) THEN
            RETURN quay_api_bad_request('Invalid email address: '
                                        || left(new_email, 254));
        END IF;

        IF EXISTS (SELECT 1 FROM "user" u
                    WHERE u.email = new_email
                      AND NOT u.organization)
        THEN
            RETURN quay_api_bad_request('Email has already been used: '
                                        || new_email);
        END IF;
    END IF;

    SELECT * INTO existing FROM "user" u WHERE u.username = new_name;

    IF FOUND THEN
        IF existing.organization THEN
            RETURN quay_api_bad_request(
                'Username has already been taken by an organization and '
                || 'cannot be reused: ' || new_name);
        END IF;

        RETURN quay_api_bad_request(
            'Username has already been taken by user cannot be reused: '
            || new_name);
    END IF;

    IF EXISTS (SELECT 1 FROM deletednamespace d
                WHERE d.original_username = new_name)
    THEN
        RETURN quay_api_bad_request('Username is not available');
    END IF;

    IF args->>'gen_token' IS NULL OR args->>'gen_password_hash' IS NULL THEN
        RAISE EXCEPTION 'quay_api_superuser_user_create: no generated '
                        'password (route lacks QUAY_API_F_GEN_PASSWORD)';
    END IF;

    INSERT INTO "user" (uuid, username, password_hash, email, verified,
                        enabled, removed_tag_expiration_s)
    VALUES (gen_random_uuid()::text, new_name, args->>'gen_password_hash',
            COALESCE(new_email, gen_random_uuid()::text), true, true,
            COALESCE((ctx->'config'->>'default_tag_expiration_s')::bigint,
                     1209600))
    RETURNING id INTO new_id;

    PERFORM quay_api_log(ctx, 'user_create', new_id, NULL,
                         jsonb_build_object('email', new_email,
                                            'username', new_name,
                                            'superuser', ctx->>'username'));

    RETURN quay_api_ok(jsonb_build_object(
        'username', new_name,
        'email', new_email,
        'password', args->>'gen_token'));
END
$$;

-- GET /api/v1/superuser/users/{username} (SuperUserManagement.get).
CREATE FUNCTION quay_api_superuser_user_get(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    denied  quay_api_result;
    u       "user";
BEGIN
    denied := quay_api_superuser_check(ctx, false);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    SELECT * INTO u FROM "user" x
     WHERE x.username = args->>'username'
       AND NOT x.organization AND NOT x.robot;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_ok(quay_api_superuser_user_view(ctx, u));
END
$$;

-- PUT /api/v1/superuser/users/{username} (SuperUserManagement.put):
-- {"enabled": bool} and {"email": s}.  A superuser cannot be changed
-- (Quay: "Cannot update a superuser"), so nobody disables themselves.
-- Everything is validated before anything changes.  Disabling takes
-- effect at once: /v2/auth and the API token lookup both read
-- user.enabled.
CREATE FUNCTION quay_api_superuser_user_update(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    denied      quay_api_result;
    u           "user";
    new_email   text;
BEGIN
    denied := quay_api_superuser_check(ctx, true);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    SELECT * INTO u FROM "user" x
     WHERE x.username = args->>'username'
       AND NOT x.organization AND NOT x.robot
     FOR UPDATE;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    IF quay_api_superuser_listed(ctx, u.username) THEN
        RETURN quay_api_bad_request('Cannot update a superuser');
    END IF;

    IF body ? 'superuser' OR body ? 'super_user' THEN
        RETURN quay_api_bad_request(
            'Superusers are the SUPER_USERS list of config.yaml: use '
            || 'quayctl superuser add or remove');
    END IF;

    IF body ? 'password' THEN
        RETURN quay_api_bad_request(
            'A password cannot be set through the API here: use quayctl '
            || 'user passwd');
    END IF;

    IF body ? 'enabled' AND jsonb_typeof(body->'enabled') <> 'boolean' THEN
        RETURN quay_api_bad_request('enabled must be a boolean');
    END IF;

    IF body ? 'email' THEN
        IF jsonb_typeof(body->'email') <> 'string' THEN
            RETURN quay_api_bad_request('email must be a string');
        END IF;

        new_email := body->>'email';

        IF NOT quay_api_superuser_email_valid(new_email) THEN
            RETURN quay_api_bad_request('Invalid email address: '
                                        || left(new_email, 254));
        END IF;

        IF EXISTS (SELECT 1 FROM "user" x
                    WHERE x.email = new_email AND NOT x.organization
                      AND x.id <> u.id)
        THEN
            RETURN quay_api_bad_request('Email has already been used: '
                                        || new_email);
        END IF;

        UPDATE "user" SET email = new_email, verified = true
         WHERE id = u.id;

        PERFORM quay_api_log(ctx, 'user_change_email', u.id, NULL,
                             jsonb_build_object(
                                 'old_email', u.email,
                                 'email', new_email,
                                 'superuser', ctx->>'username'));
    END IF;

    IF body ? 'enabled' THEN
        UPDATE "user" SET enabled = (body->>'enabled')::boolean
         WHERE id = u.id;

        PERFORM quay_api_log(ctx,
                             CASE WHEN (body->>'enabled')::boolean
                                  THEN 'user_enable' ELSE 'user_disable'
                             END,
                             u.id, NULL,
                             jsonb_build_object(
                                 'username', u.username,
                                 'superuser', ctx->>'username'));
    END IF;

    SELECT * INTO u FROM "user" x WHERE x.id = u.id;

    RETURN quay_api_ok(quay_api_superuser_user_view(ctx, u));
END
$$;

-- DELETE /api/v1/superuser/users/{username} (SuperUserManagement.delete):
-- the user, their robots, and through ON DELETE CASCADE their team
-- memberships, repository permissions, OAuth applications and tokens,
-- app tokens, stars and notifications.  Repositories are not purged here
-- (see the header): a user who owns any is a 400.  The audit row keeps
-- the deleted id as its account (logentry has no foreign keys).
CREATE FUNCTION quay_api_superuser_user_delete(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    denied  quay_api_result;
    u       "user";
    repos   bigint;
BEGIN
    denied := quay_api_superuser_check(ctx, true);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    SELECT * INTO u FROM "user" x
     WHERE x.username = args->>'username'
       AND NOT x.organization AND NOT x.robot
     FOR UPDATE;

    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    IF quay_api_superuser_listed(ctx, u.username) THEN
        RETURN quay_api_bad_request('Cannot delete a superuser');
    END IF;

    SELECT count(*) INTO repos FROM repository r
     WHERE r.namespace_user_id = u.id;

    IF repos > 0 THEN
        RETURN quay_api_bad_request(
            'User ' || u.username || ' still owns ' || repos
            || ' repositories (including any being deleted): delete them '
            || 'first; this registry deletes only an empty namespace');
    END IF;

    IF EXISTS (SELECT 1 FROM repomirrorconfig m
                 JOIN "user" rb ON rb.id = m.internal_robot_id
                WHERE left(rb.username, length(u.username) + 1)
                      = u.username || '+')
    THEN
        RETURN quay_api_bad_request(
            'A robot of ' || u.username || ' mirrors a repository: '
            || 'change that mirror first');
    END IF;

    PERFORM quay_api_log(ctx, 'user_delete', u.id, NULL,
                         jsonb_build_object('username', u.username,
                                            'superuser', ctx->>'username'));

    DELETE FROM "user" x
     WHERE x.robot
       AND left(x.username, length(u.username) + 1) = u.username || '+';

    DELETE FROM "user" x WHERE x.id = u.id;

    RETURN quay_api_empty(204);
END
$$;


-- Superuser: organizations -------------------------------------------------

-- GET /api/v1/superuser/organizations/ (SuperUserOrganizationList.get).
CREATE FUNCTION quay_api_superuser_org_list(ctx jsonb, args jsonb,
    body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    denied  quay_api_result;
    paging  record;
    orgs    jsonb;
    last_id bigint;
    n       integer;
BEGIN
    denied := quay_api_superuser_check(ctx, false);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    paging := quay_api_superuser_paging(args);
    IF paging.error IS NOT NULL THEN
        RETURN quay_api_bad_request(paging.error);
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
                        'name', o.username,
                        'email', o.email,
                        'avatar', quay_api_avatar(o.username, 'org'))
                    ORDER BY o.id), '[]'),
           max(o.id), count(*)
      INTO orgs, last_id, n
      FROM (SELECT * FROM "user" x
             WHERE x.organization
               AND (paging.after_id IS NULL OR x.id > paging.after_id)
               AND NOT EXISTS (SELECT 1 FROM deletednamespace d
                                WHERE d.namespace_id = x.id)
             ORDER BY x.id
             LIMIT paging.page_limit) o;

    IF paging.page_limit IS NOT NULL AND n = paging.page_limit
       AND EXISTS (SELECT 1 FROM "user" x
                    WHERE x.organization AND x.id > last_id
                      AND NOT EXISTS (SELECT 1 FROM deletednamespace d
                                       WHERE d.namespace_id = x.id))
    THEN
        RETURN quay_api_ok(jsonb_build_object(
            'organizations', orgs,
            'next_page', quay_api_log_cursor_encode('id:' || last_id)));
    END IF;

    RETURN quay_api_ok(jsonb_build_object('organizations', orgs));
END
$$;


-- Logs ---------------------------------------------------------------------

-- A MM/DD/YYYY date (Quay's "%m/%d/%Y", one or two digits for month and
-- day), or NULL when s is not one.
CREATE FUNCTION quay_api_log_parse_date(s text)
RETURNS date LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF s !~ '^(0?[1-9]|1[0-2])/(0?[1-9]|[12][0-9]|3[01])/[0-9]{4}$' THEN
        RETURN NULL;
    END IF;

    RETURN make_date(split_part(s, '/', 3)::integer,
                     split_part(s, '/', 1)::integer,
                     split_part(s, '/', 2)::integer);
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$;

-- The window of a logs query (logs.py: _validate_logs_arguments), in UTC:
-- from starttime at 00:00 (default: now - 1 day) to the end of endtime's
-- day (default: now + 1 day), at most 31 days.  Sets error for a bad one.
CREATE FUNCTION quay_api_log_window(args jsonb,
    OUT start_time timestamptz, OUT end_time timestamptz, OUT error text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    d   date;
BEGIN
    start_time := now() - interval '1 day';
    end_time := now() + interval '1 day';

    IF COALESCE(args->>'starttime', '') <> '' THEN
        d := quay_api_log_parse_date(args->>'starttime');
        IF d IS NULL THEN
            error := 'Invalid starttime: expected MM/DD/YYYY';
            RETURN;
        END IF;
        start_time := d::timestamp AT TIME ZONE 'UTC';
    END IF;

    IF COALESCE(args->>'endtime', '') <> '' THEN
        d := quay_api_log_parse_date(args->>'endtime');
        IF d IS NULL THEN
            error := 'Invalid endtime: expected MM/DD/YYYY';
            RETURN;
        END IF;
        end_time := (d + 1)::timestamp AT TIME ZONE 'UTC';
    END IF;

    IF end_time < start_time THEN
        error := 'Invalid time span selected: endtime is before starttime';
    ELSIF end_time - start_time > interval '31 days' THEN
        error := 'Invalid date range for logs: at most 31 days';
    END IF;
END
$$;

-- Quay's log view (data/logs_model/datatypes.py: Log.to_dict).
CREATE FUNCTION quay_api_log_view(kind text, metadata jsonb, ip text,
    at_time timestamptz, performer text, performer_robot boolean,
    account text, account_org boolean, include_namespace boolean)
RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('kind', kind, 'metadata', metadata, 'ip', ip,
                              'datetime', quay_api_date(at_time))
        || CASE WHEN performer IS NULL THEN '{}'::jsonb
                ELSE jsonb_build_object('performer', jsonb_build_object(
                    'kind', 'user',
                    'name', performer,
                    'is_robot', performer_robot,
                    'avatar', quay_api_avatar(performer,
                                              CASE WHEN performer_robot
                                                   THEN 'robot'
                                                   ELSE 'user' END)))
           END
        || CASE WHEN NOT include_namespace OR account IS NULL
                THEN '{}'::jsonb
                ELSE jsonb_build_object('namespace', jsonb_build_object(
                    'kind', CASE WHEN account_org THEN 'org' ELSE 'user' END,
                    'name', account,
                    'avatar', quay_api_avatar(account,
                                              CASE WHEN account_org
                                                   THEN 'org'
                                                   ELSE 'user' END)))
           END
$$;

-- One page of logs, newest first, 20 a page (LOGS_PER_PAGE), for the
-- window in args and its ?next_page= cursor (the (datetime, id) of the
-- last entry returned; ties on datetime are ordered by id, so a walk
-- neither repeats nor skips an entry).  filter is 'all', 'repository'
-- (filter_id a repository) or 'account' (filter_id a namespace, with the
-- optional ?performer= and kinds to leave out).  The query is dynamic so
-- that each filter gets its own plan on its own index; every value is a
-- bound parameter.
CREATE FUNCTION quay_api_log_page(args jsonb, filter text, filter_id bigint,
    performer text, ignore_kinds text[], include_namespace boolean)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    win         record;
    payload     text;
    after_at    timestamptz;
    after_id    bigint;
    performer_id bigint;
    q           text;
    e           record;
    logs        jsonb := '[]';
    n           integer := 0;
    more        boolean := false;
    last_at     timestamptz;
    last_id     bigint;
    result      jsonb;
BEGIN
    win := quay_api_log_window(args);
    IF win.error IS NOT NULL THEN
        RETURN quay_api_bad_request(win.error);
    END IF;

    IF COALESCE(args->>'next_page', '') <> '' THEN
        payload := quay_api_log_cursor_decode(args->>'next_page');

        IF payload IS NULL
           OR payload !~ ('^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:'
                          || '[0-9]{2}\.[0-9]{6}\|[0-9]{1,18}$')
        THEN
            RETURN quay_api_bad_request('Invalid next_page token');
        END IF;

        BEGIN
            after_at := replace(split_part(payload, '|', 1), 'T', ' ')
                        ::timestamp AT TIME ZONE 'UTC';
        EXCEPTION WHEN others THEN
            RETURN quay_api_bad_request('Invalid next_page token');
        END;

        after_id := split_part(payload, '|', 2)::bigint;
    END IF;

    q := 'SELECT e.id, e.datetime, e.ip, e.metadata_json,'
         ' COALESCE(k.name, ''unknown'') AS kind,'
         ' p.username AS performer, p.robot AS performer_robot,'
         ' a.username AS account, a.organization AS account_org'
         ' FROM logentry e'
         ' LEFT JOIN logentrykind k ON k.id = e.kind_id'
         ' LEFT JOIN "user" p ON p.id = e.performer_id'
         ' LEFT JOIN "user" a ON a.id = e.account_id'
         ' WHERE e.datetime >= $1 AND e.datetime < $2';

    IF filter = 'repository' THEN
        q := q || ' AND e.repository_id = $3';
    ELSIF filter = 'account' THEN
        q := q || ' AND e.account_id = $3';
    ELSIF filter <> 'all' THEN
        RAISE EXCEPTION 'quay_api_log_page: unknown filter %', filter;
    END IF;

    IF COALESCE(performer, '') <> '' THEN
        -- an unknown performer matches nothing (Quay: an assertion, 500)
        SELECT u.id INTO performer_id FROM "user" u
         WHERE u.username = performer;
        q := q || ' AND e.performer_id = $4';
        performer_id := COALESCE(performer_id, -1);
    END IF;

    IF ignore_kinds IS NOT NULL THEN
        q := q || ' AND e.kind_id NOT IN (SELECT id FROM logentrykind'
                  ' WHERE name = ANY ($5))';
    END IF;

    IF after_at IS NOT NULL THEN
        q := q || ' AND (e.datetime, e.id) < ($6, $7)';
    END IF;

    q := q || ' ORDER BY e.datetime DESC, e.id DESC LIMIT 21';

    FOR e IN EXECUTE q USING win.start_time, win.end_time, filter_id,
                             performer_id, ignore_kinds, after_at, after_id
    LOOP
        n := n + 1;

        IF n > 20 THEN
            more := true;
            EXIT;
        END IF;

        logs := logs || jsonb_build_array(quay_api_log_view(
                    e.kind, e.metadata_json, e.ip, e.datetime, e.performer,
                    e.performer_robot, e.account, e.account_org,
                    include_namespace));
        last_at := e.datetime;
        last_id := e.id;
    END LOOP;

    result := jsonb_build_object('start_time',
                                 quay_api_date(win.start_time),
                                 'end_time', quay_api_date(win.end_time),
                                 'logs', logs);

    IF more THEN
        result := result || jsonb_build_object('next_page',
            quay_api_log_cursor_encode(
                to_char(last_at AT TIME ZONE 'UTC',
                        'YYYY-MM-DD"T"HH24:MI:SS.US')
                || '|' || last_id));
    END IF;

    RETURN quay_api_ok(result);
END
$$;

-- GET /api/v1/repository/{repository}/logs (RepositoryLogs.get): a
-- repository admin, a superuser with FEATURE_SUPERUSERS_FULL_ACCESS or a
-- read-only superuser.  Anyone else gets 403 whether the repository
-- exists or not.
CREATE FUNCTION quay_api_log_repo(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    repo_id bigint;
BEGIN
    repo_id := quay_repository_id(args->>'repository');

    IF repo_id IS NULL THEN
        IF quay_api_is_readonly_superuser(ctx)
           OR (quay_api_is_superuser(ctx)
               AND COALESCE((ctx->'config'->>'superusers_full_access')
                            ::boolean, false))
        THEN
            RETURN quay_api_not_found();
        END IF;

        RETURN quay_api_forbidden();
    END IF;

    IF quay_api_repo_role(ctx, repo_id) < 3
       AND NOT quay_api_is_readonly_superuser(ctx)
    THEN
        RETURN quay_api_forbidden();
    END IF;

    RETURN quay_api_log_page(args, 'repository', repo_id, NULL, NULL,
                             false);
END
$$;

-- GET /api/v1/organization/{orgname}/logs (OrgLogs.get): an organization
-- admin (a user for their own namespace, as Quay's
-- AdministerOrganizationPermission allows), a superuser with full access
-- or a read-only superuser; ?performer= filters.
CREATE FUNCTION quay_api_log_org(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    ns      "user";
    is_super    boolean;
BEGIN
    is_super := quay_api_is_readonly_superuser(ctx)
             OR (quay_api_is_superuser(ctx)
                 AND COALESCE((ctx->'config'->>'superusers_full_access')
                              ::boolean, false));

    SELECT * INTO ns FROM "user" u
     WHERE u.username = args->>'orgname' AND NOT u.robot;

    IF NOT FOUND THEN
        RETURN CASE WHEN is_super THEN quay_api_not_found()
                    ELSE quay_api_forbidden() END;
    END IF;

    IF NOT is_super
       AND NOT (ns.organization AND quay_api_org_role(ctx, ns.id) = 3)
       AND NOT (NOT ns.organization AND ns.id = quay_api_user_id(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    RETURN quay_api_log_page(args, 'account', ns.id, args->>'performer',
                             NULL, false);
END
$$;

-- GET /api/v1/user/logs (UserLogs.get): the caller's own namespace,
-- without the service key kinds (SERVICE_LEVEL_LOG_KINDS); ?performer=
-- filters.
CREATE FUNCTION quay_api_log_user(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF quay_api_user_id(ctx) IS NULL THEN
        RETURN quay_api_err(401, 'invalid_token', 'Requires authentication');
    END IF;

    RETURN quay_api_log_page(args, 'account', quay_api_user_id(ctx),
                             args->>'performer',
                             ARRAY['service_key_create',
                                   'service_key_approve',
                                   'service_key_delete',
                                   'service_key_modify',
                                   'service_key_extend',
                                   'service_key_rotate'],
                             false);
END
$$;

-- GET /api/v1/superuser/logs (SuperUserLogs.get): every entry, with its
-- namespace.
CREATE FUNCTION quay_api_log_superuser(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    denied  quay_api_result;
BEGIN
    denied := quay_api_superuser_check(ctx, false);
    IF denied.status IS NOT NULL THEN
        RETURN denied;
    END IF;

    RETURN quay_api_log_page(args, 'all', NULL, NULL, NULL, true);
END
$$;
