"""Bad, odd and hostile inputs against a running daemon and the scan command."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory, render_image
from tests.reliability.conftest import census
from tests.reliability.zoo import (
    LONG_NAME,
    Expect,
    build_formats,
    build_names,
    build_not_files,
    build_rejects,
)
from tests.watcher.conftest import Deployment, running_daemon, wait_until
from watcher import cli

NOT_FILES = {"link.jpg", "fifo.jpg"}


def _zoo(folder: Path, outside: Path) -> dict[str, Expect]:
    expected = build_rejects(folder / "bad") | build_formats(folder / "fmt")
    expected |= build_names(folder / "names")
    build_not_files(folder / "odd", outside)
    expected |= {n: Expect("rejected", "not_a_file") for n in NOT_FILES}
    expected["inner.jpg"] = Expect("classified", "real")
    return expected


def _outcome(status: str, label: str | None, code: str | None) -> Expect:
    return Expect(status, (label if status == "classified" else code) or "")


def test_every_bad_input_is_recorded_and_sorted_once(
    deployment: Deployment, tmp_path: Path
) -> None:
    settings = deployment.write_config(quiet_period_s=0.3)
    staging = tmp_path / "staging"  # same file system: the zoo arrives by rename, atomically
    outside = tmp_path / "outside" / "target.jpg"
    expected = _zoo(staging, outside)
    with running_daemon(settings):
        for sub in sorted(staging.iterdir()):
            os.rename(sub, deployment.inbox / sub.name)
        wait_until(lambda: len(deployment.verdicts()) >= len(expected), timeout=60, what="all")
        wait_until(lambda: census(deployment)["inbox"] == 0, what="every file sorted")
        # Still alive and screening after all that.
        render_image((64, 64), DARK).save(deployment.inbox / "after.jpg")
        wait_until(lambda: "after.jpg" in deployment.sorted_files()["real"], what="after.jpg")
    verdicts = deployment.verdicts()
    got = {Path(v.path).name: _outcome(v.status, v.label, v.reason_code) for v in verdicts}
    expected["after.jpg"] = Expect("classified", "real")
    assert got == expected
    assert len(verdicts) == len(expected)  # one row per file: none screened twice
    rejected = [v for v in verdicts if v.status == "rejected"]
    assert all(v.reason and v.disposition == "moved" for v in rejected), rejected
    sorted_files = deployment.sorted_files()
    for name, want in expected.items():
        folder = "rejected" if want.status == "rejected" else want.detail
        assert sorted_files[folder].count(name) == 1, (name, folder)
    assert sum(census(deployment).values()) == len(expected)  # nothing lost, nothing copied
    assert (deployment.inbox / "odd" / "dir.jpg").is_dir()
    assert outside.exists() and (deployment.output / "rejected" / "link.jpg").is_symlink()
    assert (deployment.output / "rejected" / "huge.jpg").stat().st_size == 200_000_000


def test_scan_records_every_bad_input_and_moves_nothing(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scan-me"
    expected = _zoo(folder, tmp_path / "outside" / "target.jpg")
    before = sorted(str(p) for p in folder.rglob("*"))
    rc = cli.main(["--config", str(deployment.config), "scan", str(folder), "--json"])
    assert rc == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    printed = {Path(d["path"]).name: (d["status"], d["label"], bool(d["reason"])) for d in lines}
    assert len(lines) == len(expected)  # one line per file, each file once
    assert printed == {
        n: (e.status, e.detail if e.status == "classified" else None, e.status == "rejected")
        for n, e in expected.items()
    }
    verdicts = deployment.verdicts()
    stored = {Path(v.path).name: _outcome(v.status, v.label, v.reason_code) for v in verdicts}
    assert stored == expected and len(verdicts) == len(expected)
    assert sorted(str(p) for p in folder.rglob("*")) == before  # scan never moves or deletes


def test_deleted_and_replaced_files_while_queued(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    # A long quiet period keeps slowly-written files queued in intake while we interfere.
    settings = deployment.write_config(quiet_period_s=1.5)
    dark = image_factory(tmp_path / "dark.jpg", color=DARK).read_bytes()
    bright = image_factory(tmp_path / "bright.jpg", color=BRIGHT).read_bytes()
    with running_daemon(settings):
        gone = deployment.inbox / "gone.jpg"
        swapped = deployment.inbox / "swapped.jpg"
        replacement = tmp_path / "replacement.jpg"
        replacement.write_bytes(bright)
        with open(gone, "wb") as fh1, open(swapped, "wb") as fh2:  # open: not complete yet
            fh1.write(dark[:100])
            fh2.write(dark[:100])
            gone.unlink()  # deleted while still being written
            fh2.write(dark[100:])
            os.replace(replacement, swapped)  # replaced before its writer even closed it
        image_factory(deployment.inbox / "marker.jpg", color=DARK)
        wait_until(lambda: len(deployment.sorted_files()["ai"]) == 1, what="swapped.jpg")
        wait_until(lambda: "marker.jpg" in deployment.sorted_files()["real"], what="marker")
    verdicts = {Path(v.path).name: v for v in deployment.verdicts()}
    # The deleted file never existed long enough: no row, or a "vanished" rejection, never more.
    assert "gone.jpg" not in verdicts or verdicts["gone.jpg"].reason_code == "vanished"
    assert verdicts["swapped.jpg"].label == "ai"  # the replacement's content was screened
    assert len([v for v in verdicts.values() if v.status == "classified"]) == 2
    assert deployment.sorted_files() == {
        "ai": ["swapped.jpg"],
        "real": ["marker.jpg"],
        "rejected": [],
    }


def test_colliding_255_byte_names_are_both_sorted(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    settings = deployment.write_config()
    with running_daemon(settings):
        image_factory(deployment.inbox / "a" / LONG_NAME, color=DARK, seed=1, noise=3.0)
        wait_until(lambda: len(deployment.sorted_files()["real"]) == 1, what="the first")
        image_factory(deployment.inbox / "b" / LONG_NAME, color=DARK, seed=2, noise=3.0)

        def second_settled() -> bool:
            rows = deployment.verdicts()
            return len(rows) == 2 and all(r.disposition == "moved" or r.reason for r in rows)

        wait_until(second_settled, what="the second file moved or its move failure recorded")
    assert census(deployment) == {"real": 2}, [v.reason for v in deployment.verdicts()]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode bits")
def test_unreadable_file_is_rejected(deployment: Deployment, image_factory: ImageFactory) -> None:
    settings = deployment.write_config()
    with running_daemon(settings):
        staged = image_factory(deployment.root / "locked.jpg", color=DARK)
        staged.chmod(0)
        os.rename(staged, deployment.inbox / "locked.jpg")
        wait_until(lambda: deployment.verdicts(), what="a verdict")
    (row,) = deployment.verdicts()
    assert row.status == "rejected" and row.reason_code == "unreadable"


def test_mode_000_file_is_screened_when_running_as_root(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    """The root variant of 'no read permission': a 000 file is screened (root reads it)."""
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root; see test_unreadable_file_is_rejected")
    settings = deployment.write_config()
    staged = image_factory(deployment.root / "locked.jpg", color=DARK)
    staged.chmod(0)
    with running_daemon(settings):
        os.rename(staged, deployment.inbox / "locked.jpg")
        wait_until(lambda: deployment.sorted_files()["real"] == ["locked.jpg"], what="sorted")
    (row,) = deployment.verdicts()
    assert row.status == "classified" and row.label == "real"
    assert census(deployment) == {"real": 1}
