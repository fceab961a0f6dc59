"""The HTTP API inside `serve`: a real daemon on a free port, driven over HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import BRIGHT, DARK, ImageFactory
from watcher.api import ApiConfigError
from watcher.daemon import Daemon

from .conftest import Deployment, free_port, running_daemon, wait_until

TOKEN = "s3cret-token-of-many-characters"


@pytest.fixture
def api(deployment: Deployment) -> Iterator[tuple[Daemon, httpx.Client]]:
    """A daemon with its API on a free loopback port, and a client for it."""
    port = free_port()
    settings = deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "upload_dir": str(deployment.root / "uploads")}
    )
    with (
        running_daemon(settings) as daemon,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client,
    ):
        wait_until(lambda: daemon.api is not None and daemon.api.server.started, what="the API")
        yield daemon, client


def _picture(image_factory: ImageFactory, name: str, color: Any = BRIGHT, **kw: Any) -> bytes:
    return image_factory(name, size=(96, 96), color=color, noise=8.0, **kw).read_bytes()


def test_a_picture_is_screened_stored_and_listed(
    api: tuple[Daemon, httpx.Client], deployment: Deployment, image_factory: ImageFactory
) -> None:
    _, client = api
    data = _picture(image_factory, "bright.jpg")
    answer = client.post("/v1/screen", content=data, headers={"content-type": "image/jpeg"})
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    assert verdict["label"] == "ai" and verdict["stored"] and verdict["status"] == "classified"
    assert verdict["model_version"] and verdict["timings"]["decode_ms"] is not None
    assert set(verdict) >= {"score", "face_list", "decided_by", "evidence", "sha256"}
    # Kept under its hash, in the upload folder only; listed with its origin.
    assert [p.name for p in (deployment.root / "uploads").iterdir()] == [f"{verdict['sha256']}.jpg"]
    listed = client.get("/v1/verdicts", params={"origin": "api"}).json()
    assert [i["sha256"] for i in listed["items"]] == [verdict["sha256"]]
    assert listed["items"][0]["origin"] == "api" and listed["next_offset"] is None
    one = client.get(f"/v1/verdicts/{verdict['sha256']}").json()
    assert one["label"] == "ai" and one["origin"] == "api"
    assert client.get("/v1/verdicts/" + "0" * 64).status_code == 404
    # A multipart upload of a dark picture: the same pipeline, the other label.
    dark = _picture(image_factory, "dark.png", color=DARK, fmt="PNG")
    files = {"file": ("any name/../x.png", dark, "image/png")}
    answer = client.post("/v1/screen", files=files)
    assert answer.status_code == 200 and answer.json()["label"] == "real"
    names = sorted(p.name for p in (deployment.root / "uploads").iterdir())
    assert all(len(n.split(".")[0]) == 64 for n in names)  # never the client's name


def test_store_false_answers_without_keeping_anything(
    api: tuple[Daemon, httpx.Client], deployment: Deployment, image_factory: ImageFactory
) -> None:
    _, client = api
    answer = client.post("/v1/screen?store=false", content=_picture(image_factory, "b.jpg"))
    assert answer.status_code == 200 and answer.json()["stored"] is False
    assert answer.json()["label"] == "ai"
    assert deployment.file_rows() == [] and not (deployment.root / "uploads").exists()


def test_an_upload_of_content_screened_from_the_inbox_reuses_its_verdict(
    api: tuple[Daemon, httpx.Client], deployment: Deployment, image_factory: ImageFactory
) -> None:
    _, client = api
    data = _picture(image_factory, deployment.inbox / "dropped.jpg")
    wait_until(lambda: deployment.sorted_files()["ai"] == ["dropped.jpg"], what="the inbox file")
    answer = client.post("/v1/screen", content=data)
    assert answer.status_code == 200 and answer.json()["label"] == "ai"
    assert deployment.prediction_count() == 1  # the same content, one model call
    again = client.post("/v1/screen", content=data)  # the same upload again: the same row
    assert again.json()["sha256"] == answer.json()["sha256"]
    assert len([r for r in deployment.file_rows() if r.origin == "api"]) == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"just some notes", 422, "not_an_image"),
        (b"", 400, "empty"),
    ],
)
def test_bad_requests_get_a_json_error_and_store_nothing(
    api: tuple[Daemon, httpx.Client], deployment: Deployment, body: bytes, status: int, code: str
) -> None:
    _, client = api
    answer = client.post("/v1/screen", content=body)
    assert answer.status_code == status and answer.json()["error"] == code
    assert answer.json()["message"]
    assert deployment.file_rows() == [] and not (deployment.root / "uploads").exists()


def test_a_truncated_picture_is_refused_and_not_stored(
    api: tuple[Daemon, httpx.Client], deployment: Deployment, image_factory: ImageFactory
) -> None:
    _, client = api
    data = _picture(image_factory, "cut.jpg")
    answer = client.post("/v1/screen", content=data[: len(data) // 2])
    assert answer.status_code == 422 and answer.json()["error"] == "truncated"
    assert deployment.file_rows() == []


def test_an_oversized_body_is_refused_before_it_is_read(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    port = free_port()
    settings = deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "upload_dir": str(deployment.root / "uploads")},
        detector={"max_file_bytes": 10_000},
    )
    with running_daemon(settings) as daemon:
        wait_until(lambda: daemon.api is not None and daemon.api.server.started)
        big = _picture(image_factory, "big.png", fmt="PNG") * 20
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/screen", content=big, timeout=30)
    assert answer.status_code == 413 and answer.json()["error"] == "too_large"
    assert deployment.file_rows() == []


def test_a_token_is_required_when_configured(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    port = free_port()
    token_file = deployment.root / "token"
    token_file.write_text(TOKEN + "\n")
    settings = deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "token_file": str(token_file)}
    )
    base = f"http://127.0.0.1:{port}"
    with running_daemon(settings) as daemon:
        wait_until(lambda: daemon.api is not None and daemon.api.server.started)
        assert httpx.get(f"{base}/v1/verdicts").status_code == 401
        wrong = httpx.get(f"{base}/v1/verdicts", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
        right = httpx.get(f"{base}/v1/verdicts", headers={"authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200  # for load balancers


def test_a_public_address_without_a_token_refuses_to_start(deployment: Deployment) -> None:
    settings = deployment.write_config(api={"listen": "0.0.0.0:8765"})
    from storage.db import Database
    from watcher.models_watch import open_initial_model

    db = Database.open(settings.storage)
    try:
        with pytest.raises(ApiConfigError, match="token_file"):
            Daemon(settings, db, open_initial_model(settings, db), once=False)
    finally:
        db.close()
    # The command says so and exits 2.
    from watcher import cli

    assert cli.main(["--config", str(deployment.config), "serve"]) == 2


def test_a_full_queue_answers_503_with_retry_after(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    port = free_port()
    settings = deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "max_pending": 1, "timeout_s": 30}
    )
    data = _picture(image_factory, "a.jpg")
    with running_daemon(settings) as daemon:
        wait_until(lambda: daemon.api is not None and daemon.api.server.started)
        model_lock = daemon.pipeline.slot.active.classifier._lock
        first: dict[str, httpx.Response] = {}
        with model_lock:
            waiting = threading.Thread(
                target=lambda: first.update(
                    r=httpx.post(f"http://127.0.0.1:{port}/v1/screen", content=data, timeout=60)
                )
            )
            waiting.start()
            wait_until(lambda: daemon.api is not None and _waiting(port) == 1)
            other = _picture(image_factory, "b.jpg", seed=7)
            busy = httpx.post(f"http://127.0.0.1:{port}/v1/screen", content=other, timeout=30)
        waiting.join(60)
    assert busy.status_code == 503 and busy.headers["retry-after"] == "5"
    assert busy.json()["error"] == "busy"
    assert first["r"].status_code == 200  # the waiting one got its verdict once the model ran


def _waiting(port: int) -> int:
    return int(httpx.get(f"http://127.0.0.1:{port}/healthz").json()["requests_waiting"])


def test_health_metrics_docs_and_the_page(
    api: tuple[Daemon, httpx.Client], image_factory: ImageFactory
) -> None:
    daemon, client = api
    client.post("/v1/screen", content=_picture(image_factory, "m.jpg"))
    client.post("/v1/screen", content=b"not a picture")
    health = client.get("/healthz").json()
    assert (
        health["database"] == "ok"
        and health["model"] == daemon.pipeline.slot.active.classifier.version
    )
    assert health["queue_depth"] == 0 and health["requests_waiting"] == 0
    text = client.get("/metrics").text
    assert 'deepfake_detector_verdicts_total{label="ai",origin="api"} 1.0' in text
    assert (
        "deepfake_detector_batch_size_bucket" in text
        and "deepfake_detector_request_seconds" in text
    )
    schema = client.get("/openapi.json").json()
    assert {"/v1/screen", "/v1/verdicts", "/v1/verdicts/{sha256}", "/v1/labels"} <= set(
        schema["paths"]
    )
    docs = client.get("/docs").text
    assert "/v1/screen" in docs and "cdn" not in docs.lower()
    page = client.get("/").text
    assert "drop" in page.lower() and "http://" not in page and "https://" not in page


def test_a_label_is_recorded_like_the_command_does(
    api: tuple[Daemon, httpx.Client], image_factory: ImageFactory
) -> None:
    _, client = api
    verdict = client.post("/v1/screen", content=_picture(image_factory, "l.jpg")).json()
    answer = client.post("/v1/labels", json={"image": verdict["sha256"], "label": "real"})
    assert answer.status_code == 200 and "disagrees with the model" in answer.json()["message"]
    bad = client.post("/v1/labels", json={"image": verdict["sha256"], "label": "maybe"})
    assert bad.status_code == 422
    unknown = client.post("/v1/labels", json={"image": "0" * 64, "label": "ai"})
    assert unknown.status_code == 404


def test_a_taken_address_is_said_plainly_and_screening_goes_on(
    deployment: Deployment, image_factory: ImageFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = deployment.write_config(api={"listen": f"127.0.0.1:{port}"})
        with running_daemon(settings) as daemon:
            wait_until(lambda: daemon.api is None, what="the API to give up")
            image_factory(deployment.inbox / "x.jpg", color=BRIGHT)
            wait_until(lambda: deployment.sorted_files()["ai"] == ["x.jpg"])
    assert "could not listen" in caplog.text and "screening goes on" in caplog.text


def test_kill_9_during_requests_loses_no_answered_verdict(
    deployment: Deployment, image_factory: ImageFactory
) -> None:
    import signal
    from concurrent.futures import ThreadPoolExecutor

    from .conftest import serve_process

    port = free_port()
    deployment.write_config(
        api={"listen": f"127.0.0.1:{port}", "upload_dir": str(deployment.root / "uploads")}
    )
    pictures = [_picture(image_factory, f"p{i}.jpg", seed=i) for i in range(40)]
    answered: list[str] = []

    def post(data: bytes) -> None:
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/screen", content=data, timeout=30)
        except httpx.HTTPError:
            return  # the daemon died under this request: it was never answered
        if r.status_code == 200:
            answered.append(r.json()["sha256"])

    with serve_process(deployment.config, deployment.root / "serve.log") as proc:
        wait_until(lambda: _listening(port), timeout=60, what="the API")
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post, data) for data in pictures]
            wait_until(lambda: len(answered) >= 5, timeout=60, what="some answers")
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            for future in futures:
                future.result()
    with deployment.database() as db, db.session() as s:
        from storage import queries

        stored = {r.sha256 for r in queries.list_verdicts(s, origin="api")}
    assert answered and set(answered) <= stored  # every answered verdict is in the database


def _listening(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
