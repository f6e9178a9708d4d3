"""Geosolver's data library: sources, image handling, dedup, geo, balance, shards, catalog.

A plain library with no Dagster import, so it can run in a notebook, a script or a test.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("geosolver")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
