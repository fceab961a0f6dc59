"""Settings owned by the detector package (the `[detector]` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """How images are decoded and which model screens them."""

    # "default" serves the registry's champion, else the bundled model; a bundle folder pins one.
    model: str = "default"
    # Images handed to the model in one call.
    batch_size: int = field(default=32, metadata={"min": 1})
    # "auto" picks TensorFlow on a GPU and the fastest measured CPU runtime otherwise.
    backend: str = field(default="auto", metadata={"choices": ("auto", "keras", "litert")})
    # "auto" enables float16 mixed precision only when a GPU is visible.
    mixed_precision: str = field(default="auto", metadata={"choices": ("auto", "on", "off")})
    # Files larger than this are rejected before decoding.
    max_file_bytes: int = 50_000_000
    # Decompression-bomb guard: images with more pixels than this are rejected.
    max_pixels: int = 40_000_000
    # Overrides the model's own decision threshold when set (0..1).
    threshold: float | None = field(default=None, metadata={"max": 1.0})
    # Scores with lo <= score < hi get the label "uncertain": None uses the model's own band
    # (model.json; older models have none), () turns it off, (lo, hi) overrides it.
    uncertain_band: tuple[float, ...] | None = None
    # Read provenance metadata (C2PA, XMP, generator PNG chunks, EXIF); a finding declaring AI
    # generation makes the label "ai" whatever the model says.
    provenance: bool = True
    # Folder of model bundles produced by training and registered in the database.
    model_store: Path = Path("var/models")

    def __post_init__(self) -> None:
        band = self.uncertain_band
        if band is not None and not (
            len(band) == 0 or (len(band) == 2 and 0.0 <= band[0] <= band[1] <= 1.0)
        ):
            raise ValueError(
                "[detector] uncertain_band must be [lo, hi] with 0 <= lo <= hi <= 1, [] for no"
                f' band, or "" for the model\'s own, not {list(band)!r}'
            )
