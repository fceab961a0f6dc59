"""EDA report on a tiny real dataset: every section, duplicates found, statistics, escaping."""

from __future__ import annotations

from pathlib import Path

import pytest
from html_checks import EDA_SECTIONS, assert_sections, assert_self_contained, charts_in, section
from report_data import XSS_ESCAPED, XSS_NAME, TinyDataset

from reports.eda import build_eda_page
from reports.page import Stamp, render_page
from training.datasets import load_layout

XSS_SOURCE = "<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def eda_html(tiny_dataset: TinyDataset) -> str:
    """The EDA page of the tiny dataset, built once for the module's read-only checks."""
    splits = load_layout(tiny_dataset.root)
    page = build_eda_page(
        splits.all(), stamp=Stamp.now("m-1", "fp-123"), sample_size=20, root=splits.root
    )
    return render_page(page)


def test_eda_has_every_section_with_charts_and_no_external_refs(eda_html: str) -> None:
    html = eda_html
    assert_sections(html, EDA_SECTIONS)
    assert_self_contained(html)
    assert charts_in(html) >= 7
    assert "fp-123" in html and "m-1" in html
    # Thumbnails of every class/source group.
    samples = section(html, "samples")
    for group in ("real · cam_a", "real · cam_b", "ai · gen_x", "ai · gen_y"):
        assert group in samples
    assert samples.count('src="data:image/jpeg;base64,') >= 16


def test_eda_counts_classes_per_split(eda_html: str) -> None:
    dist = section(eda_html, "class-distribution")
    # train: 2 sources x 4 per class + the oddly named file on the real side.
    assert '<td>train</td><td class="num">9</td><td class="num">8</td>' in dist


def test_eda_finds_exact_and_near_duplicates(eda_html: str) -> None:
    dups = section(eda_html, "duplicates")
    assert "1 groups of byte-identical files" in dups
    assert "test/0/cam_a_copy.jpg" in dups and "train/0/cam_a_001.jpg" in dups
    assert "validate/1/gen_x_reencoded.jpg" in dups and "train/1/gen_x_002.jpg" in dups
    assert "test/train" in dups  # flagged as crossing splits


def test_eda_hypothesis_tests_and_pca(eda_html: str) -> None:
    html = eda_html
    feats = section(html, "features")
    for name in (
        "hf_energy_ratio",
        "noise_residual_std",
        "laplacian_var",
        "saturation_mean",
        "mean_r",
        "jpeg_quality",
        "Cohen&#39;s d",
        "rank-biserial",
        "Welch q (BH)",
        "MWU p (Holm)",
    ):
        assert name in feats, name
    # Brightness is the class signal here, so the channel means must come out as different.
    row = feats[feats.index("<td>mean_r</td>") :].split("</tr>")[0]
    assert "differs (large effect)" in row
    pca = section(html, "pca")
    assert "Explained variance" in pca and "PC1 vs PC2 by class" in pca
    assert charts_in(pca) >= 4


def test_eda_escapes_names_and_survives_unreadable_files(
    tmp_path: Path, tiny_dataset: TinyDataset
) -> None:
    splits = load_layout(tiny_dataset.root)
    sample = type(splits.train[0])
    # A '/' inside the name makes "<script>alert(1)<" a folder: the path shows it whole.
    evil = sample(tiny_dataset.root / "train/0" / XSS_NAME, 1, "train", XSS_SOURCE)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    extra = [evil, sample(broken, 0, "train", "cam_a")]  # evil: its own group, always shown
    page = build_eda_page(
        [*splits.all(), *extra], stamp=Stamp.now(), sample_size=20, root=splits.root
    )
    html = render_page(page)
    assert XSS_NAME not in html and XSS_SOURCE not in html
    assert XSS_ESCAPED in section(html, "samples")
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert_self_contained(html)
    overview = section(html, "overview")
    assert "1 files could not be read" in overview and "broken.jpg" in overview


def test_eda_without_data_says_so() -> None:
    page = build_eda_page([], stamp=Stamp.now(), sample_size=10, empty_reason="nothing here")
    html = render_page(page)
    assert "No data: nothing here" in html
    assert_self_contained(html)
