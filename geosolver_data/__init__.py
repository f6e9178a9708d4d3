"""Geosolver's data library: sources, image handling, dedup, geo, balance, shards, catalog.

A plain library with no Dagster import, so it can run in a notebook, a script or a test.
"""
