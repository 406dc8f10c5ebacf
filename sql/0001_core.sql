-- 0001_core: namespaces, teams, repositories and permissions.
--
-- Why: every request starts by resolving a namespace and a repository and
-- deciding what the caller may do there.  These are Quay's tables with
-- Quay's names (data/database.py), so Quay's documentation describes this
-- registry too; see shared/reference/quay-behaviour.md sections 1.1-1.3.
--
-- Conventions for every migration in sql/:
--   * entity tables have "id bigserial"; lookup tables ("EnumField" in
--     Quay: role, visibility, ...) have "id serial" and a unique name, and
--     are looked up BY NAME.  The few lookup rows that column defaults rely
--     on get fixed ids here.
--   * a foreign key to table foo is the column foo_id (peewee's rule).
--   * timestamps are timestamptz (Quay stores naive UTC datetimes); tag
--     lifetimes are epoch milliseconds in bigint, as in Quay.
--   * JSON columns are jsonb.
--   * ON DELETE CASCADE only where the child row means nothing without its
--     parent and deleting it needs no work elsewhere (stars, memberships,
--     tokens, ...).  Where deletion needs application work (quota
--     accounting, storage GC), the default NO ACTION makes the database
--     refuse the shortcut: a namespace with repositories, a manifest that a
--     tag points at, a blob that a manifest uses.  NO ACTION (not RESTRICT)
--     is checked at the end of the statement, so a cascade that removes
--     both sides in one DELETE still works.
--   * "user" is a reserved word: always quote it.


-- Lookup tables -----------------------------------------------------------

-- Repository roles, lowest first by meaning: read < write < admin.
CREATE TABLE role (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO role (id, name) VALUES (1, 'admin'), (2, 'write'), (3, 'read');
SELECT setval('role_id_seq', (SELECT max(id) FROM role));

-- Team roles: member < creator < admin (admin = org admin).
CREATE TABLE teamrole (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO teamrole (id, name)
    VALUES (1, 'admin'), (2, 'creator'), (3, 'member');
SELECT setval('teamrole_id_seq', (SELECT max(id) FROM teamrole));

CREATE TABLE visibility (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO visibility (id, name) VALUES (1, 'public'), (2, 'private');
SELECT setval('visibility_id_seq', (SELECT max(id) FROM visibility));

-- repository.kind_id defaults to 1 = image, as in Quay.
CREATE TABLE repositorykind (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO repositorykind (id, name) VALUES (1, 'image'), (2, 'application');
SELECT setval('repositorykind_id_seq', (SELECT max(id) FROM repositorykind));

-- External identity providers; robots are federatedlogin rows of service
-- 'quayrobot' with service_ident 'robot:<id>'.
CREATE TABLE loginservice (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO loginservice (name) VALUES
    ('google'), ('github'), ('quayrobot'), ('ldap'), ('jwtauthn'),
    ('keystone'), ('dex'), ('oidc');


-- Namespaces --------------------------------------------------------------

-- Users, organizations (organization = true) and robot accounts
-- (robot = true, username "<namespace>+<short>") share this table.
-- password_hash is "$pbkdf2-sha256$..." written by lib/quay_password.c
-- (Quay's own rows hold bcrypt "$2b$..." hashes).
CREATE TABLE "user" (
    id                          bigserial PRIMARY KEY,
    uuid                        varchar(36) NULL,
    username                    varchar(255) NOT NULL UNIQUE,
    password_hash               varchar(255) NULL,
    email                       varchar(255) NOT NULL,
    verified                    boolean NOT NULL DEFAULT false,
    stripe_id                   varchar(255) NULL,
    organization                boolean NOT NULL DEFAULT false,
    robot                       boolean NOT NULL DEFAULT false,
    invoice_email               boolean NOT NULL DEFAULT false,
    invoice_email_address       varchar(255) NULL,
    invalid_login_attempts      integer NOT NULL DEFAULT 0,
    last_invalid_login          timestamptz NOT NULL DEFAULT now(),
    -- the namespace's time-machine window (DEFAULT_TAG_EXPIRATION, 2w)
    removed_tag_expiration_s    bigint NOT NULL DEFAULT 1209600
                                CHECK (removed_tag_expiration_s >= 0),
    enabled                     boolean NOT NULL DEFAULT true,
    given_name                  varchar(255) NULL,
    family_name                 varchar(255) NULL,
    company                     varchar(255) NULL,
    location                    varchar(255) NULL,
    maximum_queued_builds_count integer NULL,
    creation_date               timestamptz NULL DEFAULT now(),
    last_accessed               timestamptz NULL,
    CHECK (NOT (organization AND robot))
);
CREATE INDEX user_uuid ON "user" (uuid);
CREATE INDEX user_stripe_id ON "user" (stripe_id);
CREATE INDEX user_organization ON "user" (organization);
CREATE INDEX user_robot ON "user" (robot);
CREATE INDEX user_invoice_email_address ON "user" (invoice_email_address);
CREATE INDEX user_last_accessed ON "user" (last_accessed);
-- An e-mail address identifies one person; organizations may share one
-- (Quay's user_email_unique_non_org).
CREATE UNIQUE INDEX user_email_unique_non_org ON "user" (email)
    WHERE organization = false;
CREATE INDEX user_email_idx ON "user" (email);
-- GC and quota pick policies and namespaces among enabled rows.
CREATE INDEX user_removed_tag_expiration_s ON "user" (removed_tag_expiration_s)
    WHERE enabled;

CREATE TABLE robotaccounttoken (
    id                  bigserial PRIMARY KEY,
    robot_account_id    bigint NOT NULL UNIQUE
                        REFERENCES "user" (id) ON DELETE CASCADE,
    token               text NOT NULL,          -- encrypted (v0$$...)
    fully_migrated      boolean NOT NULL DEFAULT false
);

CREATE TABLE robotaccountmetadata (
    id                  bigserial PRIMARY KEY,
    robot_account_id    bigint NOT NULL UNIQUE
                        REFERENCES "user" (id) ON DELETE CASCADE,
    description         varchar(255) NOT NULL DEFAULT '',
    unstructured_json   jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE federatedlogin (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    service_id      integer NOT NULL REFERENCES loginservice (id),
    service_ident   varchar(255) NOT NULL,
    metadata_json   jsonb NOT NULL DEFAULT '{}',
    UNIQUE (service_id, service_ident),
    UNIQUE (service_id, user_id)
);
CREATE INDEX federatedlogin_user_id ON federatedlogin (user_id);


-- Teams -------------------------------------------------------------------

-- Creating an organization creates its team "owners" with role admin.
CREATE TABLE team (
    id              bigserial PRIMARY KEY,
    name            varchar(255) NOT NULL,
    organization_id bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    role_id         integer NOT NULL REFERENCES teamrole (id),
    description     text NOT NULL DEFAULT '',
    UNIQUE (name, organization_id)
);
CREATE INDEX team_organization_id ON team (organization_id);
CREATE INDEX team_role_id ON team (role_id);

-- Organization membership == membership in any of its teams.  Robots may
-- be members.
CREATE TABLE teammember (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    team_id     bigint NOT NULL REFERENCES team (id) ON DELETE CASCADE,
    UNIQUE (user_id, team_id)
);
CREATE INDEX teammember_team_id ON teammember (team_id);

CREATE TABLE teammemberinvite (
    id              bigserial PRIMARY KEY,
    user_id         bigint NULL REFERENCES "user" (id) ON DELETE CASCADE,
    email           varchar(255) NULL,
    team_id         bigint NOT NULL REFERENCES team (id) ON DELETE CASCADE,
    inviter_id      bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    invite_token    varchar(255) NOT NULL UNIQUE,
    CHECK (user_id IS NOT NULL OR email IS NOT NULL)
);
CREATE INDEX teammemberinvite_user_id ON teammemberinvite (user_id);
CREATE INDEX teammemberinvite_team_id ON teammemberinvite (team_id);
CREATE INDEX teammemberinvite_inviter_id ON teammemberinvite (inviter_id);


-- Repositories ------------------------------------------------------------

-- state: 0 NORMAL, 1 READ_ONLY, 2 MIRROR, 3 MARKED_FOR_DELETION,
-- 4 ORG_MIRROR.  Deleting a repository renames it to a UUID, sets state 3
-- and queues "repositorygc"; the worker purges it.  A namespace with
-- repositories cannot be deleted directly (NO ACTION): the namespace GC
-- purges each repository first, which keeps quota totals right.
CREATE TABLE repository (
    id                  bigserial PRIMARY KEY,
    namespace_user_id   bigint NOT NULL REFERENCES "user" (id),
    name                varchar(255) NOT NULL,
    visibility_id       integer NOT NULL REFERENCES visibility (id),
    description         text NULL,
    badge_token         varchar(255) NOT NULL DEFAULT gen_random_uuid()::text,
    kind_id             integer NOT NULL DEFAULT 1
                        REFERENCES repositorykind (id),
    trust_enabled       boolean NOT NULL DEFAULT false,
    state               smallint NOT NULL DEFAULT 0
                        CHECK (state BETWEEN 0 AND 4),
    UNIQUE (namespace_user_id, name)
);
CREATE INDEX repository_visibility_id ON repository (visibility_id);
CREATE INDEX repository_kind_id ON repository (kind_id);
CREATE INDEX repository_state ON repository (state);
-- The catalog lists public repositories in id order.
CREATE INDEX repository_visibility_id_id ON repository (visibility_id, id);

-- Exactly one of team_id / user_id.
CREATE TABLE repositorypermission (
    id              bigserial PRIMARY KEY,
    team_id         bigint NULL REFERENCES team (id) ON DELETE CASCADE,
    user_id         bigint NULL REFERENCES "user" (id) ON DELETE CASCADE,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    role_id         integer NOT NULL REFERENCES role (id),
    CHECK ((team_id IS NULL) <> (user_id IS NULL)),
    UNIQUE (team_id, repository_id),
    UNIQUE (user_id, repository_id)
);
CREATE INDEX repositorypermission_repository_id
    ON repositorypermission (repository_id);
CREATE INDEX repositorypermission_role_id ON repositorypermission (role_id);

-- Default permissions applied when a repository is created in org_id:
-- for repositories created by activating_user (or by anyone when NULL),
-- grant role to delegate_user or delegate_team.
CREATE TABLE permissionprototype (
    id                  bigserial PRIMARY KEY,
    org_id              bigint NOT NULL
                        REFERENCES "user" (id) ON DELETE CASCADE,
    uuid                varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    activating_user_id  bigint NULL REFERENCES "user" (id) ON DELETE CASCADE,
    delegate_user_id    bigint NULL REFERENCES "user" (id) ON DELETE CASCADE,
    delegate_team_id    bigint NULL REFERENCES team (id) ON DELETE CASCADE,
    role_id             integer NOT NULL REFERENCES role (id),
    CHECK ((delegate_user_id IS NULL) <> (delegate_team_id IS NULL))
);
CREATE INDEX permissionprototype_org_id_activating_user_id
    ON permissionprototype (org_id, activating_user_id);
CREATE INDEX permissionprototype_uuid ON permissionprototype (uuid);
CREATE INDEX permissionprototype_activating_user_id
    ON permissionprototype (activating_user_id);
CREATE INDEX permissionprototype_delegate_user_id
    ON permissionprototype (delegate_user_id);
CREATE INDEX permissionprototype_delegate_team_id
    ON permissionprototype (delegate_team_id);

CREATE TABLE star (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    created         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, repository_id)
);
CREATE INDEX star_repository_id ON star (repository_id);
