"""Geosolver's model library: StreetCLIP vision tower, location encoder, training, retrieval.

A plain library with no Dagster import.
"""
