-- 0014_api_tag: the tag routes of /api/v1 (Quay's endpoints/api/tag.py
-- over data/model/oci/tag.py): the tag history of a repository, create or
-- move a tag, change its expiration or immutability, delete it, restore
-- it from the time machine and push it out of the time machine.
--
-- Why: the REST API is how people and automation manage tags without a
-- registry client, and how a deleted or moved tag is brought back within
-- the namespace's time-machine window (quay-behaviour.md 7.1).  Tags are
-- written exactly as /v2/ writes them (lib/quay_sql_manifest.def): the
-- live row of a name is ended and a new row begins, so the history is
-- one row per lifetime; an ended row gets the end "now, or one
-- millisecond after the last end of that name if that is later", which
-- never collides with Quay's UNIQUE (repository_id, name,
-- lifetime_end_ms); and /v2/ reads the rows directly, so a change made
-- here is what every nginx worker serves at once.
--
-- Every change also takes Quay's advisory lock for tag changes in the
-- repository (pg_advisory_xact_lock of the first 8 bytes of
-- sha256("retarget_tag:<repository id>"), data/database.py:
-- compute_advisory_lock_id), so API changes of one repository run one at
-- a time; a /v2/ push that races them is still safe, because every
-- update checks that the row it ends is unchanged and retries otherwise.
--
-- A request that changes several things (PUT with expiration, immutable
-- and manifest_digest) is all or nothing: a step that fails raises
-- SQLSTATE QT000 (quay_api_tag_fail), which rolls back the steps before
-- it, and the function turns it into the error answer.
--
-- Tag immutability is always enforced, as /v2/ enforces it
-- (FEATURE_IMMUTABLE_TAGS on, FEATURE_IMMUTABLE_TAGS_CAN_EXPIRE off), and
-- expirations are clamped to Quay's default LABELED_EXPIRATION_MINIMUM
-- (1h) and LABELED_EXPIRATION_MAXIMUM (104w) from the tag's start.

INSERT INTO logentrykind (name) VALUES ('change_tag_immutability')
    ON CONFLICT (name) DO NOTHING;


-- Helpers ------------------------------------------------------------------

-- Now in epoch milliseconds, as tag lifetimes are kept (the transaction's
-- start, as QUAY_SQL_NOW_MS on the /v2/ side).
CREATE FUNCTION quay_api_tag_now_ms()
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT floor(extract(epoch FROM now()) * 1000)::bigint
$$;

-- Quay's TAG_REGEX (util/names.py, re.ASCII), the OCI tag grammar.
CREATE FUNCTION quay_api_tag_name_ok(name text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$', false)
$$;

CREATE FUNCTION quay_api_tag_name_error()
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_bad_request('Invalid tag: must match [A-Za-z0-9_.-], '
                                'NOT start with "." or "-", and can contain '
                                '1-128 characters')
$$;

-- The digests the registry stores (lib/quay_digest.h).
CREATE FUNCTION quay_api_tag_digest_ok(digest text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(digest ~ '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$',
                    false)
$$;

-- Cosign's tag names for a subject digest (data/model/oci/tag.py:
-- COSIGN_TAG_SCHEMA_PATTERN).
CREATE FUNCTION quay_api_tag_is_cosign(name text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT name ~ '^sha256-[a-f0-9]{64}\.(sig|att|sbom)$'
$$;

-- Ends the function's transaction block with an error answer: status,
-- error_type and message travel in SQLSTATE QT000, which the route
-- functions catch (quay_api_tag_caught) after the rollback of their block.
CREATE FUNCTION quay_api_tag_fail(status integer, error_type text,
                                  message text)
RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'QT000', MESSAGE = message,
                          DETAIL = status::text || ' ' || error_type;
END
$$;

CREATE FUNCTION quay_api_tag_caught(detail text, message text)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_err(split_part(detail, ' ', 1)::integer,
                        split_part(detail, ' ', 2), message)
$$;

-- The error for a caller who may not do `need` (1 read, 2 write, 3 admin)
-- on repository repo_id (NULL: no such repository), or a NULL status when
-- allowed.  As Quay's require_repo_* decorators, rights are checked before
-- the repository is looked up, so for an outsider a private repository
-- and a missing one look the same: 401 anonymous, 403 authenticated.
-- Only those who could see any repository (superusers) learn that it is
-- missing: 404.
CREATE FUNCTION quay_api_tag_deny(ctx jsonb, repo_id bigint, need integer)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF repo_id IS NOT NULL THEN
        IF need = 1 AND quay_api_repo_can_read(ctx, repo_id) THEN
            RETURN NULL;
        END IF;
        IF quay_api_repo_role(ctx, repo_id) >= need THEN
            RETURN NULL;
        END IF;
    ELSIF (quay_api_is_superuser(ctx)
           AND COALESCE((ctx->'config'->>'superusers_full_access')::boolean,
                        false))
          OR (need = 1 AND quay_api_is_readonly_superuser(ctx)) THEN
        RETURN quay_api_not_found();
    END IF;

    IF quay_api_user_id(ctx) IS NULL THEN
        RETURN quay_api_err(401, 'invalid_token', 'Requires authentication');
    END IF;
    RETURN quay_api_forbidden();
END
$$;

-- Changes are refused while a repository is read-only or mirrored
-- (disallow_for_non_normal_repositories: 503).
CREATE FUNCTION quay_api_tag_state_error(repo_id bigint)
RETURNS quay_api_result LANGUAGE sql STABLE AS $$
    SELECT quay_api_err(503, 'unavailable',
                        'Repository is in read only or mirror mode')
      FROM repository WHERE id = repo_id AND state <> 0
$$;

-- Quay's advisory lock for tag changes in a repository.
CREATE FUNCTION quay_api_tag_lock(repo_id bigint)
RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(
        ('x' || substr(encode(sha256(convert_to('retarget_tag:' || repo_id,
                                                'UTF8')), 'hex'), 1, 16))
        ::bit(64)::bigint)
$$;

-- The end to give the row of tag_name that is ended now (see the top).
CREATE FUNCTION quay_api_tag_end_ms(repo_id bigint, tag_name text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT GREATEST(quay_api_tag_now_ms(),
                    COALESCE((SELECT max(o.lifetime_end_ms) + 1 FROM tag o
                               WHERE o.repository_id = repo_id
                                 AND o.name = tag_name
                                 AND o.lifetime_end_ms
                                     <= quay_api_tag_now_ms()), 0))
$$;

-- want, or the closest earlier end that no other row of tag_name has:
-- for ends pushed back out of the time machine window.
CREATE FUNCTION quay_api_tag_free_end(repo_id bigint, tag_name text,
                                      want bigint, tag_id bigint)
RETURNS bigint LANGUAGE plpgsql STABLE AS $$
DECLARE
    e  bigint := want;
BEGIN
    WHILE EXISTS (SELECT 1 FROM tag o
                   WHERE o.repository_id = repo_id AND o.name = tag_name
                     AND o.lifetime_end_ms = e AND o.id <> tag_id) LOOP
        e := e - 1;
    END LOOP;
    RETURN e;
END
$$;

-- The live, visible row of tag_name (data/model/oci/tag.py: get_tag),
-- with its manifest's digest.
CREATE FUNCTION quay_api_tag_current(repo_id bigint, tag_name text)
RETURNS TABLE (id bigint, manifest_id bigint, digest text,
               immutable boolean, lifetime_start_ms bigint,
               lifetime_end_ms bigint)
LANGUAGE sql STABLE AS $$
    SELECT t.id, t.manifest_id, m.digest::text, t.immutable,
           t.lifetime_start_ms, t.lifetime_end_ms
      FROM tag t LEFT JOIN manifest m ON m.id = t.manifest_id
     WHERE t.repository_id = repo_id AND t.name = tag_name AND NOT t.hidden
       AND (t.lifetime_end_ms IS NULL
            OR t.lifetime_end_ms > quay_api_tag_now_ms())
     -- the open row first: under a burst of moves an ended row's end can
     -- lie a few milliseconds ahead (end times never collide), and must
     -- not be mistaken for the live one
     ORDER BY t.lifetime_end_ms IS NULL DESC, t.lifetime_start_ms DESC,
              t.id DESC
     LIMIT 1
$$;

-- Manifest digest of repository repo_id when it can be tagged: an alive
-- tag (hidden ones too) points at it or at an index up to four levels
-- above it, as /v2/ decides what it serves by digest
-- (QUAY_SQL_MANIFEST_VISIBLE; Quay's lookup_manifest).
CREATE FUNCTION quay_api_tag_live_manifest(repo_id bigint, mdigest text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT m.id FROM manifest m
     WHERE m.repository_id = repo_id AND m.digest = mdigest
       AND EXISTS (
           WITH RECURSIVE up(id, depth) AS (
               SELECT m.id, 0
               UNION
               SELECT c.manifest_id, up.depth + 1 FROM up
                 JOIN manifestchild c ON c.child_manifest_id = up.id
                WHERE up.depth < 4)
           SELECT 1 FROM up JOIN tag t ON t.manifest_id = up.id
            WHERE t.lifetime_end_ms IS NULL
               OR t.lifetime_end_ms > quay_api_tag_now_ms())
$$;

-- Quay's _expire_cosign_sibling_tags: when the last visible, non-cosign
-- live tag leaves manifest manifest_id (digest mdigest), its cosign tags
-- ("sha256-<hex>.sig", ".att", ".sbom") end too, unless immutable.
CREATE FUNCTION quay_api_tag_expire_cosign(repo_id bigint,
                                           manifest_id bigint,
                                           mdigest text, exclude_id bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE tag t SET lifetime_end_ms = quay_api_tag_end_ms(repo_id, t.name)
     WHERE t.repository_id = repo_id
       AND t.name IN (replace(mdigest, ':', '-') || '.sig',
                      replace(mdigest, ':', '-') || '.att',
                      replace(mdigest, ':', '-') || '.sbom')
       AND NOT t.immutable
       AND (t.lifetime_end_ms IS NULL
            OR t.lifetime_end_ms > quay_api_tag_now_ms())
       AND NOT EXISTS (
           SELECT 1 FROM tag o
            WHERE o.repository_id = repo_id
              AND o.manifest_id = quay_api_tag_expire_cosign.manifest_id
              AND NOT o.hidden AND NOT quay_api_tag_is_cosign(o.name)
              AND o.id <> exclude_id
              AND (o.lifetime_end_ms IS NULL
                   OR o.lifetime_end_ms > quay_api_tag_now_ms()))
$$;

-- Quay's reset_child_manifest_expiration: the temporary tags that keep
-- the children of index manifest_id alive end at expiry_ms at the latest.
CREATE FUNCTION quay_api_tag_reset_children(repo_id bigint,
                                            manifest_id bigint,
                                            expiry_ms bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE tag t SET lifetime_end_ms = expiry_ms
      FROM manifestchild c
     WHERE c.repository_id = repo_id
       AND c.manifest_id = quay_api_tag_reset_children.manifest_id
       AND t.repository_id = repo_id
       AND t.manifest_id = c.child_manifest_id
       AND t.hidden AND left(t.name, 6) = '$temp-'
       AND t.lifetime_end_ms > expiry_ms
$$;

-- Points tag_name at manifest manifest_id (data/model/oci/tag.py:
-- retarget_tag): the live row, if any, is ended and a new row begins now.
-- An immutable live tag is refused (409 TAG_IMMUTABLE, as /v2/).  Returns
-- {"existed": whether a live tag was there, "original": its digest}.
-- Raises QT000.
CREATE FUNCTION quay_api_tag_retarget(repo_id bigint, tag_name text,
                                      target_id bigint, is_reversion boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    cur       record;
    new_id    bigint;
    existed   boolean := false;
    original  text;
BEGIN
    PERFORM quay_api_tag_lock(repo_id);

    -- Each statement sees what committed before it: a /v2/ push that
    -- moved the tag under us makes the update find nothing, and the next
    -- round ends the push's row instead.  Every lost round means another
    -- writer's move committed (/v2/ pushes do not take the advisory
    -- lock), so the bound only has to exceed the number of concurrent
    -- pushers of one tag.
    FOR attempt IN 1..100 LOOP
        SELECT * INTO cur FROM quay_api_tag_current(repo_id, tag_name);

        IF FOUND THEN
            IF cur.immutable THEN
                PERFORM quay_api_tag_fail(409, 'tag_immutable',
                    format('Cannot overwrite immutable tag ''%s''',
                           tag_name));
            END IF;

            UPDATE tag t
               SET lifetime_end_ms = quay_api_tag_end_ms(repo_id, tag_name)
             WHERE t.id = cur.id
               AND t.lifetime_end_ms IS NOT DISTINCT FROM cur.lifetime_end_ms;
            CONTINUE WHEN NOT FOUND;

            IF NOT existed THEN
                existed := true;
                original := cur.digest;
            END IF;

            DELETE FROM tagnotificationsuccess WHERE tag_id = cur.id;

            IF cur.manifest_id IS NOT NULL
               AND cur.manifest_id <> target_id
               AND NOT quay_api_tag_is_cosign(tag_name) THEN
                PERFORM quay_api_tag_expire_cosign(repo_id, cur.manifest_id,
                                                   cur.digest, cur.id);
            END IF;
        END IF;

        INSERT INTO tag (name, repository_id, manifest_id, lifetime_start_ms,
                         reversion)
        VALUES (tag_name, repo_id, target_id, quay_api_tag_now_ms(),
                is_reversion)
        ON CONFLICT (repository_id, name) WHERE lifetime_end_ms IS NULL
        DO NOTHING
        RETURNING id INTO new_id;

        IF new_id IS NOT NULL THEN
            RETURN jsonb_build_object('existed', existed,
                                      'original', original);
        END IF;
    END LOOP;

    PERFORM quay_api_tag_fail(400, 'invalid_request', 'Could not move tag');
    RETURN NULL;
END
$$;

-- The manifest-list details Quay adds to a tag of an index
-- (endpoints/api/tag.py: _get_sparse_manifest_info): how many children
-- the index names and which of them the repository holds.
CREATE FUNCTION quay_api_tag_sparse(repo_id bigint, manifest_bytes text)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    doc       jsonb;
    digests   text[];
    present   jsonb;
    npresent  integer;
BEGIN
    BEGIN
        doc := manifest_bytes::jsonb;
    EXCEPTION WHEN OTHERS THEN
        doc := NULL;
    END;

    IF jsonb_typeof(doc) = 'object'
       AND jsonb_typeof(doc->'manifests') = 'array' THEN
        SELECT array_agg(e->>'digest' ORDER BY n) INTO digests
          FROM jsonb_array_elements(doc->'manifests')
               WITH ORDINALITY AS x(e, n)
         WHERE jsonb_typeof(e) = 'object'
           AND jsonb_typeof(e->'digest') = 'string';
    END IF;

    IF COALESCE(cardinality(digests), 0) = 0 THEN
        RETURN jsonb_build_object('is_sparse', false,
                                  'child_manifest_count', 0,
                                  'present_child_count', 0,
                                  'child_manifests_presence', '{}'::jsonb);
    END IF;

    SELECT count(*) FILTER (WHERE p.ok),
           jsonb_object_agg(p.digest, p.ok)
      INTO npresent, present
      FROM (SELECT d.digest, EXISTS (
                SELECT 1 FROM manifest m
                 WHERE m.repository_id = repo_id AND m.digest = d.digest
                   AND m.manifest_bytes <> '') AS ok
              FROM unnest(digests) AS d(digest)) p;

    RETURN jsonb_build_object('is_sparse', npresent < cardinality(digests),
                              'child_manifest_count', cardinality(digests),
                              'present_child_count', npresent,
                              'child_manifests_presence', present);
END
$$;

-- Epoch seconds, Quay's way (integer division of the milliseconds).
CREATE FUNCTION quay_api_tag_seconds(ms bigint)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(ms / 1000.0)::bigint
$$;

-- One entry of the tag list (endpoints/api/tag.py: _tag_dict).
CREATE FUNCTION quay_api_tag_json(repo_id bigint, t tag, m manifest,
                                  media_type text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
               'name', t.name,
               'reversion', t.reversion,
               'immutable', t.immutable,
               'manifest_digest', m.digest,
               'is_manifest_list', media_type IN (
                   'application/vnd.docker.distribution.manifest.list.v2+json',
                   'application/vnd.oci.image.index.v1+json'),
               'size', m.layers_compressed_size)
        || CASE WHEN quay_api_tag_seconds(t.lifetime_start_ms) > 0
                THEN jsonb_build_object(
                    'start_ts', quay_api_tag_seconds(t.lifetime_start_ms),
                    'last_modified', quay_api_date(to_timestamp(
                        quay_api_tag_seconds(t.lifetime_start_ms))))
                ELSE '{}'::jsonb END
        || CASE WHEN quay_api_tag_seconds(t.lifetime_end_ms) > 0
                THEN jsonb_build_object(
                    'end_ts', quay_api_tag_seconds(t.lifetime_end_ms))
                ELSE '{}'::jsonb END
        || CASE WHEN COALESCE(t.lifetime_end_ms, 0) <> 0
                THEN jsonb_build_object(
                    'expiration', quay_api_date(to_timestamp(
                        quay_api_tag_seconds(t.lifetime_end_ms))))
                ELSE '{}'::jsonb END
        || CASE WHEN media_type IN (
                    'application/vnd.docker.distribution.manifest.list.v2+json',
                    'application/vnd.oci.image.index.v1+json')
                THEN quay_api_tag_sparse(repo_id, m.manifest_bytes)
                ELSE '{}'::jsonb END
$$;

-- A JSON-schema type error, worded as Quay's validate_json_request.
CREATE FUNCTION quay_api_tag_type_error(body jsonb, field text,
                                        types text)
RETURNS quay_api_result LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_bad_request(left((body->field)::text, 64)
                                || ' is not of type '
                                || types || ' (' || field || ')')
$$;

-- Namespace and repository names of repo_id, for the audit metadata.
CREATE FUNCTION quay_api_tag_names(repo_id bigint, OUT namespace text,
                                   OUT repo text, OUT namespace_id bigint,
                                   OUT window_s bigint)
LANGUAGE sql STABLE AS $$
    SELECT ns.username, r.name, ns.id, ns.removed_tag_expiration_s
      FROM repository r JOIN "user" ns ON ns.id = r.namespace_user_id
     WHERE r.id = repo_id
$$;


-- GET /api/v1/repository/{repository}/tag/ ---------------------------------

-- The tag history, newest first (data/model/oci/tag.py:
-- list_repository_tag_history): live and ended rows, never hidden ones;
-- page (1-based) and limit (1..100, default 50); specificTag and
-- filter_tag_name ("like:<text>" substring, case-insensitive, or
-- "eq:<name>") narrow it, onlyActiveTags keeps live tags only.
CREATE FUNCTION quay_api_tag_list(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    repo_id    bigint;
    err        quay_api_result;
    page       bigint := 1;
    lim        bigint := 50;
    active     boolean := false;
    specific   text;
    filter_arg text;
    eq_name    text;
    like_text  text;
    tags       jsonb;
    n          bigint;
BEGIN
    repo_id := quay_repository_id(args->>'repository');
    err := quay_api_tag_deny(ctx, repo_id, 1);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    IF args ? 'page' THEN
        IF args->>'page' !~ '^\s*[+-]?[0-9]{1,18}\s*$' THEN
            RETURN quay_api_bad_request('page: invalid integer');
        END IF;
        page := GREATEST(1, trim(args->>'page')::bigint);
    END IF;

    IF args ? 'limit' THEN
        IF args->>'limit' !~ '^\s*[+-]?[0-9]{1,18}\s*$' THEN
            RETURN quay_api_bad_request('limit: invalid integer');
        END IF;
        lim := LEAST(100, GREATEST(1, trim(args->>'limit')::bigint));
    END IF;

    -- util/parsing.py: truthy_bool
    active := args ? 'onlyActiveTags'
              AND args->>'onlyActiveTags' NOT IN
                  ('false', 'False', 'FALSE', '0', '', 'null');

    specific := NULLIF(args->>'specificTag', '');

    filter_arg := NULLIF(args->>'filter_tag_name', '');
    IF filter_arg IS NOT NULL THEN
        IF split_part(filter_arg, ':', 1) = 'like'
           AND position(':' IN filter_arg) > 0 THEN
            like_text := substr(filter_arg, 6);
        ELSIF split_part(filter_arg, ':', 1) = 'eq'
              AND position(':' IN filter_arg) > 0 THEN
            eq_name := substr(filter_arg, 4);
        ELSE
            RETURN quay_api_bad_request(
                'Unsupported syntax for filter_tag_name. Expected '
                '<operation>:<tag_name> where <operation> can be ''like'' '
                'or ''eq''.');
        END IF;
    END IF;

    SELECT COALESCE(jsonb_agg(quay_api_tag_json(repo_id, x.t, x.m, x.mt)
                              ORDER BY x.rn)
                        FILTER (WHERE x.rn <= lim), '[]'::jsonb),
           count(*)
      INTO tags, n
      FROM (SELECT y.*, row_number() OVER (ORDER BY y.s DESC, y.nm,
                                                 y.id DESC) AS rn
              FROM (SELECT t, m, mt.name AS mt, t.lifetime_start_ms AS s,
                           t.name COLLATE "C" AS nm, t.id
                      FROM tag t
                      JOIN manifest m ON m.id = t.manifest_id
                      JOIN mediatype mt ON mt.id = m.media_type_id
                     WHERE t.repository_id = repo_id AND NOT t.hidden
                       AND (specific IS NULL OR t.name = specific)
                       AND (eq_name IS NULL OR t.name = eq_name)
                       AND (like_text IS NULL
                            OR strpos(lower(t.name), lower(like_text)) > 0)
                       AND (NOT active OR t.lifetime_end_ms IS NULL
                            OR t.lifetime_end_ms > quay_api_tag_now_ms())
                     ORDER BY t.lifetime_start_ms DESC, t.name COLLATE "C",
                              t.id DESC
                     LIMIT lim + 1
                    OFFSET LEAST(page - 1, 1000000000000000) * lim) y) x;

    RETURN quay_api_ok(jsonb_build_object('tags', tags, 'page', page,
                                          'has_additional', n > lim));
END
$$;


-- PUT /api/v1/repository/{repository}/tag/{tag} ---------------------------

-- Quay's RepositoryTag.put, in its order: "expiration" (epoch seconds or
-- null) changes the live tag's end, "immutable" its immutability (only an
-- admin may lift it), "manifest_digest" creates or moves the tag to a
-- manifest of this repository.  Any of them may be given; 201 "Updated".
CREATE FUNCTION quay_api_tag_change(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    repo_id    bigint;
    tag_name   text := args->>'tag';
    err        quay_api_result;
    names      record;
    cur        record;
    exp_s      numeric;
    new_end    bigint;
    old_end    bigint;
    off_s      numeric;
    imm        boolean;
    want       text;
    mid        bigint;
    moved      jsonb;
    detail     text;
    message    text;
BEGIN
    repo_id := quay_repository_id(args->>'repository');
    err := quay_api_tag_deny(ctx, repo_id, 2);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    err := quay_api_tag_state_error(repo_id);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    -- the ChangeTag schema
    IF body ? 'manifest_digest'
       AND jsonb_typeof(body->'manifest_digest') NOT IN ('string', 'null')
    THEN
        RETURN quay_api_tag_type_error(body, 'manifest_digest',
                                       '''string'', ''null''');
    END IF;
    IF body ? 'expiration'
       AND jsonb_typeof(body->'expiration') NOT IN ('number', 'null') THEN
        RETURN quay_api_tag_type_error(body, 'expiration',
                                       '''number'', ''null''');
    END IF;
    IF body ? 'immutable' AND jsonb_typeof(body->'immutable') <> 'boolean'
    THEN
        RETURN quay_api_tag_type_error(body, 'immutable', '''boolean''');
    END IF;

    IF NOT quay_api_tag_name_ok(tag_name) THEN
        RETURN quay_api_tag_name_error();
    END IF;

    SELECT * INTO names FROM quay_api_tag_names(repo_id);

    BEGIN
        PERFORM quay_api_tag_lock(repo_id);

        IF body ? 'expiration' THEN
            SELECT * INTO cur FROM quay_api_tag_current(repo_id, tag_name);
            IF NOT FOUND THEN
                PERFORM quay_api_tag_fail(404, 'not_found', 'Not Found');
            END IF;

            new_end := NULL;
            exp_s := NULL;

            IF jsonb_typeof(body->'expiration') = 'number' THEN
                exp_s := (body->>'expiration')::numeric;

                IF exp_s <= extract(epoch FROM now()) THEN
                    PERFORM quay_api_tag_fail(400, 'invalid_request',
                        'The expiration must be in the future');
                END IF;
                IF exp_s >= 253402300800 THEN
                    PERFORM quay_api_tag_fail(400, 'invalid_request',
                        'The expiration is out of range');
                END IF;
                IF cur.immutable THEN
                    PERFORM quay_api_tag_fail(409, 'tag_immutable',
                        format('Cannot set expiration on immutable tag '
                               '''%s''', tag_name));
                END IF;

                -- data/model/oci/tag.py: change_tag_expiration
                off_s := floor(exp_s)
                         - quay_api_tag_seconds(cur.lifetime_start_ms);
                off_s := LEAST(GREATEST(off_s, 3600), 104 * 7 * 86400);
                new_end := cur.lifetime_start_ms + (off_s * 1000)::bigint;
            END IF;

            old_end := NULL;

            IF new_end IS DISTINCT FROM cur.lifetime_end_ms THEN
                UPDATE tag t SET lifetime_end_ms = new_end
                 WHERE t.id = cur.id
                   AND t.lifetime_end_ms
                       IS NOT DISTINCT FROM cur.lifetime_end_ms;
                IF NOT FOUND THEN
                    PERFORM quay_api_tag_fail(400, 'invalid_request',
                        'Could not update tag expiration; Tag has probably '
                        'changed');
                END IF;
                DELETE FROM tagnotificationsuccess WHERE tag_id = cur.id;
                old_end := cur.lifetime_end_ms;
            END IF;

            IF NOT (old_end IS NULL AND new_end IS NULL) THEN
                PERFORM quay_api_log(ctx, 'change_tag_expiration',
                    names.namespace_id, repo_id, jsonb_build_object(
                        'username', ctx->>'username',
                        'repo', names.repo,
                        'tag', tag_name,
                        'namespace', names.namespace,
                        'expiration_date', floor(exp_s)::bigint,
                        'old_expiration_date', old_end));
            END IF;
        END IF;

        IF body ? 'immutable' THEN
            SELECT * INTO cur FROM quay_api_tag_current(repo_id, tag_name);
            IF NOT FOUND THEN
                PERFORM quay_api_tag_fail(404, 'not_found', 'Not Found');
            END IF;

            imm := (body->'immutable')::boolean;

            IF NOT imm AND cur.immutable
               AND quay_api_repo_role(ctx, repo_id) < 3 THEN
                PERFORM quay_api_tag_fail(403, 'insufficient_scope',
                                          'Unauthorized');
            END IF;
            IF imm AND cur.lifetime_end_ms IS NOT NULL THEN
                PERFORM quay_api_tag_fail(400, 'invalid_request',
                    format('Cannot make tag ''%s'' immutable: tag has '
                           'expiration set. Clear expiration first or '
                           'enable FEATURE_IMMUTABLE_TAGS_CAN_EXPIRE.',
                           tag_name));
            END IF;

            IF imm <> cur.immutable THEN
                UPDATE tag t SET immutable = imm
                 WHERE t.id = cur.id AND t.immutable = cur.immutable;
                IF NOT FOUND THEN
                    PERFORM quay_api_tag_fail(400, 'invalid_request',
                        'Could not update tag immutability; Tag has '
                        'probably changed');
                END IF;
            END IF;

            PERFORM quay_api_log(ctx, 'change_tag_immutability',
                names.namespace_id, repo_id, jsonb_build_object(
                    'username', ctx->>'username',
                    'repo', names.repo,
                    'tag', tag_name,
                    'namespace', names.namespace,
                    'immutable', imm,
                    'previous_immutable', cur.immutable));
        END IF;

        IF body ? 'manifest_digest' THEN
            want := body->>'manifest_digest';

            IF want IS NULL THEN
                PERFORM quay_api_tag_fail(404, 'not_found', 'Not Found');
            END IF;
            IF NOT quay_api_tag_digest_ok(want) THEN
                PERFORM quay_api_tag_fail(400, 'invalid_request',
                                          'Invalid manifest digest');
            END IF;

            mid := quay_api_tag_live_manifest(repo_id, want);
            IF mid IS NULL THEN
                PERFORM quay_api_tag_fail(404, 'not_found', 'Not Found');
            END IF;

            moved := quay_api_tag_retarget(repo_id, tag_name, mid, false);

            PERFORM quay_api_log(ctx,
                CASE WHEN (moved->>'existed')::boolean THEN 'move_tag'
                     ELSE 'create_tag' END,
                names.namespace_id, repo_id, jsonb_build_object(
                    'username', ctx->>'username',
                    'repo', names.repo,
                    'tag', tag_name,
                    'namespace', names.namespace,
                    'manifest_digest', want,
                    'original_manifest_digest', moved->'original'));
        END IF;

    EXCEPTION WHEN SQLSTATE 'QT000' THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL,
                                message = MESSAGE_TEXT;
        RETURN quay_api_tag_caught(detail, message);
    END;

    RETURN quay_api_ok('"Updated"'::jsonb, 201);
END
$$;


-- DELETE /api/v1/repository/{repository}/tag/{tag} ------------------------

-- Ends the live tag (data/model/oci/tag.py: delete_tag); the row stays in
-- the history and in the time machine.  204; an immutable tag is 409.
CREATE FUNCTION quay_api_tag_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    repo_id   bigint;
    tag_name  text := args->>'tag';
    err       quay_api_result;
    names     record;
    cur       record;
BEGIN
    repo_id := quay_repository_id(args->>'repository');
    err := quay_api_tag_deny(ctx, repo_id, 2);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    err := quay_api_tag_state_error(repo_id);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    -- a name outside the grammar names no tag
    IF NOT quay_api_tag_name_ok(tag_name) THEN
        RETURN quay_api_not_found();
    END IF;

    PERFORM quay_api_tag_lock(repo_id);

    SELECT * INTO cur FROM quay_api_tag_current(repo_id, tag_name);
    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    IF cur.immutable THEN
        RETURN quay_api_err(409, 'tag_immutable',
                            format('Cannot delete immutable tag ''%s''',
                                   tag_name));
    END IF;

    UPDATE tag t SET lifetime_end_ms = quay_api_tag_end_ms(repo_id, tag_name)
     WHERE t.id = cur.id
       AND t.lifetime_end_ms IS NOT DISTINCT FROM cur.lifetime_end_ms;
    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    DELETE FROM tagnotificationsuccess WHERE tag_id = cur.id;

    IF cur.manifest_id IS NOT NULL THEN
        IF NOT quay_api_tag_is_cosign(tag_name) THEN
            PERFORM quay_api_tag_expire_cosign(repo_id, cur.manifest_id,
                                               cur.digest, cur.id);
        END IF;
        PERFORM quay_api_tag_reset_children(repo_id, cur.manifest_id,
                                            quay_api_tag_now_ms());
    END IF;

    SELECT * INTO names FROM quay_api_tag_names(repo_id);
    PERFORM quay_api_log(ctx, 'delete_tag', names.namespace_id, repo_id,
                         jsonb_build_object('username', ctx->>'username',
                                            'repo', names.repo,
                                            'namespace', names.namespace,
                                            'tag', tag_name));

    RETURN quay_api_empty(204);
END
$$;


-- POST /api/v1/repository/{repository}/tag/{tag}/restore ------------------

-- Points the tag back at manifest_digest (Quay's RestoreTag.post, a
-- retarget marked as a reversion).  The tag must have pointed at that
-- manifest within the namespace's time machine
-- (user.removed_tag_expiration_s): a row of this name on it that is live
-- or ended less than the window ago.  Otherwise 404, which is what Quay
-- answers once the garbage collector has taken the manifest.  200 {}.
CREATE FUNCTION quay_api_tag_restore(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    repo_id   bigint;
    tag_name  text := args->>'tag';
    want      text;
    err       quay_api_result;
    names     record;
    mid       bigint;
    detail    text;
    message   text;
BEGIN
    repo_id := quay_repository_id(args->>'repository');
    err := quay_api_tag_deny(ctx, repo_id, 2);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    err := quay_api_tag_state_error(repo_id);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    IF body ? 'manifest_digest'
       AND jsonb_typeof(body->'manifest_digest') <> 'string' THEN
        RETURN quay_api_tag_type_error(body, 'manifest_digest',
                                       '''string''');
    END IF;

    want := body->>'manifest_digest';
    IF want IS NULL THEN
        RETURN quay_api_bad_request('Missing manifest_digest');
    END IF;

    -- the restore creates a row of this name: it must be a tag name
    IF NOT quay_api_tag_name_ok(tag_name) THEN
        RETURN quay_api_tag_name_error();
    END IF;
    IF NOT quay_api_tag_digest_ok(want) THEN
        RETURN quay_api_bad_request('Invalid manifest digest');
    END IF;

    SELECT m.id INTO mid FROM manifest m
     WHERE m.repository_id = repo_id AND m.digest = want;
    IF NOT FOUND THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT * INTO names FROM quay_api_tag_names(repo_id);

    PERFORM quay_api_tag_lock(repo_id);

    IF NOT EXISTS (
        SELECT 1 FROM tag h
         WHERE h.repository_id = repo_id AND h.name = tag_name
           AND h.manifest_id = mid AND NOT h.hidden
           AND (h.lifetime_end_ms IS NULL
                OR h.lifetime_end_ms::numeric
                   > quay_api_tag_now_ms() - names.window_s::numeric * 1000))
    THEN
        RETURN quay_api_not_found(format(
            'Tag ''%s'' did not point at %s within the time machine window',
            tag_name, want));
    END IF;

    BEGIN
        PERFORM quay_api_tag_retarget(repo_id, tag_name, mid, true);
    EXCEPTION WHEN SQLSTATE 'QT000' THEN
        GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL,
                                message = MESSAGE_TEXT;
        RETURN quay_api_tag_caught(detail, message);
    END;

    PERFORM quay_api_log(ctx, 'revert_tag', names.namespace_id, repo_id,
                         jsonb_build_object('username', ctx->>'username',
                                            'repo', names.repo,
                                            'namespace', names.namespace,
                                            'tag', tag_name,
                                            'manifest_digest', want));

    RETURN quay_api_ok('{}'::jsonb);
END
$$;


-- POST /api/v1/repository/{repository}/tag/{tag}/expire --------------------

-- Quay's TagTimeMachineDelete.post (PERMANENTLY_DELETE_TAGS): moves rows
-- of the tag out of the time machine window, so that they can no longer
-- be restored and the garbage collector may take them.  is_alive true:
-- the live tag (ended now minus the window); otherwise the rows of the
-- tag on manifest_digest that ended within the window.  Immutable rows
-- stay.  include_submanifests also ends the temporary tags of an index's
-- children.  200 "".
CREATE FUNCTION quay_api_tag_expire(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    repo_id    bigint;
    tag_name   text := args->>'tag';
    err        quay_api_result;
    names      record;
    cur        record;
    alive      boolean;
    want       text;
    mid        bigint;
    window_ms  bigint;
    cutoff     bigint;
    updated    integer := 0;
    old_row    record;
BEGIN
    repo_id := quay_repository_id(args->>'repository');
    err := quay_api_tag_deny(ctx, repo_id, 2);
    IF err.status IS NOT NULL THEN
        RETURN err;
    END IF;

    IF body ? 'manifest_digest'
       AND jsonb_typeof(body->'manifest_digest') <> 'string' THEN
        RETURN quay_api_tag_type_error(body, 'manifest_digest',
                                       '''string''');
    END IF;
    IF body ? 'include_submanifests'
       AND jsonb_typeof(body->'include_submanifests') <> 'boolean' THEN
        RETURN quay_api_tag_type_error(body, 'include_submanifests',
                                       '''boolean''');
    END IF;
    IF body ? 'is_alive' AND jsonb_typeof(body->'is_alive') <> 'boolean' THEN
        RETURN quay_api_tag_type_error(body, 'is_alive', '''boolean''');
    END IF;

    alive := COALESCE((body->'is_alive')::boolean, false);
    want := body->>'manifest_digest';

    IF NOT alive AND want IS NULL THEN
        RETURN quay_api_bad_request(
            'manifest_digest required when is_alive set to false');
    END IF;
    IF NOT quay_api_tag_name_ok(tag_name) THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT * INTO names FROM quay_api_tag_names(repo_id);
    window_ms := LEAST(names.window_s, 100000000000000) * 1000;
    cutoff := quay_api_tag_now_ms() - window_ms;

    PERFORM quay_api_tag_lock(repo_id);

    IF alive THEN
        SELECT * INTO cur FROM quay_api_tag_current(repo_id, tag_name);
        IF NOT FOUND THEN
            RETURN quay_api_not_found();
        END IF;
        IF cur.immutable THEN
            RETURN quay_api_err(409, 'tag_immutable',
                format('Cannot permanently delete immutable tag ''%s''',
                       tag_name));
        END IF;

        UPDATE tag t
           SET lifetime_end_ms = quay_api_tag_free_end(repo_id, tag_name,
                                                       cutoff, cur.id)
         WHERE t.id = cur.id
           AND t.lifetime_end_ms IS NOT DISTINCT FROM cur.lifetime_end_ms;
        IF NOT FOUND THEN
            RETURN quay_api_not_found();
        END IF;
        DELETE FROM tagnotificationsuccess WHERE tag_id = cur.id;

        mid := cur.manifest_id;
        want := cur.digest;
        updated := 1;
    ELSE
        IF NOT quay_api_tag_digest_ok(want) THEN
            RETURN quay_api_bad_request('Invalid manifest digest');
        END IF;

        SELECT m.id INTO mid FROM manifest m
         WHERE m.repository_id = repo_id AND m.digest = want;
        IF NOT FOUND THEN
            RETURN quay_api_not_found();
        END IF;

        -- get_tags_within_timemachine_window, then one distinct end each
        IF window_ms > 0 THEN
            FOR old_row IN
                SELECT t.id FROM tag t
                 WHERE t.repository_id = repo_id AND t.name = tag_name
                   AND t.manifest_id = mid AND NOT t.immutable
                   AND t.lifetime_end_ms <= quay_api_tag_now_ms()
                   AND t.lifetime_end_ms > cutoff
                 ORDER BY t.id
            LOOP
                UPDATE tag t
                   SET lifetime_end_ms = quay_api_tag_free_end(
                           repo_id, tag_name, cutoff - 1, old_row.id)
                 WHERE t.id = old_row.id;
                updated := updated + 1;
            END LOOP;
        END IF;

        IF updated = 0 THEN
            RETURN quay_api_not_found();
        END IF;
    END IF;

    IF COALESCE((body->'include_submanifests')::boolean, false)
       AND mid IS NOT NULL THEN
        PERFORM quay_api_tag_reset_children(repo_id, mid, cutoff);
    END IF;

    PERFORM quay_api_log(ctx, 'permanently_delete_tag', names.namespace_id,
                         repo_id,
                         jsonb_build_object('username', ctx->>'username',
                                            'repo', names.repo,
                                            'namespace', names.namespace,
                                            'tag', tag_name,
                                            'manifest_digest', want));

    RETURN quay_api_ok('""'::jsonb);
END
$$;
