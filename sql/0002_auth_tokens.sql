-- 0002_auth_tokens: signing keys and every credential other than a password.
--
-- Why: /v2/auth signs registry JWTs with instance keys whose public halves
-- must be visible to every node (servicekey), and Basic auth accepts app
-- tokens ($app), legacy repository tokens ($token) and OAuth tokens
-- ($oauthtoken) besides passwords (quay-behaviour.md 3.2, 3.3, 3.5).
--
-- Encrypted columns (Quay's EncryptedCharField: "v0$$" + base64 of an
-- AES-CCM nonce, ciphertext and tag under DATABASE_SECRET_KEY) are text, so
-- the column never limits the encoding; the API enforces Quay's lengths.
-- Hashed columns (oauthaccesstoken.token_code,
-- oauthauthorizationcode.code_credential) hold password-style hashes.


-- Service keys: approval first, the key points at it.
CREATE TABLE servicekeyapproval (
    id              bigserial PRIMARY KEY,
    approver_id     bigint NULL REFERENCES "user" (id) ON DELETE SET NULL,
    approval_type   varchar(255) NOT NULL,     -- ServiceKeyApprovalType
    approved_date   timestamptz NOT NULL DEFAULT now(),
    notes           text NOT NULL DEFAULT ''
);
CREATE INDEX servicekeyapproval_approval_type
    ON servicekeyapproval (approval_type);
CREATE INDEX servicekeyapproval_approver_id ON servicekeyapproval (approver_id);

-- jwk is the PUBLIC key only; kid is its RFC 7638 thumbprint.  Verifiers
-- load every approved, unexpired key of service 'quay'.
CREATE TABLE servicekey (
    id                  bigserial PRIMARY KEY,
    name                varchar(255) NOT NULL DEFAULT '',
    kid                 varchar(255) NOT NULL UNIQUE,
    service             varchar(255) NOT NULL,
    jwk                 jsonb NOT NULL,
    metadata            jsonb NOT NULL DEFAULT '{}',
    created_date        timestamptz NOT NULL DEFAULT now(),
    expiration_date     timestamptz NULL,
    rotation_duration   integer NULL,
    approval_id         bigint NULL
                        REFERENCES servicekeyapproval (id) ON DELETE SET NULL
);
CREATE INDEX servicekey_service ON servicekey (service);
CREATE INDEX servicekey_approval_id ON servicekey (approval_id);
CREATE INDEX servicekey_expiration_date ON servicekey (expiration_date);


-- App-specific tokens: the 120-character secret is token_name (first 60)
-- followed by the plain secret, stored encrypted in token_secret.
CREATE TABLE appspecificauthtoken (
    id              bigserial PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    uuid            varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    title           varchar(255) NOT NULL,
    token_name      varchar(255) NOT NULL UNIQUE,
    token_secret    text NOT NULL,              -- encrypted
    created         timestamptz NOT NULL DEFAULT now(),
    expiration      timestamptz NULL,
    last_accessed   timestamptz NULL
);
CREATE INDEX appspecificauthtoken_uuid ON appspecificauthtoken (uuid);
CREATE INDEX appspecificauthtoken_user_id_expiration
    ON appspecificauthtoken (user_id, expiration);
CREATE INDEX appspecificauthtoken_expiration
    ON appspecificauthtoken (expiration) WHERE expiration IS NOT NULL;


-- Legacy repository tokens (user "$token").
CREATE TABLE accesstokenkind (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO accesstokenkind (name) VALUES ('build-worker'), ('pushpull-token');

CREATE TABLE accesstoken (
    id              bigserial PRIMARY KEY,
    friendly_name   varchar(255) NULL,
    token_name      varchar(255) NOT NULL UNIQUE,
    token_code      text NOT NULL,              -- encrypted
    repository_id   bigint NOT NULL
                    REFERENCES repository (id) ON DELETE CASCADE,
    created         timestamptz NOT NULL DEFAULT now(),
    role_id         integer NOT NULL REFERENCES role (id),
    temporary       boolean NOT NULL DEFAULT true,
    kind_id         integer NULL REFERENCES accesstokenkind (id)
);
CREATE INDEX accesstoken_repository_id ON accesstoken (repository_id);


-- OAuth applications belong to organizations.
CREATE TABLE oauthapplication (
    id                      bigserial PRIMARY KEY,
    client_id               varchar(255) NOT NULL UNIQUE,
    secure_client_secret    text NULL,          -- encrypted
    redirect_uri            varchar(255) NOT NULL DEFAULT '',
    application_uri         varchar(255) NOT NULL DEFAULT '',
    organization_id         bigint NOT NULL
                            REFERENCES "user" (id) ON DELETE CASCADE,
    name                    varchar(255) NOT NULL,
    description             text NOT NULL DEFAULT '',
    gravatar_email          varchar(255) NULL,
    fully_migrated          boolean NOT NULL DEFAULT true
);
CREATE INDEX oauthapplication_organization_id
    ON oauthapplication (organization_id);

-- The bearer token is token_name (20 characters) followed by a secret
-- checked against the hash in token_code.
CREATE TABLE oauthaccesstoken (
    id                  bigserial PRIMARY KEY,
    uuid                varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    application_id      bigint NOT NULL
                        REFERENCES oauthapplication (id) ON DELETE CASCADE,
    authorized_user_id  bigint NOT NULL
                        REFERENCES "user" (id) ON DELETE CASCADE,
    scope               varchar(255) NOT NULL,
    token_name          varchar(255) NOT NULL UNIQUE,
    token_code          varchar(255) NOT NULL,  -- hashed
    token_type          varchar(255) NOT NULL DEFAULT 'Bearer',
    expires_at          timestamptz NOT NULL,
    data                text NOT NULL DEFAULT '',
    created             timestamptz NULL DEFAULT now(),
    last_accessed       timestamptz NULL
);
CREATE INDEX oauthaccesstoken_uuid ON oauthaccesstoken (uuid);
CREATE INDEX oauthaccesstoken_application_id
    ON oauthaccesstoken (application_id);
CREATE INDEX oauthaccesstoken_authorized_user_id
    ON oauthaccesstoken (authorized_user_id);

CREATE TABLE oauthauthorizationcode (
    id                  bigserial PRIMARY KEY,
    application_id      bigint NOT NULL
                        REFERENCES oauthapplication (id) ON DELETE CASCADE,
    scope               varchar(255) NOT NULL,
    data                text NOT NULL DEFAULT '',
    code_name           varchar(255) NOT NULL UNIQUE,
    code_credential     varchar(255) NOT NULL   -- hashed
);
CREATE INDEX oauthauthorizationcode_application_id
    ON oauthauthorizationcode (application_id);
