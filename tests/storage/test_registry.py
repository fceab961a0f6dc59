"""Model registry queries: register, promote, status changes, rollback, activations."""

from __future__ import annotations

import pytest

from storage import queries as q
from storage.db import Database
from tests.storage.factories import Seed


def _statuses(db: Database) -> dict[str, str]:
    with db.session() as s:
        return {v.version: v.status for v in q.list_model_versions(s)}


def test_register_is_get_or_create_by_version(db: Database, seed: Seed) -> None:
    first = seed.model("v1", accuracy=0.9)
    again = seed.model("v1", accuracy=0.1)
    assert first == again
    with db.session() as s:
        row = q.get_model_version(s, "v1")
        assert row is not None
        assert row.metrics == {"accuracy": 0.9}
        assert row.status == "candidate"
        assert row.training == {"epochs": 1}
        assert q.get_model_version(s, "nope") is None


def test_register_rejects_unknown_status(db: Database) -> None:
    with pytest.raises(ValueError, match="status"), db.session() as s:
        q.register_model_version(
            s,
            version="x",
            arch="a",
            path="/p",
            input_size=32,
            threshold=0.5,
            data_fingerprint="",
            metrics={},
            training={},
            status="best",
        )


def test_registering_a_champion_retires_the_old_one(db: Database, seed: Seed) -> None:
    seed.model("old", status="champion")
    seed.model("new", status="champion")
    assert _statuses(db) == {"old": "retired", "new": "champion"}


def test_promote_retires_previous_champion_and_records_decision(db: Database, seed: Seed) -> None:
    seed.model("a", status="champion")
    seed.model("b")
    with db.session() as s:
        q.promote(s, "b", {"promote": True, "reasons": ["better"]})
    with db.session() as s:
        champ = q.champion(s)
        old = q.get_model_version(s, "a")
    assert champ is not None and champ.version == "b"
    assert champ.decision == {"promote": True, "reasons": ["better"]}
    assert champ.promoted_at is not None
    assert old is not None and old.status == "retired" and old.retired_at is not None


def test_promote_unknown_version_raises_not_found(db: Database) -> None:
    with pytest.raises(q.NotFound, match="nope"), db.session() as s:
        q.promote(s, "nope", {})


def test_promote_current_champion_keeps_it(db: Database, seed: Seed) -> None:
    seed.model("a", status="champion")
    with db.session() as s:
        q.promote(s, "a", {"again": True})
    assert _statuses(db) == {"a": "champion"}


def test_set_model_status(db: Database, seed: Seed) -> None:
    seed.model("a", status="champion")
    seed.model("b")
    with db.session() as s:
        q.set_model_status(s, "b", "rejected", {"promote": False, "reasons": ["worse"]})
    with db.session() as s:
        b = q.get_model_version(s, "b")
        assert b is not None and b.decision == {"promote": False, "reasons": ["worse"]}
    with db.session() as s:
        q.set_model_status(s, "b", "champion")  # goes through promote
    assert _statuses(db) == {"a": "retired", "b": "champion"}
    with pytest.raises(ValueError), db.session() as s:
        q.set_model_status(s, "b", "gold")


def test_rollback_returns_to_most_recently_retired_champion(db: Database, seed: Seed) -> None:
    for version in ("a", "b", "c"):
        seed.model(version, status="champion")
    seed.model("never")  # a candidate never served: not a rollback target
    with db.session() as s:
        q.set_model_status(s, "never", "retired")
    with db.session() as s:
        retired, restored = q.rollback_champion(s, {"by": "manual"})
        assert retired is not None
        assert (retired.version, restored.version) == ("c", "b")
    assert _statuses(db) == {"a": "retired", "b": "champion", "c": "retired", "never": "retired"}


def test_rollback_without_history_raises(db: Database, seed: Seed) -> None:
    seed.model("a", status="champion")
    with pytest.raises(q.NotFound, match="no retired champion"), db.session() as s:
        q.rollback_champion(s, {})


def test_list_model_versions_newest_first(db: Database, seed: Seed) -> None:
    for version in ("a", "b", "c"):
        seed.model(version)
    with db.session() as s:
        assert [v.version for v in q.list_model_versions(s)] == ["c", "b", "a"]


def test_activations(db: Database, seed: Seed) -> None:
    seed.model("a")
    seed.model("b")
    with db.session() as s:
        q.record_activation(s, "a", "host1", 10)
        q.record_activation(s, "b", "host2", 20)
    with db.session() as s:
        rows = [(a.host, a.pid, v) for a, v in q.list_activations(s)]
        assert rows == [("host2", 20, "b"), ("host1", 10, "a")]
        assert len(q.list_activations(s, limit=1)) == 1
        with pytest.raises(q.NotFound):
            q.record_activation(s, "zzz", "h", 1)
