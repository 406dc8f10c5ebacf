-- 0010_api_user: GET /api/v1/user/ (endpoints/api/user.py: User.get).
--
-- Why: the first call any API client makes, to learn who its token
-- belongs to and which namespaces it may use.

CREATE FUNCTION quay_api_user_get(ctx jsonb, args jsonb, body jsonb)
RETURNS quay_api_result LANGUAGE plpgsql STABLE AS $$
DECLARE
    u       "user";
    orgs    jsonb;
BEGIN
    SELECT * INTO u FROM "user" WHERE id = quay_api_user_id(ctx);

    IF NOT FOUND THEN
        RETURN quay_api_err(401, 'invalid_token', 'Requires authentication');
    END IF;

    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'name', o.username,
               'avatar', quay_api_avatar(o.username, 'org'),
               'can_create_repo', quay_org_role(u.id, o.id) >= 2,
               'public', false,
               'is_org_admin', quay_org_role(u.id, o.id) = 3,
               'preferred_namespace', false)
             ORDER BY o.username), '[]')
      INTO orgs
      FROM "user" o
     WHERE o.organization
       AND EXISTS (SELECT 1 FROM team t
                     JOIN teammember tm ON tm.team_id = t.id
                    WHERE t.organization_id = o.id AND tm.user_id = u.id);

    RETURN quay_api_ok(jsonb_build_object(
        'anonymous', false,
        'username', u.username,
        'avatar', quay_api_avatar(u.username, 'user'),
        'can_create_repo', true,
        'is_me', true,
        'verified', u.verified,
        'email', u.email,
        'logins', '[]'::jsonb,
        'invoice_email', u.invoice_email,
        'invoice_email_address', u.invoice_email_address,
        'preferred_namespace', false,
        'tag_expiration_s', u.removed_tag_expiration_s,
        'prompts', '[]'::jsonb,
        'company', u.company,
        'family_name', u.family_name,
        'given_name', u.given_name,
        'location', u.location,
        'super_user', quay_api_is_superuser(ctx),
        'global_readonly_super_user', quay_api_is_readonly_superuser(ctx),
        'organizations', orgs));
END
$$;
