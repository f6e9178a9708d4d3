"""The demo's results in docs/model.md, written from a real run's artifacts instead of typed.

`make docs-demo` (after `make run`) reads the latest evaluation under GEOSOLVER_HOME, its model and
dataset manifests, and replaces what lies between the markers in docs/model.md: the versions, the
table of every comparator on the dataset's test split (the figures eval.json holds, as
metrics.distance_metrics rounds them), and the sentence that says which objective has the lower median.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from geosolver_data.store.home import Home, geosolver_home

START, END = "<!-- demo-results:start -->", "<!-- demo-results:end -->"
COLUMNS = ("acc_25km", "acc_200km", "acc_750km", "acc_2500km", "median_km", "geoguessr_score", "country_acc")
DOC = Path(__file__).parents[2] / "docs" / "model.md"


def _cell(value: float | None, column: str) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if column in ("median_km", "geoguessr_score") else f"{value:.2f}"


def demo_results(home: Home) -> str:
    """The block between the markers, from the latest evaluation and the manifests it names."""
    evaluation = home.evals.latest()
    model = home.models.get(evaluation.info.model_version)
    results = json.loads((evaluation.path / "eval.json").read_text())["dataset_test"]
    objectives = list(model.info.objectives)
    published = model.info.published_objective
    n = next(iter(results.values()))["n"]
    lines = [f"Latest demo results (`make run` on a clean home, dataset `{model.info.dataset.version}`, model "
             f"`{model.version}`, {n} test images; written by `make docs-demo` from that run's eval.json):", "",
             "| comparator | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    labels = {"finetuned": f"finetuned = {published}", "locator": "locator (what `predict` and `play` answer)"}
    for name, figures in results.items():
        if name == published:
            continue  # the same weights as `finetuned`, scored once
        label, bold = labels.get(name, name), name == "locator"
        cells = [_cell(figures.get(c), c) for c in COLUMNS]
        lines.append(f"| {'**' + label + '**' if bold else label} | "
                     + " | ".join(f"**{c}**" if bold else c for c in cells) + " |")
    trained = {o: results[o]["median_km"] for o in objectives if o in results and results[o]["median_km"] is not None}
    if len(trained) > 1:
        lower = min(trained, key=trained.__getitem__)
        lines += ["", f"Of the objectives, `{lower}` has the lower median here ("
                  + ", ".join(f"{o} {km:,.0f} km" for o, km in trained.items())
                  + f"); `{published}` is published because it is listed first in `model.objectives`."]
    return "\n".join(lines)


def rewrite(doc: Path, block: str) -> bool:
    """Replace the block between the markers; whether the file changed."""
    text = doc.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{doc} has no {START} … {END} block")
    new = pattern.sub(lambda _: f"{START}\n{block}\n{END}", text)
    if new != text:
        doc.write_text(new)
    return new != text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--home", help="the home `make run` built (default: $GEOSOLVER_HOME)")
    parser.add_argument("--doc", type=Path, default=DOC, help="the page to rewrite (default docs/model.md)")
    args = parser.parse_args()
    changed = rewrite(args.doc, demo_results(Home(geosolver_home(args.home))))
    print(f"{args.doc}: {'rewritten' if changed else 'already up to date'}")


if __name__ == "__main__":
    main()
