"""Settings owned by the detector package (the `[detector]` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    # Faces (models with a face view): at most this many per picture, the most confident first.
    max_faces: int = field(default=8, metadata={"min": 0, "max": 64})
    # Detector confidence a face needs (0..1).
    face_min_score: float = field(default=0.7, metadata={"max": 1.0})
    # Smallest face, shorter box side in pixels of the picture.
    face_min_size: int = field(default=24, metadata={"min": 1})
    # Long side of the downscaled copy faces are looked for in (cost is flat above it).
    face_detect_size: int = field(default=640, metadata={"min": 32, "max": 4096})

    def face_overrides(self) -> dict[str, Any]:
        """These settings as detector.faces.FaceOptions fields."""
        return {
            "max_faces": self.max_faces,
            "min_score": self.face_min_score,
            "min_size": self.face_min_size,
            "detect_size": self.face_detect_size,
        }

    def __post_init__(self) -> None:
        band = self.uncertain_band
        if band is not None and not (
            len(band) == 0 or (len(band) == 2 and 0.0 <= band[0] <= band[1] <= 1.0)
        ):
            raise ValueError(
                "[detector] uncertain_band must be [lo, hi] with 0 <= lo <= hi <= 1, [] for no"
                f' band, or "" for the model\'s own, not {list(band)!r}'
            )
