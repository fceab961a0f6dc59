"""Settings owned by the reports package (the `[reports]` table of config.toml)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    """Where HTML reports are written and what data they describe."""

    # Folder the HTML reports are written into.
    dir: Path = Path("var/reports")
    # Labelled data (Kaggle layout or {real,ai}/) the evaluation and EDA reports use; "" = none.
    data: Path | None = None
    # Images sampled per class for the EDA statistics (PCA, hypothesis tests).
    eda_sample: int = 400
    # Days of service history shown in the operations report.
    operations_days: int = 30
    # Pictures shown on the review page (flagged first, newest first).
    review_count: int = 60
    # Write reports private to the daemon's user (files 0600, folder 0700); false = world-readable.
    private: bool = True
