"""LoRA through PEFT: the `[model.lora]` config table, a LoRA run that trains only the adapters, the merged export
that `from_pretrained` loads, the adapters-disabled reference, and a bit-identical resume."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlino.cli import main
from rlino.config import LORA_TARGETS, LoraConfig, config_to_dict, load_config, save_config
from rlino.errors import RlinoError
from rlino.lora import ADAPTER_DIR, ADAPTER_WEIGHTS, attach_lora
from rlino.models import load_model
from rlino.run_folder import TIMING_KEYS, complete_checkpoints
from rlino.trainer import Run, train, validate

ROOT = Path(__file__).parents[1]
SMOKE = str(ROOT / "configs" / "smoke.toml")
TOY = ["task.name=toy_task:make", "task.options={}"]  # the random tiny model gets reward variance on it
LORA = ["model.lora.rank=4", "train.learning_rate=1e-2", "eval.every=0"]


def read_metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def prompt_batch(tokenizer):
    ids = torch.tensor([tokenizer("7 says: hello", add_special_tokens=False)["input_ids"],
                        tokenizer("12 + 3 <answer>", add_special_tokens=False)["input_ids"][:13]])
    return ids


# ---- config: the nested [model.lora] table ---------------------------------------------------------------------

def test_lora_table_from_toml_and_set_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nname_or_path = "embedded:tiny"\n\n[model.lora]\nrank = 8\nalpha = 16\n'
                    'target_modules = ["q_proj", "v_proj"]\n')
    cfg = load_config(path, ["model.lora.dropout=0.05"])
    assert cfg.model.lora == LoraConfig(rank=8, alpha=16.0, dropout=0.05, target_modules=["q_proj", "v_proj"])
    assert isinstance(cfg.model.lora.alpha, float)  # int -> float, like every float key
    cfg = load_config(None, ["model.lora.rank=4", "model.lora.target_modules=all-linear"])
    assert cfg.model.lora.rank == 4 and cfg.model.lora.target_modules == "all-linear"
    assert cfg.model.lora.alpha is None and cfg.model.lora.dropout == 0.0
    # the saved config writes a [model.lora] table (unset alpha left out) and loads back the same
    save_config(cfg, tmp_path / "saved.toml")
    assert "[model.lora]" in (tmp_path / "saved.toml").read_text()
    assert load_config(tmp_path / "saved.toml") == cfg
    assert "alpha" not in config_to_dict(cfg)["model"]["lora"]


def test_lora_defaults_are_off_and_target_the_projections():
    lora = load_config(None).model.lora
    assert lora.rank == 0 and lora.alpha is None and lora.dropout == 0.0
    assert lora.target_modules == LORA_TARGETS == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                                   "down_proj"]
    assert LoraConfig().target_modules is not LoraConfig().target_modules  # no shared mutable default


@pytest.mark.parametrize("text,overrides,message", [
    ("", ["model.lora.rnak=4"], "unknown config key 'model.lora.rnak' (did you mean 'model.lora.rank'?)"),
    ("[model.lora]\nalpah = 4\n", [], "unknown config key 'model.lora.alpah' (did you mean 'model.lora.alpha'?)"),
    ("", ["model.lroa.rank=4"], "unknown config key 'model.lroa' (did you mean 'model.lora'?)"),
    ("[model.lora]\nrank = 'four'\n", [], "config key 'model.lora.rank' expects int, got str 'four'"),
    ("", ["model.lora.rank=2.5"], "config key 'model.lora.rank' expects int, got float 2.5"),
    ("", ["model.lora.target_modules=[1, 2]"], "config key 'model.lora.target_modules' expects"),
    ("", ["model.lora=4"], "'model.lora' must be a table of keys, got 4"),
])
def test_bad_lora_keys_are_clear_errors(tmp_path, text, overrides, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(RlinoError) as e:
        load_config(path, overrides)
    assert message in str(e.value)


@pytest.mark.parametrize("overrides,message", [
    (["model.lora.rank=-1"], "model.lora.rank must be >= 0"),
    (["model.lora.rank=4", "model.lora.alpha=0"], "model.lora.alpha must be > 0"),
    (["model.lora.rank=4", "model.lora.dropout=1.0"], "model.lora.dropout must be in [0, 1)"),
    (["model.lora.rank=4", "model.lora.target_modules=linear"], "must be a list of module names or 'all-linear'"),
    (["model.lora.rank=4", "model.lora.target_modules=[]"], "must name at least one module"),
])
def test_invalid_lora_settings(overrides, message):
    with pytest.raises(RlinoError) as e:
        validate(load_config(None, overrides))
    assert message in str(e.value)


def test_target_modules_that_do_not_exist_are_a_clear_error(tmp_path):
    with pytest.raises(RlinoError, match="model.lora: .*nope_proj"):
        Run(load_config(SMOKE, ["model.lora.rank=4", "model.lora.target_modules=['nope_proj']"]), tmp_path / "x")


def test_the_guide_documents_every_lora_key():
    guide = (ROOT / "docs" / "guide.md").read_text()  # the config reference moved there from the README
    for f in dataclasses.fields(LoraConfig):
        assert f"`model.lora.{f.name}`" in guide, f.name
    assert "docs/reproduce.md" in (ROOT / "README.md").read_text()


# ---- rank 0 is no LoRA ------------------------------------------------------------------------------------------

def test_rank_zero_is_no_lora(tmp_path):
    model, _ = load_model("embedded:tiny", device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert attach_lora(model, LoraConfig(rank=0)) is None
    assert model.state_dict().keys() == before.keys() and all(p.requires_grad for p in model.parameters())
    run = Run(load_config(SMOKE, ["train.steps=1", "eval.every=0"]), tmp_path / "full")
    assert run.lora is None and not any("lora" in n for n, _ in run.model.named_parameters())
    optimized = [p for group in run.optimizer.param_groups for p in group["params"]]
    assert len(optimized) == len(list(run.model.parameters()))
    assert not (run.save_checkpoint() / ADAPTER_DIR).exists()


# ---- a LoRA run -------------------------------------------------------------------------------------------------

def test_lora_run_trains_only_the_adapters_and_exports_merged_weights(tmp_path):
    run = Run(load_config(SMOKE, TOY + LORA + ["method.name=grpo", "train.steps=2"]), tmp_path / "l")
    model = run.model
    lora_names = {n for n, _ in model.named_parameters() if "lora_" in n}
    assert lora_names and {n for n, p in model.named_parameters() if p.requires_grad} == lora_names
    optimized = {id(p) for group in run.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for n, p in model.named_parameters() if n in lora_names}
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert all(torch.count_nonzero(before[n]) == 0 for n in lora_names if "lora_B" in n)  # B starts at 0

    final = run.fit()

    after = dict(model.named_parameters())
    for n in before:
        if n in lora_names:
            assert not torch.equal(before[n], after[n]), f"adapter {n} did not move"
        else:
            assert torch.equal(before[n], after[n]), f"base weight {n} changed"
    rows = read_metrics(tmp_path / "l")
    assert 0 < rows[0]["accuracy"] < 1 and rows[0]["grad_norm"] > 0
    # the reference is the base model (adapters disabled): identical to the policy at step 1, then apart
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0

    # the checkpoint: a plain HF folder of merged full weights, plus the adapter and the trainer state
    assert (final / "config.json").is_file() and (final / "model.safetensors").is_file()
    assert (final / ADAPTER_DIR / ADAPTER_WEIGHTS).is_file() and (final / "trainer_state.pt").is_file()
    adapter = load_file(final / ADAPTER_DIR / ADAPTER_WEIGHTS)
    assert adapter and all("lora_" in k for k in adapter)
    assert json.loads((final / ADAPTER_DIR / "adapter_config.json").read_text())["r"] == 4
    merged = AutoModelForCausalLM.from_pretrained(final)
    assert not any("lora" in k or "base_layer" in k for k in merged.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(final)
    base, _ = load_model("embedded:tiny", device="cpu", seed=0)

    ids = prompt_batch(tokenizer)
    model.eval()
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        exported = merged(input_ids=ids).logits
        initial = base(input_ids=ids).logits
        reference = run.ref_model(input_ids=ids).logits
    torch.testing.assert_close(exported, adapted, rtol=1e-5, atol=1e-5)  # merged == adapted, fp32 rounding apart
    assert (exported - initial).abs().max() > 1e-3  # and the export is not simply the base model
    assert torch.equal(reference, initial)  # adapters disabled = the frozen initial model, exactly


def test_cli_lora_run_exports_a_folder_from_pretrained_loads(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["train", SMOKE, "--set", "model.lora.rank=4", "--set", "train.steps=1", "--set", "eval.every=0",
                 "--out", str(out)]) == 0
    final = complete_checkpoints(out)[-1]
    assert f"final model: {final}" in capsys.readouterr().out
    assert AutoModelForCausalLM.from_pretrained(final).config.model_type == "qwen2"
    assert load_config(out / "config.toml").model.lora.rank == 4


def test_lora_resume_matches_an_uninterrupted_run(tmp_path):
    common = TOY + LORA + ["method.name=grpo", "model.lora.dropout=0.1", "train.save_every=1", "eval.every=2",
                           "train.warmup_steps=2", "method.epochs_per_batch=2"]
    whole = train(SMOKE, common + ["train.steps=4"], out=tmp_path / "whole")
    train(SMOKE, common + ["train.steps=2"], out=tmp_path / "split")
    split = train(None, ["train.steps=4"], resume=tmp_path / "split")
    for name in ("model.safetensors", f"{ADAPTER_DIR}/{ADAPTER_WEIGHTS}"):
        a, b = load_file(whole / name), load_file(split / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    a = load_file(whole / ADAPTER_DIR / ADAPTER_WEIGHTS)
    assert any(torch.count_nonzero(v) for k, v in a.items() if "lora_B" in k)  # training really moved them

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    assert strip(read_metrics(tmp_path / "whole")) == strip(read_metrics(tmp_path / "split"))
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [1, 2, 3, 4]


def test_resume_with_other_lora_settings_is_a_clear_error(tmp_path):
    Run(load_config(SMOKE, TOY + LORA), tmp_path / "r").save_checkpoint()  # a step-0 checkpoint is enough here
    with pytest.raises(RlinoError, match="written by a LoRA run .*not with model.lora.rank = 0"):
        train(None, ["train.steps=2", "model.lora.rank=0"], resume=tmp_path / "r")
    with pytest.raises(RlinoError, match="the adapter was trained with r=4, the config now asks for r=8"):
        train(None, ["train.steps=2", "model.lora.rank=8"], resume=tmp_path / "r")
    Run(load_config(SMOKE, TOY + ["eval.every=0"]), tmp_path / "full").save_checkpoint()
    with pytest.raises(RlinoError, match="has no LoRA adapter"):
        train(None, ["train.steps=2", "model.lora.rank=4"], resume=tmp_path / "full")
