"""Processing chains: the fixed invariance set and the random training chains."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from detector.imageio import LoadLimits, decode_picture
from training.degrade import (
    PROCESSING_CHAINS,
    DegradeConfig,
    Flip,
    Resize,
    sample_chain,
)


def _picture(seed: int = 0, size: tuple[int, int] = (96, 80)) -> np.ndarray:
    """A textured picture: smooth gradients plus noise, so every operation changes it."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    base = np.stack([xs * 2.0, ys * 2.5, (xs + ys) * 1.2], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "PNG")
    return out.getvalue()


def test_every_processing_chain_is_deterministic_and_changes_the_bytes() -> None:
    rgb = _picture(size=(200, 160))
    names = [chain.name for chain in PROCESSING_CHAINS]
    assert len(set(names)) == len(names) == 8
    original = _png(rgb)
    for chain in PROCESSING_CHAINS:
        first, again = chain.apply(rgb), chain.apply(rgb.copy())
        assert first == again, chain.name
        assert first != original, chain.name
        # What comes out is a picture the serving decoder reads, of the expected size.
        decoded = decode_picture(first, None, LoadLimits()).rgb
        expected = {"downscale_x0.5": (80, 100), "upscale_x2_png": (320, 400)}
        assert decoded.shape[:2] == expected.get(chain.name, (160, 200)), chain.name
        assert not np.array_equal(decoded, rgb), chain.name


def test_the_chains_cover_resizing_reencoding_and_blur() -> None:
    formats = {c.name: (c.encoding.format, c.encoding.quality) for c in PROCESSING_CHAINS}
    assert formats["jpeg_95"] == ("JPEG", 95) and formats["jpeg_50"] == ("JPEG", 50)
    assert formats["webp_80"][0] == "WEBP" and formats["upscale_x2_png"][0] == "PNG"
    described = {c.name: c.to_dict() for c in PROCESSING_CHAINS}
    assert described["blur_1px"]["steps"] == [{"op": "Blur", "sigma": 1.0}]


def test_a_training_chain_depends_only_on_its_seed() -> None:
    cfg = DegradeConfig()
    rgb = _picture(1)
    assert sample_chain(cfg, 7) == sample_chain(cfg, 7)
    assert sample_chain(cfg, 7).apply(rgb) == sample_chain(cfg, 7).apply(rgb)
    chains = [sample_chain(cfg, seed) for seed in range(200)]
    # Drawn per picture: many different chains, every encoding, often shrunk.
    assert len({c.encoding.format for c in chains}) == 3
    shrunk = [s for c in chains for s in c.steps if isinstance(s, Resize) and s.factor < 1]
    assert 0.35 < len(shrunk) / len(chains) < 0.65
    assert any(isinstance(s, Flip) for c in chains for s in c.steps)


def test_resizing_never_goes_below_the_smallest_side() -> None:
    small = Resize(0.05)(_picture(2, (60, 60)))
    assert min(small.shape[:2]) >= 48


def test_a_chain_with_every_step_turned_off_only_reencodes() -> None:
    off = DegradeConfig(
        flip=0, crop=0, downscale=0, upscale=0, blur=0, sharpen=0, noise=0, colour=0, jpeg=1.0
    )
    chain = sample_chain(off, 3)
    assert chain.steps == () and chain.encoding.format == "JPEG"


@pytest.mark.parametrize("quality", [35, 60, 90])
def test_jpeg_quality_is_estimated_from_the_file(quality: int) -> None:
    from training.quality import LOSSLESS, jpeg_quality

    out = io.BytesIO()
    Image.fromarray(_picture(3)).save(out, "JPEG", quality=quality)
    assert abs(jpeg_quality(out.getvalue()) - quality) <= 1
    assert jpeg_quality(_png(_picture(3))) == LOSSLESS
