"""Strict config: one bad-config fixture per rule, environment expansion, paths and secrets.

``check-config`` runs as the real CLI in a subprocess, as an operator would run it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from forwarder.config import ConfigError, load_config, parse_config
from tests.conftest import REPO

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED = REPO / "config" / "forwarder.yaml"
# Every secret in the fixtures contains this marker, so one check covers them all.
SECRET_MARKER = "SECRET"


def check_config(
    config: Path | None, *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m forwarder check-config`` for real; the environment is empty by default."""
    args = [sys.executable, "-m", "forwarder", "check-config"]
    if config is not None:
        args += ["--config", str(config)]
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        env={} if env is None else env,
        cwd=str(cwd or REPO),
        timeout=60,
        check=False,
    )


# fixture file -> the start of the one error line (key path, then what is wrong).
BAD_CONFIGS = {
    "unknown_key_top_level.yaml": "servr: unknown key",
    "unknown_key_nested.yaml": "targets.bigpanda.tokn: unknown key (did you mean `token`?)",
    "unknown_key_suggests_closest.yaml": "batch.max_alert: unknown key"
    " (did you mean `max_alerts`?)",
    "unknown_key_route_mapping.yaml": "routes[0].mapping.colour: unknown key",
    "section_not_a_mapping.yaml": "server: must be a mapping, got a number",
    "bad_url.yaml": "targets.bigpanda.url: not a URL",
    "url_with_credentials.yaml": "targets.bigpanda.url: must not carry credentials",
    "bad_target_kind.yaml": "targets.bigpanda.kind: must be one of alerts_v2, oim, log",
    "no_targets.yaml": "targets: at least one target is required",
    "bad_duration.yaml": "batch.linger: not a duration: 'soon' (units: ns, us, µs, ms, s, m, h, d;",
    "duration_without_unit.yaml": "retry.initial: must be a duration with a unit"
    " (ns, us, µs, ms, s, m, h, d)",
    "retry_max_below_initial.yaml": "retry.max: must not be below retry.initial",
    "bad_size.yaml": "server.max_body_bytes: not a size: '1 lots'",
    "not_a_whole_number.yaml": "queue.max_events: must be a whole number",
    "listen_not_host_port.yaml": "server.listen: must be host:port, got 'localhost'",
    "listen_port_out_of_range.yaml": "server.listen: port out of range: 70000",
    "route_unknown_target.yaml": "routes[0].target: no target named 'pagerduty'",
    "last_route_has_match.yaml": "routes[1]: the last route must have no match",
    "catch_all_route_not_last.yaml": "routes[0].match: a route without match catches everything",
    "duplicate_route_name.yaml": "routes[1].name: duplicate route name 'main'",
    "route_unknown_level.yaml": "routes[0].match.level: unknown level 'severe'",
    "route_unknown_source.yaml": "routes[0].match.source: unknown source 'telegraf'",
    "empty_app_key_with_token.yaml": "routes[0].app_key: empty",
    "app_key_without_token.yaml": "targets.bigpanda.token: is empty but targets.bigpanda.app_key"
    " is set; set the token (or token_file), or clear both for dry-run",
    "app_key_without_token_from_env.yaml": "targets.bigpanda.token: is empty"
    " (from ${FORWARDER_FIXTURE_EMPTY_TOKEN}) but targets.bigpanda.app_key is set",
    "mixed_credentials.yaml": "targets.staging.token: has no credentials while other targets do",
    "secret_quoted_in_error.yaml": "targets.bigpanda.app_key_in: must be one of body, header,"
    " got '***'",
    "queue_unknown_backend.yaml": "queue.backend: must be one of sqlite, postgres, got 'mysql'",
    "queue_dsn_with_sqlite.yaml": "queue.dsn: does not apply to queue.backend sqlite; remove it",
    "queue_path_with_postgres.yaml": "queue.path: does not apply to queue.backend postgres",
    "queue_synchronous_with_postgres.yaml": "queue.synchronous: does not apply to queue.backend"
    " postgres",
    "queue_reserve_with_postgres.yaml": "queue.reserve_bytes: does not apply to queue.backend"
    " postgres",
    "queue_postgres_without_dsn.yaml": "queue.dsn: is empty (from ${FORWARDER_FIXTURE_UNSET_DSN});"
    " it is required with queue.backend postgres",
    "queue_dsn_not_a_url.yaml": "queue.dsn: is not a valid URL (check the host",
    "queue_dsn_password_not_encoded.yaml": "queue.dsn: is not a valid URL (check the host",
    "listen_port_not_ascii.yaml": "server.listen: must be host:port",
    "url_unclosed_bracket.yaml": "targets.bigpanda.url: not a URL",
    "rate_limit_nan.yaml": "targets.bigpanda.rate_limit: must be a number above 0",
    "bearer_token_file_empty.yaml": "server.auth.bearer_token_file: the file is empty",
    "queue_dsn_not_postgres.yaml": "queue.dsn: must be a postgresql:// URL, got a mysql:// one",
    "token_and_token_file.yaml": "targets.bigpanda.token_file: set either token or token_file",
    "token_file_unreadable.yaml": "targets.bigpanda.token_file: cannot read "
    + str(FIXTURES / "no-such-token-file.txt"),
    "unset_env_var.yaml": "targets.bigpanda.token: environment variable "
    "FORWARDER_FIXTURE_UNSET_TOKEN is not set",
    "template_syntax_error.yaml": "mapping.attributes.runbook: template syntax error",
    # Jinja folds constants while compiling; the key is named to the mapping block at least.
    "template_compile_error.yaml": "mapping",
    "route_template_syntax_error.yaml": "routes[0].mapping.host: template syntax error",
    "status_unknown_level.yaml": "mapping.status.SEVERE: unknown level 'SEVERE'",
    "status_bad_value.yaml": "mapping.status.WARNING: not a BigPanda status",
    "auto_attributes_bad_item.yaml": "mapping.auto_attributes[1]: must be one of tags, fields",
    "httppost_default_level_unknown.yaml": "ingest.httppost.default_level: unknown level 'SEVERE'",
    "invalid_yaml.yaml": "invalid YAML: line 6, column 12:",
}


def test_every_fixture_has_one_rule_and_there_are_enough() -> None:
    """Each file in fixtures/ is checked below, and there are far more than 8 rules."""
    assert sorted(p.name for p in FIXTURES.glob("*.yaml")) == sorted(BAD_CONFIGS)
    assert len(BAD_CONFIGS) >= 12


@pytest.fixture(scope="module")
def bad_config_results() -> dict[str, subprocess.CompletedProcess[str]]:
    """check-config run on every fixture, the subprocesses side by side to save time."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = {name: pool.submit(check_config, FIXTURES / name) for name in BAD_CONFIGS}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize(("name", "expected"), sorted(BAD_CONFIGS.items()), ids=sorted(BAD_CONFIGS))
def test_check_config_rejects_each_mistake_in_one_line(
    bad_config_results: dict[str, subprocess.CompletedProcess[str]], name: str, expected: str
) -> None:
    """check-config exits 1 with exactly one stderr line naming the key path, secrets hidden."""
    result = bad_config_results[name]
    assert result.returncode == 1, result.stdout
    assert result.stdout == ""
    assert result.stderr.endswith("\n")
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"forwarder: error: {expected}"), result.stderr
    assert SECRET_MARKER not in result.stderr


def test_fixture_is_valid_once_its_mistake_is_fixed(tmp_path: Path) -> None:
    """The fixtures are otherwise valid: fixing the one mistake makes check-config pass."""
    fixed = (FIXTURES / "unknown_key_top_level.yaml").read_text().replace("servr:", "server:")
    path = tmp_path / "fixed.yaml"
    path.write_text(fixed)
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: ")


# --------------------------------------------------------------------------- shipped config


def test_shipped_config_passes_with_an_empty_environment() -> None:
    """config/forwarder.yaml is valid with no environment at all, in dry-run mode."""
    result = check_config(SHIPPED, env={})
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith(f"config OK: {SHIPPED}")
    assert "listen:  http://127.0.0.1:9095" in result.stdout
    assert f"queue:   {REPO / 'data' / 'queue.db'} (backend=sqlite," in result.stdout
    assert "DRY-RUN" in result.stdout
    assert (
        "to send, set: targets.bigpanda.token (from ${BIGPANDA_TOKEN}),"
        " targets.bigpanda.app_key (from ${BIGPANDA_APP_KEY})\n" in result.stdout
    )


def test_config_defaults_to_the_shipped_file() -> None:
    """Without --config or FORWARDER_CONFIG, check-config reads config/forwarder.yaml."""
    result = check_config(None, env={}, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config OK: config/forwarder.yaml")


def test_config_path_comes_from_forwarder_config(tmp_path: Path) -> None:
    """Without --config, $FORWARDER_CONFIG names the file."""
    path = tmp_path / "from-env.yaml"
    path.write_text("targets:\n  bigpanda:\n    kind: log\n")
    result = check_config(None, env={"FORWARDER_CONFIG": str(path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config OK: {path}")


@pytest.mark.parametrize("before", [True, False], ids=["before-subcommand", "after-subcommand"])
def test_config_flag_is_honoured_before_or_after_the_subcommand(
    tmp_path: Path, before: bool
) -> None:
    """``--config F`` is read whether it stands before or after the subcommand."""
    path = tmp_path / "given.yaml"
    path.write_text("targets:\n  bigpanda:\n    kind: log\n")
    flag = ["--config", str(path)]
    cmd = ["check-config"]
    args = [sys.executable, "-m", "forwarder", *(flag + cmd if before else cmd + flag)]
    result = subprocess.run(
        args, capture_output=True, text=True, env={}, cwd=str(REPO), timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"config OK: {path}")


def test_shipped_config_with_credentials_sends_and_hides_them() -> None:
    """With the BigPanda variables set the shipped config leaves dry-run and prints no secret."""
    env = {
        "BIGPANDA_TOKEN": "tok-SECRET-shipped",
        "BIGPANDA_APP_KEY": "key-SECRET-shipped",
        "FORWARDER_INGEST_TOKEN": "ingest-SECRET-shipped",
        "FORWARDER_LISTEN": "0.0.0.0:8080",
    }
    result = check_config(SHIPPED, env=env)
    assert result.returncode == 0, result.stderr
    assert "credentials set" in result.stdout
    assert "auth=on" in result.stdout
    assert "listen:  http://0.0.0.0:8080" in result.stdout
    assert "DRY-RUN" not in result.stdout
    assert SECRET_MARKER not in result.stdout + result.stderr


# --------------------------------------------------------------------------- environment


def attribute_after_expansion(value: str, env: dict[str, str]) -> str:
    """The text a mapping attribute holds after ``${...}`` expansion of ``value``."""
    text = f"""
    targets:
      bigpanda:
        kind: log
    mapping:
      attributes:
        x: '{value}'
    """
    cfg = parse_config(textwrap.dedent(text), base_dir=Path("/"), env=env)
    return cfg.mapping.attributes["x"]


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        pytest.param("${NAME}", {"NAME": "web"}, "web", id="set"),
        pytest.param("${NAME}", {"NAME": ""}, "", id="set-empty"),
        pytest.param("${NAME:-dflt}", {}, "dflt", id="default-when-unset"),
        pytest.param("${NAME:-dflt}", {"NAME": ""}, "dflt", id="default-when-empty"),
        pytest.param("${NAME:-dflt}", {"NAME": "web"}, "web", id="value-beats-default"),
        pytest.param("${NAME:-}", {}, "", id="empty-default"),
        pytest.param("${NAME:-a:b/c}", {}, "a:b/c", id="default-with-colons"),
        pytest.param("${A}-${B:-b}", {"A": "a"}, "a-b", id="several"),
        pytest.param("cost $$5", {}, "cost $5", id="double-dollar"),
        pytest.param("$${NAME}", {"NAME": "web"}, "${NAME}", id="escaped-reference"),
        pytest.param("$5 and $NAME", {"NAME": "web"}, "$5 and $NAME", id="bare-dollar-kept"),
        pytest.param("${NAME}", {"NAME": "${OTHER}"}, "${OTHER}", id="not-recursive"),
    ],
)
def test_environment_expansion(value: str, env: dict[str, str], expected: str) -> None:
    """${VAR} and ${VAR:-default} are expanded in string values; $$ is a literal $."""
    assert attribute_after_expansion(value, env) == expected


def test_unset_variable_in_a_list_names_the_item() -> None:
    """An unset ${VAR} is an error naming the exact key path, list index included."""
    text = """
    targets:
      bigpanda:
        kind: log
    routes:
      - match:
          task: [cpu_*, "${TASK_GLOB}"]
      - name: default
    """
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), base_dir=Path("/"), env={})
    assert str(info.value) == "routes[0].match.task[1]: environment variable TASK_GLOB is not set"


def test_environment_fills_secrets() -> None:
    """Secrets usually come from the environment; they are read like any other value."""
    text = """
    targets:
      bigpanda:
        kind: alerts_v2
        token: ${BP_TOKEN}
        app_key: ${BP_KEY:-unused}
    """
    cfg = parse_config(
        textwrap.dedent(text), base_dir=Path("/"), env={"BP_TOKEN": "t1", "BP_KEY": "k1"}
    )
    target = cfg.targets["bigpanda"]
    assert (target.token.reveal(), target.app_key.reveal()) == ("t1", "k1")


# --------------------------------------------------------------------------- paths


def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    """queue.path and token_file are relative to the config file, not the working directory."""
    conf_dir = tmp_path / "etc" / "forwarder"
    (conf_dir / "secrets").mkdir(parents=True)
    (conf_dir / "secrets" / "token").write_text("tok-SECRET-relative\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    config = conf_dir / "forwarder.yaml"
    config.write_text(
        textwrap.dedent(
            """
            queue:
              path: ../../var/queue.db
            targets:
              bigpanda:
                kind: alerts_v2
                token_file: secrets/token
                app_key: key-SECRET-relative
            """
        )
    )
    result = check_config(config, cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert f"queue:   {tmp_path / 'var' / 'queue.db'} " in result.stdout
    assert "credentials set" in result.stdout
    assert SECRET_MARKER not in result.stdout + result.stderr

    loaded = load_config(config)
    assert loaded.queue.path == tmp_path / "var" / "queue.db"
    assert loaded.targets["bigpanda"].token.reveal() == "tok-SECRET-relative"


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    """An absolute path is used as written."""
    text = f"queue:\n  path: {tmp_path}/q.db\ntargets:\n  b:\n    kind: log\n"
    cfg = parse_config(text, base_dir=Path("/somewhere/else"), env={})
    assert cfg.queue.path == tmp_path / "q.db"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("tok-1\n", "tok-1", id="trailing-newline"),
        pytest.param("  tok-2  \r\n", "tok-2", id="surrounding-space"),
        pytest.param("tok-3", "tok-3", id="no-newline"),
    ],
)
def test_token_file_is_read_and_stripped(tmp_path: Path, content: str, expected: str) -> None:
    """token_file's content, without surrounding whitespace, is the token."""
    (tmp_path / "token").write_text(content)
    text = """
    targets:
      bigpanda:
        kind: alerts_v2
        token_file: token
        app_key: k
    """
    path = tmp_path / "forwarder.yaml"
    path.write_text(textwrap.dedent(text))
    assert load_config(path).targets["bigpanda"].token.reveal() == expected


def test_bearer_token_file_works_like_token_file(tmp_path: Path) -> None:
    """server.auth.bearer_token_file is read the same way, relative to the config."""
    (tmp_path / "ingest-token").write_text("ingest-1\n")
    text = """
    server:
      auth:
        bearer_token_file: ingest-token
    targets:
      bigpanda:
        kind: log
    """
    path = tmp_path / "forwarder.yaml"
    path.write_text(textwrap.dedent(text))
    auth = load_config(path).server.auth
    assert auth is not None
    assert auth.bearer_token is not None
    assert auth.bearer_token.reveal() == "ingest-1"


# --------------------------------------------------------------------------- secrets

ALL_SECRETS_CONFIG = """
server:
  auth:
    bearer_token: ingest-SECRET-1
    basic:
      username: kapacitor
      password: basic-SECRET-2
targets:
  bigpanda:
    kind: alerts_v2
    url: https://api.bigpanda.io/data/v2/alerts
    token: tok-SECRET-3
    app_key: key-SECRET-4
routes:
  - name: db
    match:
      tags:
        team: db
    app_key: route-SECRET-5
  - name: default
"""


def test_check_config_output_never_shows_secrets(tmp_path: Path) -> None:
    """A valid config's summary mentions credentials but prints none of them."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(ALL_SECRETS_CONFIG)
    result = check_config(path)
    assert result.returncode == 0, result.stderr
    assert "route:   db -> bigpanda" in result.stdout
    assert SECRET_MARKER not in result.stdout + result.stderr


def test_check_config_error_never_shows_secrets(tmp_path: Path) -> None:
    """A config error elsewhere in a file full of secrets prints none of them."""
    path = tmp_path / "forwarder.yaml"
    path.write_text(ALL_SECRETS_CONFIG.replace("https://api.bigpanda.io", "ftp://api.bigpanda.io"))
    result = check_config(path)
    assert result.returncode == 1
    assert result.stderr.startswith("forwarder: error: targets.bigpanda.url: not a URL")
    assert SECRET_MARKER not in result.stdout + result.stderr


def test_loaded_config_does_not_print_secrets(tmp_path: Path) -> None:
    """repr() of a loaded config (as in a traceback or log) shows no secret value."""
    cfg = parse_config(ALL_SECRETS_CONFIG, base_dir=tmp_path, env={})
    assert SECRET_MARKER not in repr(cfg)
    assert SECRET_MARKER not in str(cfg.targets["bigpanda"].token)
    assert set(cfg.secrets()) == {
        "ingest-SECRET-1",
        "basic-SECRET-2",
        "tok-SECRET-3",
        "key-SECRET-4",
        "route-SECRET-5",
    }


# --------------------------------------------------------------------------- one line


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('"bad\\nkey": 1\ntargets: {b: {kind: log}}\n', id="newline-in-key"),
        pytest.param("targets: {b: {kind: 'lo\\ng'}}\n", id="newline-in-value"),
        pytest.param("targets:\n  b:\n    kind: log\n  - x\n", id="yaml-structure"),
        pytest.param("\ttargets: 1\n", id="tab"),
    ],
)
def test_error_text_is_always_one_line(text: str) -> None:
    """A ConfigError's text is one line even when the mistake itself contains a newline."""
    with pytest.raises(ConfigError) as info:
        parse_config(text, base_dir=Path("/"), env={})
    assert "\n" not in str(info.value)
    assert "\r" not in str(info.value)


def test_defaults_fill_what_is_not_given() -> None:
    """A minimal config gets the issue's defaults: 127.0.0.1:9095, 1 MiB bodies, tags+fields."""
    cfg = parse_config("targets:\n  bigpanda:\n    kind: log\n", base_dir=Path("/x"), env={})
    assert (cfg.server.host, cfg.server.port) == ("127.0.0.1", 9095)
    assert cfg.server.max_body_bytes == 1024 * 1024
    assert cfg.mapping.auto_attributes == ("tags", "fields")
    assert cfg.ingest.httppost.default_level is None
    [route] = cfg.routes
    assert route.match is None


def test_sqlite_disk_headroom_is_configurable() -> None:
    """queue.reserve_bytes and queue.ballast_bytes take sizes; 0 turns the ballast off."""
    text = "queue:\n  reserve_bytes: 8MiB\n  ballast_bytes: 0\ntargets:\n  b:\n    kind: log\n"
    cfg = parse_config(text, base_dir=Path("/x"), env={})
    assert (cfg.queue.reserve_bytes, cfg.queue.ballast_bytes) == (8 * 1024**2, 0)
    default = parse_config("targets:\n  b:\n    kind: log\n", base_dir=Path("/x"), env={})
    assert (default.queue.reserve_bytes, default.queue.ballast_bytes) == (64 << 20, 16 << 20)


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9095", "127.0.0.1", 9095),
        ("0.0.0.0:80", "0.0.0.0", 80),
        (":9095", "0.0.0.0", 9095),
        ("[::1]:9095", "::1", 9095),
        ("localhost:0", "localhost", 0),
    ],
)
def test_listen_is_host_and_port(listen: str, host: str, port: int) -> None:
    """server.listen is host:port; an empty host means all interfaces."""
    text = f"server:\n  listen: '{listen}'\ntargets:\n  b:\n    kind: log\n"
    cfg = parse_config(text, base_dir=Path("/"), env={})
    assert (cfg.server.host, cfg.server.port) == (host, port)
