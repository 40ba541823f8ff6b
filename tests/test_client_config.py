"""Where the client commands connect: flags, a named profile, the environment, the config
file's default profile, the local admin key, in that order; a broken config is a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.settings import ClientSettings, ConfigError

CONFIG = """
default_profile = "prod"

[profiles.prod]
url = "https://datagate.example.com"
key_file = "{key_file}"

[profiles.staging]
url = "https://staging.example.com"
key = "dg_staging"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("DATAGATE_"):
            monkeypatch.delenv(name)
    key_file = tmp_path / "prod.key"
    key_file.write_text("dg_prod\n")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(key_file=key_file))
    path.chmod(0o600)
    monkeypatch.setenv("DATAGATE_CONFIG", str(path))
    monkeypatch.setenv("DATAGATE_HOME", str(tmp_path / "home"))
    return path


def test_the_default_profile_applies_when_nothing_else_is_said(config: Path) -> None:
    assert ClientSettings().connection() == ("https://datagate.example.com", "dg_prod")


def test_flags_beat_a_named_profile_which_beats_the_environment(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAGATE_URL", "http://env:8000")
    monkeypatch.setenv("DATAGATE_API_KEY", "dg_env")
    # The environment beats the default profile...
    assert ClientSettings().connection() == ("http://env:8000", "dg_env")
    # ...a profile named on the command line beats the environment...
    assert ClientSettings().connection(profile="staging") == (
        "https://staging.example.com",
        "dg_staging",
    )
    # ...and --url/--key beat everything.
    assert ClientSettings().connection("http://flag:1", "dg_flag", "staging") == (
        "http://flag:1",
        "dg_flag",
    )


def test_datagate_profile_picks_the_fallback_profile(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAGATE_PROFILE", "staging")
    assert ClientSettings().connection() == ("https://staging.example.com", "dg_staging")
    monkeypatch.setenv("DATAGATE_URL", "http://env:8000")
    assert ClientSettings().connection() == ("http://env:8000", "dg_staging")


def test_without_a_config_file_the_local_gateway_and_its_admin_key(
    config: Path, tmp_path: Path
) -> None:
    config.unlink()
    assert ClientSettings().connection() == ("http://127.0.0.1:8000", None)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "admin.key").write_text("dg_local\n")
    assert ClientSettings().connection() == ("http://127.0.0.1:8000", "dg_local")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[profiles.prod\nurl = 1", "not TOML"),
        ("[profiles.prod]\nurll = 'x'", "profiles.prod.urll"),
        ("default_profile = 'gone'\n[profiles.prod]\nurl = 'x'", "no profile 'gone'"),
        ("[profiles.default]\nkey_file = '/no/such/file'", "key_file /no/such/file"),
    ],
)
def test_a_broken_config_is_one_clear_error(config: Path, text: str, says: str) -> None:
    config.write_text(text)
    with pytest.raises(ConfigError, match=says.replace(".", r"\.")):
        ClientSettings().connection()


def test_an_unknown_profile_names_the_known_ones(config: Path) -> None:
    with pytest.raises(ConfigError, match=r"no profile 'qa' .*\(profiles: prod, staging\)"):
        ClientSettings().connection(profile="qa")


def test_a_key_in_a_file_others_can_read_is_refused(config: Path) -> None:
    config.chmod(0o644)
    with pytest.raises(ConfigError, match="others may read it: chmod 600"):
        ClientSettings().connection()
    # A file with key_file references only is fine at any mode.
    config.write_text("[profiles.default]\nurl = 'http://x:1'\n")
    assert ClientSettings().connection() == ("http://x:1", None)
