"""Fixtures shared by every test package: small real images and a tiny real model."""

from __future__ import annotations

import os

# Keep TensorFlow quiet and single-process friendly in tests.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
