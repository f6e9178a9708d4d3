"""`geosolver benchmark`: a published model on the public test sets the user has on disk, beside the
figures the field publishes for the same sets.

The sets are never downloaded (their licences forbid redistribution): Im2GPS3k and YFCC4k as an
`images/` folder and one CSV with IMG_ID, LAT, LON columns, OSV-5M as `test.csv` (id, latitude,
longitude, ...) and `images/<id>.jpg`, under $GEOSOLVER_HOME/benchmarks/<set>/. The published
figures are copied from the papers' tables, each with its source; a figure a paper does not report
stays empty rather than guessed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from geosolver_data.model_spec import Spec
from geosolver_data.store.artifact import Artifact
from geosolver_data.store.home import Home
from geosolver_model.evaluation.evaluate import evaluate, retrieval_predictor
from geosolver_model.evaluation.metrics import THRESHOLDS_KM
from geosolver_model.evaluation.test_sets import TestSet, im2gps_style, osv5m
from geosolver_model.retrieval.gallery import spec_gallery
from geosolver_model.retrieval.published import dataset_of, published_model

SETS = ("im2gps3k", "yfcc4k", "osv5m")
COLUMNS = [f"acc_{t}km" for t in THRESHOLDS_KM] + ["median_km", "geoguessr_score", "country_acc"]


@dataclass(frozen=True)
class Published:
    model: str
    source: str
    figures: dict[str, dict[str, float]]  # set -> {acc_<t>km: percent}


GEOTOKEN_TABLE = "as tabulated in GeoToken (Ghasemi et al. 2025, arXiv:2511.01082), Table I"
PUBLISHED = (
    Published("StreetCLIP zero-shot", "Haas, Alberti & Skreta 2023, arXiv:2302.00275 (zero-shot; no 1 km figure)",
              {"im2gps3k": {"acc_25km": 22.4, "acc_200km": 37.4, "acc_750km": 61.3, "acc_2500km": 80.4}}),
    Published("GeoCLIP", f"Vivanco Cepeda, Nayak & Shah, NeurIPS 2023, arXiv:2309.16020; {GEOTOKEN_TABLE}",
              {"im2gps3k": dict(zip(COLUMNS, (14.1, 34.5, 50.7, 69.7, 83.8), strict=False)),
               "yfcc4k": dict(zip(COLUMNS, (9.6, 19.3, 32.6, 55.0, 74.7), strict=False))}),
    Published("PIGEOTTO", f"Haas, Skreta, Alberti & Finn, CVPR 2024, arXiv:2307.05845; {GEOTOKEN_TABLE}",
              {"im2gps3k": dict(zip(COLUMNS, (11.3, 36.7, 53.8, 72.4, 85.3), strict=False)),
               "yfcc4k": dict(zip(COLUMNS, (10.4, 23.7, 40.6, 62.2, 77.7), strict=False))}),
    Published("GeoToken (no MLLM)", "Ghasemi, Ziashahabi, Avestimehr & Shahabi 2025, arXiv:2511.01082, Table I",
              {"im2gps3k": dict(zip(COLUMNS, (16.8, 39.6, 53.8, 70.8, 85.0), strict=False)),
               "yfcc4k": dict(zip(COLUMNS, (24.3, 35.3, 46.6, 64.2, 78.6), strict=False))}),
)


def find_sets(root: Path, wanted: tuple[str, ...], limit: int = 0) -> tuple[dict[str, TestSet], dict[str, str]]:
    """The wanted sets present under `root`, and for each absent one exactly what is missing."""
    found: dict[str, TestSet] = {}
    missing: dict[str, str] = {}
    for name in wanted:
        folder = root / name
        if name == "osv5m":  # the Hub's layout: test.csv, and images/test/NN.zip (or the photos unpacked)
            need = [p for p in (folder / "test.csv", folder / "images") if not p.exists()]
        else:
            csvs = sorted(folder.glob("*.csv"))
            need = [p for p in (folder / "images",) if not p.exists()]
            if not csvs:
                need.append(folder / "<name>.csv with IMG_ID, LAT, LON columns")
        if need:
            missing[name] = ", ".join(str(p) for p in need)
            continue
        found[name] = osv5m(folder, limit) if name == "osv5m" else im2gps_style(folder, name, limit)
    return found, missing


def run(spec: Spec, home: Home, model: Artifact, wanted: tuple[str, ...], limit: int = 0) -> dict:
    """Evaluate the model's published objective on each present set: {set: metrics}, plus what is missing."""
    tests, missing = find_sets(home.benchmarks, wanted, limit)
    results: dict[str, dict] = {}
    if tests:
        dataset_dir = dataset_of(home, model)
        predictor = retrieval_predictor(published_model(spec, home, model), spec_gallery(spec.model, dataset_dir),
                                        spec.model.top_k)
        tests = {name: test.screen(predictor.ingest) if test.screen else test for name, test in tests.items()}
        # Progress on stderr (a bar on a terminal): stdout is the table or the JSON.
        scores, _ = evaluate({"geosolver": predictor}, list(tests.values()), lambda line: print(line, file=sys.stderr))
        results = {name: scores[test.name]["geosolver"] for name, test in tests.items()}
    return {"model_version": model.version, "results": results, "missing": missing,
            # every listed photo that was not scored, by reason (absent, or what its decode said)
            "not_scored": {name: test.not_scored for name, test in tests.items() if test.not_scored},
            "published": [{"model": p.model, "source": p.source, "figures": p.figures} for p in PUBLISHED]}


def _cell(value: float | None, fraction: bool) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if fraction else f"{value:g}"


def table(report: dict) -> str:
    """One markdown table per set: this model's row, then the published rows (accuracies as fractions,
    as eval.json, the UI and the play page give them; the papers' percentages divided by 100)."""
    lines = [f"Model {report['model_version']}; accuracies are fractions of the images within the distance "
             "(0.345 = 34.5 %).", ""]
    names = sorted({*report["results"], *report["missing"]}, key=SETS.index)
    for name in names:
        lines += [f"**{name}**", "", "| model | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        ours = report["results"].get(name)
        if ours is not None and ours.get("listed") is not None:
            left = ", ".join(f"{n} {reason}" for reason, n in ours.get("not_scored", {}).items() if n)
            lines[-2:-2] = [f"{ours['n']} of {ours['listed']} listed photos scored"
                            + (f" (not scored: {left})" if left else "") + ".", ""]
        if ours is None:
            lines.append(f"| geosolver | not run: missing {report['missing'][name]} |")
        else:
            lines.append("| geosolver (this model) | " + " | ".join(
                _cell(ours.get(c), c.startswith("acc_") or c == "country_acc") for c in COLUMNS) + " |")
        for p in report["published"]:
            figures = p["figures"].get(name)
            if figures:
                lines.append(f"| {p['model']} | " + " | ".join(
                    f"{figures[c] / 100:.3f}" if c in figures else "—" for c in COLUMNS) + " |")
        lines.append("")
    lines.append("Sources of the published rows:")
    lines += [f"- {p['model']}: {p['source']}" for p in report["published"]]
    return "\n".join(lines)
