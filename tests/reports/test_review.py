"""The review page: recent pictures, flagged first, thumbnails with the faces boxed, escaped
names, shell-quoted correction commands, a bounded size, private like every report."""

from __future__ import annotations

import base64
import io
import re
import shlex
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from html_checks import assert_self_contained, section
from PIL import Image
from report_data import XSS_ESCAPED, XSS_NAME, make_settings
from sqlalchemy import inspect, text

from reports.review import THUMB_MAX_BYTES, thumbnail_with_faces
from storage import queries as q
from storage.db import Database
from storage.models import FileRow, utcnow
from storage.queries.review import FaceBox
from tests.storage.factories import Seed
from watcher import invocation
from watcher.reporting import generate_reports
from watcher.settings import Settings

FACES_DDL = (
    "CREATE TABLE faces (id INTEGER PRIMARY KEY, prediction_id INTEGER NOT NULL "
    "REFERENCES predictions(id), face_index INTEGER NOT NULL, x INTEGER NOT NULL, "
    "y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL, detector_score FLOAT, "
    "score FLOAT)"
)


def _picture(path: Path, side: int = 96, seed: int = 0, noise: float = 30.0) -> Path:
    """A real small JPEG: a grey gradient with noise (noise makes it hard to compress)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 200, side)[None, :, None] * np.ones((side, 1, 3))
    img = ramp + rng.normal(0, noise, (side, side, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=92)
    return path


def _screened(
    seed: Seed, path: Path, label: str, score: float, minutes_ago: int, *, dest: Path | None = None
) -> int:
    """A classified file row (moved to `dest` when given); returns its prediction id."""
    model = seed.model("v1")
    file_id, sha = seed.classified(model, score=score, label=label, path=str(path))
    with seed.db.session() as s:
        if dest is not None:
            q.record_disposition(s, file_id, disposition="moved", dest_path=str(dest))
        file_row = s.get(FileRow, file_id)
        assert file_row is not None
        file_row.screened_at = utcnow() - timedelta(minutes=minutes_ago)
        return q.predictions_for(s, [sha], model)[sha].id


@pytest.fixture
def review_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, reports={"review_count": 5})


def _review_html(settings: Settings, db: Database) -> str:
    result = generate_reports(settings, db, ["review"])
    assert not result.failed, result.failed
    return (settings.reports.dir / "review.html").read_text(encoding="utf-8")


def _uris(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', html)]


def test_review_page_flagged_first_newest_first_escaped_and_private(
    tmp_path: Path, review_settings: Settings
) -> None:
    inbox, out = tmp_path / "inbox", tmp_path / "output"
    db = Database.open(review_settings.storage)
    try:
        seed = Seed(db)
        _screened(seed, _picture(inbox / "old_ai.jpg"), "ai", 0.91, 50)
        _screened(seed, _picture(inbox / "new_real.jpg"), "real", 0.05, 1)
        moved = _picture(out / "ai" / XSS_NAME)
        _screened(seed, inbox / XSS_NAME, "ai", 0.97, 5, dest=moved)
        _screened(seed, inbox / "gone.jpg", "real", 0.2, 3)  # never written: a placeholder
        html = _review_html(review_settings, db)
    finally:
        db.close()
    assert_self_contained(html)
    assert (review_settings.reports.dir / "review.html").stat().st_mode & 0o777 == 0o600
    flagged, real = section(html, "flagged"), section(html, "real")
    # Flagged first, newest first within the group.
    assert flagged.index(XSS_ESCAPED) < flagged.index("old_ai.jpg")
    assert real.index("new_real.jpg") < real.index("gone.jpg")
    assert "<script>alert(1)</script>" not in html
    # The correction names the file where it is now, shell-quoted, and the other label.
    program = invocation.command(review_settings.source)
    command = f"{program} label {shlex.quote(str(moved))} real"
    assert command.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&#39;") in flagged
    assert "label " + str(inbox / "new_real.jpg") + " ai" in real
    assert 'class="placeholder"' in real and "no thumbnail" in real
    assert "not recorded" in real  # no face count stored for these rows
    assert len(_uris(html)) == 3


def test_review_page_draws_the_faces_with_their_scores(
    tmp_path: Path, review_settings: Settings
) -> None:
    db = Database.open(review_settings.storage)
    try:
        pid = _screened(Seed(db), _picture(tmp_path / "two.jpg", side=320, noise=2), "ai", 0.9, 1)
        with db.session() as s:
            if not inspect(s.connection()).has_table("faces"):
                s.execute(text(FACES_DDL))  # the schema migration 0002 creates
            for i, (x, score) in enumerate(((20, 0.93), (180, 0.41))):
                s.execute(
                    text(
                        "INSERT INTO faces (prediction_id, face_index, x, y, w, h, "
                        "detector_score, score) VALUES (:p, :i, :x, 60, 120, 150, 0.9, :sc)"
                    ),
                    {"p": pid, "i": i, "x": x, "sc": score},
                )
        items = None
        with db.session() as s:
            items = q.recent_for_review(s, limit=5)
        html = _review_html(review_settings, db)
    finally:
        db.close()
    assert [(f.x, f.score) for f in items[0].faces] == [(20, 0.93), (180, 0.41)]
    assert "2 (scores 0.93, 0.41)" in html
    (uri,) = _uris(html)
    thumb = np.asarray(Image.open(io.BytesIO(uri)).convert("RGB")).astype(int)
    scale = thumb.shape[1] / 320
    # The box's left edge of the first face is drawn in red over a grey picture.
    x, y = round(20 * scale), round((60 + 75) * scale)
    r, g, b = thumb[y, x]
    assert r > 150 and g < 110 and b < 110, (r, g, b)


def test_evidence_and_what_decided_are_shown_escaped(
    tmp_path: Path, review_settings: Settings
) -> None:
    db = Database.open(review_settings.storage)
    try:
        pid = _screened(Seed(db), _picture(tmp_path / "c2pa.jpg"), "ai", 0.99, 1)
        with db.session() as s:
            if not inspect(s.connection()).has_table("evidence"):
                pytest.skip("the schema has no evidence yet (migration 0003)")
            s.execute(
                text("UPDATE predictions SET decided_by = 'provenance' WHERE id = :p"), {"p": pid}
            )
            s.execute(
                text(
                    "UPDATE images SET evidence = :e WHERE id = "
                    "(SELECT image_id FROM predictions WHERE id = :p)"
                ),
                {"e": "C2PA: trainedAlgorithmicMedia by <b>Gen</b>", "p": pid},
            )
        html = _review_html(review_settings, db)
    finally:
        db.close()
    flagged = section(html, "flagged")
    assert "C2PA: trainedAlgorithmicMedia by &lt;b&gt;Gen&lt;/b&gt;" in flagged
    assert "<dt>decided by</dt><dd>provenance</dd>" in flagged


def test_thumbnails_and_the_page_stay_small(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, reports={"review_count": 12})
    db = Database.open(settings.storage)
    try:
        seed = Seed(db)
        for i in range(15):  # big noisy pictures: the worst case for JPEG size
            path = _picture(tmp_path / "in" / f"noisy_{i}.jpg", side=900, seed=i, noise=60)
            _screened(seed, path, "ai" if i % 2 else "real", 0.5, i)
        html = _review_html(settings, db)
    finally:
        db.close()
    uris = _uris(html)
    assert len(uris) == 12  # the configured count
    assert max(len(u) for u in uris) <= THUMB_MAX_BYTES
    assert len(html.encode()) <= 12 * (THUMB_MAX_BYTES * 4 // 3 + 3_000) + 20_000


def test_boxes_follow_exif_orientation_on_a_large_jpeg(tmp_path: Path) -> None:
    """Boxes are in displayed source pixels; the decoder's reduction and rotation are undone."""
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 2400x1200, displayed rotated: 1200 wide, 2400 high
    Image.new("RGB", (2400, 1200), (128, 128, 128)).save(path, "JPEG", exif=exif)
    box = FaceBox(0, 200, 1400, 400, 400, 0.9, 0.9)
    uri, why = thumbnail_with_faces(path, (box,), "ai")
    assert why == ""
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",")[1]))))
    assert thumb.shape[:2] == (160, 80)
    scale = 160 / 2400
    r, g, b = thumb[round((1400 + 200) * scale), round(200 * scale)].astype(int)
    assert r > 150 and g < 110 and b < 110, (r, g, b)


def test_a_file_that_is_not_a_picture_gets_a_placeholder(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a picture at all")
    uri, why = thumbnail_with_faces(bad, (FaceBox(0, 1, 1, 5, 5, None, 0.5),), "ai")
    assert uri == "" and why.startswith("no thumbnail")


def test_no_screened_picture_yet(review_settings: Settings) -> None:
    db = Database.open(review_settings.storage)
    try:
        html = _review_html(review_settings, db)
    finally:
        db.close()
    assert "No data: no picture has been screened yet" in html
