"""Faces through the pipeline: found, scored, stored, listed by scan --json and verdicts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import text

from tests.conftest import ImageFactory
from watcher.cli import main

from .conftest import Deployment

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "faces"


@pytest.fixture
def faces_deployment(deployment: Deployment, face_bundle: Path) -> Deployment:
    """The deployment serving the face-view bundle."""
    deployment.model = face_bundle
    deployment.write_config()
    return deployment


def _two_faces(path: Path) -> Path:
    """Two dataset faces side by side on grey (made in tmp_path, never committed)."""
    if not (DATASET / "manifest.csv").is_file():
        pytest.skip(f"dataset not found at {DATASET}")
    with open(DATASET / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["source"] == "ffhq" and r["split"] == "test"]
    faces = [np.asarray(Image.open(DATASET / r["path"]).convert("RGB")) for r in rows[:2]]
    canvas = np.full((256 + 128, 2 * 256 + 192, 3), 110, np.uint8)
    canvas[64:320, 64:320], canvas[64:320, 384:640] = faces
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, "JPEG", quality=92)
    return path


def test_scan_json_lists_every_face_and_the_whole_score(
    faces_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    picture = _two_faces(tmp_path / "in" / "two.jpg")
    assert main(["--config", str(faces_deployment.config), "scan", "--json", str(picture)]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["status"] == "classified" and line["faces"] == 2
    boxes = sorted(face["box"] for face in line["face_list"])
    assert boxes[0][0] < 320 < boxes[1][0]  # one box on each face
    assert all(0.0 <= f["score"] <= 1.0 and f["detector_score"] >= 0.7 for f in line["face_list"])
    assert 0.0 <= line["whole_score"] <= 1.0
    # Stored: the view has the count, the best face's box and score, the whole score.
    with faces_deployment.database() as db, db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT faces, face_x, face_score, whole_score, score FROM verdicts")
        ).one()
    assert row.faces == 2 and row.face_x in (b[0] for b in boxes)
    assert row.face_score == max(f["score"] for f in line["face_list"])
    assert row.whole_score == pytest.approx(line["whole_score"])
    assert main(["--config", str(faces_deployment.config), "verdicts", "--format", "json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["faces"] == 2 and len(listed["face_list"]) == 2


def test_a_picture_without_a_face_is_screened_on_its_whole_view(
    faces_deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    plain = image_factory(tmp_path / "in" / "wall.jpg", color=(230, 230, 230), size=(300, 200))
    assert main(["--config", str(faces_deployment.config), "scan", "--json", str(plain)]) == 0
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert line["status"] == "classified" and line["label"] == "ai"  # bright: the tiny model's ai
    assert line["faces"] == 0 and line["face_list"] == []
    assert line["score"] == pytest.approx(line["whole_score"])  # whole-only rule: no change


def test_the_same_picture_again_reuses_the_verdict_with_its_faces(
    faces_deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _two_faces(tmp_path / "in" / "a.jpg")
    again = tmp_path / "in" / "b.jpg"
    again.write_bytes(first.read_bytes())
    config = str(faces_deployment.config)
    assert main(["--config", config, "scan", "--json", str(first)]) == 0
    assert main(["--config", config, "scan", "--json", str(again)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["faces"] for x in lines] == [2, 2]
    assert lines[0]["face_list"] == lines[1]["face_list"]
