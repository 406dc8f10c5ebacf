-- 0016_namespace_on_push: Quay's CREATE_NAMESPACE_ON_PUSH.
--
-- Why: with the option on, a push to a namespace that does not exist yet
-- makes it an organization owned by the pusher (Quay's v2auth), so a CI
-- system can push acme/app before anyone made acme.  The organization is
-- made exactly as POST /api/v1/organization/ makes it (owners team with
-- the pusher, audit row org_create), by calling that route's function.
-- Returns whether the namespace exists afterwards (a concurrent push may
-- have made it; a bad name makes nothing).

CREATE FUNCTION quay_namespace_create_on_push(user_id bigint, ns text,
                                              ip text,
                                              tag_expiration_s bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    res       quay_api_result;
    username  text;
BEGIN
    SELECT u.username INTO username FROM "user" u
     WHERE u.id = user_id AND NOT u.robot AND NOT u.organization
       AND u.enabled;

    IF NOT FOUND THEN
        RETURN false;
    END IF;

    res := quay_api_org_create(
        jsonb_build_object('user_id', user_id, 'username', username,
                           'robot', false, 'scopes', '["user:admin"]'::jsonb,
                           'ip', ip,
                           'config', jsonb_build_object(
                               'default_tag_expiration_s',
                               tag_expiration_s::text)),
        '{}'::jsonb,
        jsonb_build_object('name', ns));

    RETURN res.status = 201 OR quay_namespace_id(ns) IS NOT NULL;
END
$$;
