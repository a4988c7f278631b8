"""Settings precedence: config file < RAYKERNEL_* env < CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from raykernel.server.cli import main, parse_args
from raykernel.settings import load_settings


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = 9001\nhost = "127.0.0.2"\nmax_sessions = 5\nnamespace = "fromfile"\n')
    monkeypatch.setenv("RAYKERNEL_PORT", "9002")
    monkeypatch.setenv("RAYKERNEL_MAX_SESSIONS", "6")
    flags = parse_args(["--config", str(config), "--port", "9003", "--workspace", str(tmp_path)])
    settings = load_settings(**flags)
    assert settings.port == 9003  # flag beats env and file
    assert settings.max_sessions == 6  # env beats file
    assert settings.namespace == "fromfile"  # file beats default
    assert settings.host == "127.0.0.2"
    assert settings.workspace == tmp_path.resolve()


def test_unset_flags_do_not_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYKERNEL_TRANSPORT", "http")
    assert parse_args([]) == {}
    assert load_settings(**parse_args([])).transport == "http"


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert (settings.transport, settings.host, settings.port, settings.path) == (
        "stdio",
        "127.0.0.1",
        8000,
        "/mcp",
    )
    assert settings.workspace == tmp_path.resolve()
    assert settings.session_num_cpus == 0


def test_bad_settings_exit_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("max_sessions = -1\nunknown_key = 1\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "max_sessions" in err and "unknown_key" in err


def test_ray_address_comes_last_from_ray_own_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert load_settings().ray_address == "10.0.0.1:6379"
    monkeypatch.setenv("RAYKERNEL_RAY_ADDRESS", "10.0.0.2:6379")
    assert load_settings().ray_address == "10.0.0.2:6379"
    assert load_settings(ray_address="10.0.0.3:6379").ray_address == "10.0.0.3:6379"


def test_the_example_config_names_every_setting() -> None:
    import re

    from raykernel.settings import Settings

    text = (Path(__file__).parents[2] / "configs" / "raykernel.toml").read_text()
    keys = set(re.findall(r"^#\s*([a-z_]+)\s*=", text, flags=re.M))
    assert set(Settings.model_fields) - {"config"} <= keys


def test_where_ray_starts_and_the_pool_size_follow_the_deployment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    laptop = load_settings(workspace=tmp_path, config=None)
    assert (laptop.local_default, laptop.ray_at_launch, laptop.pool_size) == (True, False, 1)
    assert laptop.dashboard is False
    eager = load_settings(workspace=tmp_path, config=None, ray_start="at_launch")
    assert (eager.local_default, eager.ray_at_launch) == (False, True)
    cluster = load_settings(workspace=tmp_path, config=None, ray_address="10.0.0.1:6379")
    assert (cluster.local_default, cluster.ray_at_launch, cluster.pool_size) == (False, True, 2)
    # With identities every "default" belongs to one of them: none is served locally.
    shared = load_settings(workspace=tmp_path, config=None, auth_token="t" * 32)
    assert (shared.local_default, shared.ray_at_launch) == (False, False)
    assert load_settings(workspace=tmp_path, config=None, warm_pool_size=0).pool_size == 0
    with pytest.raises(ValueError, match="ray_start"):
        load_settings(workspace=tmp_path, config=None, ray_start="sometimes")
