"""Reading config.toml into the frozen per-package config dataclasses.

Every key has a default in its dataclass, so a missing file or table means "embedded defaults".
An unknown key or a value of the wrong type stops start-up with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detector.config import DetectorConfig
from reports.config import ReportsConfig
from storage.config import StorageConfig
from training.config import TrainingConfig
from watcher.config import ApiConfig, SchedulerConfig, WatcherConfig

ENV_VAR = "DEEPFAKE_DETECTOR_CONFIG"
DEFAULT_FILE = "config.toml"


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the offending key."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The whole configuration, one part per package."""

    base_dir: Path
    source: Path | None
    watcher: WatcherConfig = field(default_factory=WatcherConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    reports: ReportsConfig = field(default_factory=ReportsConfig)
    api: ApiConfig = field(default_factory=ApiConfig)


# What SQLite writes beside a database file while it is in use.
_SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

_TABLES: dict[str, type[Any]] = {
    "watcher": WatcherConfig,
    "scheduler": SchedulerConfig,
    "storage": StorageConfig,
    "detector": DetectorConfig,
    "training": TrainingConfig,
    "reports": ReportsConfig,
    "api": ApiConfig,
}


def find_config_file(
    explicit: str | os.PathLike[str] | None, cwd: Path | None = None
) -> Path | None:
    """The config file to read: --config, then $DEEPFAKE_DETECTOR_CONFIG, then ./config.toml."""
    chosen = explicit or os.environ.get(ENV_VAR)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path.resolve()
    local = (cwd or Path.cwd()) / DEFAULT_FILE
    return local.resolve() if local.is_file() else None


def load_settings(
    explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None
) -> Settings:
    """Read and validate the configuration; embedded defaults when there is no file."""
    path = find_config_file(explicit, cwd)
    if path is None:
        return parse_settings({}, base_dir=(cwd or Path.cwd()).resolve(), source=None)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return parse_settings(raw, base_dir=path.parent, source=path)


def parse_settings(raw: dict[str, Any], base_dir: Path, source: Path | None) -> Settings:
    """Build Settings from an already parsed TOML document."""
    unknown = sorted(set(raw) - set(_TABLES))
    if unknown:
        raise ConfigError(f"unknown config table [{unknown[0]}] (known: {', '.join(_TABLES)})")
    parts: dict[str, Any] = {}
    for name, cls in _TABLES.items():
        table = raw.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"[{name}] must be a table")
        parts[name] = _build(cls, name, table, base_dir)
    settings = Settings(base_dir=base_dir, source=source, **parts)
    return dataclasses.replace(settings, storage=_resolve_storage_url(settings.storage, base_dir))


def _build(cls: type[Any], table: str, values: dict[str, Any], base_dir: Path) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key [{table}] {unknown[0]} (known: {', '.join(fields)})")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"[{table}] {name}"
        value = values.get(name, f.default)
        value = _coerce(value, hints[name], key, base_dir)
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(
                f"{key} must be one of {', '.join(map(repr, choices))}, not {value!r}"
            )
        _check_range(value, key, f.metadata.get("min", 0), f.metadata.get("max"))
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ValueError as exc:  # a config dataclass's own check (its message names the key)
        raise ConfigError(str(exc)) from exc


def _check_range(value: Any, key: str, low: float, high: float | None) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    if value < low:
        raise ConfigError(f"{key} must be at least {low}, not {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{key} must be at most {high}, not {value!r}")


def _coerce(value: Any, hint: Any, key: str, base_dir: Path) -> Any:
    """Check `value` against the field's type, resolving relative paths against base_dir."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        # TOML has no null: "" stands for "not set" in optional settings.
        if (value is None or value == "") and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, base_dir)
    if origin is tuple:
        if value == "":  # TOML has no null: "" is the empty list too
            return ()
        items = [value] if isinstance(value, str | Path) else value
        if not isinstance(items, list | tuple):
            raise ConfigError(f"{key} must be a string or a list of strings, not {value!r}")
        return tuple(_coerce(item, args[0], key, base_dir) for item in items)
    if hint is Path:
        if not isinstance(value, str | Path) or str(value) == "":
            raise ConfigError(f"{key} must be a non-empty path string, not {value!r}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base_dir / path)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported setting type {hint!r}")  # a bug, not a user error


def _resolve_storage_url(cfg: StorageConfig, base_dir: Path) -> StorageConfig:
    """Make a relative SQLite path absolute against the config folder."""
    prefix = "sqlite:///"
    if cfg.url.startswith(prefix) and not cfg.url.startswith(prefix + "/"):
        rest = cfg.url[len(prefix) :]
        if rest and rest != ":memory:" and not rest.startswith("file:"):
            return dataclasses.replace(cfg, url=prefix + str(base_dir / rest))
    return cfg


def service_state_paths(settings: Settings) -> tuple[Path, ...]:
    """Where the service keeps its own state: the SQLite database (with its journal files),
    the reports, the model store and the API's uploads. A folder being screened may hold them
    (`scan .` in the service's own folder); they are never pictures to screen."""
    # Imported here: storage.db pulls in SQLAlchemy (0.2 s), which loading settings (every CLI
    # command, --help included) does not otherwise need.
    from storage.db import sqlite_path

    paths = [settings.reports.dir, settings.detector.model_store, settings.api.upload_dir]
    database = sqlite_path(settings.storage.url)
    if database is not None:
        paths += [database, *(database.with_name(database.name + s) for s in _SQLITE_SIDE_FILES)]
    return tuple(path.resolve() for path in paths)
