"""EDA report of the training data: what the classes look like and where a model could cheat.

Everything here reads files only; pixel statistics and PCA run on a seeded per-class sample of
`eda_sample` images so the report stays quick on the full dataset.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
from sklearn.decomposition import PCA

from detector.errors import ImageRejected
from reports import charts
from reports.imagefacts import (
    FEATURES,
    FileFacts,
    LabelledImage,
    file_facts,
    near_duplicate_pairs,
    pixel_features,
    same_picture,
    small_vector,
    thumbnail_uri,
)
from reports.page import (
    Block,
    Cell,
    Chart,
    Gallery,
    Note,
    Page,
    Section,
    Stamp,
    Table,
    Thumb,
    nodata_section,
)
from reports.stats import Comparison, benjamini_hochberg, compare, holm

logger = logging.getLogger(__name__)

CLASS_NAMES: Final[tuple[str, str]] = ("real", "ai")  # class index 0 = real, 1 = ai
SPLIT_ORDER: Final[tuple[str, ...]] = ("train", "validate", "test")
NEAR_DUPLICATE_BITS: Final[int] = 10  # of 64 pHash bits: candidates for the pixel check
GRID_PER_GROUP: Final[int] = 6
ALPHA: Final[float] = 0.05


def class_name(label: int) -> str:
    """'real' for class 0, 'ai' for class 1."""
    return CLASS_NAMES[label] if 0 <= label < len(CLASS_NAMES) else str(label)


def build_eda_page(
    samples: Sequence[LabelledImage],
    *,
    stamp: Stamp,
    sample_size: int,
    root: Path | None = None,
    seed: int = 1337,
    empty_reason: str = "",
    computed: EdaFacts | None = None,
    notes: Sequence[Note] = (),
) -> Page:
    """The EDA page for a labelled dataset (a 'no data' page when there is none); `computed`
    are its facts from the cache (else they are computed here)."""
    title = "Training data (EDA)"
    if not samples:
        reason = empty_reason or "the configured data folder holds no labelled images."
        return Page("eda", title, stamp, (nodata_section("data", "Training data", reason),))
    if computed is None:
        computed = compute_facts(samples, sample_size, seed)
    facts, measured = computed.facts, computed.measured
    readable = [f for f in facts if not f.error]
    namer = _Namer(root)
    sections = (
        _overview(facts, root, notes),
        _class_distribution(readable),
        _sample_grids(readable, seed, namer),
        _sizes_and_formats(readable),
        _duplicates(readable, namer),
        _features(measured),
        _pca(measured, seed, namer),
    )
    return Page("eda", title, stamp, sections, summary=f"{len(facts)} images in {root or '?'}.")


@dataclass(frozen=True, slots=True)
class EdaFacts:
    """The slow part of the EDA: per-file facts and the sampled pixel measurements."""

    facts: list[FileFacts]
    measured: Measured


def compute_facts(samples: Sequence[LabelledImage], sample_size: int, seed: int) -> EdaFacts:
    """Read every file once and measure the seeded per-class sample."""
    facts = [file_facts(s) for s in samples]
    readable = [f for f in facts if not f.error]
    return EdaFacts(facts, _measure(_feature_sample(readable, sample_size, seed)))


class _Namer:
    """Short display names: the path relative to the dataset root."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def __call__(self, path: Path) -> str:
        if self.root is not None and path.is_relative_to(self.root):
            return str(path.relative_to(self.root))
        return path.name


def _overview(facts: Sequence[FileFacts], root: Path | None, notes: Sequence[Note]) -> Section:
    broken = [f for f in facts if f.error]
    blocks: list[Note | Table] = [
        *notes,
        Note(f"{len(facts)} files listed, {len(facts) - len(broken)} readable, from {root}."),
    ]
    if broken:
        rows = tuple((str(f.path), class_name(f.label), f.split, f.error) for f in broken[:50])
        blocks.append(Note(f"{len(broken)} files could not be read.", "warn"))
        blocks.append(Table(("file", "class", "split", "reason"), rows, "Unreadable files"))
    return Section("overview", "Overview", tuple(blocks))


def _class_distribution(facts: Sequence[FileFacts]) -> Section:
    splits = _ordered({f.split for f in facts}, SPLIT_ORDER)
    counts = Counter((f.split, f.label) for f in facts)
    rows = []
    for split in splits:
        real, ai = counts[(split, 0)], counts[(split, 1)]
        rows.append((split, real, ai, real + ai, round(ai / real, 3) if real else None))
    chart = charts.bar_groups(
        splits,
        {name: [counts[(s, i)] for s in splits] for i, name in enumerate(CLASS_NAMES)},
        title="Images per split and class",
        ylabel="images",
    )
    by_source = Counter((f.source, f.label, f.split) for f in facts)
    source_rows: tuple[tuple[Cell, ...], ...] = tuple(
        (src, class_name(lab), *[by_source[(src, lab, s)] for s in splits])
        for src, lab in sorted({(f.source, f.label) for f in facts}, key=lambda t: (t[1], t[0]))
    )
    blocks = (
        Table(("split", "real", "ai", "total", "ai / real"), tuple(rows), "Class balance"),
        Chart("Images per split and class", chart),
        Table(("source", "class", *splits), source_rows, "Images per source and split"),
    )
    return Section("class-distribution", "Class distribution per split", blocks)


def _sample_grids(facts: Sequence[FileFacts], seed: int, namer: _Namer) -> Section:
    groups: dict[tuple[int, str], list[FileFacts]] = defaultdict(list)
    for f in facts:
        groups[(f.label, f.source)].append(f)
    rng = random.Random(seed)
    blocks = []
    for (label, source), members in sorted(groups.items()):
        picked = rng.sample(members, min(GRID_PER_GROUP, len(members)))
        thumbs = tuple(
            Thumb(uri, namer(f.path), f"{namer(f.path)} ({f.width}x{f.height} {f.format})")
            for f in picked
            if (uri := thumbnail_uri(f.path))
        )
        blocks.append(Gallery(thumbs, f"{class_name(label)} · {source}"))
    return Section("samples", "Sample images per class and source", tuple(blocks))


def _sizes_and_formats(facts: Sequence[FileFacts]) -> Section:
    fmt_counts = Counter((f.format, f.label) for f in facts)
    fmt_rows = tuple(
        (fmt, fmt_counts[(fmt, 0)], fmt_counts[(fmt, 1)])
        for fmt in sorted({f.format for f in facts})
    )
    dims = Counter((f"{f.width}x{f.height}", f.label) for f in facts)
    top = sorted({d for d, _ in dims}, key=lambda d: -(dims[(d, 0)] + dims[(d, 1)]))[:12]
    dim_rows = tuple((d, dims[(d, 0)], dims[(d, 1)]) for d in top)
    kb = {class_name(i): [f.size_bytes / 1024 for f in facts if f.label == i] for i in (0, 1)}
    widths = {class_name(i): [float(f.width) for f in facts if f.label == i] for i in (0, 1)}
    blocks: list[Note | Table | Chart] = [
        Table(("format", "real", "ai"), fmt_rows, "File formats"),
        Table(("width x height", "real", "ai"), dim_rows, "Most common image sizes"),
        Chart("File size by class", charts.histogram(kb, title="File size", xlabel="KiB")),
    ]
    if charts.varies(widths):
        chart = charts.histogram(widths, title="Image width", xlabel="pixels")
        blocks.append(Chart("Width by class", chart))
    elif facts:
        blocks.append(Note(f"Every picture is {facts[0].width} px wide: no width to compare."))
    if {f.format for f in facts if f.label == 0} != {f.format for f in facts if f.label == 1}:
        blocks.insert(0, Note("The classes come in different file formats: a shortcut.", "warn"))
    return Section("sizes-formats", "Image sizes and formats", tuple(blocks))


def _duplicates(facts: Sequence[FileFacts], namer: _Namer) -> Section:
    by_hash: dict[str, list[FileFacts]] = defaultdict(list)
    for f in facts:
        by_hash[f.sha256].append(f)
    groups = [g for g in by_hash.values() if len(g) > 1]
    exact_rows = tuple(
        (g[0].sha256[:12], len(g), *_dup_flags(g), ", ".join(namer(f.path) for f in g[:6]))
        for g in sorted(groups, key=len, reverse=True)[:50]
    )
    unique = [g[0] for g in by_hash.values()]
    pairs = _near_duplicates(unique)
    near_rows = tuple(
        (namer(unique[i].path), namer(unique[j].path), d, *_dup_flags([unique[i], unique[j]]))
        for i, j, d in pairs[:50]
    )
    blocks: list[Note | Table | Gallery] = [
        Note(
            f"{len(groups)} groups of byte-identical files (SHA-256); {len(pairs)} near-duplicate "
            f"pairs (DCT perceptual hash within {NEAR_DUPLICATE_BITS} of 64 bits, confirmed by "
            "near-equal 32x32 grey pixels). Duplicates across splits inflate test metrics; "
            "across classes they are label conflicts.",
            "warn" if groups or pairs else "good",
        )
    ]
    cols = ("classes", "splits", "cross-split", "label conflict")
    if exact_rows:
        blocks.append(Table(("sha256", "files", *cols, "names"), exact_rows, "Exact duplicates"))
    if near_rows:
        blocks.append(
            Table(("file", "near-duplicate of", "bits", *cols), near_rows, "Near duplicates")
        )
        thumbs = [(unique[i], unique[j]) for i, j, _ in pairs[:6]]
        items = tuple(Thumb(thumbnail_uri(f.path), namer(f.path)) for pair in thumbs for f in pair)
        blocks.append(Gallery(items, "Closest near-duplicate pairs, side by side"))
    return Section("duplicates", "Duplicate images", tuple(blocks))


def _near_duplicates(unique: Sequence[FileFacts]) -> list[tuple[int, int, int]]:
    """Hash-close pairs that also pass the pixel check, closest first."""
    hashes = np.array([f.phash for f in unique], dtype=np.uint64)
    pairs = [
        (i, j, d)
        for i, j, d in near_duplicate_pairs(hashes, NEAR_DUPLICATE_BITS)
        if (a := unique[i].grey) is not None
        and (b := unique[j].grey) is not None
        and same_picture(a, b)
    ]
    return sorted(pairs, key=lambda p: p[2])


def _dup_flags(group: Sequence[FileFacts]) -> tuple[str, str, bool, bool]:
    classes = sorted({class_name(f.label) for f in group})
    splits = sorted({f.split for f in group})
    return "/".join(classes), "/".join(splits), len(splits) > 1, len(classes) > 1


def _feature_sample(facts: Sequence[FileFacts], per_class: int, seed: int) -> list[FileFacts]:
    """Up to `per_class` images of each class, from the train split when it has any."""
    pool = [f for f in facts if f.split == "train"] or list(facts)
    rng = random.Random(seed)
    chosen: list[FileFacts] = []
    for label in (0, 1):
        members = [f for f in pool if f.label == label]
        chosen.extend(rng.sample(members, min(per_class, len(members))))
    return chosen


class Measured:
    """Pixel features and PCA vectors of the sampled images that decoded."""

    def __init__(self) -> None:
        self.facts: list[FileFacts] = []
        self.features: list[dict[str, float]] = []
        self.vectors: list[np.ndarray] = []


def _measure(chosen: Sequence[FileFacts]) -> Measured:
    out = Measured()
    for f in chosen:
        try:
            feats = pixel_features(f.path)
            vec = small_vector(f.path)
        except ImageRejected as exc:
            logger.warning("EDA skips %s: %s", f.path, exc)
            continue
        out.facts.append(f)
        out.features.append(feats)
        out.vectors.append(vec)
    return out


def _features(m: Measured) -> Section:
    title = "Image features: real vs AI (hypothesis tests)"
    if len(m.facts) < 6:
        return nodata_section("features", title, "fewer than 6 decodable sampled images.")
    every = {name: _by_class(m, name) for name in FEATURES}
    cmps = [compare(name, groups["real"], groups["ai"]) for name, groups in every.items()]
    panels = {name: groups for name, groups in every.items() if charts.varies(groups)}
    flat = [f"{name} ({_single(groups)})" for name, groups in every.items() if name not in panels]
    note = Note(
        f"Sample: {len(m.facts)} images (up to the configured eda_sample per class). Effect "
        "sizes: Cohen's d and rank-biserial r are positive when AI images score higher. "
        f"q-values: Benjamini-Hochberg over all {2 * len(cmps)} tests; Holm controls the "
        "family-wise error. A strong difference is a possible shortcut, not proof of one."
    )
    chart = charts.boxplots(panels, title="Features by class")
    blocks: list[Block] = [
        note,
        _comparison_table(cmps),
        Table(("feature", "what it measures"), tuple(FEATURES.items()), "Feature definitions"),
        Chart("Feature distributions by class", chart),
    ]
    if flat:
        blocks.append(Note("One value in every picture, not plotted: " + ", ".join(flat) + "."))
    blocks.append(_per_source_means(m))
    return Section("features", title, tuple(blocks))


def _by_class(m: Measured, name: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {cls: [] for cls in CLASS_NAMES}
    for f, x in zip(m.facts, m.features, strict=True):
        out[class_name(f.label)].append(x[name])
    return out


def _comparison_table(cmps: Sequence[Comparison]) -> Table:
    # One family: every test of every feature, so the correction covers all 2 x k p-values.
    k = len(cmps)
    pvals = [c.welch_p for c in cmps] + [c.mwu_p for c in cmps]
    bh, hm = benjamini_hochberg(pvals), holm(pvals)
    rows = tuple(
        (
            *(c.feature, c.n_real, c.n_ai, c.mean_real, c.mean_ai, c.cohens_d, c.rank_biserial),
            *(c.welch_p, bh[i], c.mwu_p, bh[k + i], hm[k + i]),
            _verdict(c.testable, bh[k + i], c.cohens_d),
        )
        for i, c in enumerate(cmps)
    )
    cols = (
        *("feature", "n real", "n ai", "mean real", "mean ai", "Cohen's d", "rank-biserial"),
        *("Welch p", "Welch q (BH)", "MWU p", "MWU q (BH)", "MWU p (Holm)", "reading"),
    )
    return Table(cols, rows, "Welch t-test and Mann-Whitney U per feature")


def _verdict(testable: bool, q: float, d: float) -> str:
    if not testable:
        return "not testable (constant or too few)"
    if not q < ALPHA:
        return "no evidence of a difference"
    size = abs(d) if d == d else 0.0
    strength = "large" if size >= 0.8 else "medium" if size >= 0.5 else "small"
    return f"differs ({strength} effect)"


def _per_source_means(m: Measured) -> Table:
    sources = sorted({(f.label, f.source) for f in m.facts})
    rows = []
    for name in FEATURES:
        means = []
        for label, source in sources:
            vals = [
                x[name]
                for f, x in zip(m.facts, m.features, strict=True)
                if f.label == label and f.source == source
            ]
            means.append(float(np.nanmean(vals)) if vals else None)
        rows.append((name, *means))
    cols = ("feature", *(f"{class_name(lab)} · {src}" for lab, src in sources))
    return Table(cols, tuple(rows), "Feature means per class and source")


def _pca(m: Measured, seed: int, namer: _Namer) -> Section:
    title = "PCA of a sample (32x32 RGB pixels)"
    if len(m.vectors) < 4:
        return nodata_section("pca", title, "fewer than 4 decodable sampled images.")
    x = np.stack(m.vectors)
    k = min(10, x.shape[0] - 1, x.shape[1])
    z = PCA(n_components=k, random_state=seed).fit(x)
    ev = z.explained_variance_ratio_
    proj = z.transform(x)
    names = [f"PC{i + 1}" for i in range(k)]
    ev_rows = tuple(
        (n, float(v), float(c)) for n, v, c in zip(names, ev, np.cumsum(ev), strict=True)
    )
    ev_chart = charts.bar_groups(
        names, {"explained": ev.tolist()}, title="Explained variance ratio", ylabel="ratio"
    )
    blocks: list[Table | Chart] = [
        Table(("component", "explained variance", "cumulative"), ev_rows, "Explained variance"),
        Chart("Explained variance ratio per component", ev_chart),
    ]
    if k > 1:
        for key, groups in (
            ("class", [class_name(f.label) for f in m.facts]),
            ("source", [f.source for f in m.facts]),
        ):
            blocks.append(Chart(f"PC1 vs PC2 by {key}", _pc_scatter(proj, groups, key)))
    labels = np.array([f.label for f in m.facts])
    blocks.extend(_pca_outliers(proj[:, : min(4, k)], labels, m.facts, namer))
    return Section("pca", title, tuple(blocks))


def _pc_scatter(proj: np.ndarray, groups: Sequence[str], key: str) -> str:
    keys = np.array(groups)
    points = {
        g: (proj[keys == g, 0].tolist(), proj[keys == g, 1].tolist())
        for g in _ordered(set(groups), CLASS_NAMES)
    }
    return charts.scatter(points, title=f"PC1 vs PC2 by {key}", xlabel="PC1", ylabel="PC2")


def _pca_outliers(
    z: np.ndarray, labels: np.ndarray, facts: Sequence[FileFacts], namer: _Namer
) -> list[Table | Chart]:
    """Box plots of the first components per class, with the 1.5 IQR outliers named."""
    panels: dict[str, dict[str, list[float]]] = {}
    marks: dict[str, list[tuple[int, float, str]]] = {}
    rows: list[tuple[str, str, str, str, float]] = []
    for c in range(z.shape[1]):
        comp = f"PC{c + 1}"
        panels[comp] = {}
        marks[comp] = []
        for i, cls in enumerate(CLASS_NAMES):
            idx = np.flatnonzero(labels == i)
            vals = z[idx, c]
            panels[comp][cls] = vals.tolist()
            if vals.size < 4:
                continue
            q1, q3 = np.percentile(vals, [25, 75])
            lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
            out = [int(j) for j in idx if not lo <= z[j, c] <= hi]
            out.sort(key=lambda j: -abs(z[j, c] - np.median(vals)))
            for rank, j in enumerate(out):
                rows.append((comp, cls, facts[j].source, namer(facts[j].path), float(z[j, c])))
                if rank < 2:
                    marks[comp].append((i, float(z[j, c]), namer(facts[j].path)[-22:]))
    chart = charts.boxplots(panels, title="First components by class", labels=marks)
    table = Table(("component", "class", "source", "file", "value"), tuple(rows[:40]), "Outliers")
    return [Chart("First principal components by class, outliers named", chart), table]


def _single(groups: Mapping[str, Sequence[float]]) -> str:
    """The one value a feature takes in every picture, as text."""
    value = next((v for vals in groups.values() for v in vals), None)
    return "no values" if value is None else f"{value:g}"


def _ordered(values: set[str], order: Sequence[str]) -> list[str]:
    known = [v for v in order if v in values]
    return known + sorted(values - set(order))
