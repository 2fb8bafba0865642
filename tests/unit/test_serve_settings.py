"""The serve settings model: one declaration per option, read from flags, environment, pallet.yaml and defaults."""

import json
import re

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pallet.cli import app
from pallet.deploy.bundle import bundle_settings, load_config
from pallet.errors import PalletError
from pallet.settings import ServeConfig, SettingError, check_file, file_layer, flag_of, resolve
from pallet.settings.serve import ENV

BUNDLE_YAML = {"models": ["iris:1"], "serve": {"port": 8100, "grpc_port": 8101, "workers": 1, "max_batch_size": 32,
                                               "read_timeout": "30s", "max_queue": 64, "drain_seconds": 0}}


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch, tmp_path):
    for name in ServeConfig.model_fields:
        monkeypatch.delenv(f"PALLET_{name.upper()}", raising=False)
    for name in ("SAGEMAKER_BIND_TO_PORT", "PALLET_API_KEY", ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PALLET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PALLET_DB_URL", raising=False)


@pytest.fixture
def bundle(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "pallet.yaml").write_text(yaml.safe_dump(BUNDLE_YAML))
    return folder


def show(*args: str, env: dict | None = None) -> dict[str, tuple[str, str]]:
    """`pallet serve ... --show-config` as {setting: (value, where it came from)}."""
    result = CliRunner().invoke(app, ["serve", *args, "--show-config"], env=env)
    assert result.exit_code == 0, result.output
    rows = [re.split(r"\s{2,}", line) for line in result.stdout.splitlines() if not line.startswith("#")]
    return {name: (value, origin) for name, value, origin in rows}


def test_precedence_is_flag_then_environment_then_file_then_default(bundle, monkeypatch):
    layer = file_layer(load_config(bundle)["serve"], str(bundle / "pallet.yaml"))
    monkeypatch.setenv("PALLET_WORKERS", "3")
    monkeypatch.setenv("PALLET_MAX_QUEUE", "99")
    monkeypatch.setenv("PALLET_READ_TIMEOUT", "2m")
    resolved = resolve({"workers": 5, "read_timeout": "500ms"}, layer)
    config, origins = resolved.config, resolved.origins
    assert (config.workers, origins["workers"]) == (5, "flag --workers")              # flag over env and file
    assert (config.read_timeout, origins["read_timeout"]) == (0.5, "flag --read-timeout")
    assert (config.max_queue, origins["max_queue"]) == (99, "env PALLET_MAX_QUEUE")   # env over file
    assert (config.port, origins["port"]) == (8100, "pallet.yaml")                    # file over default
    assert (config.max_rows, origins["max_rows"]) == (100_000, "default")
    assert config.grpc_port == 8101 and config.drain_seconds == 0


def test_bundle_honours_every_flag(bundle):
    settings = show("--bundle", str(bundle), "--workers", "4", "--drain-seconds", "10", "--max-batch-size", "1",
                    "--read-timeout", "5")
    assert settings["workers"] == ("4", "flag --workers")
    assert settings["drain_seconds"] == ("10s", "flag --drain-seconds")
    assert settings["max_batch_size"] == ("1", "flag --max-batch-size")
    assert settings["read_timeout"] == ("5s", "flag --read-timeout")
    assert settings["port"] == ("8100", "pallet.yaml") and settings["models"] == ("iris:1", "pallet.yaml")
    assert show("--bundle", str(bundle), "--grpc-port", "0")["grpc_port"] == ("-", "flag --grpc-port")


def test_the_same_options_hold_without_a_bundle(monkeypatch):
    monkeypatch.setenv("PALLET_MAX_BATCH_SIZE", "8")
    monkeypatch.setenv("SAGEMAKER_BIND_TO_PORT", "9123")
    settings = show("iris", "digits", "--cache-ttl", "1h", "--max-latency-ms", "2ms", "--no-access-log")
    assert settings["models"] == ("iris, digits", "flag arguments")
    assert settings["max_batch_size"] == ("8", "env PALLET_MAX_BATCH_SIZE")
    assert settings["port"] == ("9123", "env SAGEMAKER_BIND_TO_PORT")
    assert settings["cache_ttl"] == ("1h", "flag --cache-ttl")
    assert settings["max_latency_ms"] == ("2ms", "flag --max-latency-ms")
    assert settings["access_log"] == ("false", "flag --access-log")
    assert settings["workers"] == ("1", "default")
    monkeypatch.setenv("PALLET_PORT", "9200")  # pallet's own variable wins over SageMaker's
    assert show("iris")["port"] == ("9200", "env PALLET_PORT")


def test_secrets_are_never_printed(monkeypatch):
    monkeypatch.setenv("PALLET_API_KEY", "key-that-stays-hidden")
    result = CliRunner().invoke(app, ["serve", "iris", "--share-token", "token-that-stays-hidden", "--show-config"])
    assert result.exit_code == 0
    assert "stays-hidden" not in result.output
    settings = show("iris", "--share-token", "token-that-stays-hidden")
    assert settings["share_token"] == ("<set>", "flag --share-token")
    assert settings["api_key"] == ("<set>", "env PALLET_API_KEY")


def test_passwords_in_urls_are_never_printed(monkeypatch):
    monkeypatch.setenv("PALLET_CACHE", "redis://:hunter2@cache.internal:6379/0")
    result = CliRunner().invoke(app, ["serve", "iris", "--show-config"])
    assert result.exit_code == 0 and "hunter2" not in result.output
    assert show("iris")["cache"] == ("redis://:***@cache.internal:6379/0", "env PALLET_CACHE")
    result = CliRunner().invoke(app, ["serve", "iris", "--cache", "mysql://me:hunter2@db/x", "--show-config"])
    assert result.exit_code == 1 and "hunter2" not in result.output and "mysql://me:***@db/x" in result.stderr


def test_a_bad_share_token_is_refused_without_printing_it():
    result = CliRunner().invoke(app, ["serve", "iris", "--show-config"], env={"PALLET_SHARE_TOKEN": "my secret!"})
    assert result.exit_code == 2 and "my secret!" not in result.output
    assert "PALLET_SHARE_TOKEN must be 8 to 128 letters" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--share-token", "short"], "error: --share-token must be 8 to 128 letters, digits, '-' or '_'"),
    (["--cache", "memory:x"], "error: --cache memory:N needs a positive number of entries, got 'memory:x'"),
    (["--ui", "/nonexistent"], "error: --ui /nonexistent: no index.html there"),
    (["--cors-origin", "ftp://x"], "error: --cors-origin 'ftp://x' is not an origin"),
])
def test_a_value_a_flag_cannot_take_is_named_by_the_flag_before_anything_starts(args, message):
    result = CliRunner().invoke(app, ["serve", "iris", *args, "--show-config"])
    assert result.exit_code == 1  # as when these were checked by the server
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_ui_folder_with_an_index_is_taken(tmp_path):
    (tmp_path / "index.html").write_text("<p>hello</p>")
    assert show("iris", "--ui", str(tmp_path))["ui"] == (str(tmp_path), "flag --ui")


def test_every_setting_has_one_flag_whose_help_is_the_models_and_whose_default_is_not_given():
    command = typer.main.get_command(app).commands["serve"]
    options = {opt: param for param in command.params if isinstance(param, typer.core.TyperOption) for opt in param.opts}
    for name, field in ServeConfig.model_fields.items():
        if name == "models":
            continue
        param = options[flag_of(name)]
        assert param.default is None, name  # not given: the environment, the file or the model's default applies
        assert param.help.startswith(field.description), name


@pytest.mark.parametrize("args, env, message", [
    (["iris", "--read-timeout", "soon"], {}, "Invalid value for '--read-timeout': must be a duration"),
    (["iris", "--workers", "0"], {}, "Invalid value for '--workers': must be a positive whole number, got '0'"),
    (["iris"], {"PALLET_WORKERS": "0"}, "PALLET_WORKERS must be a positive whole number, got '0'"),
    (["iris", "--port", "70000"], {}, "'--port': must be a positive whole number up to 65535, got '70000'"),
    (["iris", "--grpc-port", "-1"], {}, "'--grpc-port': must be a whole number from 0 up to 65535, got '-1'"),
    (["iris", "--max-rows", "lots"], {}, "'--max-rows': must be a positive whole number, got 'lots'"),
    (["iris"], {"PALLET_WORKERS": "many"}, "PALLET_WORKERS must be a positive whole number, got 'many'"),
    (["iris"], {"PALLET_DRAIN_SECONDS": "1y"}, "PALLET_DRAIN_SECONDS must be a duration"),
    (["iris"], {"PALLET_ACCESS_LOG": "perhaps"}, "PALLET_ACCESS_LOG must be true or false"),
    (["iris"], {"PALLET_CORS_ORIGINS": "bad"}, "PALLET_CORS_ORIGINS 'bad' is not an origin: write scheme://host"),
    (["iris"], {"PALLET_SHARE_TOKEN": "a b"}, "PALLET_SHARE_TOKEN must be 8 to 128 letters, digits, '-' or '_'"),
    (["iris"], {"PALLET_CACHE": "disk"}, "PALLET_CACHE must be memory, memory:N or redis://host:port/db, got 'disk'"),
    (["iris"], {"PALLET_CACHE": "memory:0"}, "PALLET_CACHE memory:N needs a positive number of entries"),
    (["iris"], {"PALLET_UI": "/nonexistent"}, "PALLET_UI /nonexistent: no index.html there"),
])
def test_a_bad_flag_or_variable_is_one_line_and_exit_2(args, env, message):
    result = CliRunner().invoke(app, ["serve", *args, "--show-config"], env=env)
    assert result.exit_code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("serve, message", [
    ({"workers": "four"}, "pallet.yaml: serve.workers must be a positive whole number, got 'four'"),
    ({"read_timeout": "forever"}, "pallet.yaml: serve.read_timeout must be a duration"),
    ({"colour": "blue"}, "pallet.yaml: unknown serve settings colour"),
    ({"share_token": "abcdefghij"}, "serve.share_token is a secret"),
    ({"cache": "disk"}, "pallet.yaml: serve.cache must be memory, memory:N or redis://host:port/db, got 'disk'"),
    ({"cors_origins": ["app.example.com"]}, "pallet.yaml: serve.cors_origins 'app.example.com' is not an origin"),
    ({"ui": "/nonexistent"}, "pallet.yaml: serve.ui /nonexistent: no index.html there"),
])
def test_a_bad_pallet_yaml_is_one_line_and_exit_1(bundle, serve, message):
    (bundle / "pallet.yaml").write_text(yaml.safe_dump({"models": ["iris:1"], "serve": serve}))
    result = CliRunner().invoke(app, ["serve", "--bundle", str(bundle), "--show-config"])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("models: [iris:1]\nbogus: 1\n", "pallet.yaml: unknown key(s) bogus; it takes models, serve"),
    ("models: [iris:1]\nserv: {workers: 2}\n", "pallet.yaml: unknown key(s) serv; it takes models, serve"),
    ("models: [iris:1]\nserve: {workers: 2\n", "pallet.yaml:3:1: not valid YAML: expected ',' or '}'"),
    ("models: [iris:1]\n  - digits:1\n", "pallet.yaml:2:3: not valid YAML: "),
])
def test_a_pallet_yaml_holds_only_what_pallet_build_writes_and_a_mistake_is_one_line(bundle, text, message):
    (bundle / "pallet.yaml").write_text(text)
    result = CliRunner().invoke(app, ["serve", "--bundle", str(bundle), "--show-config"])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_durations_take_the_one_grammar_everywhere(bundle):
    for text, seconds in [("500ms", 0.5), ("10s", 10), ("5m", 300), ("1h", 3600), ("1d", 86400), ("7", 7), (2.5, 2.5)]:
        assert ServeConfig(drain_seconds=text).drain_seconds == seconds
    assert check_file({"grace_seconds": "1m", "cache_ttl": "1h"}, "pallet.yaml") == {"grace_seconds": "1m",
                                                                                     "cache_ttl": "1h"}
    with pytest.raises(SettingError, match="must be a duration"):
        ServeConfig(rollout_poll="now")


def test_worker_processes_get_the_resolved_settings(monkeypatch):
    monkeypatch.setenv("PALLET_WORKERS", "3")
    config = resolve({"models": ["iris"], "max_batch_size": 4, "read_timeout": "2s"}).config
    monkeypatch.setenv(ENV, config.to_env())
    monkeypatch.setenv("PALLET_WORKERS", "7")  # a worker reads what the server resolved, not the environment again
    received = ServeConfig.from_env()
    assert received == config and (received.workers, received.max_batch_size, received.read_timeout) == (3, 4, 2.0)
    assert "share_token" in json.loads(config.to_env()) and "api_key" not in json.loads(config.to_env())


def test_sizes_are_also_given_in_bytes():
    config = ServeConfig(max_body_mb=0.0625, max_header_kb=8)
    assert (config.max_body_bytes, config.max_header_bytes) == (65536, 8192)


@pytest.mark.parametrize("name", ["max_body_bytes", "max_header_bytes", "read_timeout_seconds",
                                  "cache_ttl_seconds", "ui_dir", "rollout_poll_seconds"])
def test_only_the_settings_own_names_are_accepted(name):
    with pytest.raises(PalletError, match=f"unknown serve setting '{name}'"):
        ServeConfig(**{name: 1})


def test_a_bundle_records_its_serve_settings_from_the_model(tmp_path):
    from pallet.deploy.bundle import _recorded

    settings = bundle_settings(workers=2, read_timeout="5s")
    recorded = _recorded(settings)
    assert recorded["grpc_port"] == 8001 and recorded["workers"] == 2 and recorded["read_timeout"] == 5
    assert "share_token" not in recorded and "models" not in recorded
    (tmp_path / "pallet.yaml").write_text(yaml.safe_dump({"models": ["iris:1"], "serve": recorded}))
    assert ServeConfig(**load_config(tmp_path)["serve"]) == ServeConfig(**recorded)
