"""The harness itself: its PostgreSQL and Redis answer, survive a restart,
and hand out isolated databases."""

import harness


def test_postgres_answers_select_1(pg):
    assert pg.sql("SELECT 1") == [("1",)]


def test_postgres_rows_keep_empty_fields_and_nulls(pg):
    rows = pg.sql("SELECT 'a b', '', NULL::text UNION ALL SELECT 'x', 'y', 'z'")
    assert rows == [("a b", "", ""), ("x", "y", "z")]


def test_postgres_sql_error_raises(pg):
    try:
        pg.sql("SELECT * FROM no_such_table")
    except harness.SQLError as e:
        assert "no_such_table" in str(e)
    else:
        raise AssertionError("no SQLError")


def test_postgres_database_quay_is_migrated(pg):
    rows = pg.sql("SELECT count(*) FROM information_schema.tables "
                  "WHERE table_schema = 'public'")
    assert int(rows[0][0]) > 0


def test_postgres_stop_start_keeps_data_and_port(pg):
    pg.sql("CREATE TABLE IF NOT EXISTS smoke_restart (v text);"
           "INSERT INTO smoke_restart VALUES ('kept')")
    port = pg.port
    pg.stop()
    assert not harness.port_open(port)
    pg.start()
    assert pg.port == port
    assert ("kept",) in pg.sql("SELECT v FROM smoke_restart")
    pg.sql("DROP TABLE smoke_restart")


def test_new_database_is_separate_and_migrated(pg):
    uri = pg.new_database("smoke_isolated")
    assert uri == f"postgresql://quay@127.0.0.1:{pg.port}/smoke_isolated"
    pg.sql("CREATE TABLE only_here (v int)", db="smoke_isolated")
    assert pg.sql("SELECT to_regclass('only_here')") == [("",)]
    assert pg.sql("SELECT count(*) FROM schema_migrations",
                  db="smoke_isolated") \
        == pg.sql("SELECT count(*) FROM schema_migrations")


def test_redis_answers_ping(redis):
    assert redis.password is None
    assert redis.cli("PING") == "PONG"


def test_redis_stop_start(redis):
    redis.stop()
    assert not harness.port_open(redis.port)
    redis.start()
    assert redis.cli("PING") == "PONG"


def test_make_config_writes_yaml_with_overrides(make_config, tmp_path, redis):
    path = make_config(tmp_path / "config.yaml", "postgresql://x@h:1/d",
                       tmp_path / "s", REGISTRY_TITLE="Smoke",
                       SETUP_COMPLETE=None)
    text = path.read_text()
    assert 'REGISTRY_TITLE: "Smoke"' in text
    assert "SETUP_COMPLETE" not in text
    assert f'"port": {redis.port}' in text
    assert 'FEATURE_ANONYMOUS_ACCESS: true' in text
