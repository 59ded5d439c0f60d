"""Every configs/paper/ file validates: it loads and resolves (task items and model load) with the model and data
swapped for local test copies, carries the paper's settings, and its train and compare forms agree. Nothing trains."""

import json
import random
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from rlino.compare import load_compare_config
from rlino.config import load_config
from rlino.embedded import load_embedded
from rlino.models import load_model, save_model
from rlino.objectives import resolve_method
from rlino.tasks import load_task
from rlino.trainer import validate

ROOT = Path(__file__).parents[1]
PAPER = ROOT / "configs" / "paper"
FILES = sorted(PAPER.glob("*.toml"))
ARMS = ["grpo", "grpo_no_kl", "fisft_pos_neg", "fisft_pos", "fisft_neg"]
STEMS = [f"qwen2.5-{size}-{task}" for size in ("0.5b", "1.5b") for task in ("gsm8k", "countdown")]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A saved tiny model folder and small local data files in the formats the paper configs read."""
    root = tmp_path_factory.mktemp("paper")
    model = root / "Qwen2.5-local"
    save_model(*load_embedded("embedded:tiny", seed=0), model)
    rng = random.Random(0)

    def gsm8k_rows(n, offset):
        return [{"question": f"Sam has {i} apples and buys {i + 1} more. How many apples does Sam have?",
                 "answer": f"{i} + {i + 1} = {2 * i + 1}\n#### {2 * i + 1}"} for i in range(offset, offset + n)]

    def write_jsonl(path, rows):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    gsm8k_train = write_jsonl(root / "gsm8k-train.jsonl", gsm8k_rows(16, 0))
    gsm8k_test = write_jsonl(root / "gsm8k-test.jsonl", gsm8k_rows(6, 100))
    # more rows than the configs' test_size (1,024), so the held-out split and the train split are both non-empty
    countdown = write_jsonl(root / "countdown.jsonl", [
        {"nums": [rng.randint(1, 99) for _ in range(rng.choice([3, 4]))], "target": rng.randint(1, 100)}
        for _ in range(1100)])
    return SimpleNamespace(model=model, gsm8k_train=gsm8k_train, gsm8k_test=gsm8k_test, countdown=countdown)


def local_overrides(path: Path, local) -> list[str]:
    task = tomllib.loads(path.read_text())["task"]["name"]
    sets = [f"model.name_or_path='{local.model}'"]
    if task == "gsm8k":
        sets += [f"task.options.train_file='{local.gsm8k_train}'", f"task.options.test_file='{local.gsm8k_test}'"]
    else:
        assert task == "countdown"
        sets += [f"task.options.source='{local.countdown}'"]
    return sets


def is_compare(path: Path) -> bool:
    return "compare" in tomllib.loads(path.read_text())


def load_any(path: Path, overrides: list[str]):
    """(shared config, [(method, config) per arm]) for a compare config; (config, [(method, config)]) for a train
    one."""
    if is_compare(path):
        _, shared, arms = load_compare_config(path, overrides)
        return shared, [(arm.method, arm.config(shared)) for arm in arms]
    cfg = load_config(path, overrides)
    validate(cfg)
    return cfg, [(cfg.method.name, cfg)]


def test_the_set_is_both_models_on_both_benchmarks():
    names = sorted(p.name for p in FILES)
    assert names == sorted([f"{s}.toml" for s in STEMS] + [f"{s}-train.toml" for s in STEMS])
    for stem in STEMS:
        assert is_compare(PAPER / f"{stem}.toml") and not is_compare(PAPER / f"{stem}-train.toml")


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_paper_config_resolves_with_local_model_and_data(path, local):
    shared, arms = load_any(path, local_overrides(path, local))
    if is_compare(path):
        assert [method for method, _ in arms] == ARMS
    else:
        assert [method for method, _ in arms] == ["grpo"]
    for method, c in arms:
        # the paper's settings, identical for every method
        assert (c.train.prompts_per_step, c.train.group_size) == (64, 5)
        assert (c.sampling.temperature, c.train.learning_rate, c.sampling.max_new_tokens) == (0.6, 1e-6, 1024)
        assert c.eval.max_new_tokens in (0, 1024)
        assert c.model.name_or_path == str(local.model) and c.model.lora.rank == 0
        m = resolve_method(c.method)
        assert m.beta == (0.04 if method == "grpo" else 0.0)
        assert c.method.std == "population"
    # it resolves: the task builds from its options and serves both splits; the model folder loads
    task = load_task(shared.task.name, **shared.task.options)
    train, test = task.items("train"), task.items("test")
    assert train and test and train[0].prompt != test[0].prompt
    if shared.task.name == "countdown":
        assert "<answer>" in train[0].prompt and str(train[0].target) in train[0].prompt
        assert task.options.format_reward == 0.0  # binary reward
    else:
        assert train[0].question in train[0].prompt
    model, tokenizer = load_model(shared.model.name_or_path, dtype=shared.model.dtype, device="cpu")
    assert model.config.model_type == "qwen2" and tokenizer.eos_token


@pytest.mark.parametrize("stem", STEMS)
def test_as_written_they_name_the_paper_models_and_data(stem):
    size, task = re.fullmatch(r"qwen2\.5-(\d\.\d)b-(\w+)", stem).groups()
    for path in (PAPER / f"{stem}.toml", PAPER / f"{stem}-train.toml"):
        shared, _ = load_any(path, [])  # valid as written too (nothing is loaded by validation)
        assert shared.model.name_or_path == f"Qwen/Qwen2.5-{size}B"
        assert shared.model.dtype == "float32" and shared.model.device == "auto"
        assert shared.model.autocast == "auto"  # bf16 autocast on GPU, fp32 parameters
        assert shared.task.name == task
        options = shared.task.options
        if task == "gsm8k":
            # the whole hub test split (test_size 0 = all of its 1,319 problems), all of it evaluated
            assert options["source"] == "openai/gsm8k" and options["test_size"] == 0 and options["train_size"] == 0
            assert shared.eval.num_items == 1319
        else:
            assert options["source"] == "Jiayi-Pan/Countdown-Tasks-3to4" and options["format_reward"] == 0.0
            assert options["test_size"] == shared.eval.num_items == 1024


@pytest.mark.parametrize("stem", STEMS)
def test_train_config_is_each_arm_of_its_compare_config(stem):
    """Arms trained one by one with the -train file are the runs `rlino compare` would have made."""
    _, arms = load_any(PAPER / f"{stem}.toml", [])
    for method, arm_cfg in arms:
        assert load_config(PAPER / f"{stem}-train.toml", [f"method.name={method}"]) == arm_cfg, method


def test_reproduce_doc_covers_every_paper_config():
    doc = (ROOT / "docs" / "reproduce.md").read_text()
    for path in FILES:
        assert f"configs/paper/{path.name}" in doc, path.name
    assert "## Measured on a GPU" in doc
    for flag in ("model.name_or_path=", "task.options.train_file=", "task.options.test_file=",
                 "task.options.source="):
        assert flag in doc, flag
