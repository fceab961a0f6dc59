"""The daemon in this process: real folders, real images, the tiny real model, real SQLite."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory
from tests.storage.factories import Seed

from .conftest import Deployment, running_daemon, wait_until


def _screened(dep: Deployment, n: int) -> Any:
    """True once n files reached a final state (verdicts view)."""
    return lambda: len(dep.verdicts()) >= n


def _assert_each_once(dep: Deployment, names: list[str]) -> None:
    rows = dep.file_rows()
    counts = Counter(Path(r.path).name for r in rows)
    assert sorted(counts) == sorted(names)
    assert set(counts.values()) == {1}, counts
    assert all(r.state in ("classified", "rejected") for r in rows)


@pytest.mark.parametrize("observer", ["native", "polling"])
def test_copied_moved_and_slowly_written_files_are_screened_once(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path, observer: str
) -> None:
    # The quiet period is well above the writer's pauses (and a slow, shared machine's jitter).
    settings = deployment.write_config(
        observer=observer, inbox=["inbox", "inbox2"], quiet_period_s=1.0
    )
    staging = tmp_path / "staging"
    bright = image_factory(staging / "bright.jpg", color=BRIGHT, size=(256, 256), noise=5.0)
    dark = image_factory(staging / "dark.png", color=DARK, fmt="PNG", noise=5.0, seed=2)
    with running_daemon(settings):
        shutil.copy(bright, deployment.inbox / "copied.jpg")
        os.makedirs(deployment.inbox / ".incoming")  # hidden: ignored while written
        shutil.copy(dark, deployment.inbox / ".incoming" / "renamed.png")
        os.rename(deployment.inbox / ".incoming" / "renamed.png", deployment.inbox / "renamed.png")
        shutil.move(str(staging / "dark.png"), deployment.root / "inbox2" / "moved-in.png")
        _write_slowly(deployment, bright.read_bytes(), deployment.inbox / "sub" / "slow.jpg")
        wait_until(_screened(deployment, 4), what="4 verdicts")
        wait_until(lambda: sum(map(len, deployment.sorted_files().values())) == 4)
    _assert_each_once(deployment, ["copied.jpg", "renamed.png", "moved-in.png", "slow.jpg"])
    assert deployment.sorted_files() == {
        "ai": ["copied.jpg", "slow.jpg"],
        "real": ["moved-in.png", "renamed.png"],
        "rejected": [],
    }
    assert not list(deployment.inbox.rglob("*.jpg")) and not list(deployment.inbox.rglob("*.png"))


def _write_slowly(dep: Deployment, data: bytes, dest: Path, chunks: int = 8) -> None:
    """Write through one handle in chunks with pauses shorter than the quiet period."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    step = len(data) // chunks + 1
    with open(dest, "wb") as fh:
        for start in range(0, len(data), step):
            fh.write(data[start : start + step])
            fh.flush()
            time.sleep(0.05)  # the stimulus (a slow writer), not a wait for the daemon
        # Still open: it must not have been screened yet (it would be "truncated").
        assert not any(v.path == str(dest) for v in dep.verdicts())


def test_backlog_at_start_up_is_screened_with_bounded_memory(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    n = 300
    settings = deployment.write_config(queue_size=16)
    for i in range(n):
        color = BRIGHT if i % 2 else DARK
        path = deployment.inbox / f"d{i // 100}" / f"f{i:04d}.jpg"
        image_factory(path, color=color, seed=i, noise=8.0)
    started = time.monotonic()
    with running_daemon(settings, once=True) as daemon:
        wait_until(lambda: not daemon.pipeline.writer.is_alive(), timeout=120, what="--once exit")
        peak = daemon.pipeline.writer.peak_in_flight
    elapsed = time.monotonic() - started
    rows = deployment.file_rows()
    assert len(rows) == n and all(r.state == "classified" for r in rows)
    assert all(r.disposition == "moved" for r in rows)
    sorted_files = deployment.sorted_files()
    assert len(sorted_files["ai"]) == len(sorted_files["real"]) == n // 2
    assert peak <= 16, f"{peak} files in flight with queue_size 16"
    logging.getLogger(__name__).info("backlog of %d screened in %.1f s", n, elapsed)


def test_duplicate_content_reuses_the_verdict_and_collisions_get_suffixes(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    source = image_factory(tmp_path / "face.jpg", color=BRIGHT, noise=3.0)
    settings = deployment.write_config()
    with running_daemon(settings):
        for n in range(3):
            # Same name, same content, one after the other: each sorted without overwriting.
            shutil.copy(source, deployment.inbox / "face.jpg")
            wait_until(lambda n=n: len(deployment.sorted_files()["ai"]) == n + 1)
    assert deployment.sorted_files()["ai"] == ["face (1).jpg", "face (2).jpg", "face.jpg"]
    assert deployment.prediction_count() == 1
    verdicts = deployment.verdicts()
    assert len(verdicts) == 3 and len({(v.score, v.label, v.sha256) for v in verdicts}) == 1


def test_bad_files_are_rejected_and_the_daemon_keeps_going(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    settings = deployment.write_config()
    with running_daemon(settings):
        (deployment.inbox / "empty.jpg").write_bytes(b"")
        (deployment.inbox / "notes.jpg").write_text("hello")
        os.mkfifo(deployment.inbox / "pipe.jpg")
        (deployment.inbox / "escape.jpg").symlink_to("/etc/hostname")
        (deployment.inbox / "folder.jpg").mkdir()
        (deployment.inbox / "Thumbs.db").write_bytes(b"junk")
        (deployment.inbox / "big.part").write_bytes(b"partial download")
        image_factory(deployment.inbox / "ok.jpg", color=DARK)
        wait_until(lambda: len(deployment.sorted_files()["rejected"]) == 4, what="4 rejected")
        wait_until(lambda: deployment.sorted_files()["real"] == ["ok.jpg"])
    codes = {Path(v.path).name: v.reason_code for v in deployment.verdicts()}
    assert codes == {
        "empty.jpg": "empty",
        "notes.jpg": "not_an_image",
        "pipe.jpg": "not_a_file",
        "escape.jpg": "not_a_file",
        "ok.jpg": None,
    }
    assert (deployment.inbox / "Thumbs.db").exists() and (deployment.inbox / "big.part").exists()
    assert (deployment.inbox / "folder.jpg").is_dir()
    assert Path("/etc/hostname").exists()


def test_failed_move_leaves_the_file_records_why_and_retries(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    settings = deployment.write_config()
    blocker = deployment.output / "ai"
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the folder should be")  # fails for root as well
    source = image_factory(tmp_path / "face.jpg", color=BRIGHT)
    with running_daemon(settings):
        shutil.copy(source, deployment.inbox / "face.jpg")
        wait_until(lambda: [v for v in deployment.verdicts() if v.reason], what="move failure")
        (row,) = deployment.verdicts()
        assert row.status == "classified" and row.label == "ai"
        assert row.disposition == "pending" and "move failed" in (row.reason or "")
        assert (deployment.inbox / "face.jpg").exists()
        blocker.unlink()
        wait_until(lambda: deployment.verdicts()[0].disposition == "moved", what="the retry")
    (row,) = deployment.verdicts()
    assert row.dest_path == str(deployment.output / "ai" / "face.jpg") and row.reason is None
    assert not (deployment.inbox / "face.jpg").exists()


def test_keep_mode_leaves_files_in_place(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    settings = deployment.write_config(on_verdict="keep")
    with running_daemon(settings):
        image = image_factory(deployment.inbox / "dark.jpg", color=DARK)
        wait_until(_screened(deployment, 1))
    assert image.exists() and deployment.verdicts()[0].disposition == "kept"


@pytest.mark.parametrize("observer", ["native", "polling"])
def test_inbox_removed_and_recreated_is_watched_again(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    observer: str,
) -> None:
    settings = deployment.write_config(rescan_interval_s=600.0, observer=observer)
    caplog.set_level(logging.INFO, logger="watcher")
    source = image_factory(tmp_path / "dark.jpg", color=DARK)
    with running_daemon(settings):
        shutil.rmtree(deployment.inbox)
        wait_until(lambda: "disappeared" in caplog.text, what="the inbox to be missed")
        deployment.inbox.mkdir()
        wait_until(lambda: "watching it again" in caplog.text, what="the re-watch")
        shutil.copy(source, deployment.inbox / "after.jpg")  # only an event can find it now
        wait_until(lambda: deployment.sorted_files()["real"] == ["after.jpg"])


def _new_version(bundle: Path, dest: Path, version: str) -> Path:
    from detector.bundle import read_meta, write_meta

    shutil.copytree(bundle, dest)
    meta = read_meta(dest)
    write_meta(dataclasses.replace(meta, version=version), dest)
    return dest


def test_replaced_model_is_picked_up_and_a_broken_one_refused(
    deployment: Deployment,
    image_factory: ImageFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="watcher")
    serving = tmp_path / "models" / "serving"
    _new_version(deployment.model, serving, "tiny-v1")
    deployment.model = serving
    settings = deployment.write_config(on_verdict="keep")
    with running_daemon(settings) as daemon:
        image_factory(deployment.inbox / "one.jpg", color=BRIGHT, seed=1, noise=4.0)
        wait_until(_screened(deployment, 1))
        # A new bundle is published the way save_bundle does it: complete, then renamed in.
        staged = _new_version(serving, tmp_path / "models" / ".staged", "tiny-v2")
        os.rename(serving, tmp_path / "models" / "old")
        os.rename(staged, serving)
        wait_until(lambda: daemon.pipeline.slot.active.classifier.version == "tiny-v2")
        image_factory(deployment.inbox / "two.jpg", color=BRIGHT, seed=2, noise=4.0)
        wait_until(_screened(deployment, 2))
        # Now a broken one: model.json fine, the model file itself garbage.
        broken = _new_version(serving, tmp_path / "models" / ".broken", "tiny-broken")
        (broken / "model.tflite").write_bytes(b"not a model")
        (broken / "model.keras").unlink()
        os.rename(serving, tmp_path / "models" / "v2")
        os.rename(broken, serving)
        wait_until(lambda: "refused model" in caplog.text, what="the refusal")
        image_factory(deployment.inbox / "three.jpg", color=BRIGHT, seed=3, noise=4.0)
        wait_until(_screened(deployment, 3))
        assert daemon.pipeline.slot.active.classifier.version == "tiny-v2"
    versions = {Path(v.path).name: v.model_version for v in deployment.verdicts()}
    assert versions == {"one.jpg": "tiny-v1", "two.jpg": "tiny-v2", "three.jpg": "tiny-v2"}
    with deployment.database() as db, db.session() as s:
        from storage.queries import list_activations

        activated = [version for _, version in list_activations(s)]
    assert sorted(activated) == ["tiny-v1", "tiny-v2"]


def test_scheduler_runs_inside_serve_when_enabled(deployment: Deployment) -> None:
    settings = deployment.write_config()
    settings = dataclasses.replace(
        settings, scheduler=dataclasses.replace(settings.scheduler, enabled=True)
    )
    with running_daemon(settings) as daemon:
        wait_until(lambda: daemon.scheduler is not None, what="the scheduler")
        assert daemon.scheduler.running
    assert not daemon.scheduler.running  # shut down with the daemon (threads: autouse check)


@pytest.mark.parametrize("once", [False, True])
def test_an_idle_daemon_does_not_spin(deployment: Deployment, once: bool) -> None:
    """Every loop waits on a queue, an event or a timeout: idle means (almost) no CPU."""
    settings = deployment.write_config()
    with running_daemon(settings, once=once) as daemon:
        if not once:
            wait_until(lambda: daemon.intake.settled(), what="an idle daemon")
        before = os.times()
        time.sleep(0.5)  # a measurement window, not a wait for some state
        after = os.times()
    used = (after.user - before.user) + (after.system - before.system)
    assert used < 0.2, f"{used:.2f} s of CPU in 0.5 s while idle"


def test_promoting_a_new_champion_switches_the_default_model(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    from storage import queries

    v1 = _new_version(deployment.model, tmp_path / "store" / "v1", "champ-v1")
    v2 = _new_version(deployment.model, tmp_path / "store" / "v2", "champ-v2")
    deployment.model = Path("default")
    settings = deployment.write_config(on_verdict="keep")

    with deployment.database() as db:
        Seed(db).model("champ-v1", "champion", path=str(v1))
        Seed(db).model("champ-v2", "candidate", path=str(v2))
    with running_daemon(settings) as daemon:
        assert daemon.pipeline.slot.active.classifier.version == "champ-v1"
        with deployment.database() as db, db.session() as s:
            queries.promote(s, "champ-v2", {"promote": True, "reasons": ["test"]})
        wait_until(lambda: daemon.pipeline.slot.active.classifier.version == "champ-v2")
        image_factory(deployment.inbox / "after.jpg", color=DARK)
        wait_until(_screened(deployment, 1))
    assert deployment.verdicts()[0].model_version == "champ-v2"
