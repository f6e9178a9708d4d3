"""A DuckDB catalog: views over the published shards and reports, for ad-hoc SQL.

The catalog file is rebuilt from what is on disk after every publish (temp file, then rename),
so it never points at a half-written version. Its views name files relative to the home, so a home
that is copied or synced elsewhere queries its own files: DuckDB resolves them against the working
directory, or the `file_search_path` that `open_catalog` (and `geosolver sql`) sets to the home.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from geosolver_data.db import connect
from geosolver_data.store.artifact import ArtifactMissing, Shelf
from geosolver_data.store.atomic import atomic_path
from geosolver_data.store.manifests import DatasetManifest


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def dataset_shelves(home: Path) -> list[Shelf[DatasetManifest]]:
    """One shelf per dataset under the home."""
    return [Shelf("dataset", folder, produced_by="dataset_shards")
            for folder in sorted((home / "datasets").glob("*")) if folder.is_dir()]


def _version_rows(home: Path) -> list[tuple]:
    rows = []
    for shelf in dataset_shelves(home):
        for version in shelf.all():  # versions whose manifest reads
            m = version.info
            rows.append((m.dataset, m.version, m.rows, m.created_at, version.path.relative_to(home).as_posix()))
    return rows


def _dataset_views(con: duckdb.DuckDBPyConnection, name: str, folder: Path) -> None:
    """`folder` relative to the home."""
    reports = folder / "reports"
    con.execute(f"CREATE VIEW {_q(name)} AS SELECT * FROM read_parquet({_lit(folder / 'shards' / '*.parquet')})")
    for suffix, file in (("_rejects", "rejects.parquet"), ("_dropped", "dedup_dropped.parquet")):
        con.execute(f"CREATE VIEW {_q(name + suffix)} AS SELECT * FROM read_parquet({_lit(reports / file)})")


def rebuild_catalog(home: Path) -> Path:
    """Views: `datasets` (every published version), and per dataset its latest version's
    `<name>` (shard rows), `<name>_rejects` and `<name>_dropped`."""
    target = home / "catalog.duckdb"
    with atomic_path(target) as tmp:
        tmp.unlink()  # DuckDB creates the file itself
        con = connect(tmp)
        con.execute(f"SET file_search_path = {_lit(home.absolute())}")  # views bind relative paths now
        con.execute("CREATE TABLE datasets (dataset VARCHAR, version VARCHAR, rows BIGINT, "
                    "created_at VARCHAR, path VARCHAR)")
        rows = _version_rows(home)
        if rows:
            con.executemany("INSERT INTO datasets VALUES (?, ?, ?, ?, ?)", rows)
        for shelf in dataset_shelves(home):
            try:
                version = shelf.latest_version()
            except ArtifactMissing:  # a pointer that names no version folder: no views for it
                continue
            if version is not None and shelf.exists(version):
                _dataset_views(con, shelf.root.name, shelf.path(version).relative_to(home))
        con.close()
    return target


def open_catalog(home: Path) -> duckdb.DuckDBPyConnection:
    """The home's catalog, read-only, with its relative paths resolved against the home."""
    catalog = home / "catalog.duckdb"
    if not catalog.exists():
        rebuild_catalog(home)
    con = connect(catalog, read_only=True)
    con.execute(f"SET file_search_path = {_lit(home.absolute())}")
    return con
