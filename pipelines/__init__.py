"""Geosolver's Dagster layer: assets, checks, partitions and resources that call the libraries."""
