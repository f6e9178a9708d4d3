"""The `geosolver` command: the data commands plus `predict` and `index` (torch is loaded only for those)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from geosolver_data import cli as data_cli
from geosolver_data.mirror import working_home
from geosolver_data.spec import load_spec


def cmd_predict(args: argparse.Namespace) -> None:
    from geosolver_model.artifacts import IndexUnavailable
    from geosolver_model.locate import Locator, open_image

    home = working_home(args.home)
    neighbours = load_spec(args.spec).index.neighbours
    try:
        locator = Locator.open(home, args.index)
    except IndexUnavailable as exc:
        sys.exit(f"geosolver: {exc}")
    results, failed = [], 0
    for path in args.images:
        try:
            found = locator.locate(open_image(Path(path)), args.top_k, neighbours)
        except ValueError as exc:
            failed += 1
            print(f"geosolver: {exc}", file=sys.stderr)
            continue
        results.append({"image": path, **found})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{r['image']}  (index {locator.versions['index']}, model {locator.versions['model']})")
            for c in r["candidates"]:
                print(f"  {c['lat']:9.4f} {c['lon']:10.4f}  score {c['score']:.3f}  {c['place']}, {c['country']}")
    if args.map and results:
        _draw(results, Path(args.map))
    if failed:
        sys.exit(1)


def _draw(results: list[dict], out: Path) -> None:
    from geosolver_data.coverage import save, world_axes

    fig, ax = world_axes()
    for r in results:
        lat = [c["lat"] for c in r["candidates"]]
        lon = [c["lon"] for c in r["candidates"]]
        ax.scatter(lon, lat, s=[20 + 80 * c["score"] for c in r["candidates"]], label=Path(r["image"]).name)
    save(fig, ax, "geosolver predict: top candidates (size = score)", out)


def cmd_index(args: argparse.Namespace) -> None:
    from geosolver_model import artifacts

    home = working_home(args.home)
    if args.action == "list":
        for m in artifacts.list_indexes(home):
            print(f"{m['version']}  {m['kind']:5}  {m['index']['key']:28}  {m['index']['count']:>9} vectors  "
                  f"recall@10 {m['recall_at_10']}  model {m['model_version']}  {m['created_at']}")
    elif args.action == "show":
        try:
            folder = artifacts.resolve(home, args.kind, args.version)
        except artifacts.IndexUnavailable as exc:
            sys.exit(f"geosolver: {exc}")
        print((folder / "manifest.json").read_text())
    else:
        removed = artifacts.prune(home, args.keep)
        print(f"removed {len(removed)} index version(s)" + "".join(f"\n  {v}" for v in removed))


def build_parser() -> argparse.ArgumentParser:
    parser = data_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    predict = sub.add_parser("predict", help="top-k locations for images, from the latest (or a given) index")
    predict.add_argument("images", nargs="+")
    predict.add_argument("--top-k", type=int, default=5)
    predict.add_argument("--index", help="image index version (default: the latest)")
    predict.add_argument("--json", action="store_true", help="a JSON list, one object per image")
    predict.add_argument("--map", help="also draw the candidates on a world map (PNG)")
    predict.set_defaults(func=cmd_predict)
    index = sub.add_parser("index", help="list, show or prune index versions")
    index.add_argument("action", choices=["list", "show", "prune"])
    index.add_argument("--version", help="show: this version (default: the latest of --kind)")
    index.add_argument("--kind", choices=["image", "gps"], default="image")
    index.add_argument("--keep", type=int, default=2, help="prune: versions of each kind to keep (default 2)")
    index.set_defaults(func=cmd_index)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    data_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    main()
