"""A writer that closes the file between chunks: partial verdicts, but the image is never split."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BRIGHT, ImageFactory

from .conftest import Deployment, running_daemon, wait_until


def _rows_for(dep: Deployment, path: Path) -> list[tuple[str, str | None]]:
    return [(r.state, r.reason_code) for r in dep.file_rows() if r.path == str(path)]


def _screened_rows(dep: Deployment, path: Path) -> int:
    """How many arrivals of `path` have a verdict (none still pending or claimed)."""
    rows = _rows_for(dep, path)
    return len(rows) if all(state in ("classified", "rejected") for state, _ in rows) else -1


def test_appending_writer_gets_its_whole_image_screened_and_sorted(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    settings = deployment.write_config(incomplete_hold_s=2.0)
    data = image_factory(
        tmp_path / "src.jpg", color=BRIGHT, size=(256, 256), noise=8.0
    ).read_bytes()
    cut = data[: len(data) // 2]
    upload = deployment.inbox / "upload.jpg"
    step = len(data) // 3 + 1
    with running_daemon(settings):
        (deployment.inbox / "cut.jpg").write_bytes(cut)  # truncated for good
        for n, start in enumerate(range(0, len(data), step), start=1):
            with open(upload, "ab") as fh:  # open, append one chunk, close: looks complete
                fh.write(data[start : start + step])
            if start + step < len(data):
                # The partial file was screened (truncated) and must still be in the inbox.
                wait_until(lambda n=n: _screened_rows(deployment, upload) == n, what="a verdict")
                assert upload.exists()
        wait_until(lambda: deployment.sorted_files()["ai"] == ["upload.jpg"], what="the upload")
        wait_until(lambda: deployment.sorted_files()["rejected"] == ["cut.jpg"], what="cut.jpg")
    assert (deployment.output / "ai" / "upload.jpg").read_bytes() == data
    states = _rows_for(deployment, upload)
    assert states[-1] == ("classified", None)
    assert set(states[:-1]) == {("rejected", "truncated")}
    assert not upload.exists()
    assert (deployment.output / "rejected" / "cut.jpg").read_bytes() == cut
    # The verdict says why the file waited in the inbox, and until when.
    (cut_row,) = [r for r in deployment.file_rows() if r.path.endswith("cut.jpg")]
    assert "held in the inbox until" in (cut_row.reason or "")
    assert "UTC in case it is still being written" in (cut_row.reason or "")
