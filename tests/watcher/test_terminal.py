"""Tables and progress bars: styled on a terminal, byte-stable plain text to a pipe, progress
only on a terminal's stderr, and stdout lines and log records never cut by a bar."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.config import StorageConfig
from storage.db import Database
from tests.storage.factories import Seed
from watcher import terminal
from watcher.backlog import BacklogProgress

ROOT = Path(__file__).resolve().parents[2]
ANSI = "\x1b["


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_table_to_a_pipe_is_plain_aligned_text() -> None:
    rows = [["1", "ai", "/in/[b]x[/b] :smile:.jpg"], ["10", "-", "/in/b.jpg"]]
    out = io.StringIO()
    terminal.write_table(out, ["ID", "LABEL", "PATH"], rows)
    # Two spaces between columns, no trailing spaces, markup-like names kept literally.
    assert out.getvalue() == (
        "ID  LABEL  PATH\n1   ai     /in/[b]x[/b] :smile:.jpg\n10  -      /in/b.jpg\n"
    )


def test_a_long_row_to_a_pipe_is_never_wrapped() -> None:
    path = "/inbox/" + "x" * 400 + ".jpg"
    text = terminal.render_table(["ID", "PATH"], [["1", path]], terminal=False)
    assert text.splitlines()[1] == f"1   {path}"


def test_a_table_on_a_terminal_is_styled() -> None:
    out = _Terminal()
    terminal.write_table(out, ["ID", "PATH"], [["1", "/in/a.jpg"]])
    text = out.getvalue()
    assert ANSI in text and "/in/a.jpg" in text and "ID" in text


def test_no_progress_when_stderr_is_not_a_terminal() -> None:
    out, err = io.StringIO(), io.StringIO()
    with terminal.progress_bar("work", 3, err=err, out=out) as bar:
        assert not bar.active
        bar.update(completed=1, text="one")
        bar.advance()
        bar.line("a line")
    assert err.getvalue() == ""
    assert out.getvalue() == "a line\n"


@pytest.fixture
def root_handler() -> Iterator[logging.StreamHandler[io.StringIO]]:
    """A root log handler writing to a stream of its own, removed afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)


def test_progress_on_a_terminal_keeps_stdout_and_logs_whole(
    root_handler: logging.StreamHandler[io.StringIO],
) -> None:
    out, err = io.StringIO(), _Terminal()
    root_handler.setStream(err)
    log = logging.getLogger("tests.terminal")
    log.setLevel(logging.INFO)
    with terminal.progress_bar("work", 2, err=err, out=out) as bar:
        assert bar.active
        bar.line("first result")
        log.info("a log line while the bar is drawn")
        bar.advance(2)
        assert root_handler.stream is not err  # records go through the bar's console
    assert root_handler.stream is err  # and the handler is given back
    assert out.getvalue() == "first result\n"  # stdout: exactly the lines, no escapes
    assert "a log line while the bar is drawn" in err.getvalue()
    assert "work" in err.getvalue()


def test_backlog_progress_draws_until_the_backlog_is_done(tmp_path: Path) -> None:
    db = Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'b.db'}"))
    try:
        seed = Seed(db)
        waiting = seed.pending()
        err = _Terminal()
        progress = BacklogProgress(db, lambda: True, err=err)
        assert progress.poll()  # one file waits: the bar is up
        model = seed.model()
        seed.classified(model)  # a file screened since start-up
        seed.rejected()
        with db.session() as s:
            from storage import queries as q

            q.mark_rejected(s, waiting, code="truncated", reason="the file is truncated")
        assert not progress.poll()  # nothing waits any more: done
        progress.close()
        assert "start-up backlog" in err.getvalue()
        quiet = BacklogProgress(db, lambda: True, err=io.StringIO())
        quiet.start()  # not a terminal: no thread, nothing drawn
        quiet.close()
    finally:
        db.close()


def _cli(*args: str, config: Path) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "40", "TERM": "xterm-256color"}
    return subprocess.run(
        [sys.executable, "-m", "watcher", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        env=env,
        check=True,
        timeout=120,
    )


def test_piped_verdicts_are_byte_stable(tmp_path: Path) -> None:
    """Through a real pipe: no escapes, no wrapping at the terminal width, CSV and JSON intact."""
    config = tmp_path / "config.toml"
    config.write_text('[storage]\nurl = "sqlite:///var/v.db"\n', encoding="utf-8")
    db = Database.open(StorageConfig(url=f"sqlite:///{tmp_path / 'var' / 'v.db'}"))
    try:
        seed = Seed(db)
        model = seed.model("v1")
        long_path = "/inbox/" + "long-name-" * 12 + ".jpg"
        seed.classified(model, score=0.25, label="real", path=long_path)
        seed.classified(model, score=0.75, label="ai", path='/inbox/a,b "c".jpg')
    finally:
        db.close()
    table = _cli("verdicts", config=config).stdout.decode()
    assert ANSI not in table
    lines = table.splitlines()
    assert len(lines) == 3 and lines[0].split()[:2] == ["ID", "CREATED_AT"]
    assert any(long_path in line for line in lines)  # whole, on one line
    assert all(line == line.rstrip() for line in lines)
    csv_out = _cli("verdicts", "--format", "csv", config=config).stdout
    assert b'"/inbox/a,b ""c"".jpg"' in csv_out and ANSI.encode() not in csv_out
    json_out = _cli("verdicts", "--format", "json", config=config)
    parsed = json.loads(json_out.stdout.decode())
    jsonl = _cli("verdicts", "--format", "jsonl", config=config).stdout.decode()
    assert [json.loads(line) for line in jsonl.splitlines()] == parsed
    assert [p["path"] for p in parsed] == ['/inbox/a,b "c".jpg', long_path]
