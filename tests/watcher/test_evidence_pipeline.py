"""Provenance and the uncertain band end to end: label, decided_by, evidence, folders, sidecars.

Every file is built here (Pillow writes PNG chunks, EXIF and XMP; c2pa signs a manifest with a
throwaway test certificate) and screened by the tiny real model, which calls dark pictures real
and bright ones ai.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests import provenance_files as pf
from tests.conftest import BRIGHT, DARK
from watcher import sidecar
from watcher.cli import main
from watcher.settings import load_settings

from .conftest import Deployment, running_daemon, wait_until

GRAY = (128, 128, 128)  # the tiny model scores it about 0.59: inside a [0.2, 0.8) band


def _files() -> dict[str, tuple[bytes, str, str, str]]:
    """name -> (bytes, label, decided_by, text the evidence must contain)."""
    dark_jpeg, dark_png = pf.jpeg(DARK), pf.png({}, DARK)
    junk = b"JP\x00\x01\x00\x00\x00\x01jumbc2pa" + bytes(range(256)) * 4
    broken = b"\xff\xeb" + (len(junk) + 2).to_bytes(2, "big") + junk
    return {
        "c2pa.jpg": (pf.c2pa_signed(dark_jpeg), "ai", "provenance", "valid signature"),
        "c2pa.png": (pf.c2pa_signed(dark_png, "image/png"), "ai", "provenance", "c2pa:"),
        "xmp.jpg": (
            pf.jpeg(DARK, xmp=pf.xmp("trainedAlgorithmicMedia")),
            "ai",
            "provenance",
            "IPTC",
        ),
        "a1111.png": (pf.png({"parameters": pf.A1111}, DARK), "ai", "provenance", "WebUI"),
        "comfy.png": (pf.png({"prompt": pf.COMFY_PROMPT}, DARK), "ai", "provenance", "ComfyUI"),
        "camera.jpg": (
            pf.jpeg(DARK, exif=pf.exif(make="Canon", model="EOS R5")),
            "real",
            "model",
            "camera claim, not trusted",
        ),
        # A camera claim never makes a picture real: the model still calls it ai.
        "bright_camera.jpg": (
            pf.jpeg(BRIGHT, exif=pf.exif(make="Canon", model="EOS R5")),
            "ai",
            "model",
            "Canon EOS R5",
        ),
        "tampered.jpg": (
            pf.tampered(pf.c2pa_signed(dark_jpeg)),
            "real",
            "model",
            "does not validate",
        ),
        "broken_manifest.jpg": (
            dark_jpeg[:2] + broken + dark_jpeg[2:],
            "real",
            "model",
            "[ignored]",
        ),
        "huge_xmp.png": (
            pf.with_png_chunk(
                dark_png, b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + b" " * 5_000_000
            ),
            "real",
            "model",
            "over the limit",
        ),
        "plain.jpg": (dark_jpeg, "real", "model", ""),
    }


def test_scan_shows_label_decided_by_and_evidence_for_each_kind(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    files = _files()
    for name, (data, *_) in files.items():
        (folder / name).write_bytes(data)
    assert main(["--config", str(deployment.config), "scan", "--json", str(folder)]) == 0
    printed = {
        Path(j["path"]).name: j for j in map(json.loads, capsys.readouterr().out.splitlines())
    }
    rows = {Path(r.path).name: r for r in deployment.verdicts()}
    assert set(printed) == set(rows) == set(files)
    for name, (_, label, decided_by, says) in files.items():
        line, row = printed[name], rows[name]
        assert (
            (line["label"], line["decided_by"])
            == (row.label, row.decided_by)
            == (label, decided_by)
        ), name
        assert says in (row.evidence or "") and line["evidence"] == row.evidence, name
    # Provenance decided, and the model's own score is kept beside it: it called these real.
    assert rows["c2pa.jpg"].score is not None and rows["c2pa.jpg"].score < 0.5
    assert rows["plain.jpg"].evidence == ""


def test_daemon_sorts_uncertain_files_and_writes_verdict_files(
    deployment: Deployment, tmp_path: Path
) -> None:
    deployment.write_config(sidecar=True)
    text = deployment.config.read_text().replace(
        "batch_size = 16", "batch_size = 16\nuncertain_band = [0.2, 0.8]"
    )
    deployment.config.write_text(text)
    settings = load_settings(deployment.config)
    assert settings.detector.uncertain_band == (0.2, 0.8)
    drops = {
        "dark.jpg": pf.jpeg(DARK),
        "bright.jpg": pf.jpeg(BRIGHT),
        "gray.jpg": pf.jpeg(GRAY),
        "signed.jpg": pf.c2pa_signed(pf.jpeg(GRAY)),  # in the band, but declared AI
    }
    with running_daemon(settings):
        for name, data in drops.items():
            staged = tmp_path / name
            staged.write_bytes(data)
            os.replace(staged, deployment.inbox / name)
        wait_until(lambda: len(list(deployment.output.rglob("*.verdict.json"))) == len(drops))
    out = deployment.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "ai/bright.jpg",
        "ai/bright.jpg.verdict.json",
        "ai/signed.jpg",
        "ai/signed.jpg.verdict.json",
        "real/dark.jpg",
        "real/dark.jpg.verdict.json",
        "uncertain/gray.jpg",
        "uncertain/gray.jpg.verdict.json",
    ]
    rows = {Path(r.path).name: r for r in deployment.verdicts()}
    for name, row in rows.items():
        dest = Path(row.dest_path or "")
        written = json.loads(sidecar.sidecar_path(dest).read_text(encoding="utf-8"))
        assert written["label"] == row.label and written["score"] == row.score, name
        assert written["model_version"] == row.model_version and written["screened_at"], name
        assert written["decided_by"] == row.decided_by and "faces" in written, name
        assert written["evidence"]["summary"] == row.evidence, name
    signed = json.loads(sidecar.sidecar_path(out / "ai/signed.jpg").read_text())
    assert signed["decided_by"] == "provenance" and 0.2 <= signed["score"] < 0.8
    assert [f["strength"] for f in signed["evidence"]["findings"]] == ["declares_ai"]
    assert rows["gray.jpg"].label == "uncertain" and rows["gray.jpg"].decided_by == "model"


def test_verdict_files_are_off_by_default(deployment: Deployment, tmp_path: Path) -> None:
    settings = deployment.write_config()
    assert settings.watcher.sidecar is False
    with running_daemon(settings):
        staged = tmp_path / "dark.jpg"
        staged.write_bytes(pf.jpeg(DARK))
        os.replace(staged, deployment.inbox / "dark.jpg")
        wait_until(lambda: (deployment.output / "real" / "dark.jpg").exists())
    assert list(deployment.output.rglob("*.verdict.json")) == []


def test_provenance_can_be_turned_off(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployment.write_config()
    text = deployment.config.read_text().replace(
        "batch_size = 16", "batch_size = 16\nprovenance = false"
    )
    deployment.config.write_text(text)
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "c2pa.jpg").write_bytes(pf.c2pa_signed(pf.jpeg(DARK)))
    assert main(["--config", str(deployment.config), "scan", "--json", str(tmp_path / "drop")]) == 0
    (line,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert (line["label"], line["decided_by"], line["evidence"]) == ("real", "model", None)


# --- the verdict file itself ----------------------------------------------------------------


def test_write_sidecar_is_atomic_and_replaces_an_old_one(tmp_path: Path) -> None:
    dest = tmp_path / "face.jpg"
    dest.write_bytes(b"x")
    sidecar.write_sidecar(dest, {"label": "ai"})
    path = sidecar.write_sidecar(dest, {"label": "real"})
    assert path == tmp_path / "face.jpg.verdict.json"
    assert json.loads(path.read_text()) == {"label": "real"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.jpg", "face.jpg.verdict.json"]


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "face.jpg"
    with pytest.raises(ValueError):
        sidecar.write_sidecar(dest, {"score": float("nan")})
    assert list(tmp_path.iterdir()) == []


def test_the_verdict_file_of_a_255_byte_name_still_fits(tmp_path: Path) -> None:
    dest = tmp_path / ("f" * 251 + ".jpg")
    path = sidecar.write_sidecar(dest, {"label": "ai"})
    assert len(os.fsencode(path.name)) <= 255 and path.name.endswith(".verdict.json")
