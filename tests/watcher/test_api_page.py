"""The drop-a-picture page in a real headless Chromium: a picture screened, its face boxed."""

from __future__ import annotations

import csv
import io
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser import chromium, open_in_chromium

from .conftest import Deployment, running_daemon, wait_until

__all__ = ["chromium"]

FACES = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces"


def _face_jpeg() -> bytes:
    """A real face (a dataset photo) on a wider grey canvas, as JPEG."""
    with open(FACES / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["source"] == "ffhq" and r["split"] == "test")
    face = np.asarray(Image.open(FACES / row["path"]).convert("RGB"))
    canvas = np.full((face.shape[0] + 80, face.shape[1] + 160, 3), 120, np.uint8)
    canvas[40 : 40 + face.shape[0], 80 : 80 + face.shape[1]] = face
    out = io.BytesIO()
    Image.fromarray(canvas).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.skipif(not (FACES / "manifest.csv").is_file(), reason="the faces dataset is absent")
def test_a_dropped_picture_shows_its_verdict_and_its_face_box(
    chromium: str, tmp_path: Path, face_bundle: Path
) -> None:
    deployment = Deployment(root=tmp_path / "deploy", model=face_bundle)
    deployment.root.mkdir()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reports = deployment.root / "reports"
    settings = deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "upload_dir": str(deployment.root / "uploads")}
    )
    from dataclasses import replace

    settings = replace(settings, reports=replace(settings.reports, dir=reports))
    reports.mkdir()
    (reports / "face.jpg").write_bytes(_face_jpeg())
    with running_daemon(settings) as daemon:
        wait_until(lambda: daemon.api is not None and daemon.api.server.started)
        base = f"http://127.0.0.1:{port}"
        import httpx

        page = httpx.get(f"{base}/").text
        # The page as served, driven the way a drop does: the picture handed to its handler.
        drive = (
            "<script>window.addEventListener('load', function () {"
            " fetch('/reports/face.jpg').then(function (r) { return r.blob(); })"
            " .then(function (b) { window.dfdScreen([new File([b], 'face.jpg',"
            " {type: 'image/jpeg'})]); }); });</script></body>"
        )
        (reports / "drive.html").write_text(page.replace("</body>", drive), encoding="utf-8")
        dom, log = open_in_chromium(
            chromium,
            f"{base}/reports/drive.html",
            tmp_path / "profile",
            "--virtual-time-budget=30000",
        )
    assert 'class="card"' in dom, log[-2000:]
    assert 'data-faces="1"' in dom and 'data-boxes="1"' in dom  # the face, boxed on the picture
    assert 'data-label="' in dom and "P(AI)" in dom and "it is real" in dom
    assert deployment.prediction_count() == 1  # screened and stored through the pipeline
