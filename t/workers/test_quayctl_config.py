"""quayctl config validate: OK for a good file, every problem named by key
and line for a bad one, a one-line error and non-zero exit otherwise
(issue #2, item 6)."""

import subprocess
from pathlib import Path

import harness

ROOT = Path(__file__).resolve().parents[2]


def validate(path):
    return subprocess.run([str(harness.QUAYCTL), "config", "validate",
                           str(path)], capture_output=True, text=True)


def test_example_config_validates(build):
    res = validate(ROOT / "conf" / "config.yaml")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "OK"


def test_bad_values_are_named_with_their_lines(build, tmp_path):
    good = (ROOT / "conf" / "config.yaml").read_text()
    bad = tmp_path / "config.yaml"
    bad.write_text(good + "\nFEATURE_REPO_MIRROR: sometimes\n"
                   "V2_PAGINATION_SIZE: -1\n")
    lines = len(good.splitlines())
    res = validate(bad)
    assert res.returncode == 1
    assert res.stdout.strip() != "OK"
    assert f":{lines + 2}: error: FEATURE_REPO_MIRROR:" in res.stderr
    assert f":{lines + 3}: error: V2_PAGINATION_SIZE:" in res.stderr


def test_misspelled_key_is_a_warning_with_a_suggestion(build, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text((ROOT / "conf" / "config.yaml").read_text()
                   + "\nFEATURE_PROXY_STORGE: true\n")
    res = validate(cfg)
    assert res.returncode == 0
    assert "warning: FEATURE_PROXY_STORGE" in res.stderr
    assert "FEATURE_PROXY_STORAGE" in res.stderr


def test_missing_required_key_and_storage_param(build, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("SERVER_HOSTNAME: localhost:8080\n"
                   "DISTRIBUTED_STORAGE_CONFIG:\n"
                   "  default:\n"
                   "    - LocalStorage\n"
                   "    - {}\n"
                   "DISTRIBUTED_STORAGE_PREFERENCE: [default]\n")
    res = validate(cfg)
    assert res.returncode == 1
    assert "DB_URI" in res.stderr
    assert "DISTRIBUTED_STORAGE_CONFIG.default.storage_path" in res.stderr


def test_missing_file_and_yaml_syntax_error(build, tmp_path):
    res = validate(tmp_path / "nope.yaml")
    assert res.returncode == 1
    assert len(res.stderr.strip().splitlines()) == 1
    broken = tmp_path / "broken.yaml"
    broken.write_text("SERVER_HOSTNAME: [unclosed\n")
    res = validate(broken)
    assert res.returncode == 1
    assert "line" in res.stderr


def test_usage_error_exits_2(build):
    res = subprocess.run([str(harness.QUAYCTL), "config"],
                         capture_output=True, text=True)
    assert res.returncode == 2
