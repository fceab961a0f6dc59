"""Fixtures shared by every test package: small real images and a tiny real model."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytest
from PIL import Image

from tests.postgres import PG_URL, PG_URL_VARIABLE, PgServer, require_postgres

# Keep TensorFlow quiet and single-process friendly in tests (set before any TF import).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_SIZE = 32
# The tiny model learns brightness: images darker than ~100 are "real", brighter than ~155 "ai".
DARK = (30, 30, 30)
BRIGHT = (230, 230, 230)


class ImageFactory(Protocol):
    """Signature of the `image_factory` fixture."""

    def __call__(
        self,
        path: str | Path = ...,
        size: tuple[int, int] = ...,
        color: Any = ...,
        fmt: str = ...,
        mode: str = ...,
        *,
        noise: float = ...,
        seed: int = ...,
        **save_kwargs: Any,
    ) -> Path: ...


def render_image(
    size: tuple[int, int] = (64, 64),
    color: Any = (128, 128, 128),
    mode: str = "RGB",
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> Image.Image:
    """An in-memory image of `color` (+ optional gaussian noise), converted to `mode`."""
    base = np.empty((size[1], size[0], 3), dtype=np.float64)
    base[...] = np.asarray(color if isinstance(color, tuple) else (color,) * 3, dtype=np.float64)[
        :3
    ]
    if noise:
        base += np.random.default_rng(seed).normal(0.0, noise, base.shape)
    rgb = Image.fromarray(np.clip(np.rint(base), 0, 255).astype(np.uint8))
    if mode == "RGB":
        return rgb
    if mode in ("RGBA", "LA", "PA") and isinstance(color, tuple) and len(color) == 4:
        converted = rgb.convert(mode)
        converted.putalpha(int(color[3]))
        return converted
    if mode == "I;16":
        # 8-bit gray scaled to the full 16-bit range (x * 257), as a real 16-bit PNG would be.
        gray = np.asarray(rgb.convert("L"), dtype=np.uint16) * 257
        return Image.fromarray(gray)
    return rgb.convert(mode)


@pytest.fixture
def image_factory(tmp_path: Path) -> ImageFactory:
    """Write a real image file; relative paths land in tmp_path. Returns the file's Path."""

    def make_image(
        path: str | Path = "image.jpg",
        size: tuple[int, int] = (64, 64),
        color: Any = (128, 128, 128),
        fmt: str = "JPEG",
        mode: str = "RGB",
        *,
        noise: float = 0.0,
        seed: int = 0,
        **save_kwargs: Any,
    ) -> Path:
        target = Path(path)
        if not target.is_absolute():
            target = tmp_path / target
        target.parent.mkdir(parents=True, exist_ok=True)
        image = render_image(size, color, mode, noise=noise, seed=seed)
        image.save(target, fmt, **save_kwargs)
        return target

    return make_image


def _synthetic_training_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Dark images are real (0), bright ones ai (1); half flat colour, half noisy texture."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 2).astype(np.float32)
    means = np.where(labels == 1, rng.uniform(155, 255, n), rng.uniform(0, 100, n))
    tint = rng.uniform(-20, 20, (n, 1, 1, 3))
    noise = (
        rng.normal(0, 25, (n, TINY_SIZE, TINY_SIZE, 3))
        * (np.arange(n) % 4 >= 2)[:, None, None, None]
    )
    images = means[:, None, None, None] + tint + noise
    return np.clip(images, 0, 255).astype(np.float32), labels


def build_tiny_model(size: int = TINY_SIZE) -> Any:
    """A tiny contract-obeying Keras model: preprocessing, two small convs, one logit."""
    import keras

    from detector import modelio

    inputs = modelio.model_input()
    x = modelio.build_preprocessing(inputs, size)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, modelio.logit_head(x), name="tiny")


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real tiny model (32 px) trained in seconds to call bright images ai and dark ones real."""
    import keras

    from detector.bundle import ModelMeta, new_version, save_bundle

    keras.utils.set_random_seed(1234)
    model = build_tiny_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    images, labels = _synthetic_training_set(512, seed=1)
    history = model.fit(images, labels, batch_size=64, epochs=12, verbose=0)
    accuracy = float(history.history["accuracy"][-1])
    assert accuracy > 0.95, f"tiny model failed to learn brightness (accuracy {accuracy:.2f})"
    meta = ModelMeta(
        version=new_version("tiny"),
        arch="tiny",
        input_size=TINY_SIZE,
        data_fingerprint="synthetic-brightness-v1",
        metrics={"accuracy": accuracy},
        training={"epochs": 12, "history": {"accuracy": history.history["accuracy"]}},
    )
    dest = tmp_path_factory.mktemp("models") / meta.version
    return save_bundle(model, meta, dest)


@pytest.fixture(scope="session")
def face_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as a model with a face view: faces found, aligned and scored like the
    default model's, and combined by a stored rule (whole and best face count alike)."""
    import keras

    from detector.bundle import KERAS_FILE, read_meta, save_bundle
    from detector.faces import FaceOptions
    from detector.scoring import CombineRule

    meta = read_meta(tiny_bundle)
    rule = CombineRule(whole=0.5, face=0.5, bias=0.0, whole_only=1.0, bias_only=0.0)
    faced = dataclasses.replace(
        meta,
        version=f"{meta.version}-faces",
        faces=FaceOptions().to_dict(),
        combine=rule.to_dict(),
    )
    model = keras.saving.load_model(tiny_bundle / KERAS_FILE, compile=False)
    return save_bundle(model, faced, tmp_path_factory.mktemp("models") / faced.version)


# --- SQLite and PostgreSQL ------------------------------------------------------------------

BACKENDS = ("sqlite", "postgresql")


_TESTS = Path(__file__).resolve().parent


_NO_PG = (
    f"PostgreSQL: NONE ({PG_URL_VARIABLE} not set): every PostgreSQL variant skips "
    "(fails under CI=true); `make test` or scripts/with-postgres starts a server"
)


def pytest_report_header() -> str:
    """Say at the top of the run whether the PostgreSQL variants can run."""
    return f"PostgreSQL: {PG_URL_VARIABLE} set; PostgreSQL variants run" if PG_URL else _NO_PG


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """And again at the end, where it is read, when they could not."""
    if not PG_URL:
        terminalreporter.write_line(f"*** {_NO_PG} ***", yellow=True, bold=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run a test on both databases: everything in tests/storage and tests marked both_databases.

    A test that looks at the SQLite file itself (the `db_path` fixture) or is marked
    sqlite_only keeps the `backend` fixture's default, SQLite.
    """
    if "backend" not in metafunc.fixturenames:
        return
    definition = metafunc.definition
    if definition.get_closest_marker("sqlite_only") or "db_path" in metafunc.fixturenames:
        return
    in_storage = Path(definition.path).is_relative_to(_TESTS / "storage")
    if in_storage or definition.get_closest_marker("both_databases"):
        metafunc.parametrize("backend", BACKENDS)


@pytest.fixture
def backend() -> str:
    """The database a test runs on; "sqlite" unless the test is run on both."""
    return "sqlite"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The test PostgreSQL server (skips, or fails under CI=true, when there is none)."""
    server = PgServer(require_postgres())
    yield server
    server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh PostgreSQL database of this test's own, already migrated to head."""
    with pg_server.database() as url:
        yield url


@pytest.fixture
def pg_empty_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own (never migrated)."""
    with pg_server.database(migrated=False) as url:
        yield url


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """SQLAlchemy URL of this test's own database on `backend` (SQLite: not created yet)."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path / 'var' / 'verdicts.db'}"
