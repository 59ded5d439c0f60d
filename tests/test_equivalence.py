"""`rlino equivalence` on the tiny model: the paper's equality holds on the first update and degrades after."""

import json

from rlino.cli import main
from rlino.config import load_config
from rlino.equivalence import run_equivalence

TOY = ["model.name_or_path=embedded:tiny", "task.name=toy_task:make", "train.prompts_per_step=3",
       "train.group_size=4", "train.learning_rate=1e-3", "sampling.max_new_tokens=12"]


def test_first_update_equal_then_degrades():
    result = run_equivalence(load_config(None, TOY), batches=2)
    rows = {(r["pair"], r["condition"]): r for r in result["summary"]}
    first = rows[("fisft_adv vs grpo_no_kl", "first update (ratio = 1)")]
    assert first["rel_diff_max"] <= 1e-5 and first["agrees"] and first["cosine_mean"] > 0.99999
    assert rows[("fisft_pos_neg vs grpo_no_kl", "first update")]["rel_diff_mean"] > 1e-2
    after = [rows[("fisft_adv vs grpo_no_kl", f"after {k} inner update(s) on the batch")]["rel_diff_mean"]
             for k in (1, 2, 4)]
    assert after[0] > 1e-4 and after[-1] > 10 * first["rel_diff_max"]
    kl = rows[("grpo vs grpo_no_kl", "after 4 inner update(s) (KL to the starting policy)")]
    assert kl["rel_diff_mean"] > 0
    aggregation_rows = [r for r in result["summary"] if "aggregation alone" in r["condition"]]
    assert len(aggregation_rows) == 4 and all(r["rel_diff_mean"] > 1e-3 for r in aggregation_rows)


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nname_or_path = 'embedded:tiny'\n[task]\nname = 'toy_task:make'\n")
    out = tmp_path / "eq.json"
    args = ["equivalence", str(cfg), "--batches", "1", "--json", str(out)]
    for item in TOY[2:]:
        args += ["--set", item]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "| fisft_adv vs grpo_no_kl | first update (ratio = 1) |" in printed and "Equality is expected" in printed
    data = json.loads(out.read_text())
    assert data["summary"][0]["agrees"] is True
    assert main(["equivalence", str(tmp_path / "missing.toml")]) == 2
