"""The configuration reference is generated from the spec's models: it is current, and no key lacks a
description (a new field without a docstring fails here, not in a reader's head)."""

from pathlib import Path

from geosolver_data import spec_reference

PAGE = Path(__file__).parents[2] / "docs" / "reference" / "configuration.md"


def test_the_generated_reference_is_current() -> None:
    assert PAGE.read_text() == spec_reference.render(), (
        "docs/reference/configuration.md is stale: run `make docs-reference`")


def test_every_key_has_a_description() -> None:
    undescribed = [key for prefix, model, _ in spec_reference.sections()
                   for key, _, _, meaning in spec_reference.rows(prefix, model) if not meaning.strip()]
    assert undescribed == []


def test_types_read_as_a_spec_writer_reads_them() -> None:
    text = spec_reference.render()
    assert "| `model.device` | text |" in text and "| `workers` | integer (≥ 0, ≤ 512) | `0` |" in text
    assert "| `balance.split_resolution` | integer (≥ 0, ≤ 15) | `6` |" in text
    assert "one of `soft_haversine`, `infonce`" in text and "| `regions[].bbox` |" in text
