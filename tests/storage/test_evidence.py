"""Evidence stored per image, verdicts per prediction, and the view's evidence/decided_by."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import select, text

from storage import migrate
from storage import queries as q
from storage.config import StorageConfig
from storage.db import Database, create_db_engine
from storage.models import Evidence, Image, Prediction
from storage.queries.images import ClassifiedFile
from tests.storage.factories import Seed

SHA_A, SHA_B, SHA_C = "a" * 64, "b" * 64, "c" * 64
C2PA = q.ImageEvidence(
    (
        q.EvidenceItem("c2pa", "declares_ai", "manifest by ImageMaker 1.0, valid signature"),
        q.EvidenceItem("exif", "camera_claim", "camera 'Canon EOS R5'"),
    ),
    "c2pa: manifest by ImageMaker 1.0 [declares AI]; exif: camera 'Canon EOS R5' [camera claim]",
)


def _verdict(file_id: int, sha256: str, model_id: int, **changes: object) -> ClassifiedFile:
    values: dict[str, object] = {
        "file_id": file_id,
        "sha256": sha256,
        "size_bytes": 100,
        "width": 64,
        "height": 64,
        "format": "PNG",
        "model_version_id": model_id,
        "score": 0.2,
        "label": "real",
        "decode_ms": 1.0,
        "infer_ms": 2.0,
        "disposition": "pending",
    }
    return ClassifiedFile(**(values | changes))  # type: ignore[arg-type]


def _view(db: Database) -> dict[str, tuple[object, ...]]:
    with db.session() as s:
        rows = s.execute(text("SELECT path, label, score, decided_by, evidence FROM verdicts"))
        return {r[0]: tuple(r[1:]) for r in rows}


def test_verdict_decided_by_and_evidence_are_stored_and_shown(db: Database, seed: Seed) -> None:
    model = seed.model()
    signed, plain, band = (seed.pending(f"/in/{n}.png") for n in ("signed", "plain", "band"))
    with db.session() as s:
        q.store_classified(
            s,
            [
                _verdict(
                    signed, SHA_A, model, verdict="ai", decided_by="provenance", evidence=C2PA
                ),
                _verdict(plain, SHA_B, model, evidence=q.ImageEvidence((), "")),
                _verdict(band, SHA_C, model, score=0.55, label="ai", verdict="uncertain"),
            ],
        )
    view = _view(db)
    # The model said real (0.2); provenance made it ai, and the score is kept beside it.
    assert view["/in/signed.png"] == (
        "ai",
        0.2,
        "provenance",
        C2PA.summary,
    )
    assert view["/in/plain.png"] == ("real", 0.2, "model", "")
    assert view["/in/band.png"] == ("uncertain", 0.55, "model", None)
    with db.session() as s:
        assert s.scalars(select(Prediction.label).order_by(Prediction.id)).all() == [
            "real",
            "real",
            "ai",
        ]
        assert q.evidence_for(s, [SHA_A, SHA_B, SHA_C]) == {
            SHA_A: C2PA,
            SHA_B: q.ImageEvidence((), ""),
        }
        assert [r.label for r in q.list_verdicts(s, label="uncertain")] == ["uncertain"]


def test_evidence_is_a_property_of_the_bytes_stored_once(db: Database, seed: Seed) -> None:
    model = seed.model()
    first, second = seed.pending("/in/a.png"), seed.pending("/in/copy.png")
    with db.session() as s:
        q.store_classified(s, [_verdict(first, SHA_A, model, evidence=C2PA)])
    other = q.ImageEvidence((q.EvidenceItem("exif", "info", "software 'GIMP'"),), "exif: GIMP")
    with db.session() as s:
        q.store_classified(s, [_verdict(second, SHA_A, model, evidence=other)])
    with db.session() as s:
        assert s.scalars(select(Evidence.says).order_by(Evidence.position)).all() == [
            item.says for item in C2PA.items
        ]
        assert s.scalars(select(Image.evidence)).all() == [C2PA.summary]


def test_an_unknown_strength_or_verdict_is_refused(db: Database, seed: Seed) -> None:
    model = seed.model()
    bad = q.ImageEvidence((q.EvidenceItem("exif", "trusted", "camera"),), "x")
    with pytest.raises(ValueError, match="strength"), db.session() as s:
        q.store_classified(s, [_verdict(seed.pending("/in/x.png"), SHA_A, model, evidence=bad)])
    with pytest.raises(ValueError, match="verdict"), db.session() as s:
        q.store_classified(s, [_verdict(seed.pending("/in/y.png"), SHA_B, model, verdict="maybe")])


def test_verdicts_of_reads_rows_by_file_id(db: Database, seed: Seed) -> None:
    model = seed.model()
    one = seed.pending("/in/one.png")
    with db.session() as s:
        q.store_classified(s, [_verdict(one, SHA_A, model, evidence=C2PA, verdict="ai")])
    with db.session() as s:
        rows = q.verdicts_of(s, [one, 999])
    assert list(rows) == [one]
    assert rows[one].evidence == C2PA.summary and rows[one].decided_by == "model"


def test_predictions_from_before_0003_show_their_label_decided_by_the_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_db_engine(StorageConfig(url=url))
    with engine.begin() as conn:
        command.upgrade(migrate.alembic_config(conn), "0002")
        conn.execute(
            text(
                "INSERT INTO images (id, sha256, size_bytes, first_seen_at)"
                " VALUES (1, :s, 1, '2026-01-01')"
            ),
            {"s": SHA_A},
        )
        conn.execute(
            text(
                "INSERT INTO model_versions (id, version, arch, path, status, input_size,"
                " threshold, data_fingerprint, metrics, training, created_at)"
                " VALUES (1, 'v1', 'tiny', '/m', 'champion', 32, 0.5, '', '{}', '{}', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO predictions (id, image_id, model_version_id, score, label, created_at)"
                " VALUES (1, 1, 1, 0.9, 'ai', '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO files (id, path, size_bytes, mtime_ns, origin, state, attempts,"
                " sha256, prediction_id, discovered_at, updated_at)"
                " VALUES (1, '/in/old.jpg', 1, 1, 'inbox', 'classified', 0, :s, 1,"
                " '2026-01-01', '2026-01-01')"
            ),
            {"s": SHA_A},
        )
    assert migrate.upgrade(engine) is True
    with engine.connect() as conn:
        row = conn.execute(text("SELECT label, decided_by, evidence FROM verdicts")).one()
    assert tuple(row) == ("ai", "model", None)
    with engine.begin() as conn:
        command.downgrade(migrate.alembic_config(conn), "0002")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT label, score FROM verdicts")).one() == ("ai", 0.9)
    engine.dispose()
