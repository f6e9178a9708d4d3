"""The data commands of `geosolver` (regions, partitions, spec, show, sql, validate): small commands around the
artifacts; the pipeline itself runs under Dagster. `add_commands` puts them on the one `geosolver`
parser that geosolver_model.cli builds; `main` here runs them alone, with the data-only spec."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from geosolver_data import __version__
from geosolver_data.errors import GeosolverError
from geosolver_data.recipes import recipe_names, recipe_path, recipe_summary
from geosolver_data.report import validate
from geosolver_data.report.catalog import dataset_shelves, open_catalog
from geosolver_data.spec import DatasetSpec, load_spec
from geosolver_data.store.artifact import Artifact, ArtifactMissing
from geosolver_data.store.home import DatasetLayout, Home, working_home
from geosolver_data.store.manifests import DatasetManifest


def _layout(args: argparse.Namespace) -> DatasetLayout:
    return DatasetLayout(working_home(args.home), args.load_spec(args.spec).name)


def _version(args: argparse.Namespace, intact: bool = True) -> tuple[DatasetLayout, Artifact[DatasetManifest]]:
    """The dataset version asked for (default: the latest); with `intact`, refused when a file the manifest
    lists is missing or of another size (a deleted shard must not be read as a smaller dataset)."""
    layout = _layout(args)
    version = args.version or layout.latest_version()
    if not version or not (layout.version_dir(version) / "manifest.json").exists():
        raise ArtifactMissing(f"no published version {version or ''} of dataset {layout.name!r} "
                              f"under {layout.versions} (run `make run` first)")
    if intact:
        return layout, layout.shelf.require_intact(version, deep=False)
    return layout, layout.shelf.get(version)  # a manifest that does not read is named in one line


def _lines(args: argparse.Namespace, items: list[str]) -> None:
    print(json.dumps(items) if args.json else "\n".join(items))


def cmd_regions(args: argparse.Namespace) -> None:
    _lines(args, list(args.load_spec(args.spec).region_names))


def cmd_partitions(args: argparse.Namespace) -> None:
    _lines(args, [u.name for u in args.load_spec(args.spec).ingest_units()])


def cmd_spec(args: argparse.Namespace) -> None:
    if args.example == "":
        for name in recipe_names():
            print(f"{name:18} {recipe_summary(name)}")
        return
    if args.example:
        path = recipe_path(args.example)
        args.load_spec(path)  # a packaged recipe that does not validate is a bug; say so before printing it
        print(path.read_text(), end="")
        return
    spec = args.load_spec(args.spec)
    print(f"# the spec, validated, with every default filled in (dataset {spec.name!r})")
    print(yaml.safe_dump(spec.to_dict(), sort_keys=False), end="")


def cmd_show(args: argparse.Namespace) -> None:
    layout, dataset = _version(args)
    if args.json:
        print(json.dumps(dataset.manifest, indent=2))
        return
    m = dataset.info
    print(f"dataset {m.dataset} version {dataset.version}: {m.rows:,} rows in {len(m.shards)} shards "
          f"({counts(m.splits)})")
    print(f"  path      {dataset.path}")
    print(f"  rejects   {counts(m.rejects)}")
    print(f"  dropped   {counts(m.dedup_dropped)}")
    before, after = m.balance.before, m.balance.after
    print(f"  balance   cells {before.cells} -> {after.cells}, gini {before.gini} -> {after.gini}, "
          f"entropy {before.entropy} -> {after.entropy}, top-1% share {before.top1pct_share} -> "
          f"{after.top1pct_share}")
    print(f"  catalog   {layout.catalog}  (try: geosolver sql \"SELECT country, count(*) FROM {layout.name} "
          "GROUP BY 1 ORDER BY 2 DESC\")")


def counts(found: dict[str, int]) -> str:
    """`{"train": 64, "test": 8}` as people read it: `train 64, test 8` (`none` when empty)."""
    return ", ".join(f"{k} {v:,}" for k, v in found.items()) or "none"


def readable(table: pa.Table) -> pa.Table:
    """Binary columns (the JPEG bytes of `image`) as their size, `<41,233 bytes>`, instead of the bytes."""
    for i, field in enumerate(table.schema):
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            sizes = pc.binary_length(table.column(i)).cast(pa.string())
            table = table.set_column(i, field.name, pc.binary_join_element_wise("<", sizes, " bytes>", ""))
    return table


def cmd_sql(args: argparse.Namespace) -> None:
    home = working_home(args.home)
    for shelf in dataset_shelves(home):  # what the views read: refused when damaged, never answered in part
        if (version := shelf.latest_version()) is not None:
            shelf.require_intact(version, deep=False)
    con = open_catalog(home)
    result = con.sql(args.query)
    if result is None:  # a statement without rows (SET, CREATE ...)
        return
    rows = readable(result.limit(args.max_rows).to_arrow_table())
    if args.json:
        print(json.dumps(rows.to_pylist(), default=str))
        return
    duckdb.from_arrow(rows, connection=con).show(max_rows=args.max_rows)


def cmd_validate(args: argparse.Namespace) -> None:
    _, dataset = _version(args, intact=False)  # validate names every problem itself
    spec, folder = args.load_spec(args.spec), dataset.path
    checks = {name: find(folder, spec) for name, (_, find) in validate.CHECKS.items()}
    if args.json:
        print(json.dumps({"version": dataset.version, "checks": checks}, indent=2))
    else:
        for name, problems in checks.items():
            print(f"{'ok  ' if not problems else 'FAIL'} {name}" + "".join(f"\n     {p}" for p in problems[:10]))
    if any(checks.values()):
        raise SystemExit(1)


def cmd_push(args: argparse.Namespace) -> None:
    from geosolver_data.store.hub_push import push_version

    if args.what == "dataset":
        layout, dataset = _version(args, intact=False)
        artifact: Artifact = layout.shelf.require_intact(dataset.version)  # sha256 of every file, not only sizes
        name = layout.name
    else:
        shelf = Home(working_home(args.home)).models
        artifact, name = shelf.require_intact(args.version or shelf.latest().version), ""
    pushed = push_version(artifact, args.repo, args.what, name, args.private, log=lambda line: print(line,
                                                                                                     file=sys.stderr))
    if args.json:
        print(json.dumps(dataclasses.asdict(pushed)))
        return
    said = "pushed as a new commit" if pushed.new_commit else "already on the Hub (no new commit)"
    print(f"{args.what} version {pushed.version}: {said}: {pushed.url} at {pushed.commit}")


def add_commands(sub: argparse._SubParsersAction) -> None:
    """The data commands, on a `geosolver` parser's subcommands."""
    for name, about, func in (("regions", "print the spec's region names (the ingest partitions)", cmd_regions),
                              ("partitions", "print the ingest partition keys: the regions, or region|part for "
                                             "each sub-partition when the spec sets sub_partitions", cmd_partitions)):
        listing = sub.add_parser(name, help=about)
        listing.add_argument("--json", action="store_true", help="a JSON list instead of one per line")
        listing.set_defaults(func=func)
    spec = sub.add_parser("spec", help="validate the spec and print it with every default filled in; or print "
                                       "an example spec to start a real run from")
    spec.add_argument("--example", nargs="?", const="", metavar="NAME",
                      help="print the packaged example spec NAME, comments included (no NAME: list them)")
    spec.set_defaults(func=cmd_spec)
    show = sub.add_parser("show", help="summarise a published dataset version")
    show.add_argument("--version", help="dataset version (default: the latest)")
    show.add_argument("--json", action="store_true", help="print the whole manifest")
    show.set_defaults(func=cmd_show)
    sql = sub.add_parser("sql", help="run SQL against the DuckDB catalog of published datasets")
    sql.add_argument("query", help='a DuckDB query over the views `datasets`, `<name>` (the latest version\'s shard '
                                   'rows), `<name>_rejects` and `<name>_dropped`, e.g. "SELECT country, count(*) '
                                   'FROM demo GROUP BY 1"')
    sql.add_argument("--max-rows", type=int, default=40, help="rows printed at most (default 40)")
    sql.add_argument("--json", action="store_true", help="the rows as a JSON list of objects (binary columns as "
                                                         "their size)")
    sql.set_defaults(func=cmd_sql)
    val = sub.add_parser("validate", help="check a published version's invariants; exit 1 on a problem")
    val.add_argument("--version", help="dataset version (default: the latest)")
    val.add_argument("--json", action="store_true", help="every check and its problems as JSON (exit 1 still "
                                                         "when one fails)")
    val.set_defaults(func=cmd_validate)
    push = sub.add_parser("push", help="push a dataset or model version to the Hugging Face Hub as one commit "
                                       "(HF_TOKEN with write access)")
    push.add_argument("what", choices=["dataset", "model"], help="the spec's dataset (shards, card, reports, manifest) "
                                                                 "or a model (weights, card, manifest)")
    push.add_argument("--repo", required=True, help="the Hub repo, owner/name (created when missing)")
    push.add_argument("--version", help="the version to push (default: the latest)")
    push.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps its "
                                                             "visibility)")
    push.add_argument("--json", action="store_true", help="print the result (repo, commit, new_commit) as JSON")
    push.set_defaults(func=cmd_push)


def describe(sub: argparse._SubParsersAction) -> None:
    """Each command's own `--help` opens with the line the command list shows for it."""
    for action in sub._choices_actions:
        parser = sub.choices[action.dest]
        parser.description = parser.description or (action.help[0].upper() + action.help[1:] + ".")


def build_parser(description: str | None = __doc__,
                 spec_loader: Callable[..., DatasetSpec] = load_spec) -> tuple[argparse.ArgumentParser,
                                                                               argparse._SubParsersAction]:
    """The `geosolver` parser with its global options and the data commands; the caller adds more."""
    parser = argparse.ArgumentParser(prog="geosolver", description=description)
    parser.add_argument("--version", action="version", version=f"geosolver {__version__}")
    parser.add_argument("--home", help="artifact root (default: $GEOSOLVER_HOME or .geosolver)")
    parser.add_argument("--spec", help="dataset spec YAML (default: $GEOSOLVER_SPEC or the bundled demo)")
    parser.set_defaults(load_spec=spec_loader)
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    return parser, sub


def run(args: argparse.Namespace) -> None:
    """Run the chosen command. Every error a user can act on is a GeosolverError, caught here once: its
    one line on stderr, no traceback, and its exit code (2 for a bad spec, like argparse's own usage
    errors; 1 otherwise). So is a DuckDB error, which `sql` gets from the user's own query."""
    try:
        args.func(args)
    except GeosolverError as exc:
        print(f"geosolver: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except duckdb.Error as exc:
        print(f"geosolver: {exc}", file=sys.stderr)
        sys.exit(1)
    except BrokenPipeError:  # the reader (head, a pager) stopped reading: no traceback (Python's own recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    parser, sub = build_parser()
    describe(sub)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
