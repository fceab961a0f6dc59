"""`deepfake-detector train` and `deepfake-detector evaluate`.

train: read a dataset (folder or Kaggle download), fit a model, write a bundle into the model store
(or --out) and register it as a candidate. evaluate: score a split with a model and store the
metrics. TensorFlow is imported only once a command actually runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from detector.bundle import bundled_model_dir, new_version
from storage import queries
from storage.db import Database
from storage.models import RunStatus
from training.datasets import (
    DatasetError,
    DatasetSplits,
    download_kaggle,
    fingerprint,
    format_distribution,
    load_layout,
    merge,
)
from watcher.settings import Settings

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `train`, `loso` and `evaluate` sub-commands."""
    train = subparsers.add_parser("train", help="train a new candidate model")
    _data_arguments(train)
    _fit_arguments(train)
    train.add_argument(
        "--hold-out-source",
        action="append",
        default=[],
        metavar="SOURCE",
        help="leave this manifest source out of train and validate (kept in test, to measure "
        "an unseen source); repeatable",
    )
    train.add_argument(
        "--leave-one-source-out",
        action="store_true",
        help="pretrained --arch: also hold out each source in turn and record the table",
    )
    train.add_argument(
        "--invariance",
        type=int,
        metavar="N",
        help="score N test pictures per source again through each processing chain",
    )
    train.add_argument("--out", type=Path, help="bundle folder (default: model store/<version>)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    train.add_argument("--no-register", action="store_true", help="do not touch the database")
    train.add_argument("--no-tflite", action="store_true", help="skip the LiteRT export")
    train.set_defaults(func=run)

    loso = subparsers.add_parser(
        "loso",
        help="hold out each source in turn and measure it (pretrained --arch; chooses settings)",
    )
    _data_arguments(loso)
    _fit_arguments(loso)
    loso.add_argument("--out", type=Path, help="also write the table as JSON to this file")
    loso.set_defaults(func=run_loso)

    evaluate = subparsers.add_parser("evaluate", help="measure a model on a labelled split")
    _data_arguments(evaluate)
    evaluate.add_argument(
        "--model", default="default", help="'default' (bundled), a registered version or a path"
    )
    evaluate.add_argument("--split", default="test", help="train, validate or test")
    evaluate.add_argument(
        "--invariance",
        type=int,
        metavar="N",
        help="also score N pictures per source again through each processing chain",
    )
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON")
    evaluate.add_argument("--no-store", action="store_true", help="do not store the metrics")
    evaluate.set_defaults(func=run_evaluate)


def _fit_arguments(train: argparse.ArgumentParser) -> None:
    """What a training run is made of (shared by `train` and `loso`)."""
    # No `choices` here: listing them would import Keras for every command (seconds of start-up).
    train.add_argument("--arch", help="architecture: seed_cnn, hp_cnn, resnet_hp, tiny, ...")
    train.add_argument("--epochs", type=int, help="maximum number of epochs")
    train.add_argument("--image-size", type=int, help="square input size in pixels")
    train.add_argument("--batch-size", type=int, help="images per step")
    train.add_argument("--learning-rate", type=float, help="peak learning rate")
    train.add_argument("--patience", type=int, help="early-stopping patience (epochs)")
    train.add_argument("--seed", type=int, help="seed for split, augmentation and weights")
    train.add_argument(
        "--no-augment", action="store_true", help="train without augmentation (for comparison)"
    )
    train.add_argument(
        "--backbone-weights",
        type=Path,
        help="ImageNet weights file for a pretrained --arch (default: download)",
    )
    train.add_argument(
        "--feature-passes",
        type=int,
        help="pretrained --arch: 1 plain + N-1 passes through random processing chains",
    )
    train.add_argument(
        "--views", help="pretrained --arch: views scored, from whole,patch,face (whole first)"
    )
    train.add_argument("--head-c", type=float, help="pretrained --arch: inverse L2 of the head")
    train.add_argument(
        "--no-self-blend", action="store_true", help="pretrained --arch: no self-blended faces"
    )
    train.add_argument(
        "--fine-tune-epochs",
        type=int,
        help="pretrained --arch: epochs of fine-tuning the upper backbone blocks (0: frozen)",
    )
    train.add_argument(
        "--loso-sources",
        help="sources the leave-one-source-out table holds out, comma-separated (default: all)",
    )
    train.add_argument(
        "--no-balance-quality",
        action="store_true",
        help="pretrained --arch: no row weights against size, sharpness and compression",
    )


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        help="Kaggle-layout or {real,ai}/ folder (repeat to use several together)",
    )
    parser.add_argument("--kaggle", metavar="HANDLE", help="download this Kaggle dataset")
    parser.add_argument("--real-dir", help="real class folder of a plain layout")
    parser.add_argument("--ai-dir", help="ai class folder of a plain layout")


def resolve_data(args: argparse.Namespace, settings: Settings) -> DatasetSplits:
    """The dataset named by --data / --kaggle, else by the [training] config."""
    cfg = settings.training
    # With --json, stdout carries only the JSON document; the dataset summary goes to stderr.
    out = sys.stderr if getattr(args, "json", False) else sys.stdout
    roots = tuple(args.data or ()) or cfg.data
    if args.kaggle or not roots:
        handle = args.kaggle or cfg.kaggle
        print(f"downloading Kaggle dataset {handle} ...", file=out, flush=True)
        roots = (download_kaggle(handle),)
    seed = args.seed if getattr(args, "seed", None) is not None else cfg.seed
    splits = merge(
        [
            load_layout(
                Path(root),
                real_dir=args.real_dir or cfg.real_dir,
                ai_dir=args.ai_dir or cfg.ai_dir,
                seed=seed,
            )
            for root in roots
        ]
    )
    where = ", ".join(str(r) for r in splits.roots)
    print(f"dataset {where} ({splits.layout} layout)", file=out)
    print(format_distribution(splits), file=out, flush=True)
    return splits


def fit_settings_of(args: argparse.Namespace, settings: Settings, command: str) -> Any:
    """FitSettings from the config and the command line; None (after saying why) when the
    command line names an unknown architecture or bad views."""
    from training.architectures import ARCHITECTURES
    from training.augment import NO_AUGMENT
    from training.settings import FitSettings

    if args.arch is not None and args.arch not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        print(f"deepfake-detector {command}: unknown --arch {args.arch!r} (known: {known})",
              file=sys.stderr)  # fmt: skip
        return None
    views = tuple(v.strip() for v in args.views.split(",")) if args.views else None
    loso_sources = (
        tuple(s.strip() for s in args.loso_sources.split(",") if s.strip())
        if args.loso_sources
        else None
    )
    try:
        return FitSettings.from_config(
            settings.training,
            arch=args.arch,
            epochs=args.epochs,
            image_size=args.image_size,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            patience=args.patience,
            seed=args.seed,
            augment=NO_AUGMENT if args.no_augment else None,
            backbone_weights=str(args.backbone_weights) if args.backbone_weights else None,
            feature_passes=args.feature_passes,
            views=views,
            head_c=args.head_c,
            self_blend=False if args.no_self_blend else None,
            balance_quality=False if args.no_balance_quality else None,
            fine_tune_epochs=args.fine_tune_epochs,
            loso_sources=loso_sources,
            leave_one_source_out=getattr(args, "leave_one_source_out", False) or None,
            invariance_per_source=getattr(args, "invariance", None),
        )
    except ValueError as exc:
        print(f"deepfake-detector {command}: {exc}", file=sys.stderr)
        return None


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Train a model, write its bundle and register it as a candidate."""
    fit_settings = fit_settings_of(args, settings, "train")
    if fit_settings is None:
        return EXIT_USAGE
    try:
        splits = resolve_data(args, settings).holding_out(args.hold_out_source)
    except DatasetError as exc:
        print(f"deepfake-detector train: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not _loso_sources_known(splits, fit_settings, "train"):
        return EXIT_USAGE
    if args.hold_out_source:
        print(f"held out of train and validate: {', '.join(sorted(set(args.hold_out_source)))}")
        print(format_distribution(splits), flush=True)
    version = new_version(fit_settings.arch)
    store = settings.detector.model_store
    dest = args.out if args.out is not None else store / version
    db = None if args.no_register else Database.open(settings.storage)
    try:
        return _train_and_register(args, settings, splits, fit_settings, version, dest, db)
    finally:
        if db is not None:
            db.close()


def run_loso(args: argparse.Namespace, settings: Settings) -> int:
    """Hold out each source in turn; print the table (and write it as JSON with --out)."""
    fit_settings = fit_settings_of(args, settings, "loso")
    if fit_settings is None:
        return EXIT_USAGE
    if not fit_settings.pretrained:
        print("deepfake-detector loso: needs a pretrained --arch (mobilenet_ms)", file=sys.stderr)
        return EXIT_USAGE
    try:
        splits = resolve_data(args, settings)
    except DatasetError as exc:
        print(f"deepfake-detector loso: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not _loso_sources_known(splits, fit_settings, "loso"):
        return EXIT_USAGE
    from training.pretrained.loso import format_table
    from training.pretrained.run import leave_one_source_out

    result = leave_one_source_out(splits, fit_settings, cache_dir=settings.training.cache_dir)
    print(format_table(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
        print(f"table written to {args.out}")
    return EXIT_OK


def _loso_sources_known(splits: DatasetSplits, fit_settings: Any, command: str) -> bool:
    """False (after saying which) when --loso-sources names a source without training
    pictures: checked before hours of features, not after."""
    trainable = {s.source for s in splits.train}
    unknown = sorted(set(fit_settings.loso_sources) - trainable)
    if unknown:
        print(f"deepfake-detector {command}: no training pictures of {', '.join(unknown)} "
              f"(sources: {', '.join(sorted(trainable))})", file=sys.stderr)  # fmt: skip
    return not unknown


def _train_and_register(
    args: argparse.Namespace,
    settings: Settings,
    splits: DatasetSplits,
    fit_settings: Any,
    version: str,
    dest: Path,
    db: Database | None,
) -> int:
    from training.fit import train

    data = [str(r) for r in splits.roots]
    config = {"version": version, "data": data, **fit_settings.to_dict()}
    run_id = db.retrying(lambda s: queries.start_training_run(s, config)) if db else None
    try:
        result = train(
            splits,
            fit_settings,
            dest=dest,
            version=version,
            run_dir=settings.detector.model_store / "runs" / version,
            cache_dir=settings.training.cache_dir,
            command=_command_line(),
            export_litert=not args.no_tflite,
            overwrite=args.overwrite,
            # The shipped default model is package data: readable by whoever installs it.
            # Everything else stays private (models trained on inbox images reveal them).
            private=dest.resolve() != bundled_model_dir().resolve(),
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except Exception as exc:
        logger.exception("training failed")
        error = f"{type(exc).__name__}: {exc}"
        if db is not None and run_id is not None:
            db.retrying(
                lambda s: queries.finish_training_run(
                    s, run_id, status=RunStatus.FAILED, error=error
                )
            )
        print(f"deepfake-detector train: failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    if db is not None and run_id is not None:
        db.retrying(lambda s: _register(s, result, splits, run_id))
    _print_result(result)
    return EXIT_OK


def _register(s: Any, result: Any, splits: DatasetSplits, run_id: int) -> None:
    meta = result.meta
    queries.register_model_version(
        s,
        version=meta.version,
        arch=meta.arch,
        path=str(result.bundle_dir),
        input_size=meta.input_size,
        threshold=meta.threshold,
        data_fingerprint=meta.data_fingerprint,
        metrics=meta.metrics,
        training=meta.training,
    )
    for split, metrics in meta.metrics.items():
        queries.add_evaluation(
            s,
            version=meta.version,
            dataset=f"{splits.root}:{split}",
            data_fingerprint=meta.data_fingerprint,
            metrics=metrics,
        )
    queries.finish_training_run(s, run_id, status="succeeded", candidate_version=meta.version)


def _command_line() -> str:
    return "deepfake-detector " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""


def _print_result(result: Any) -> None:
    from training.evaluate import format_metrics

    meta = result.meta
    print(f"\nmodel {meta.version} written to {result.bundle_dir}")
    epochs = (
        f"epochs run {meta.training['epochs_run']}, best epoch {result.best_epoch}, "
        if "epochs_run" in meta.training
        else f"{meta.training.get('feature_rows', 0)} feature rows, "
    )
    print(
        f"{epochs}training {result.train_seconds:.0f} s "
        f"({result.images_per_second:.0f} images/s), wall {meta.training['wall_seconds']:.0f} s"
    )
    print(f"temperature {meta.temperature:.3f}, threshold {meta.threshold:.3f}")
    for split, metrics in meta.metrics.items():
        print(f"\n[{split}]\n{format_metrics(metrics)}")
    unseen = meta.training["dataset"].get("unseen_sources", [])
    test = meta.metrics.get("test", {}).get("per_source", {})
    for source in unseen:
        if source in test:
            print(f"unseen by training: {source} accuracy {test[source]['accuracy']:.3f}")


def resolve_model(spec: str, settings: Settings, db: Database | None) -> Path:
    """A bundle folder from 'default', a filesystem path or a registered version."""
    if spec == "default":
        return bundled_model_dir()
    path = Path(spec).expanduser()
    if path.is_dir():
        return path
    if db is not None:
        row = db.retrying(lambda s: queries.get_model_version(s, spec))
        if row is not None:
            return Path(row.path)
    stored = settings.detector.model_store / spec
    if stored.is_dir():
        return stored
    raise FileNotFoundError(f"no model bundle, path or registered version named {spec!r}")


def run_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    """Evaluate a model on one split; print and store the metrics."""
    from detector.classifier import Classifier
    from training.evaluate import evaluate, format_invariance, format_metrics, invariance
    from training.fairness import format_rates

    try:
        splits = resolve_data(args, settings)
        samples = splits.split(args.split)
    except (DatasetError, ValueError) as exc:
        print(f"deepfake-detector evaluate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    db = None if args.no_store else Database.open(settings.storage)
    try:
        bundle = resolve_model(args.model, settings, db)
        started = time.perf_counter()
        classifier = Classifier.load(bundle)
        report = evaluate(classifier, samples, cache_dir=settings.training.cache_dir)
        if args.invariance:
            report.metrics["invariance"] = invariance(classifier, samples, args.invariance)
        report.metrics["seconds"] = time.perf_counter() - started
        if db is not None:
            _store_evaluation(db, bundle, f"{splits.root}:{args.split}", samples, report.metrics)
    except Exception as exc:
        logger.exception("evaluation failed")
        print(f"deepfake-detector evaluate: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if db is not None:
            db.close()
    if args.json:
        print(report.to_json())
    else:
        print(f"model {report.version} on {args.split} split of {splits.root}")
        print(format_metrics(report.metrics))
        if "fairness" in report.metrics:
            print(format_rates(report.metrics["fairness"]))
        if "invariance" in report.metrics:
            print(format_invariance(report.metrics["invariance"]))
    return EXIT_OK


def _store_evaluation(
    db: Database, bundle: Path, dataset: str, samples: Any, metrics: dict[str, Any]
) -> bool:
    """add_evaluation for a registered model; False (and a notice) for an unregistered one.

    An unregistered bundle (e.g. the bundled default before the daemon first registered it) is
    not registered here: a row created with the wrong status would stick, because
    register_model_version never changes an existing row.
    """
    from detector.bundle import read_meta

    meta = read_meta(bundle)
    metrics["data_fingerprint"] = fingerprint(samples)
    json.dumps(metrics)  # fail loudly here, not later in a report, if anything is not JSON

    def store(s: Any) -> bool:
        if queries.get_model_version(s, meta.version) is None:
            return False
        queries.add_evaluation(
            s,
            version=meta.version,
            dataset=dataset,
            data_fingerprint=metrics["data_fingerprint"],
            metrics=metrics,
        )
        return True

    stored = db.retrying(store)
    if not stored:
        print(f"note: model {meta.version} is not registered; metrics not stored", file=sys.stderr)
    return stored
