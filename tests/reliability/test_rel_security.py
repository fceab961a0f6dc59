"""Security: private files, Keras safe mode, no pickle, escaped reports, no network sockets."""

from __future__ import annotations

import ast
import json
import os
import pickle
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import DARK, ImageFactory
from tests.reliability.conftest import census
from tests.watcher.conftest import (
    REPO,
    Deployment,
    free_port,
    running_daemon,
    subprocess_env,
    wait_until,
    watcher_command,
)
from watcher import cli

PRODUCT = ("detector", "storage", "watcher", "reports", "training")
SCRIPT_NAME = "<script>alert(1)<script>.jpg"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_database_and_its_folder_are_private(tmp_path: Path) -> None:
    from storage.config import StorageConfig
    from storage.db import Database

    path = tmp_path / "var" / "state" / "verdicts.db"
    with _umask(0o022):  # a typical umask would make new files world-readable
        db = Database.open(StorageConfig(url=f"sqlite:///{path}"))
        try:
            with db.session() as s:  # a write, so the WAL and shared-memory files exist
                from storage.queries import discover_file

                discover_file(s, path="/x.jpg", size_bytes=1, mtime_ns=1, origin="scan")
            files = [p for p in path.parent.iterdir() if p.name.startswith(path.name)]
            modes = {p.name: _mode(p) for p in files}
        finally:
            db.close()
    assert _mode(path.parent) == 0o700
    assert path.name in modes and set(modes.values()) == {0o600}, modes


def test_reports_are_private_and_escape_file_names(
    deployment: Deployment, image_factory: ImageFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = deployment.write_config()
    with running_daemon(settings):
        image_factory(deployment.inbox / SCRIPT_NAME, color=DARK)
        (deployment.inbox / "<img src=x onerror=alert(2)>.jpg").write_text("<b>x</b>")
        wait_until(lambda: len(deployment.verdicts()) == 2, what="two verdicts")
    out = deployment.root / "reports"
    with _umask(0o022):
        rc = cli.main(
            ["--config", str(deployment.config), "report", "operations", "--out", str(out)]
        )
    assert rc == 0
    pages = [p for p in out.rglob("*") if p.is_file()]
    assert pages and _mode(out) == 0o700
    assert {p.name: _mode(p) for p in pages} == {p.name: 0o600 for p in pages}
    html = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in pages)
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert census(deployment) == {"real": 1, "rejected": 1}


def test_model_store_is_private(tiny_bundle: Path, tmp_path: Path) -> None:
    import keras

    from detector.bundle import read_meta, save_bundle

    model = keras.saving.load_model(tiny_bundle / "model.keras", safe_mode=True)
    store = tmp_path / "var" / "models"
    with _umask(0o022):
        bundle = save_bundle(model, read_meta(tiny_bundle), store / "v1", export_litert=False)
    assert _mode(store) == 0o700 and _mode(bundle) == 0o700
    assert all(_mode(p) == 0o600 for p in bundle.iterdir() if p.is_file())


def test_bundle_with_a_lambda_layer_is_refused_and_never_runs(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    import keras

    from detector.bundle import read_meta, write_meta
    from detector.classifier import Classifier
    from detector.errors import ModelLoadError

    marker = tmp_path / "lambda-ran"

    def payload(x: object) -> object:
        marker.write_text("code from a model file ran")  # what an attacker's Lambda would do
        return x

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Lambda(payload)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    bundle = tmp_path / "evil"
    bundle.mkdir()
    model.save(bundle / "model.keras")
    write_meta(read_meta(tiny_bundle), bundle)
    marker.unlink(missing_ok=True)  # building the model ran it once; loading must not
    with pytest.raises(ModelLoadError) as refused:
        Classifier.load(bundle, backend="keras")
    cause = f"{refused.value} {refused.value.__cause__} {refused.value.__context__}"
    assert "safe_mode" in cause or "Lambda" in cause, cause
    assert not marker.exists()


def _product_files() -> list[Path]:
    return [p for pkg in PRODUCT for p in (REPO / pkg).rglob("*.py")]


def test_product_code_never_unpickles_and_keeps_safe_mode() -> None:
    banned_modules = {"pickle", "cPickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}
    problems = []
    for path in _product_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module.split(".")[0]]
            line = getattr(node, "lineno", 0)
            problems += [f"{path}:{line} imports {n}" for n in names if n in banned_modules]
            # allow_pickle must stay off and safe_mode on: only the literal safe value passes.
            safe = {"allow_pickle": False, "safe_mode": True}
            if isinstance(node, ast.keyword) and node.arg in safe:
                value = node.value
                if not (isinstance(value, ast.Constant) and value.value is safe[node.arg]):
                    problems.append(f"{path}: {node.arg}={ast.unparse(value)}")
    assert len(_product_files()) > 20 and not problems, problems


def test_a_pickle_in_the_inbox_is_rejected_and_never_loaded(
    deployment: Deployment, tmp_path: Path
) -> None:
    marker = tmp_path / "pickle-ran"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {marker}",))

    settings = deployment.write_config()
    with running_daemon(settings):
        (deployment.inbox / "face.jpg").write_bytes(pickle.dumps(Evil()))
        (deployment.inbox / "face.npy").write_bytes(b"\x93NUMPY" + pickle.dumps(Evil()))
        wait_until(lambda: len(deployment.sorted_files()["rejected"]) == 2, what="rejections")
    assert {v.reason_code for v in deployment.verdicts()} == {"not_an_image"}
    assert not marker.exists()


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed while we looked
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _inet_sockets(pid: int) -> list[str]:
    """Lines of /proc/<pid>/net/{tcp,tcp6,udp,udp6,raw,raw6} owned by the process's sockets."""
    mine = _socket_inodes(pid)
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
        source = Path(f"/proc/{pid}/net/{table}")
        for line in source.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) > 9 and fields[9] in mine:
                found.append(f"{table}: {line.strip()}")
    return found


def _serve_and_list_sockets(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> list[str]:
    """Start `serve`, screen one picture, return its inet sockets, stop it cleanly."""
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        watcher_command(deployment.config, "serve"),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=subprocess_env(),
        cwd=deployment.root,
    )
    try:
        staged = image_factory(tmp_path / "face.jpg", color=DARK)
        wait_until(deployment.inbox.is_dir, timeout=90, what="the daemon to create the inbox")
        os.rename(staged, deployment.inbox / "face.jpg")
        wait_until(lambda: deployment.sorted_files()["real"] == ["face.jpg"], timeout=90)
        assert proc.poll() is None, "the daemon exited"
        sockets = _inet_sockets(proc.pid)
        fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
    finally:
        proc.terminate()
        rc = proc.wait(60)
        log.close()
    assert fds > 3 and rc == 0, (rc, (tmp_path / "serve.log").read_text()[-2000:])
    (row,) = deployment.verdicts()
    assert row.status == "classified" and json.dumps(row.to_dict())
    return sockets


def test_the_daemon_opens_no_network_socket_without_the_api(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    deployment.write_config()  # [api] enabled = false
    assert _serve_and_list_sockets(deployment, image_factory, tmp_path) == []


def test_the_api_listens_on_loopback_only(
    deployment: Deployment, image_factory: ImageFactory, tmp_path: Path
) -> None:
    port = free_port()
    deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "upload_dir": str(deployment.root / "uploads")}
    )
    sockets = _serve_and_list_sockets(deployment, image_factory, tmp_path)
    # /proc/net/tcp: local address 127.0.0.1 as little-endian hex, the port, state 0A = LISTEN
    assert len(sockets) == 1, sockets
    fields = sockets[0].split()
    assert fields[0] == "tcp:" and fields[2] == f"0100007F:{port:04X}" and fields[4] == "0A"
