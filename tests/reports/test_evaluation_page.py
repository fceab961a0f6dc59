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
