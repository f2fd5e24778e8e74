"""The ``sparkhep`` command: one subcommand per job, progress and summaries for people.

The library logs; only this module (and the thin ``jobs/`` entry points that call it) writes to
the terminal.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

DEMO_CONFIG = "conf/jobs/demo.toml"
DEMO_DATA = Path("data/synthetic")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparkhep", description="ROOT files → Spark → a classifier registered in MLflow."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="run the train job of a config file")
    _add_job_options(train)
    train.add_argument(
        "--register-only",
        metavar="DIR",
        help="register the model an earlier run kept in DIR (its <output>/model) without "
        "retraining, e.g. after the MLflow server was unreachable at its end",
    )

    convert = commands.add_parser(
        "convert", help="convert the ROOT samples of a config file to Parquet"
    )
    _add_job_options(convert)
    convert.add_argument("--branches", help="comma-separated branch names or glob patterns")
    convert.add_argument("--exclude", help="comma-separated glob patterns of branches to skip")
    convert.add_argument("--cut", help="keep entries where this expression is true")
    convert.add_argument(
        "--alias",
        dest="aliases",
        action="append",
        default=[],
        metavar="NAME=EXPRESSION",
        help="add a column computed from branches, e.g. HT='sum(Jet_pt)' (repeatable)",
    )
    convert.add_argument(
        "--entry-step", help="entries per Spark partition, or a size such as '128 MB'"
    )
    convert.add_argument("--recursive", action="store_true", help="list directories recursively")
    convert.add_argument(
        "--on-bad-file",
        choices=["fail", "skip"],
        default="fail",
        help="skip unreadable files (listed in the manifest) instead of failing",
    )
    convert.add_argument(
        "--uint64-as-decimal", action="store_true", help="read uint64 branches as decimal(20,0)"
    )
    convert.add_argument("--partition-by", help="partition the Parquet datasets by this column")
    convert.add_argument(
        "--force", action="store_true", help="convert even when the inputs are unchanged"
    )

    generate = commands.add_parser(
        "generate", help="write SYNTHETIC NanoAOD-like ROOT files (numpy, seeded)"
    )
    generate.add_argument("--out", type=Path, required=True, help="output directory")
    generate.add_argument("--events", type=int, default=20_000, help="events per kind")
    generate.add_argument(
        "--kind", choices=["signal", "background", "both"], default="both", help="which sample"
    )
    generate.add_argument("--files", type=int, default=2, help="files per kind")
    generate.add_argument("--seed", type=int, default=1)

    promote = commands.add_parser(
        "promote", help="point an alias (models:/<name>@<alias>) at a registered version"
    )
    promote.add_argument("name", help="registered model name")
    promote.add_argument("version", help="the version to promote")
    promote.add_argument("--alias", default="champion", help="the alias to move (champion)")

    serve = commands.add_parser(
        "serve",
        help="serve models over HTTP (MLflow scoring protocol, Open Inference Protocol V2); "
        "no Spark, no JVM",
    )
    serve.add_argument(
        "models",
        nargs="+",
        metavar="MODEL_URI",
        help="models:/<name>@<alias>, models:/<name>/<version>, runs:/<id>/<path> or a "
        "directory, each optionally NAME=URI (the name in URLs)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="TCP port (8080)")
    serve.add_argument("--token-file", help="file holding a bearer token that requests must carry")
    serve.add_argument(
        "--poll-interval",
        type=float,
        default=30.0,
        help="seconds between checks whether an alias moved (0: never; 30)",
    )
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        default=64 * 1024 * 1024,
        help="larger request bodies are refused with 413 (64 MiB)",
    )
    serve.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes, each loads the models"
    )

    predict = commands.add_parser(
        "predict",
        help="score a dataset with a registered model in Spark; event id + score as Parquet",
    )
    predict.add_argument(
        "model", metavar="MODEL_URI", help="models:/<name>@<alias>, models:/<name>/<v>, runs:/…"
    )
    predict.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="Parquet datasets (raw events, e.g. <output>/samples/<sample>, or a feature table) "
        "or ROOT files (globs allowed)",
    )
    predict.add_argument("--output", required=True, help="the Parquet dataset to write")
    predict.add_argument(
        "--format",
        dest="input_format",
        choices=["auto", "parquet", "root"],
        default="auto",
        help="input format (auto: ROOT when every input ends in .root)",
    )
    predict.add_argument("--tree", default="Events", help="TTree of ROOT inputs (Events)")
    predict.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting, e.g. --spark-conf spark.master=local[2] (repeatable)",
    )

    demo = commands.add_parser(
        "demo", help="generate a SYNTHETIC sample and run the train job on it (no real data)"
    )
    demo.add_argument("--events", type=int, default=20_000, help="synthetic events per kind")
    _add_job_options(demo, config_default=DEMO_CONFIG)
    return parser


def _add_job_options(parser: argparse.ArgumentParser, *, config_default: str | None = None) -> None:
    parser.add_argument(
        "--config",
        required=config_default is None,
        default=config_default,
        help="job config (TOML)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set model.params.maxDepth=6 (repeatable)",
    )
    parser.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Spark setting, e.g. --spark-conf spark.master=local[2] (repeatable)",
    )


def _spark_overrides(pairs: Sequence[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--spark-conf {pair!r}: expected KEY=VALUE")
        overrides[key] = value
    return overrides


def _train(args: argparse.Namespace) -> int:
    from sparkhep.config import load_config
    from sparkhep.registry.tracking import require_tracking_server, tracking_uri
    from sparkhep.session import build_session
    from sparkhep.train.job import register_saved_model, run_train_job

    config = load_config(args.config, overrides=args.overrides)
    # Before the session: on a cluster, starting it alone takes tens of seconds.
    require_tracking_server(tracking_uri(), when="at the start of the train job; nothing was run")
    register_only = getattr(args, "register_only", None)
    spark = build_session(
        app_name=f"sparkhep-train-{config.name}", overrides=_spark_overrides(args.spark_conf)
    )
    try:
        if register_only:
            model_dir = (
                register_only if "://" in register_only else str(Path(register_only).resolve())
            )
            report = register_saved_model(spark, config, model_dir)
        else:
            report = run_train_job(spark, config)
    finally:
        spark.stop()
    _print_summary(
        f"sparkhep train — {config.name} ({config.source})",
        {
            "events per sample": _pairs(report.events),
            "events per split": _pairs(dict(sorted(report.split_events.items()))),
            f"features ({len(report.features)})": ", ".join(report.features),
            "dropped (constant)": ", ".join(report.dropped_features) or "none",
            "engine": report.engine
            + (f", k-fold {report.kfold}" if report.kfold else "")
            + (f", best of {report.trials}: {report.best_params}" if report.trials else ""),
            "test_auc (weighted)": f"{report.test_auc:.4f}",
            "time per step": ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items()),
            "model": (
                f"models:/{report.registered_model}/{report.model_version}"
                if report.model_version
                else "k-fold models logged under folds/ (not registered)"
            )
            + f" (run {report.run_id}, tracking {report.tracking_uri})",
            "alias": (
                f"models:/{report.registered_model}@{report.alias} → v{report.model_version}"
                if report.alias
                else "not moved"
            )
            + (f" ({report.promotion})" if report.promotion else ""),
        },
    )
    _print_metrics(report.metrics, report.metrics_path)
    return 0


def _print_metrics(metrics: dict, path: str) -> None:
    print(f"\n  {'metric':<22} {'value':>10} {'± bootstrap':>12} {'N_eff (Kish)':>13}")
    for name, metric in metrics.items():
        error = "" if metric.error != metric.error else f"{metric.error:.4g}"
        print(f"  {name:<22} {metric.value:>10.4g} {error:>12} {metric.n_eff:>13.1f}")
    print(f"  (also in {path})")


def _convert(args: argparse.Namespace) -> int:
    from sparkhep.config import load_config
    from sparkhep.convert import ConversionError, ConvertOptions, ConvertProgress, convert_job
    from sparkhep.session import build_session

    def patterns(text: str | None) -> tuple[str, ...] | None:
        return None if text is None else tuple(p.strip() for p in text.split(",") if p.strip())

    aliases = []
    for pair in args.aliases:
        name, sep, expression = pair.partition("=")
        if not sep:
            raise SystemExit(f"--alias {pair!r}: expected NAME=EXPRESSION")
        aliases.append((name.strip(), expression.strip()))
    options = ConvertOptions(
        branches=patterns(args.branches),
        exclude=patterns(args.exclude) or (),
        cut=args.cut,
        aliases=tuple(aliases),
        entry_step=args.entry_step,
        recursive=args.recursive,
        on_bad_file=args.on_bad_file,
        uint64_as_decimal=args.uint64_as_decimal,
        partition_by=args.partition_by,
        force=args.force,
    )

    def progress(update: ConvertProgress) -> None:
        print(
            f"  {update.sample}: {update.files_done}/{update.files_total} files, "
            f"{update.events_done:,} events, {update.events_per_second:,.0f} events/s",
            file=sys.stderr,
            flush=True,
        )

    config = load_config(args.config, overrides=args.overrides)
    spark = build_session(
        app_name=f"sparkhep-convert-{config.name}", overrides=_spark_overrides(args.spark_conf)
    )
    try:
        results = convert_job(spark, config, options=options, progress=progress)
    except ConversionError as err:
        print(f"sparkhep convert: error: {err} (nothing was written)", file=sys.stderr)
        return 1
    finally:
        spark.stop()
    header = ("sample", "status", "files", "skipped", "entries", "cut", "rows", "s", "events/s")
    table = [header]
    for result in results:
        table.append(
            (
                result.name,
                "unchanged" if result.reused else "converted",
                str(len(result.inputs)),
                str(len(result.skipped)),
                f"{result.entries:,}",
                f"{sum(f.entries_cut for f in result.inputs):,}",
                f"{result.rows:,}",
                f"{result.seconds:.1f}",
                f"{result.events_per_second:,.0f}",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print(f"\nsparkhep convert — {config.name} ({config.source})")
    for row in table:
        print("  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    for result in results:
        print(f"  {result.name} → {result.output}")
        for skipped in result.skipped:
            print(f"    skipped {skipped.path}: {skipped.reason}")
    return 0


def _pairs(values: dict[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


def _print_summary(title: str, rows: dict[str, str]) -> None:
    width = max(map(len, rows))
    print(f"\n{title}")
    for label, value in rows.items():
        print(f"  {label:<{width}} : {value}")


def _generate(args: argparse.Namespace) -> int:
    from sparkhep.generate import write_sample

    kinds = ["signal", "background"] if args.kind == "both" else [args.kind]
    for offset, kind in enumerate(kinds):
        paths = write_sample(
            args.out, kind=kind, n_events=args.events, n_files=args.files, seed=args.seed + offset
        )
        print(f"SYNTHETIC {kind}: {args.events} events in {len(paths)} files under {args.out}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from sparkhep.registry.promotion import promote
    from sparkhep.registry.tracking import configure_tracking, require_tracking_server

    uri = configure_tracking()
    require_tracking_server(uri, when=f"to promote {args.name} version {args.version}")
    version = promote(args.name, args.version, alias=args.alias)
    print(f"models:/{args.name}@{args.alias} → version {version.version} (tracking {uri})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from sparkhep.serve import ModelLoadError, serve

    print(
        f"sparkhep serve: {', '.join(args.models)} on http://{args.host}:{args.port}"
        + (" (bearer token required)" if args.token_file else ""),
        file=sys.stderr,
    )
    try:
        serve(
            args.models,
            host=args.host,
            port=args.port,
            token_file=args.token_file,
            poll_interval=args.poll_interval,
            max_body_bytes=args.max_body_bytes,
            workers=args.workers,
        )
    except ModelLoadError as err:
        print(f"sparkhep serve: error: {err}", file=sys.stderr)
        return 2
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sparkhep.predict import run_predict_job
    from sparkhep.registry.tracking import require_tracking_server, tracking_uri
    from sparkhep.session import build_session

    if args.model.startswith(("models:/", "runs:/")):
        require_tracking_server(tracking_uri(), when=f"to load {args.model}; nothing was run")
    spark = build_session(app_name="sparkhep-predict", overrides=_spark_overrides(args.spark_conf))
    try:
        report = run_predict_job(
            spark,
            model_uri=args.model,
            inputs=args.inputs,
            output=args.output,
            input_format=args.input_format,
            tree=args.tree,
        )
    finally:
        spark.stop()
    _print_summary(
        f"sparkhep predict — {args.model}",
        {
            "input": f"{', '.join(args.inputs)} ({report.input_form} form)",
            "events scored": f"{report.rows:,}",
            "output": f"{report.output} (columns {', '.join(report.columns)})",
            "time": f"{report.seconds:.1f} s",
        },
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    print(f"Generating SYNTHETIC NanoAOD-like events into {DEMO_DATA}/ (not real data) …")
    _generate(argparse.Namespace(out=DEMO_DATA, events=args.events, kind="both", files=2, seed=1))
    return _train(args)


COMMANDS = {
    "convert": _convert,
    "train": _train,
    "generate": _generate,
    "promote": _promote,
    "serve": _serve,
    "predict": _predict,
    "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sparkhep`` console script and of ``jobs/*.py``."""
    from sparkhep.config import ConfigError
    from sparkhep.registry.tracking import TrackingServerUnreachable

    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("py4j", "mlflow", "alembic", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, FileNotFoundError, KeyError, ValueError, TrackingServerUnreachable) as err:
        print(f"sparkhep {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
