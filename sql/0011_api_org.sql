-- 0011_api_org: organizations and teams in the REST API
-- (endpoints/api/organization.py and team.py in Quay).
--
-- Why: organizations are how a platform team shares repositories.  An
-- organization is a "user" row with organization = true; its teams carry
-- a team role (member < creator < admin, quay-behaviour.md 1.2 and 3.4)
-- that quay_org_role() and /v2/auth already turn into rights, so these
-- routes only manage the rows: create and delete organizations, create,
-- re-role and delete teams, add and remove members, with Quay's shapes,
-- status codes, messages and audit rows.
--
-- Routes (lib/quay_api_org.def), each one function here:
--   POST   /organization/                          quay_api_org_create
--   GET    /organization/{orgname}                 quay_api_org_get
--   PUT    /organization/{orgname}                 quay_api_org_update
--   DELETE /organization/{orgname}                 quay_api_org_delete
--   GET    /organization/{orgname}/members         quay_api_org_members
--   PUT    /organization/{o}/team/{t}              quay_api_org_team_put
--   DELETE /organization/{o}/team/{t}              quay_api_org_team_delete
--   GET    /organization/{o}/team/{t}/members      quay_api_org_team_members
--   PUT    /organization/{o}/team/{t}/members/{m}  quay_api_org_member_put
--   DELETE /organization/{o}/team/{t}/members/{m}  quay_api_org_member_delete
--
-- Who may do what, as in Quay:
--   * GET of an organization is open to anyone: outsiders (anonymous too)
--     see name and avatar only, members also see the teams, admins also
--     the settings.  An unknown organization is 404: namespaces are
--     public names in Quay, so this tells an outsider nothing new.
--   * Everything else needs organization admin (a member of a team with
--     role admin, through a token with org:admin), and answers 403 to
--     anyone else before looking anything up, so an outsider gets the
--     same answer for an organization that exists and one that does not
--     (security-catalogue #34).  Superusers (super:user scope) may manage
--     teams and members; changing or deleting the organization itself and
--     listing its members also needs FEATURE_SUPERUSERS_FULL_ACCESS
--     (read-only superusers may list), as in Quay.
--   * An organization never loses its last admin: deleting or demoting an
--     admin team, or removing a member from one, is refused (400) when no
--     human member of any admin team would be left.  Quay's own
--     narrower rule is kept too: a caller cannot drop their own last admin
--     team.  Mutations lock the organization row first, so two admins
--     removing each other cannot both pass that check.
--
-- quay_api_org_make() and quay_api_org_team_add() are also what `quayctl
-- org create` and `quayctl org add-member` call (workers/quayctl_org.c),
-- so the command line follows exactly the same rules and writes the same
-- audit rows.


-- Names and lookups --------------------------------------------------------

-- Quay's namespace rule, which teams share (util/validation.py,
-- data/model/team.py): ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$, 2 to 255
-- characters.  The length is checked before the pattern runs.
CREATE FUNCTION quay_api_org_valid_name(candidate text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN candidate IS NULL
                  OR length(candidate) NOT BETWEEN 2 AND 255 THEN false
                ELSE candidate ~ '^[a-z0-9]+([._-][a-z0-9]+)*$' END
$$;

-- Quay's validate_email (something@something.something), without
-- whitespace or control characters, at most 255 characters.
CREATE FUNCTION quay_api_org_valid_email(candidate text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN candidate IS NULL OR length(candidate) > 255 THEN false
                ELSE candidate ~ ('^[^@[:space:][:cntrl:]]+@'
                                  '[^@[:space:][:cntrl:]]+\.'
                                  '[^@[:space:][:cntrl:]]+$') END
$$;

-- An organization by name (users and robots are not organizations).
CREATE FUNCTION quay_api_org_id(orgname text)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT id FROM "user" WHERE username = orgname AND organization
$$;

-- A superuser acting with FEATURE_SUPERUSERS_FULL_ACCESS.
CREATE FUNCTION quay_api_org_superuser_full(ctx jsonb)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT quay_api_is_superuser(ctx)
       AND COALESCE((ctx->'config'->>'superusers_full_access')::boolean,
                    false)
$$;

-- The robots of namespace orgname are named "orgname+short".  (LIKE is
-- not used: '_' in a namespace would be a wildcard.)
CREATE FUNCTION quay_api_org_is_robot_of(robot_name text, orgname text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT left(robot_name, length(orgname) + 1) = orgname || '+'
$$;

-- The human admins an organization would keep without one membership
-- (without_user in team without_team) or, when without_user is NULL,
-- without a whole admin team: the distinct non-robot members of its
-- teams with role admin.
CREATE FUNCTION quay_api_org_admins_left(org_id bigint, without_team bigint,
                                         without_user bigint)
RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(DISTINCT tm.user_id)
      FROM team t
      JOIN teamrole tr ON tr.id = t.role_id AND tr.name = 'admin'
      JOIN teammember tm ON tm.team_id = t.id
      JOIN "user" u ON u.id = tm.user_id AND NOT u.robot
     WHERE t.organization_id = org_id
       AND NOT (t.id IS NOT DISTINCT FROM without_team
                AND (without_user IS NULL OR tm.user_id = without_user))
$$;

-- The admin teams of org_id that user_id is a member of.
CREATE FUNCTION quay_api_org_admin_teams(org_id bigint, member_id bigint)
RETURNS bigint[] LANGUAGE sql STABLE AS $$
    SELECT COALESCE(array_agg(t.id), '{}')
      FROM team t
      JOIN teamrole tr ON tr.id = t.role_id AND tr.name = 'admin'
      JOIN teammember tm ON tm.team_id = t.id
     WHERE t.organization_id = org_id AND tm.user_id = member_id
$$;


-- Shapes -------------------------------------------------------------------

-- Quay's team view (organization.py team_view): role, counts of
-- repository grants and members; teams are never synced here (no
-- LDAP/OIDC team sync).
CREATE FUNCTION quay_api_org_team_view(t team, can_view boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'name', t.name,
        'description', t.description,
        'role', (SELECT tr.name FROM teamrole tr WHERE tr.id = t.role_id),
        'avatar', quay_api_avatar(t.name, 'team'),
        'can_view', can_view,
        'repo_count', (SELECT count(*) FROM repositorypermission p
                        WHERE p.team_id = t.id),
        'member_count', (SELECT count(*) FROM teammember m
                          WHERE m.team_id = t.id),
        'is_synced', false)
$$;

-- Whether the caller may see team_id's members (Quay's ViewTeamPermission:
-- organization admin, or a member of that team).
CREATE FUNCTION quay_api_org_can_view_team(ctx jsonb, org_id bigint,
                                           team_id bigint)
RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT quay_api_org_role(ctx, org_id) = 3
        OR (quay_api_org_role(ctx, org_id) >= 1
            AND EXISTS (SELECT 1 FROM teammember tm
                         WHERE tm.team_id = quay_api_org_can_view_team.team_id
                           AND tm.user_id = quay_api_user_id(ctx)))
$$;

-- Quay's member view (team.py member_view).
CREATE FUNCTION quay_api_org_member_view(u "user", invited boolean)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'name', u.username,
        'kind', 'user',
        'is_robot', u.robot,
        'avatar', quay_api_avatar(u.username,
                                  CASE WHEN u.robot THEN 'robot'
                                       ELSE 'user' END),
        'invited', invited)
$$;

-- Quay's organization view (organization.py org_view), as the caller may
-- see it: e-mail for admins and viewing superusers, teams for members
-- and viewing superusers, settings for admins.  Quota fields are left
-- out (quota management is not served by this API yet).
CREATE FUNCTION quay_api_org_view(ctx jsonb, org_id bigint)
RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
DECLARE
    o         "user";
    role      integer;
    su_view   boolean;
    view      jsonb;
    teams     jsonb;
    ordered   jsonb;
BEGIN
    SELECT * INTO o FROM "user" WHERE id = org_id;

    role := quay_api_org_role(ctx, org_id);
    su_view := quay_api_is_readonly_superuser(ctx)
               OR quay_api_org_superuser_full(ctx);

    view := jsonb_build_object(
        'name', o.username,
        'email', CASE WHEN role = 3 OR su_view THEN o.email ELSE '' END,
        'avatar', quay_api_avatar(o.username, 'user'),
        'is_admin', role = 3,
        'is_member', role >= 1);

    IF role >= 1 OR su_view THEN
        SELECT COALESCE(jsonb_object_agg(t.name, quay_api_org_team_view(
                            t, role = 3 OR su_view
                               OR EXISTS (SELECT 1 FROM teammember tm
                                           WHERE tm.team_id = t.id
                                             AND tm.user_id
                                                 = quay_api_user_id(ctx)))),
                        '{}'),
               COALESCE(jsonb_agg(t.name ORDER BY t.id), '[]')
          INTO teams, ordered
          FROM team t
         WHERE t.organization_id = org_id;

        view := view || jsonb_build_object('teams', teams,
                                           'ordered_teams', ordered);
    END IF;

    IF role = 3 THEN
        view := view || jsonb_build_object(
            'invoice_email', o.invoice_email,
            'invoice_email_address', o.invoice_email_address,
            'tag_expiration_s', o.removed_tag_expiration_s,
            'is_free_account', o.stripe_id IS NULL);
    END IF;

    RETURN view;
END
$$;


-- Shared with quayctl ------------------------------------------------------

-- Creates organization new_name owned by user owner_name: the "user" row
-- (organization = true), team "owners" with role admin, the owner in it,
-- and the org_create audit row (data/model/organization.py
-- create_organization).  expiration_s is the time-machine window
-- (DEFAULT_TAG_EXPIRATION; NULL: two weeks).  Without an e-mail the row
-- gets a random UUID, as in Quay.  source ('quayctl', or NULL for the
-- API) is recorded in the audit metadata.
CREATE FUNCTION quay_api_org_make(new_name text, new_email text,
                                  owner_name text, expiration_s bigint,
                                  performer_id bigint, ip text, source text)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    owner_id   bigint;
    org_id     bigint;
    owners_id  bigint;
BEGIN
    IF NOT quay_api_org_valid_name(new_name) THEN
        RETURN quay_api_bad_request(
            'Invalid namespace: it must match ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$'
            ' and be 2 to 255 characters long');
    END IF;

    IF new_email = '' THEN
        new_email := NULL;
    END IF;

    IF new_email IS NOT NULL AND NOT quay_api_org_valid_email(new_email) THEN
        RETURN quay_api_bad_request('Invalid email address');
    END IF;

    SELECT u.id INTO owner_id FROM "user" u
     WHERE u.username = owner_name AND NOT u.organization AND NOT u.robot
       AND u.enabled;

    IF owner_id IS NULL THEN
        RETURN quay_api_bad_request('Unknown user');
    END IF;

    IF EXISTS (SELECT 1 FROM "user" u WHERE u.username = new_name) THEN
        RETURN quay_api_bad_request(
            'A user or organization with this name already exists');
    END IF;

    IF new_email IS NOT NULL
       AND EXISTS (SELECT 1 FROM "user" u WHERE u.email = new_email)
    THEN
        RETURN quay_api_bad_request('Email has already been used');
    END IF;

    INSERT INTO "user" (uuid, username, email, organization,
                        removed_tag_expiration_s)
    VALUES (gen_random_uuid()::text, new_name,
            COALESCE(new_email, gen_random_uuid()::text), true,
            COALESCE(expiration_s, 1209600))
    ON CONFLICT (username) DO NOTHING
    RETURNING id INTO org_id;

    IF org_id IS NULL THEN
        -- created by a concurrent request since the check above
        RETURN quay_api_bad_request(
            'A user or organization with this name already exists');
    END IF;

    INSERT INTO team (name, organization_id, role_id)
    SELECT 'owners', org_id, tr.id FROM teamrole tr WHERE tr.name = 'admin'
    RETURNING id INTO owners_id;

    INSERT INTO teammember (user_id, team_id) VALUES (owner_id, owners_id);

    PERFORM quay_log('org_create', org_id, performer_id, NULL, ip,
                     jsonb_build_object('email', new_email,
                                        'namespace', new_name)
                     || jsonb_strip_nulls(jsonb_build_object(
                            'owner', owner_name, 'source', source)));

    RETURN quay_api_ok('"Created"'::jsonb, 201);
END
$$;

-- Adds member_name (a user, or a robot of this organization) to team
-- team_name of organization orgname, with the org_add_team_member audit
-- row (team.py TeamMember.put with invitations off: members are added
-- directly).  Answers the member view.
CREATE FUNCTION quay_api_org_team_add(orgname text, team_name text,
                                      member_name text, performer_id bigint,
                                      ip text, source text)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    org_id    bigint;
    t         team;
    m         "user";
BEGIN
    SELECT u.id INTO org_id FROM "user" u
     WHERE u.username = orgname AND u.organization
       FOR NO KEY UPDATE;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found('Organization not found');
    END IF;

    SELECT * INTO t FROM team
     WHERE team.organization_id = org_id AND team.name = team_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found('Team not found');
    END IF;

    SELECT * INTO m FROM "user" u
     WHERE u.username = member_name AND NOT u.organization;

    IF NOT FOUND THEN
        RETURN quay_api_bad_request('Unknown user');
    END IF;

    IF m.robot AND NOT quay_api_org_is_robot_of(m.username, orgname) THEN
        RETURN quay_api_bad_request(
            'Cannot add the specified robot to this team, as it is not a'
            ' member of the organization');
    END IF;

    IF EXISTS (SELECT 1 FROM teammember tm
                WHERE tm.team_id = t.id AND tm.user_id = m.id)
    THEN
        RETURN quay_api_bad_request(format(
            'User %s is already a member of team %s', m.username, t.name));
    END IF;

    INSERT INTO teammember (user_id, team_id) VALUES (m.id, t.id);

    -- an invitation to the same team is settled by the direct add
    DELETE FROM teammemberinvite i WHERE i.team_id = t.id
                                     AND i.user_id = m.id;

    PERFORM quay_log('org_add_team_member', org_id, performer_id, NULL, ip,
                     jsonb_strip_nulls(jsonb_build_object(
                         'member', m.username, 'team', t.name,
                         'source', source)));

    RETURN quay_api_ok(quay_api_org_member_view(m, false));
END
$$;


-- Organizations ------------------------------------------------------------

-- POST /api/v1/organization/ {name, email?}: 201 "Created".  Any user
-- may create one (user:admin scope), unless SUPERUSERS_ORG_CREATION_ONLY
-- keeps it to superusers (read from ctx.config when the module passes
-- it).
CREATE FUNCTION quay_api_org_create(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    expiration  bigint;
BEGIN
    IF quay_api_user_id(ctx) IS NULL THEN
        RETURN quay_api_err(401, 'invalid_token', 'Requires authentication');
    END IF;

    IF COALESCE((ctx->>'robot')::boolean, false)
       OR (COALESCE((ctx->'config'->>'superusers_org_creation_only')
                    ::boolean, false)
           AND NOT quay_api_is_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF jsonb_typeof(body->'name') IS DISTINCT FROM 'string' THEN
        RETURN quay_api_bad_request('"name" is required and must be a string');
    END IF;

    IF body ? 'email' AND jsonb_typeof(body->'email') <> 'string' THEN
        RETURN quay_api_bad_request('"email" must be a string');
    END IF;

    IF (ctx->'config'->>'default_tag_expiration_s') ~ '^[0-9]{1,12}$' THEN
        expiration := (ctx->'config'->>'default_tag_expiration_s')::bigint;
    END IF;

    RETURN quay_api_org_make(body->>'name', body->>'email',
                             ctx->>'username', expiration,
                             quay_api_user_id(ctx), ctx->>'ip', NULL);
END
$$;

-- GET /api/v1/organization/{orgname}
CREATE FUNCTION quay_api_org_get(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    org_id  bigint := quay_api_org_id(args->>'orgname');
BEGIN
    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_ok(quay_api_org_view(ctx, org_id));
END
$$;

-- PUT /api/v1/organization/{orgname} {email?, invoice_email?,
-- invoice_email_address?, tag_expiration_s?}: every field is checked
-- before anything changes; each change writes its own audit row.
-- tag_expiration_s must be one of TAG_EXPIRATION_OPTIONS (ctx.config's
-- tag_expiration_options in seconds when the module passes them, else
-- Quay's default 0s 1d 1w 2w 4w), and is ignored when
-- FEATURE_CHANGE_TAG_EXPIRATION is off, as in Quay.
CREATE FUNCTION quay_api_org_update(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    orgname     text := args->>'orgname';
    org_id      bigint := quay_api_org_id(args->>'orgname');
    o           "user";
    expiration  bigint;
    options     jsonb;
    address     text;
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_org_superuser_full(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    IF body ? 'email' AND (jsonb_typeof(body->'email') <> 'string'
                           OR NOT quay_api_org_valid_email(body->>'email'))
    THEN
        RETURN quay_api_bad_request('"email" must be a valid e-mail address');
    END IF;

    IF body ? 'invoice_email' AND jsonb_typeof(body->'invoice_email')
                                  <> 'boolean'
    THEN
        RETURN quay_api_bad_request('"invoice_email" must be a boolean');
    END IF;

    IF body ? 'invoice_email_address' THEN
        IF jsonb_typeof(body->'invoice_email_address') = 'null'
           OR body->>'invoice_email_address' = ''
        THEN
            address := NULL;
        ELSIF jsonb_typeof(body->'invoice_email_address') = 'string'
              AND quay_api_org_valid_email(body->>'invoice_email_address')
        THEN
            address := body->>'invoice_email_address';
        ELSE
            RETURN quay_api_bad_request(
                '"invoice_email_address" must be an e-mail address or null');
        END IF;
    END IF;

    IF body ? 'tag_expiration_s' THEN
        IF jsonb_typeof(body->'tag_expiration_s') <> 'number'
           OR (body->>'tag_expiration_s') !~ '^[0-9]{1,12}$'
        THEN
            RETURN quay_api_bad_request(
                '"tag_expiration_s" must be a non-negative integer');
        END IF;

        expiration := (body->>'tag_expiration_s')::bigint;
        options := COALESCE(ctx->'config'->'tag_expiration_options',
                            '[0, 86400, 604800, 1209600, 2419200]');

        IF NOT options @> to_jsonb(expiration) THEN
            RETURN quay_api_bad_request('Invalid tag expiration option');
        END IF;
    END IF;

    SELECT * INTO o FROM "user" WHERE id = org_id FOR NO KEY UPDATE;

    IF body ? 'email' AND body->>'email' <> o.email THEN
        IF EXISTS (SELECT 1 FROM "user" u WHERE u.email = body->>'email')
        THEN
            RETURN quay_api_bad_request('E-mail address already used');
        END IF;
    END IF;

    -- every check passed: change

    IF body ? 'invoice_email' THEN
        UPDATE "user" SET invoice_email = (body->>'invoice_email')::boolean
         WHERE id = org_id;
        PERFORM quay_api_log(ctx, 'org_change_invoicing', org_id, NULL,
                             jsonb_build_object(
                                 'invoice_email', body->'invoice_email',
                                 'namespace', orgname));
    END IF;

    IF body ? 'invoice_email_address'
       AND address IS DISTINCT FROM o.invoice_email_address
    THEN
        UPDATE "user" SET invoice_email_address = address WHERE id = org_id;
        PERFORM quay_api_log(ctx, 'org_change_invoicing', org_id, NULL,
                             jsonb_build_object(
                                 'invoice_email_address', address,
                                 'namespace', orgname));
    END IF;

    IF body ? 'email' AND body->>'email' <> o.email THEN
        UPDATE "user" SET email = body->>'email', verified = false
         WHERE id = org_id;
        PERFORM quay_api_log(ctx, 'org_change_email', org_id, NULL,
                             jsonb_build_object(
                                 'email', body->>'email',
                                 'namespace', orgname,
                                 'old_email', o.email));
    END IF;

    IF body ? 'tag_expiration_s'
       AND COALESCE((ctx->'config'->>'change_tag_expiration')::boolean,
                    true)
    THEN
        UPDATE "user" SET removed_tag_expiration_s = expiration
         WHERE id = org_id;
        PERFORM quay_api_log(ctx, 'org_change_tag_expiration', org_id, NULL,
                             jsonb_build_object(
                                 'tag_expiration', expiration,
                                 'namespace', orgname));
    END IF;

    RETURN quay_api_ok(quay_api_org_view(ctx, org_id));
END
$$;

-- DELETE /api/v1/organization/{orgname}: 204.  The organization, its
-- teams and memberships (by cascade) and its robots go in one
-- transaction.  Quay marks the namespace for deletion and lets its
-- namespace GC purge the repositories; this registry has no namespace GC
-- yet, so an organization that still has repositories is refused (400)
-- until they are deleted.
CREATE FUNCTION quay_api_org_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    orgname  text := args->>'orgname';
    org_id   bigint := quay_api_org_id(args->>'orgname');
    live     bigint;
    purging  bigint;
    mirror   text;
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_org_superuser_full(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    PERFORM 1 FROM "user" WHERE id = org_id FOR UPDATE;

    SELECT count(*) FILTER (WHERE r.state <> 3),
           count(*) FILTER (WHERE r.state = 3)
      INTO live, purging
      FROM repository r WHERE r.namespace_user_id = org_id;

    IF live > 0 THEN
        RETURN quay_api_bad_request(format(
            'Organization %s still has %s repositories: delete its'
            ' repositories first', orgname, live));
    END IF;

    IF purging > 0 THEN
        RETURN quay_api_bad_request(format(
            'Organization %s has deleted repositories that are still being'
            ' purged: try again later', orgname));
    END IF;

    SELECT u.username INTO mirror
      FROM repomirrorconfig mc JOIN "user" u ON u.id = mc.internal_robot_id
     WHERE u.robot AND quay_api_org_is_robot_of(u.username, orgname)
     LIMIT 1;

    IF mirror IS NOT NULL THEN
        RETURN quay_api_bad_request(format(
            'Robot %s mirrors a repository: reconfigure that mirror first',
            mirror));
    END IF;

    PERFORM quay_api_log(ctx, 'org_delete', org_id, NULL,
                         jsonb_build_object('namespace', orgname));

    DELETE FROM "user" u
     WHERE u.robot AND quay_api_org_is_robot_of(u.username, orgname);

    DELETE FROM "user" WHERE id = org_id;

    RETURN quay_api_empty(204);
END
$$;

-- GET /api/v1/organization/{orgname}/members: the human members, each
-- with the teams they are in and the organization's repositories they
-- have a direct permission on (robots are left out, as in Quay).
CREATE FUNCTION quay_api_org_members(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    org_id   bigint := quay_api_org_id(args->>'orgname');
    members  jsonb;
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_is_readonly_superuser(ctx)
            OR quay_api_org_superuser_full(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'name', u.username,
               'kind', 'user',
               'avatar', quay_api_avatar(u.username, 'user'),
               'teams', (SELECT jsonb_agg(jsonb_build_object(
                                    'name', t.name,
                                    'avatar', quay_api_avatar(t.name, 'team'))
                                  ORDER BY t.name)
                           FROM team t JOIN teammember tm
                             ON tm.team_id = t.id
                          WHERE t.organization_id = org_id
                            AND tm.user_id = u.id),
               'repositories', (SELECT COALESCE(jsonb_agg(r.name
                                                          ORDER BY r.name),
                                                '[]')
                                  FROM repositorypermission p
                                  JOIN repository r ON r.id = p.repository_id
                                 WHERE p.user_id = u.id
                                   AND r.namespace_user_id = org_id
                                   AND r.state <> 3))
             ORDER BY u.username), '[]')
      INTO members
      FROM "user" u
     WHERE NOT u.robot
       AND EXISTS (SELECT 1 FROM team t JOIN teammember tm
                     ON tm.team_id = t.id
                    WHERE t.organization_id = org_id AND tm.user_id = u.id);

    RETURN quay_api_ok(jsonb_build_object('members', members));
END
$$;


-- Teams --------------------------------------------------------------------

-- PUT /api/v1/organization/{orgname}/team/{teamname} {role, description?}:
-- creates the team, or changes its description and role; answers the
-- team view with "new_team".
CREATE FUNCTION quay_api_org_team_put(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    orgname    text := args->>'orgname';
    team_name  text := args->>'teamname';
    org_id     bigint := quay_api_org_id(args->>'orgname');
    new_role   text;
    old_role   text;
    mine       bigint[];
    t          team;
    created    boolean := false;
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_is_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    IF jsonb_typeof(body->'role') IS DISTINCT FROM 'string'
       OR body->>'role' NOT IN ('member', 'creator', 'admin')
    THEN
        RETURN quay_api_bad_request(
            '"role" is required: one of member, creator, admin');
    END IF;

    new_role := body->>'role';

    IF body ? 'description' AND jsonb_typeof(body->'description') <> 'string'
    THEN
        RETURN quay_api_bad_request('"description" must be a string');
    END IF;

    IF length(body->>'description') > 65535 THEN
        RETURN quay_api_bad_request(
            '"description" is longer than 65535 characters');
    END IF;

    PERFORM 1 FROM "user" WHERE id = org_id FOR NO KEY UPDATE;

    SELECT * INTO t FROM team
     WHERE team.organization_id = org_id AND team.name = team_name;

    IF NOT FOUND THEN
        IF NOT quay_api_org_valid_name(team_name) THEN
            RETURN quay_api_bad_request(
                'Invalid team name: it must match'
                ' ^([a-z0-9]+(?:[._-][a-z0-9]+)*)$ and be 2 to 255'
                ' characters long');
        END IF;

        INSERT INTO team (name, organization_id, role_id, description)
        SELECT team_name, org_id, tr.id, COALESCE(body->>'description', '')
          FROM teamrole tr WHERE tr.name = new_role
        RETURNING * INTO t;

        created := true;
        PERFORM quay_api_log(ctx, 'org_create_team', org_id, NULL,
                             jsonb_build_object('team', team_name));

    ELSE
        SELECT tr.name INTO old_role FROM teamrole tr WHERE tr.id = t.role_id;

        IF old_role = 'admin' AND new_role <> 'admin' THEN
            mine := quay_api_org_admin_teams(org_id, quay_api_user_id(ctx));

            IF t.id = ANY (mine) AND cardinality(mine) = 1 THEN
                RETURN quay_api_bad_request(format(
                    'Cannot remove admin from team ''%s'' because calling'
                    ' user would no longer have admin on org ''%s''',
                    team_name, orgname));
            END IF;

            IF quay_api_org_admins_left(org_id, t.id, NULL) = 0 THEN
                RETURN quay_api_bad_request(format(
                    'Cannot remove admin from team ''%s'': organization'
                    ' ''%s'' would have no admin left', team_name, orgname));
            END IF;
        END IF;

        IF body ? 'description' AND body->>'description' <> t.description
        THEN
            UPDATE team SET description = body->>'description'
             WHERE id = t.id RETURNING * INTO t;
            PERFORM quay_api_log(ctx, 'org_set_team_description', org_id,
                                 NULL, jsonb_build_object(
                                     'team', team_name,
                                     'description', t.description));
        END IF;

        IF new_role <> old_role THEN
            UPDATE team SET role_id = (SELECT tr.id FROM teamrole tr
                                        WHERE tr.name = new_role)
             WHERE id = t.id RETURNING * INTO t;
            PERFORM quay_api_log(ctx, 'org_set_team_role', org_id, NULL,
                                 jsonb_build_object('team', team_name,
                                                    'role', new_role));
        END IF;
    END IF;

    RETURN quay_api_ok(quay_api_org_team_view(
                           t, quay_api_org_can_view_team(ctx, org_id, t.id))
                       || jsonb_build_object('new_team', created));
END
$$;

-- DELETE /api/v1/organization/{orgname}/team/{teamname}: 204; its
-- memberships and repository permissions go with it.
CREATE FUNCTION quay_api_org_team_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    orgname    text := args->>'orgname';
    team_name  text := args->>'teamname';
    org_id     bigint := quay_api_org_id(args->>'orgname');
    mine       bigint[];
    t          team;
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_is_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    PERFORM 1 FROM "user" WHERE id = org_id FOR NO KEY UPDATE;

    SELECT * INTO t FROM team
     WHERE team.organization_id = org_id AND team.name = team_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found('Team not found');
    END IF;

    IF EXISTS (SELECT 1 FROM teamrole tr
                WHERE tr.id = t.role_id AND tr.name = 'admin')
    THEN
        mine := quay_api_org_admin_teams(org_id, quay_api_user_id(ctx));

        IF t.id = ANY (mine) AND cardinality(mine) = 1 THEN
            RETURN quay_api_bad_request(format(
                'Deleting team ''%s'' would remove admin ability for user'
                ' ''%s'' in organization ''%s''',
                team_name, ctx->>'username', orgname));
        END IF;

        IF quay_api_org_admins_left(org_id, t.id, NULL) = 0 THEN
            RETURN quay_api_bad_request(format(
                'Cannot delete team ''%s'': organization ''%s'' would have'
                ' no admin left', team_name, orgname));
        END IF;
    END IF;

    DELETE FROM team WHERE id = t.id;

    PERFORM quay_api_log(ctx, 'org_delete_team', org_id, NULL,
                         jsonb_build_object('team', team_name));

    RETURN quay_api_empty(204);
END
$$;

-- GET /api/v1/organization/{orgname}/team/{teamname}/members
-- [?includePending=true]: members of the team (robots included), and
-- pending invitations for admins who ask.
CREATE FUNCTION quay_api_org_team_members(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    team_name  text := args->>'teamname';
    org_id     bigint := quay_api_org_id(args->>'orgname');
    can_edit   boolean := quay_api_org_role(ctx, org_id) = 3;
    t          team;
    members    jsonb;
    invites    jsonb := '[]';
BEGIN
    SELECT * INTO t FROM team
     WHERE team.organization_id = org_id AND team.name = team_name;

    IF NOT (can_edit
            OR (t.id IS NOT NULL
                AND quay_api_org_can_view_team(ctx, org_id, t.id))
            OR quay_api_is_superuser(ctx)
            OR quay_api_is_readonly_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF t.id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    SELECT COALESCE(jsonb_agg(quay_api_org_member_view(u, false)
                              ORDER BY u.username), '[]')
      INTO members
      FROM "user" u JOIN teammember tm ON tm.user_id = u.id
     WHERE tm.team_id = t.id;

    IF can_edit AND lower(COALESCE(args->>'includePending', ''))
                    IN ('true', '1', 'yes', 'on')
    THEN
        SELECT COALESCE(jsonb_agg(CASE WHEN u.id IS NOT NULL
                                  THEN quay_api_org_member_view(u, true)
                                  ELSE jsonb_build_object(
                                      'email', i.email,
                                      'kind', 'invite',
                                      'avatar', quay_api_avatar(i.email,
                                                                'user'),
                                      'invited', true) END
                                  ORDER BY i.id), '[]')
          INTO invites
          FROM teammemberinvite i LEFT JOIN "user" u ON u.id = i.user_id
         WHERE i.team_id = t.id;
    END IF;

    RETURN quay_api_ok(jsonb_build_object(
        'name', team_name,
        'members', members || invites,
        'can_edit', can_edit));
END
$$;

-- PUT /api/v1/organization/{orgname}/team/{teamname}/members/{membername}
CREATE FUNCTION quay_api_org_member_put(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    org_id  bigint := quay_api_org_id(args->>'orgname');
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_is_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    RETURN quay_api_org_team_add(args->>'orgname', args->>'teamname',
                                 args->>'membername', quay_api_user_id(ctx),
                                 ctx->>'ip', NULL);
END
$$;

-- DELETE /api/v1/organization/{orgname}/team/{teamname}/members/
-- {membername}: 204.  A pending invitation of that user is withdrawn
-- instead when there is one, as in Quay.
CREATE FUNCTION quay_api_org_member_delete(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql AS $$
DECLARE
    orgname    text := args->>'orgname';
    team_name  text := args->>'teamname';
    org_id     bigint := quay_api_org_id(args->>'orgname');
    t          team;
    m          "user";
    mine       bigint[];
BEGIN
    IF NOT (quay_api_org_role(ctx, org_id) = 3
            OR quay_api_is_superuser(ctx))
    THEN
        RETURN quay_api_forbidden();
    END IF;

    IF org_id IS NULL THEN
        RETURN quay_api_not_found();
    END IF;

    PERFORM 1 FROM "user" WHERE id = org_id FOR NO KEY UPDATE;

    SELECT * INTO t FROM team
     WHERE team.organization_id = org_id AND team.name = team_name;

    IF NOT FOUND THEN
        RETURN quay_api_not_found('Team not found');
    END IF;

    SELECT * INTO m FROM "user" u
     WHERE u.username = args->>'membername' AND NOT u.organization;

    IF NOT FOUND THEN
        RETURN quay_api_not_found('Unknown user');
    END IF;

    DELETE FROM teammemberinvite i WHERE i.team_id = t.id
                                     AND i.user_id = m.id;
    IF FOUND THEN
        PERFORM quay_api_log(ctx, 'org_delete_team_member_invite', org_id,
                             NULL, jsonb_build_object(
                                 'user', m.username, 'team', team_name,
                                 'member', m.username));
        RETURN quay_api_empty(204);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM teammember tm
                    WHERE tm.team_id = t.id AND tm.user_id = m.id)
    THEN
        RETURN quay_api_bad_request(format(
            'User %s does not belong to team %s', m.username, team_name));
    END IF;

    IF NOT m.robot AND EXISTS (SELECT 1 FROM teamrole tr
                                WHERE tr.id = t.role_id
                                  AND tr.name = 'admin')
    THEN
        mine := quay_api_org_admin_teams(org_id, quay_api_user_id(ctx));

        IF m.id = quay_api_user_id(ctx) AND t.id = ANY (mine)
           AND cardinality(mine) = 1
        THEN
            RETURN quay_api_bad_request(
                'User cannot remove themselves from their only admin team.');
        END IF;

        IF quay_api_org_admins_left(org_id, t.id, m.id) = 0 THEN
            RETURN quay_api_bad_request(format(
                'Cannot remove %s from team ''%s'': organization ''%s'' would'
                ' have no admin left', m.username, team_name, orgname));
        END IF;
    END IF;

    DELETE FROM teammember tm WHERE tm.team_id = t.id AND tm.user_id = m.id;

    PERFORM quay_api_log(ctx, 'org_remove_team_member', org_id, NULL,
                         jsonb_build_object('member', m.username,
                                            'team', team_name));

    RETURN quay_api_empty(204);
END
$$;
