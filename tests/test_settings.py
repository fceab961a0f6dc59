"""config.toml loading: defaults, path resolution, and errors that name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from watcher.cli import main
from watcher.settings import ENV_VAR, ConfigError, Settings, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_resolve_against_cwd(tmp_path: Path) -> None:
    settings = load_settings(None, cwd=tmp_path)
    assert settings.source is None
    assert settings.watcher.inbox == (tmp_path / "inbox",)
    assert settings.storage.url == f"sqlite:///{tmp_path}/var/deepfake-detector.db"
    assert settings.detector.model == "default"
    assert settings.detector.threshold is None


def test_relative_paths_resolve_against_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    cfg = _write(
        sub,
        '[watcher]\ninbox = "in"\noutput = "/abs/out"\n[storage]\nurl = "sqlite:///db.sqlite"\n',
    )
    settings = load_settings(cfg)
    assert settings.watcher.inbox == (sub / "in",)
    assert settings.watcher.output == Path("/abs/out")
    assert settings.storage.url == f"sqlite:///{sub}/db.sqlite"


def test_inbox_accepts_a_list(tmp_path: Path) -> None:
    cfg = _write(tmp_path, '[watcher]\ninbox = ["a", "b"]\n')
    assert load_settings(cfg).watcher.inbox == (tmp_path / "a", tmp_path / "b")


def test_environment_variable_names_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _write(tmp_path, "[detector]\nbatch_size = 7\n")
    monkeypatch.setenv(ENV_VAR, str(cfg))
    assert load_settings(None, cwd=ROOT).detector.batch_size == 7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[watcher]\ninbx = 'x'\n", "[watcher] inbx"),
        ("[nope]\n", "[nope]"),
        ("[detector]\nbatch_size = 'big'\n", "[detector] batch_size"),
        ("[detector]\nbatch_size = 0\n", "[detector] batch_size"),
        ("[detector]\nthreshold = 1.5\n", "[detector] threshold"),
        ("[watcher]\non_verdict = 'delete'\n", "[watcher] on_verdict"),
        ("[storage]\nprivate = 'yes'\n", "[storage] private"),
        ("[watcher]\nquiet_period_s = -1\n", "[watcher] quiet_period_s"),
        ("[watcher\n", "invalid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(_write(tmp_path, text))


def test_cli_exits_2_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _write(tmp_path, "[detector]\nbatch_sise = 8\n")
    assert main(["--config", str(cfg), "verdicts"]) == 2
    assert "[detector] batch_sise" in capsys.readouterr().err


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_shipped_config_lists_every_key_with_its_default() -> None:
    """config.toml documents every setting, and its values are the embedded defaults."""
    shipped = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    from_file = parse_settings(shipped, base_dir=ROOT, source=None)
    defaults = parse_settings({}, base_dir=ROOT, source=None)
    for part in dataclasses.fields(Settings):
        if part.name in ("base_dir", "source"):
            continue
        names = {f.name for f in dataclasses.fields(getattr(defaults, part.name))}
        assert set(shipped[part.name]) == names, part.name
    assert from_file == defaults


def test_every_shipped_key_has_a_comment() -> None:
    lines = (ROOT / "config.toml").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = lines[i - 1]
            assert above.startswith("#") or "=" in above, f"no comment above: {line}"


@pytest.mark.parametrize(
    ("value", "band"),
    [('""', None), ("[]", ()), ("[0.4, 0.7]", (0.4, 0.7)), ("[0, 1]", (0.0, 1.0))],
)
def test_uncertain_band_setting(tmp_path: Path, value: str, band: object) -> None:
    settings = load_settings(_write(tmp_path, f"[detector]\nuncertain_band = {value}\n"))
    assert settings.detector.uncertain_band == band


@pytest.mark.parametrize("value", ["[0.7, 0.4]", "[0.5]", "[0.1, 1.2]", "0.5", "['a', 'b']"])
def test_a_bad_uncertain_band_names_the_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"\[detector\] uncertain_band"):
        load_settings(_write(tmp_path, f"[detector]\nuncertain_band = {value}\n"))


def test_sidecar_and_provenance_settings(tmp_path: Path) -> None:
    defaults = load_settings(_write(tmp_path, ""))
    assert defaults.watcher.sidecar is False and defaults.detector.provenance is True
    text = "[watcher]\nsidecar = true\n[detector]\nprovenance = false\n"
    settings = load_settings(_write(tmp_path, text))
    assert settings.watcher.sidecar is True and settings.detector.provenance is False
