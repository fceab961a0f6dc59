"""Matplotlib charts rendered off-screen (Agg) to base64 PNG data: URIs.

Figures are built with the object-oriented API (`Figure` + `FigureCanvasAgg`), never pyplot, so
no global figure state is shared between the scheduler's threads; a lock serialises rendering
because matplotlib's font and text caches are not documented as thread-safe.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Final

import matplotlib

matplotlib.use("Agg")  # no display on a server; must precede any backend import

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_LOCK: Final = threading.Lock()
DPI: Final[int] = 96
# Legends with more entries go beside the plot instead of over it.
LEGEND_INSIDE: Final[int] = 6
# Longest point label drawn in a box plot.
LABEL_CHARS: Final[int] = 16
CLASS_COLOURS: Final[dict[str, str]] = {"real": "#2f7ed8", "ai": "#d8572a", "rejected": "#8c8c8c"}
PALETTE: Final[tuple[str, ...]] = (
    "#2f7ed8", "#d8572a", "#3a9e5b", "#8e5ec4", "#c4a13a", "#3ab0b8", "#c43a7a", "#6b6b6b",
)  # fmt: skip


def varies(groups: Mapping[str, Sequence[float]]) -> bool:
    """True when the values of all groups together take more than one value: a plot of a
    single value carries nothing (one sentence says it better)."""
    values = {float(v) for vals in groups.values() for v in vals}
    return len(values) > 1


def colour(name: str, i: int) -> str:
    """The class colour for real/ai/rejected, else the i-th palette colour."""
    return CLASS_COLOURS.get(name, PALETTE[i % len(PALETTE)])


def render(draw: Callable[[Figure], None], size: tuple[float, float] = (6.4, 4.0)) -> str:
    """Run `draw` on a fresh figure and return it as a PNG data: URI."""
    with _LOCK:
        fig = Figure(figsize=size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bar_groups(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    ylabel: str,
    stacked: bool = False,
) -> str:
    """Grouped (or stacked) bars: one group per category, one bar per series."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        x = np.arange(len(categories))
        width = 0.8 if stacked else 0.8 / max(len(series), 1)
        bottom = np.zeros(len(categories))
        for i, (name, values) in enumerate(series.items()):
            vals = np.asarray(values, dtype=float)
            if stacked:
                ax.bar(x, vals, width, bottom=bottom, label=name, color=colour(name, i))
                bottom += vals
            else:
                offset = (i - (len(series) - 1) / 2) * width
                ax.bar(x + offset, vals, width, label=name, color=colour(name, i))
        ax.set_xticks(x, list(categories), rotation=30 if len(categories) > 4 else 0, ha="right")
        _finish(ax, title, "", ylabel, legend=len(series) > 1)

    return render(draw)


def histogram(
    groups: Mapping[str, Sequence[float]],
    *,
    title: str,
    xlabel: str,
    bins: int | Sequence[float] = 30,
    density: bool = True,
    log_x: bool = False,
) -> str:
    """Overlaid histograms, one per group."""

    if log_x and isinstance(bins, int):
        every = np.asarray([x for v in groups.values() for x in v], dtype=float)
        every = every[np.isfinite(every) & (every > 0)]
        lo, hi = (every.min(), every.max()) if every.size else (1.0, 10.0)
        bins = np.geomspace(lo, max(hi, lo * 1.01), bins + 1).tolist()  # even widths on log x

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for i, (name, values) in enumerate(groups.items()):
            vals = np.asarray(values, dtype=float)
            vals = vals[np.isfinite(vals)]
            if vals.size:
                label = f"{name} (n={vals.size})"
                ax.hist(
                    vals, bins=bins, density=density, alpha=0.55, label=label, color=colour(name, i)
                )
        if log_x:
            ax.set_xscale("log")
        _finish(ax, title, xlabel, "density" if density else "count", legend=True)

    return render(draw)


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    step: bool = False,
) -> str:
    """Line plot of named (x, y) series, optionally with the y = x diagonal."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(series.items()):
            if step:
                ax.step(xs, ys, where="post", label=name, color=colour(name, i))
            else:
                marker = "." if len(xs) < 60 else None
                ax.plot(xs, ys, marker=marker, label=name, color=colour(name, i))
        if diagonal:
            ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1)
        _finish(ax, title, xlabel, ylabel, legend=len(series) > 1 or diagonal is False)

    return render(draw)


def heatmap(
    matrix: Sequence[Sequence[float]],
    *,
    rows: Sequence[str],
    cols: Sequence[str],
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """A small annotated matrix (confusion matrices)."""
    data = np.asarray(matrix, dtype=float)

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        ax.imshow(data, cmap="Blues")
        ax.set_xticks(range(len(cols)), list(cols))
        ax.set_yticks(range(len(rows)), list(rows))
        top = data.max() if data.size else 0.0
        for (r, c), v in np.ndenumerate(data):
            ink = "white" if v > top / 2 else "black"
            ax.text(c, r, f"{v:g}", ha="center", va="center", color=ink)
        _finish(ax, title, xlabel, ylabel, legend=False)

    return render(draw, size=(4.6, 3.8))


def scatter(
    groups: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> str:
    """Scatter plot of named point groups."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        for i, (name, (xs, ys)) in enumerate(groups.items()):
            ax.scatter(xs, ys, s=10, alpha=0.6, label=name, color=colour(name, i))
        _finish(ax, title, xlabel, ylabel, legend=len(groups) <= LEGEND_INSIDE)
        if len(groups) > LEGEND_INSIDE:  # a long legend would cover the points: beside them
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)

    return render(draw, size=(6.4 if len(groups) <= LEGEND_INSIDE else 8.2, 4.0))


def boxplots(
    panels: Mapping[str, Mapping[str, Sequence[float]]],
    *,
    title: str,
    labels: Mapping[str, Sequence[tuple[int, float, str]]] | None = None,
) -> str:
    """One box-plot panel per key, one box per group; `labels` names points (box, y, text)."""
    names = list(panels)
    ncols = min(3, max(len(names), 1))
    nrows = (len(names) + ncols - 1) // ncols

    def draw(fig: Figure) -> None:
        axes = fig.subplots(nrows, ncols, squeeze=False)
        for k, ax in enumerate(axes.flat):
            if k >= len(names):
                ax.set_visible(False)
                continue
            groups = panels[names[k]]
            data = [np.asarray(v, dtype=float) for v in groups.values()]
            ax.boxplot(data, tick_labels=list(groups), flierprops={"markersize": 3})
            for box, y, text in (labels or {}).get(names[k], ()):
                # Shortened and kept inside the axes: a long file name would run off the figure.
                short = text if len(text) <= LABEL_CHARS else "…" + text[-(LABEL_CHARS - 1) :]
                ax.annotate(
                    short,
                    (box + 1, y),
                    xytext=(4, 0),
                    textcoords="offset points",
                    fontsize=6,
                    annotation_clip=True,
                    ha="left" if box + 1 < len(groups) else "right",
                )
            ax.set_title(names[k], fontsize=10)
        fig.suptitle(title)

    return render(draw, size=(3.0 * ncols + 0.6, 2.6 * nrows + 0.6))


def _finish(ax: Axes, title: str, xlabel: str, ylabel: str, *, legend: bool) -> None:
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if legend and ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def intervals(
    labels: Sequence[str],
    values: Sequence[float],
    bounds: Sequence[tuple[float, float]],
    *,
    title: str,
    xlabel: str,
    reference: float | None = None,
) -> str:
    """One point per row with its interval as a horizontal bar, and an optional reference line."""

    def draw(fig: Figure) -> None:
        ax = fig.add_subplot()
        y = np.arange(len(labels))[::-1]
        v = np.asarray(values, dtype=float)
        lo = v - np.array([b[0] for b in bounds])
        hi = np.array([b[1] for b in bounds]) - v
        ax.errorbar(v, y, xerr=[lo, hi], fmt="o", color=PALETTE[0], capsize=3)
        if reference is not None:
            ax.axvline(reference, color=PALETTE[1], linestyle="--", label="overall")
        ax.set_yticks(y, list(labels))
        ax.set_xlim(0.0, max(0.05, float(max((b[1] for b in bounds), default=0.0))) * 1.05)
        _finish(ax, title, xlabel, "", legend=reference is not None)

    return render(draw, size=(6.4, max(2.0, 0.3 * len(labels) + 1.2)))
