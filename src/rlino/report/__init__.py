"""The report of a compare folder: results.json, report.md, report.html and plots/*.png, read back from the files.

A compare folder holds `compare.toml` (the compare config as run), `base/eval.json` (the base model's held-out
evaluation) and `runs/<arm>/` (one `rlino train` run folder per arm). `build_report` reads only those files, so a
report can be rendered again at any time, also for a compare that was interrupted: an arm with no evaluation yet is
shown with "—" and noted, an arm whose folder does not exist yet is listed as not started.

Accuracies in results.json are fractions (0.372), as in the run files; differences between accuracies are in
percentage points; lengths are in tokens; length slopes are tokens per 100 training steps.

The package, one concern per module:
- `read`: the compare folder into `Compare` / `ArmRun`, through `rlino.run_folder` (the arms listed in compare.toml
  parsed by `rlino.arms.parse_arms`; without compare.toml, the sorted subfolders of runs/);
- `results`: the numbers of results.json (accuracy intervals, length slopes, measured token weights);
- `sentences`: the summary's sentences read off those numbers;
- `length`: the length study (per-token weight vs length, analytic and measured; the verdict per method);
- `plots`: plots/*.png (accuracy, length, reward vs step; per-token weight vs length);
- `document`: the report's content as blocks; `render`: those blocks as markdown and as HTML;
- `values`: finite numbers and their formatting, shared by the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlino.files import write_json
from rlino.report.document import report_blocks
from rlino.report.plots import (
    colors_for,
    plot_accuracy,
    plot_lengths,
    plot_position_weights,
    plot_reward,
    plot_token_weights,
)
from rlino.report.read import load_compare
from rlino.report.render import to_html, to_markdown
from rlino.report.results import compute_results

__all__ = ["build_report"]


def build_report(compare_dir: str | Path) -> dict[str, Any]:
    """Read a compare folder, write results.json, report.md, report.html and plots/*.png into it; return the results."""
    compare = load_compare(compare_dir)
    folder = compare.folder
    results = compute_results(compare)
    colors = colors_for([arm.name for arm in compare.arms])
    started = [arm for arm in compare.arms if arm.started]
    plot_accuracy(folder / "plots" / "accuracy.png", results, colors)
    plot_lengths(folder / "plots" / "length.png", started, colors)
    plot_reward(folder / "plots" / "reward.png", started, colors)
    plot_token_weights(folder / "plots" / "token_weights.png", [arm.pooled() for arm in started])
    plot_position_weights(folder / "plots" / "position_weights.png", results, colors)
    blocks = report_blocks(compare, results)
    write_json(folder / "results.json", results, indent=2)
    (folder / "report.md").write_text(to_markdown(blocks))
    (folder / "report.html").write_text(to_html(blocks, folder))
    return results
