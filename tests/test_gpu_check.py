"""benchmarks/gpu_check.py, the script a first GPU session runs, checked where no GPU is: its model has Qwen2.5-0.5B's
real shapes (the parameter count of the released model, and the shapes rlino plan's tests write down by hand), and
its dry run (`--device cpu --tiny`) goes through the same code: building the model and data, training, measuring,
planning, reporting."""

import json
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import gpu_check  # noqa: E402
from test_plan import QWEN  # noqa: E402


def test_the_model_has_qwen2_5_0_5b_shapes(tmp_path):
    assert {k: gpu_check.QWEN25_05B[k] for k in QWEN["0.5b"]} == QWEN["0.5b"]
    (tmp_path / "config.json").write_text(json.dumps(gpu_check.QWEN25_05B))
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path))
    assert sum(p.numel() for p in model.parameters()) == 494_032_768  # Qwen2.5-0.5B's model card: 0.49B


def test_the_dry_run_trains_measures_and_plans(tmp_path, capsys):
    out = tmp_path / "result.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bf16 on 2 threads of 2 shared cores: 3x slower here
    try:
        assert gpu_check.main(["--device", "cpu", "--tiny", "--steps", "1", "--fsdp-ranks", "0", "--work",
                               str(tmp_path), "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    result = json.loads(out.read_text())["single"]
    assert [s["step"] for s in result["steps"]] == [1] and result["sampling"]["generate_tokens_per_s"] > 0
    assert result["plan_gib"]["sampling"] > 0 and result["longest_prompt_tokens"] > 50
    text = capsys.readouterr().out
    assert "rlino" in text and "generate" in text and "FSDP part skipped" in text
