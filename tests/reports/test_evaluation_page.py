"""The evaluation page built from plain data (no model, no database)."""

from __future__ import annotations

from html_checks import section

from detector.bundle import ModelMeta
from reports.evaluation import EvaluationInput, build_evaluation_page
from reports.page import Stamp, render_page

PER_SOURCE = {
    "cam_a": {"n": 10, "accuracy": 0.9},
    "gen_x": {"n": 10, "accuracy": 0.4},
}


def _page_html(training: dict[str, object]) -> str:
    meta = ModelMeta(version="m1", arch="tiny", input_size=32, training=training)
    inp = EvaluationInput(
        meta=meta,
        model_source="candidate",
        dataset="data:test",
        data_fingerprint="f",
        metrics={"accuracy": 0.65, "per_source": PER_SOURCE},
    )
    return render_page(build_evaluation_page(inp, stamp=Stamp.now("m1", "f")))


def test_sources_held_out_of_training_are_named_on_the_per_source_table() -> None:
    html = section(_page_html({"dataset": {"unseen_sources": ["gen_x"]}}), "per-source")
    assert "Never seen in training (held out of train and validate): gen_x." in html
    assert html.index("Never seen in training") < html.index("<td>gen_x</td>")


def test_a_model_trained_on_every_source_gets_no_unseen_note() -> None:
    trainings: list[dict[str, object]] = [
        {},
        {"dataset": {"unseen_sources": []}},
        {"dataset": "an older model.json"},
    ]
    for training in trainings:
        html = section(_page_html(training), "per-source")
        assert "<td>gen_x</td>" in html
        assert "Never seen in training" not in html


def _metrics_page(metrics: dict[str, object], training: dict[str, object]) -> str:
    meta = ModelMeta(version="m2", arch="mobilenet_ms", input_size=32, training=training)
    inp = EvaluationInput(
        meta=meta,
        model_source="candidate",
        dataset="data:test",
        data_fingerprint="f",
        metrics={"accuracy": 0.9, "per_source": PER_SOURCE, **metrics},
    )
    return render_page(build_evaluation_page(inp, stamp=Stamp.now("m2", "f")))


def test_invariance_leave_one_source_out_band_and_quality_are_shown() -> None:
    chain = {
        "accuracy": 0.8,
        "accuracy_change": -0.1,
        "roc_auc": 0.85,
        "flipped": 0.125,
        "by_class": {"real": {"accuracy": 0.9}, "ai": {"accuracy": 0.7}},
    }
    invariance = {
        "pictures": 40,
        "per_source": 20,
        "unprocessed": {**chain, "accuracy": 0.9, "flipped": 0.0},
        "chains": {"jpeg_50": chain},
    }
    loso = {
        "sources": {
            "gen_x": {"class": "ai", "pictures": 30, "auc": 0.61, "accuracy": 0.4, "views": {}},
            "cam_a": {"class": "real", "pictures": 30, "auc": 0.93, "accuracy": 0.9, "views": {}},
        },
        "mean_auc": 0.77,
        "worst_auc": 0.61,
        "worst_source": "gen_x",
        "not_held_out": ["gen_future"],
    }
    quality = {
        "per_source": {
            "cam_a": {
                "pictures": 10,
                "median_side": 256,
                "median_sharpness": 3.5,
                "median_jpeg_quality": 90,
            }
        },
        "class_signal_unweighted": {"sharpness": 0.71},
        "class_signal_weighted": {"sharpness": 0.52},
    }
    band = {"uncertain_share": 0.04, "ai_precision": 0.95, "real_precision": 0.96}
    html = _metrics_page(
        {"invariance": invariance, "band": band},
        {"leave_one_source_out": loso, "quality": quality},
    )
    chains = section(html, "invariance")
    assert "<td>jpeg_50</td>" in chains and "0.125" in chains and "40 test pictures" in chains
    held = section(html, "loso")
    assert "worst 0.6100 (gen_x)" in held and "gen_future" in held
    assert held.index("<td>gen_x</td>") < held.index("<td>cam_a</td>")  # worst first
    assert "4.0% of the pictures" in section(html, "band")
    measured = section(html, "quality")
    assert "<td>cam_a</td>" in measured and "0.71" in measured and "0.52" in measured


def test_a_model_that_records_none_of_them_says_so() -> None:
    html = _metrics_page({}, {})
    for name in ("invariance", "loso", "band", "quality"):
        assert "does not record it" in section(html, name), name


def test_classes_come_before_averages_and_the_threshold_comes_first() -> None:
    report = {
        "accuracy": 0.9,
        "ai": {"precision": 0.9, "recall": 0.8, "f1-score": 0.85, "support": 10},
        "macro avg": {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": 20},
        "real": {"precision": 0.8, "recall": 0.9, "f1-score": 0.85, "support": 10},
        "weighted avg": {"precision": 0.9, "recall": 0.9, "f1-score": 0.9, "support": 20},
    }
    sweep = [
        {"accuracy": 0.7, "fpr": 0.1, "threshold": 0.9, "tpr": 0.5},
        {"accuracy": 0.8, "fpr": 0.3, "threshold": 0.1, "tpr": 0.9},
    ]
    html = _metrics_page({"classification_report": report, "threshold_sweep": sweep}, {})
    rows = section(html, "classification-report")
    names = ["<td>real</td>", "<td>ai</td>", "<td>accuracy</td>", "<td>macro avg</td>"]
    positions = [rows.index(n) for n in names]
    assert positions == sorted(positions)
    table = section(html, "threshold-sweep")
    headers = ["<th>threshold</th>", "<th>accuracy</th>", "<th>tpr</th>", "<th>fpr</th>"]
    assert [table.index(h) for h in headers] == sorted(table.index(h) for h in headers)
    assert table.index(">0.1<") < table.index(">0.9<")
