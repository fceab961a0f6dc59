"""From view logits to a picture's score: the combination rule, fitted on validation pictures.

The rule (detector.scoring.CombineRule) is a logistic regression on the whole, patch and best
face logits; a second one on the best face alone is the face's own calibration, and the
picture's logit is never below it ("one fake face decides").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from detector.scoring import CombineRule
from detector.views import FACE, PATCH, WHOLE, Views
from training import calibration, evaluate
from training.litert import Judge, LogitFn, accuracy_report
from training.pretrained.features import KINDS, PLAIN, Rows
from training.pretrained.head import Head

# Almost no regularisation: three inputs, thousands of pictures.
_C = 1e4


@dataclass(frozen=True, slots=True)
class PictureLogits:
    """Per picture: the logit of each view (NaN where the picture has no such view)."""

    whole: np.ndarray
    patch: np.ndarray
    face: np.ndarray

    @property
    def has_face(self) -> np.ndarray:
        """Pictures with a face view."""
        return ~np.isnan(self.face)

    @property
    def has_patch(self) -> bool:
        """True when the pictures have a patch view."""
        return bool((~np.isnan(self.patch)).any())

    def take(self, keep: np.ndarray) -> PictureLogits:
        """The pictures where `keep` is True."""
        return PictureLogits(self.whole[keep], self.patch[keep], self.face[keep])


def picture_logits(head: Head, rows: Rows, n: int) -> PictureLogits:
    """View logits of `n` pictures from their plain-pass rows."""
    plain = rows.passes == PLAIN
    logits = head.logits(rows.feats[plain]) if plain.any() else np.zeros(0)
    out = {kind: np.full(n, np.nan) for kind in KINDS}
    for code, kind in enumerate(KINDS):
        sel = rows.kind[plain] == code
        out[kind][rows.index[plain][sel]] = logits[sel]
    return PictureLogits(whole=out[WHOLE], patch=out[PATCH], face=out[FACE])


def fit_rule(val: PictureLogits, labels: np.ndarray, seed: int, face_decides: bool) -> CombineRule:
    """The picture rule on validation pictures (see the module docstring)."""
    y = (labels >= 0.5).astype(int)
    patch = np.nan_to_num(val.patch) if val.has_patch else None
    base = [val.whole] if patch is None else [val.whole, patch]
    only = LogisticRegression(C=_C, random_state=seed).fit(np.stack(base, axis=1), y)
    rows = val.has_face
    values: dict[str, Any] = {
        "whole_only": float(only.coef_[0][0]),
        "patch_only": float(only.coef_[0][1]) if patch is not None else 0.0,
        "bias_only": float(only.intercept_[0]),
    }
    if rows.sum() < 10 or len(set(y[rows])) < 2:
        return CombineRule(
            whole=values["whole_only"],
            patch=values["patch_only"],
            bias=values["bias_only"],
            **values,
        )
    inputs = np.stack([x[rows] for x in base] + [val.face[rows]], axis=1)
    both = LogisticRegression(C=_C, random_state=seed).fit(inputs, y[rows])
    face_alone = LogisticRegression(C=_C, random_state=seed).fit(val.face[rows, None], y[rows])
    return CombineRule(
        whole=float(both.coef_[0][0]),
        patch=float(both.coef_[0][1]) if patch is not None else 0.0,
        face=float(both.coef_[0][-1]),
        bias=float(both.intercept_[0]),
        face_alone=float(face_alone.coef_[0][0]) if face_decides else None,
        face_alone_bias=float(face_alone.intercept_[0]) if face_decides else 0.0,
        **values,
    )


def picture_probs(rule: CombineRule, logits: PictureLogits) -> np.ndarray:
    """Combined P(ai) per picture."""
    patch = np.nan_to_num(logits.patch) if logits.has_patch else None
    face = np.nan_to_num(logits.face, nan=0.0)
    return calibration.sigmoid(rule.logits(logits.whole, face, logits.has_face, patch))


def view_metrics(
    logits: PictureLogits, labels: np.ndarray, sources: tuple[str, ...], temperature: float
) -> dict[str, Any]:
    """Each view alone, at its own validation-free 0.5 threshold."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        values = getattr(logits, kind)
        rows = ~np.isnan(values)
        if rows.any():
            probs = calibration.sigmoid(values[rows] / temperature)
            picked = tuple(s for s, r in zip(sources, rows, strict=True) if r)
            out[kind] = _brief(evaluate.compute_metrics(labels[rows], probs, picked, 0.5))
    return out


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    brief: dict[str, Any] = {k: metrics[k] for k in ("accuracy", "roc_auc", "n") if k in metrics}
    brief["per_source_accuracy"] = {
        s: v.get("accuracy") for s, v in metrics.get("per_source", {}).items()
    }
    return brief


def picture_judge(
    views: Sequence[Views],
    labels: np.ndarray,
    sources: Sequence[str],
    rule: CombineRule,
    threshold: float,
) -> Judge:
    """A judge of export formats by what serving decides: every picture's label from all its
    views through the model's rule, at the model's threshold."""
    stacks = [v.stack() for v in views]
    pixels = np.concatenate(stacks) if stacks else np.zeros((0, 1, 1, 3), np.uint8)
    ends = np.cumsum([len(s) for s in stacks])

    def judge(logits_of: LogitFn) -> dict[str, Any]:
        logits = logits_of(pixels)
        scores = []
        for v, end, count in zip(views, ends, (len(s) for s in stacks), strict=True):
            own = logits[end - count : end]
            first_face = 1 if v.patch is None else 2
            patch = float(own[1]) if v.patch is not None else 0.0
            scores.append(rule.logit(float(own[0]), [float(x) for x in own[first_face:]], patch))
        calls = calibration.sigmoid(np.array(scores)) >= threshold
        return accuracy_report(calls, labels, sources)

    return judge
