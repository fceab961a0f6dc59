"""Settings owned by the watcher package (the `[watcher]` and `[scheduler]` tables)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_IGNORE: tuple[str, ...] = (
    ".*",
    "._*",
    ".DS_Store",
    "Thumbs.db",
    "desktop.ini",
    "@eaDir",
    "*.part",
    "*.crdownload",
    "*.tmp",
    "*.swp",
    "~*",
)


@dataclass(frozen=True, slots=True)
class WatcherConfig:
    """Which folders are watched and what happens to screened files."""

    # Folders watched recursively for new images.
    inbox: tuple[Path, ...] = (Path("inbox"),)
    # Screened files are sorted into <output>/real, ai, uncertain and rejected.
    output: Path = Path("output")
    # "move" sorts files into output; "keep" leaves them where they are.
    on_verdict: str = field(default="move", metadata={"choices": ("move", "keep")})
    # Write NAME.verdict.json (label, score, faces, evidence, model, time) beside each sorted file.
    sidecar: bool = False
    # "auto" uses native events, or polling on network filesystems (NFS, SMB/CIFS, FUSE).
    observer: str = field(default="auto", metadata={"choices": ("auto", "native", "polling")})
    # Polling observer interval.
    poll_interval_s: float = 2.0
    # A file whose size and mtime stay unchanged this long is complete.
    quiet_period_s: float = 1.0
    # A truncated or empty file written less than this long ago is set aside only once it has
    # been left alone this long: a writer that closes between chunks may still append to it.
    incomplete_hold_s: float = field(default=30.0, metadata={"min": 0.0})
    # Full rescan of the inbox folders to catch whatever events missed.
    rescan_interval_s: float = 60.0
    # Longest wait for a batch to fill before it goes to the model.
    max_wait_ms: int = 50
    # Bounded queue between intake and the batcher; intake waits when it is full.
    queue_size: int = field(default=256, metadata={"min": 1})
    # Threads decoding images while the model runs.
    decode_workers: int = field(default=2, metadata={"min": 1})
    # Glob patterns (file or folder names) that are never screened.
    ignore: tuple[str, ...] = DEFAULT_IGNORE
    # Longest backoff between retries of a failed move or of a batch the model could not take.
    retry_max_s: float = 300.0
    # A claim older than this is taken to belong to a dead daemon and is requeued.
    claim_timeout_s: float = 300.0
    # Name of this daemon in claims; "" = hostname + config folder (stable across restarts).
    worker_id: str = ""
    # How often (seconds) the daemon checks whether the model file or the champion changed.
    model_poll_s: float = 5.0


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Background jobs run inside `serve`."""

    # Run the scheduler inside `serve`.
    enabled: bool = True
    # Regenerate the HTML reports every this many minutes (0 disables).
    report_interval_min: float = 60.0
    # Cron expression for retraining, e.g. "0 3 * * *" for nightly at 03:00; "" disables.
    retrain_cron: str = ""
    # A job that missed its time by up to this much still runs.
    misfire_grace_s: int = 3600


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """The HTTP API and the drop-a-picture page that `serve` runs (never `serve --once`, `scan`)."""

    # Serve the API and the page while the daemon runs.
    enabled: bool = True
    # HOST:PORT to listen on; any address but loopback needs token_file.
    listen: str = "127.0.0.1:8765"
    # File holding the bearer token clients must send ("" = none: loopback only).
    token_file: Path | None = None
    # Where uploads are kept, named by their content hash (never by the client).
    upload_dir: Path = Path("var/uploads")
    # Requests waiting for a verdict at once; more are answered 503 with Retry-After.
    max_pending: int = field(default=64, metadata={"min": 1})
    # Longest a request waits for its verdict before it is answered 503.
    timeout_s: float = field(default=60.0, metadata={"min": 1.0})
    # Browser origins allowed to call the API (CORS); empty = none.
    cors_origins: tuple[str, ...] = ()
