-- 0005_logs_notifications: the audit log and notifications.
--
-- Why: Quay records user-visible actions (push, pull, tag changes, logins,
-- permission changes, mirror runs, autoprune deletions) in an audit log
-- that the API pages through by namespace, performer or repository, and
-- sends repository and namespace notifications (webhook, e-mail, Slack,
-- in-app) on events (quay-behaviour.md 1.8).
--
-- logentry has Quay's logentry3 shape under the name logentry: no foreign
-- keys at all, so logs outlive the users and repositories they mention and
-- an insert costs one heap and four index writes.


CREATE TABLE logentrykind (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO logentrykind (name) VALUES
    -- users and accounts
    ('user_create'), ('user_delete'), ('user_disable'), ('user_enable'),
    ('user_change_email'), ('user_change_password'), ('user_change_name'),
    ('user_change_invoicing'), ('user_change_tag_expiration'),
    ('user_change_metadata'), ('user_generate_client_key'),
    ('account_change_plan'), ('account_change_cc'),
    ('account_change_password'), ('account_convert'),
    ('login_success'), ('login_failure'), ('logout_success'),
    -- robots and tokens
    ('create_robot'), ('delete_robot'), ('regenerate_robot_token'),
    ('create_robot_federation'), ('delete_robot_federation'),
    ('federated_robot_token_exchange'),
    ('create_app_specific_token'), ('revoke_app_specific_token'),
    ('oauth_token_assigned'), ('oauth_token_revoked'),
    ('create_application'), ('update_application'), ('delete_application'),
    ('reset_application_client_secret'),
    -- repositories and tags
    ('create_repo'), ('delete_repo'), ('push_repo'), ('push_repo_failed'),
    ('pull_repo'), ('pull_repo_failed'),
    ('create_tag'), ('move_tag'), ('delete_tag'), ('delete_tag_failed'),
    ('revert_tag'), ('change_tag_expiration'), ('permanently_delete_tag'),
    ('add_repo_permission'), ('change_repo_permission'),
    ('delete_repo_permission'), ('change_repo_visibility'),
    ('change_repo_trust'), ('change_repo_state'), ('set_repo_description'),
    ('add_repo_accesstoken'), ('delete_repo_accesstoken'),
    ('add_repo_notification'), ('delete_repo_notification'),
    ('reset_repo_notification'), ('add_repo_webhook'),
    ('delete_repo_webhook'),
    ('manifest_label_add'), ('manifest_label_delete'),
    ('repo_verb'),
    -- organizations and teams
    ('org_create'), ('org_delete'), ('org_change_email'),
    ('org_change_invoicing'), ('org_change_tag_expiration'),
    ('org_change_name'),
    ('org_create_team'), ('org_delete_team'), ('org_set_team_description'),
    ('org_set_team_role'), ('org_invite_team_member'),
    ('org_delete_team_member_invite'), ('org_add_team_member'),
    ('org_remove_team_member'), ('org_team_member_invite_accepted'),
    ('org_team_member_invite_declined'),
    ('create_team'), ('delete_team'), ('add_team_member'),
    ('remove_team_member'),
    ('create_prototype_permission'), ('modify_prototype_permission'),
    ('delete_prototype_permission'),
    ('enable_team_sync'), ('disable_team_sync'),
    ('take_ownership'),
    -- builds (not built here; kept so imported logs resolve)
    ('build_dockerfile'), ('setup_repo_trigger'), ('delete_repo_trigger'),
    ('toggle_repo_trigger'), ('start_build_trigger'), ('cancel_build'),
    -- service keys
    ('service_key_create'), ('service_key_approve'), ('service_key_delete'),
    ('service_key_modify'), ('service_key_extend'), ('service_key_rotate'),
    -- mirroring
    ('repo_mirror_enabled'), ('repo_mirror_disabled'),
    ('repo_mirror_config_changed'), ('repo_mirror_sync_started'),
    ('repo_mirror_sync_success'), ('repo_mirror_sync_failed'),
    ('repo_mirror_sync_now_requested'), ('repo_mirror_sync_tag_success'),
    ('repo_mirror_sync_tag_failed'), ('repo_mirror_sync_test_started'),
    ('repo_mirror_sync_test_success'), ('repo_mirror_sync_test_failed'),
    -- proxy cache
    ('create_proxy_cache_config'), ('delete_proxy_cache_config'),
    -- quota
    ('org_create_quota'), ('org_change_quota'), ('org_delete_quota'),
    ('org_create_quota_limit'), ('org_change_quota_limit'),
    ('org_delete_quota_limit'),
    -- auto-prune
    ('autoprune_tag_delete'),
    ('create_namespace_autoprune_policy'),
    ('update_namespace_autoprune_policy'),
    ('delete_namespace_autoprune_policy'),
    ('create_repository_autoprune_policy'),
    ('update_repository_autoprune_policy'),
    ('delete_repository_autoprune_policy');

-- account_id is the namespace the action belongs to (Quay's logentry3).
CREATE TABLE logentry (
    id              bigserial PRIMARY KEY,
    kind_id         integer NOT NULL,
    account_id      bigint NOT NULL,
    performer_id    bigint NULL,
    repository_id   bigint NULL,
    datetime        timestamptz NOT NULL DEFAULT now(),
    ip              varchar(255) NULL,
    metadata_json   jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX logentry_account_id_datetime ON logentry (account_id, datetime);
CREATE INDEX logentry_datetime ON logentry (datetime);
CREATE INDEX logentry_performer_id_datetime
    ON logentry (performer_id, datetime);
CREATE INDEX logentry_repository_id_datetime_kind_id
    ON logentry (repository_id, datetime, kind_id);


-- Events a repository or namespace notification can subscribe to, and how
-- it is delivered.
CREATE TABLE externalnotificationevent (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO externalnotificationevent (name) VALUES
    ('repo_push'), ('build_queued'), ('build_start'), ('build_success'),
    ('build_cancelled'), ('build_failure'), ('vulnerability_found'),
    ('repo_mirror_sync_started'), ('repo_mirror_sync_success'),
    ('repo_mirror_sync_failed'), ('repo_image_expiry'),
    ('quota_warning'), ('quota_error');

CREATE TABLE externalnotificationmethod (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO externalnotificationmethod (name) VALUES
    ('quay_notification'), ('email'), ('webhook'), ('flowdock'),
    ('hipchat'), ('slack');

-- In-app notification kinds: every external event plus account ones.
CREATE TABLE notificationkind (
    id      serial PRIMARY KEY,
    name    varchar(255) NOT NULL UNIQUE
);
INSERT INTO notificationkind (name) VALUES
    ('repo_push'), ('build_queued'), ('build_start'), ('build_success'),
    ('build_cancelled'), ('build_failure'), ('vulnerability_found'),
    ('service_key_submitted'), ('password_required'),
    ('over_private_usage'), ('expiring_license'), ('maintenance'),
    ('org_team_invite'), ('repo_mirror_sync_started'),
    ('repo_mirror_sync_success'), ('repo_mirror_sync_failed'),
    ('repo_image_expiry'), ('test_notification'), ('quota_warning'),
    ('quota_error'), ('assigned_authorization');

-- In-app notifications shown to a user (target).
CREATE TABLE notification (
    id              bigserial PRIMARY KEY,
    uuid            varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    kind_id         integer NOT NULL REFERENCES notificationkind (id),
    target_id       bigint NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    metadata_json   jsonb NOT NULL DEFAULT '{}',
    created         timestamptz NOT NULL DEFAULT now(),
    dismissed       boolean NOT NULL DEFAULT false,
    lookup_path     varchar(255) NULL
);
CREATE INDEX notification_uuid ON notification (uuid);
CREATE INDEX notification_target_id_created
    ON notification (target_id, created);
CREATE INDEX notification_kind_id ON notification (kind_id);
CREATE INDEX notification_lookup_path ON notification (lookup_path);
CREATE INDEX notification_created ON notification (created);

-- A subscription of a repository to an event.
CREATE TABLE repositorynotification (
    id                  bigserial PRIMARY KEY,
    uuid                varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    repository_id       bigint NOT NULL
                        REFERENCES repository (id) ON DELETE CASCADE,
    event_id            integer NOT NULL
                        REFERENCES externalnotificationevent (id),
    method_id           integer NOT NULL
                        REFERENCES externalnotificationmethod (id),
    title               varchar(255) NULL,
    config_json         jsonb NOT NULL DEFAULT '{}',
    event_config_json   jsonb NOT NULL DEFAULT '{}',
    number_of_failures  integer NOT NULL DEFAULT 0,
    last_ran_ms         bigint NULL
);
CREATE INDEX repositorynotification_uuid ON repositorynotification (uuid);
CREATE INDEX repositorynotification_repository_id_event_id
    ON repositorynotification (repository_id, event_id);
CREATE INDEX repositorynotification_event_id
    ON repositorynotification (event_id);
CREATE INDEX repositorynotification_method_id
    ON repositorynotification (method_id);
CREATE INDEX repositorynotification_last_ran_ms
    ON repositorynotification (last_ran_ms);

-- The same, for a namespace (quota events).
CREATE TABLE namespacenotification (
    id                  bigserial PRIMARY KEY,
    uuid                varchar(36) NOT NULL DEFAULT gen_random_uuid()::text,
    namespace_id        bigint NOT NULL
                        REFERENCES "user" (id) ON DELETE CASCADE,
    event_id            integer NOT NULL
                        REFERENCES externalnotificationevent (id),
    method_id           integer NOT NULL
                        REFERENCES externalnotificationmethod (id),
    title               varchar(255) NULL,
    config_json         jsonb NOT NULL DEFAULT '{}',
    event_config_json   jsonb NOT NULL DEFAULT '{}',
    number_of_failures  integer NOT NULL DEFAULT 0,
    last_ran_ms         bigint NULL
);
CREATE INDEX namespacenotification_uuid ON namespacenotification (uuid);
CREATE INDEX namespacenotification_namespace_id_event_id
    ON namespacenotification (namespace_id, event_id);

-- repo_image_expiry: which tag a notification already fired for.
CREATE TABLE tagnotificationsuccess (
    id              bigserial PRIMARY KEY,
    notification_id bigint NOT NULL
                    REFERENCES repositorynotification (id) ON DELETE CASCADE,
    tag_id          bigint NOT NULL REFERENCES tag (id) ON DELETE CASCADE,
    method_id       integer NOT NULL REFERENCES externalnotificationmethod (id)
);
CREATE INDEX tagnotificationsuccess_notification_id
    ON tagnotificationsuccess (notification_id);
CREATE INDEX tagnotificationsuccess_tag_id ON tagnotificationsuccess (tag_id);
