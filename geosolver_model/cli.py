"""The `geosolver` command: the data commands plus `predict` and `index`, on one parser. Specs are read
with every section validated; torch is loaded only by the commands that need it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from geosolver_data import cli as data_cli
from geosolver_data.ingest.progress import Progress
from geosolver_data.model_spec import load_spec
from geosolver_data.store.artifact import Artifact, Shelf
from geosolver_data.store.home import Home, working_home
from geosolver_data.store.manifests import Manifest

M = TypeVar("M", bound=Manifest)


def cmd_predict(args: argparse.Namespace) -> None:
    home = Home(working_home(args.home))
    from geosolver_model.retrieval.index import require_image_index

    require_image_index(home, args.index)  # before torch is imported (~10 s)
    from geosolver_model.geolocator import Geolocator

    geo = Geolocator.from_home(home.root, index=args.index, spec=load_spec(args.spec))
    results, failed = [], 0
    # A bar on a terminal; elsewhere (a pipe, CI) a line every 10 s on stderr. stdout keeps only the answers.
    progress = Progress("predict", lambda line: print(line, file=sys.stderr), every_s=10.0, total=len(args.images))
    for path in args.images:
        try:
            found = geo.locate(path, args.top_k)
        except ValueError as exc:
            failed += 1
            print(f"geosolver: {exc}", file=sys.stderr)
            continue
        finally:
            progress.advance()
        results.append({"image": path, **found})
    progress.close(report=False)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['image']}  (index {geo.versions['index']}, model {geo.versions['model']})")
            for c in r["candidates"]:
                print(f"  {c['lat']:9.4f} {c['lon']:10.4f}  score {c['score']:.3f}  {c['place']}, {c['country']}")
    if args.map and results:
        _draw(results, Path(args.map))
    if failed:
        sys.exit(1)


def _draw(results: list[dict], out: Path) -> None:
    from geosolver_data.report.coverage import save, world_axes

    fig, ax = world_axes()
    for r in results:
        lat = [c["lat"] for c in r["candidates"]]
        lon = [c["lon"] for c in r["candidates"]]
        ax.scatter(lon, lat, s=[20 + 80 * c["score"] for c in r["candidates"]], label=Path(r["image"]).name)
    save(fig, ax, "geosolver predict: top candidates (size = score)", out)


def cmd_index(args: argparse.Namespace) -> None:
    from geosolver_model.retrieval import index

    home = Home(working_home(args.home))
    if args.action == "list" and args.json:
        print(json.dumps([a.manifest for a in index.all_indexes(home)], indent=2))
    elif args.action == "list":
        for a in index.all_indexes(home):
            m = a.info
            print(f"{a.version}  {m.kind:5}  {m.index.key:28}  {m.index.count:>9} vectors  "
                  f"recall@10 {m.recall_at_10}  model {m.model_version}  {m.created_at}")
    elif args.action == "show":
        shelf = home.indexes(args.kind)
        found = shelf.get(args.version) if args.version else shelf.latest()
        print((found.path / "manifest.json").read_text())
    else:
        removed = index.prune(home, args.keep)
        print(f"removed {len(removed)} index version(s)" + "".join(f"\n  {v}" for v in removed))


def _picked(shelf: Shelf[M], version: str | None) -> Artifact[M]:
    return shelf.get(version) if version else shelf.latest()


def cmd_models(args: argparse.Namespace) -> None:
    home = Home(working_home(args.home))
    if args.action == "show":
        model = _picked(home.models, args.version)
        if args.json:
            print(json.dumps(model.manifest, indent=2))
            return
        m = model.info
        base = m.base + (f" at {m.base_commit[:12]}" if m.base_commit else "")
        print(f"model {model.version} ({m.created_at}): base {base}, dataset {m.dataset.name} {m.dataset.version}, "
              f"published objective {m.published_objective or '-'}")
        print(f"  path  {model.path}")
        for name, run in m.objectives.items():
            validated = [c["val_median_km"] for c in run.curve if c.get("val_median_km") is not None]
            last = f", last validation median {validated[-1]:,.1f} km" if validated else ""
            print(f"  {name:16} final loss {run.final_loss:.4f}, {run.samples_per_s:,.1f} samples/s{last}")
        return
    latest = home.models.latest_version()
    rows = [{"version": a.version, "created_at": a.info.created_at, "dataset": a.info.dataset.version,
             "base": a.info.base, "objectives": list(a.info.objectives), "latest": a.version == latest}
            for a in home.models.all()]
    _listed(args, rows, lambda r: f"{'*' if r['latest'] else ' '} {r['version']}  {r['created_at']}  dataset "
                                  f"{r['dataset']}  base {r['base']}  {', '.join(r['objectives'])}",
            f"no model under {home.models.root} yet (materialise finetuned_model)")


def _listed(args: argparse.Namespace, rows: list[dict], line: Callable[[dict], str], empty: str) -> None:
    """Rows as JSON (--json) or a line each for people; a line on stderr when there are none."""
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(line(r))
    if not rows:
        print(empty, file=sys.stderr)


def cmd_evals(args: argparse.Namespace) -> None:
    home = Home(working_home(args.home))
    if args.action == "show":
        evaluation = _picked(home.evals, args.version)
        if args.json:
            print((evaluation.path / "eval.json").read_text())
            return
        print(f"evaluation {evaluation.version} of model {evaluation.info.model_version} "
              f"({evaluation.info.created_at}); accuracies are fractions of the test images within the distance")
        print((evaluation.path / "eval.md").read_text().rstrip())
        return
    latest = home.evals.latest_version()
    rows = [{"version": a.version, "created_at": a.info.created_at, "model": a.info.model_version,
             "dataset_test_median_km": a.info.dataset_test_median_km, "test_sets": list(a.info.test_sets),
             "latest": a.version == latest} for a in home.evals.all()]
    def line(r: dict) -> str:
        median = "-" if r["dataset_test_median_km"] is None else f"{r['dataset_test_median_km']:,.1f} km"
        return (f"{'*' if r['latest'] else ' '} {r['version']}  {r['created_at']}  model {r['model']}  "
                f"dataset test median {median}  sets {', '.join(r['test_sets'])}")

    _listed(args, rows, line, f"no evaluation under {home.evals.root} yet (materialise geolocation_eval)")


def cmd_benchmark(args: argparse.Namespace) -> None:
    from geosolver_data.store.atomic import write_json, write_text
    from geosolver_model.evaluation import benchmark

    home = Home(working_home(args.home))
    model = home.models.get(args.model) if args.model else home.models.latest()
    wanted = benchmark.SETS if args.set == "all" else (args.set,)
    report = benchmark.run(load_spec(args.spec), home, model, wanted, args.limit)
    for name, what in report["missing"].items():
        print(f"geosolver: {name} is not under {home.benchmarks}: missing {what}", file=sys.stderr)
    if not report["results"]:  # nothing scored: no results file (an earlier run's stays as it was)
        sys.exit(1)
    text = benchmark.table(report)
    out = home.benchmarks / "results" / model.version
    write_json(out.with_suffix(".json"), report)
    write_text(out.with_suffix(".md"), text + "\n")
    print(json.dumps(report, indent=2) if args.json else text)
    print(f"\nwritten to {out}.md and .json", file=sys.stderr)


def cmd_play(args: argparse.Namespace) -> None:
    import asyncio
    import contextlib

    home = Home(working_home(args.home))
    from geosolver_model.retrieval.index import require_image_index

    require_image_index(home, args.index)  # before torch is imported (~10 s)
    from geosolver_model.play.library import Library
    from geosolver_model.play.server import PlaySettings, serve

    library = Library.open(home, args.index, load_spec(args.spec))
    settings = PlaySettings(args.host, args.port, args.max_upload_mb, args.top_k, args.seed)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(serve(library, settings))


def build_parser() -> argparse.ArgumentParser:
    parser, sub = data_cli.build_parser(__doc__, load_spec)
    predict = sub.add_parser("predict", help="top-k locations for images, from the latest (or a given) index")
    predict.add_argument("images", nargs="+", help="photo files (JPEG, PNG, WebP), read through the one safe loader")
    predict.add_argument("--top-k", type=int, default=5, help="distinct candidate places per photo (default 5)")
    predict.add_argument("--index", help="image index version (default: the latest)")
    predict.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    predict.add_argument("--map", help="also draw the candidates on a world map (PNG)")
    predict.set_defaults(func=cmd_predict)
    index = sub.add_parser("index", help="list, show or prune index versions")
    index.add_argument("action", choices=["list", "show", "prune"],
                       help="list every index version, show one's manifest, or prune old versions")
    index.add_argument("--version", help="show: this version (default: the latest of --kind)")
    index.add_argument("--kind", choices=["image", "gps"], default="image",
                       help="show: the image index (photo -> photos) or the GPS gallery index (default image)")
    index.add_argument("--keep", type=int, default=2, help="prune: versions of each kind to keep (default 2)")
    index.add_argument("--json", action="store_true", help="list: every version's manifest as JSON (show prints "
                                                           "the manifest, which is JSON)")
    index.set_defaults(func=cmd_index)
    for name, about, func in (("models", "fine-tuned model versions: list them, or show one's training figures",
                               cmd_models),
                              ("evals", "evaluations: list them, or show one's results per test set", cmd_evals)):
        command = sub.add_parser(name, help=about)
        command.add_argument("action", nargs="?", choices=["list", "show"], default="list",
                             help="list every version (the latest starred), or show one (default list)")
        command.add_argument("--version", help="show: this version (default: the latest)")
        command.add_argument("--json", action="store_true", help="list: the rows as JSON; show: the whole manifest "
                                                                 "(models) or eval.json (evals)")
        command.set_defaults(func=func)
    bench = sub.add_parser("benchmark", help="a published model on the public test sets under $GEOSOLVER_HOME/"
                                             "benchmarks, beside the published figures")
    bench.add_argument("--model", help="model version (default: the latest)")
    bench.add_argument("--set", choices=["im2gps3k", "yfcc4k", "osv5m", "all"], default="all",
                       help="which public set to score (default all: every one present)")
    bench.add_argument("--limit", type=int, default=0, help="at most this many images per set (0 = all)")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    bench.set_defaults(func=cmd_benchmark)
    play = sub.add_parser("play", help="a local web page: play GeoGuessr against the model, explore your own photos, "
                                       "look through its errors (read-only over the published artifacts)")
    play.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    play.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    play.add_argument("--index", help="image index version (default: the latest; the model is the one it was built "
                                      "with)")
    play.add_argument("--top-k", type=int, default=5, help="candidates shown for an uploaded photo (default 5)")
    play.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload accepted (default 10 MB)")
    play.add_argument("--seed", type=int, help="draw the rounds' photos reproducibly")
    play.set_defaults(func=cmd_play)
    data_cli.describe(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    data_cli.run(build_parser().parse_args(argv))


if __name__ == "__main__":
    main()
