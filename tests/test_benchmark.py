"""The benchmark (benchmarks/bench_steps.py) compares like with like, without timing anything.

rlino and TRL are configured to sample the same number of responses and tokens per step and to take one optimizer
step on them; the benchmark model never ends a response early, so "up to 128 new tokens" is exactly 128 on both
sides. The TRL half of the configuration check runs only where TRL is installed (the `bench` extra).

Also here: the sampler's in-place KV cache, the speed-up this benchmark led to, changes no sample (bitwise).
"""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_steps as bench  # noqa: E402

TRAINERS = [c for c in bench.CONTENDERS if c.side in ("rlino", "trl")]


def test_every_contender_does_the_same_work_per_step():
    works = {c.name: bench.work_per_step(c) for c in bench.CONTENDERS}
    expected = dict(prompts=4, responses=32, max_new_tokens=128, temperature=1.0, top_p=1.0)
    for name, work in works.items():
        assert {k: work[k] for k in expected} == expected, name
    for c in TRAINERS:
        assert works[c.name]["optimizer_steps"] == 1, c.name  # one update per sampled batch, on both sides
    assert {c.side for c in TRAINERS} == {"rlino", "trl"}
    for method in ("grpo", "fisft_pos_neg", "fisft_pos"):
        assert any(c.side == "rlino" and c.method == method for c in TRAINERS)
    # the TRL comparisons are made at the same beta as rlino's
    assert {c.beta for c in TRAINERS if c.side == "trl"} == {c.beta for c in TRAINERS if c.method == "grpo"
                                                            and c.side == "rlino"} == {0.0, 0.04}
    for num, den, _ in bench.RATIOS + bench.SAMPLE_RATIOS:
        assert num in bench.BY_NAME and den in bench.BY_NAME
        # like with like: the same precision on both sides of every ratio
        assert bench.BY_NAME[num].precision == bench.BY_NAME[den].precision, (num, den)
    for _num, den, _ in bench.SAMPLE_RATIOS:
        assert bench.BY_NAME[den].side == "generate"


def test_rlino_configuration_loads_and_matches_the_contender(tmp_path):
    from rlino.config import load_config
    from rlino.tasks import load_task
    from rlino.trainer import validate

    for c in (c for c in TRAINERS if c.side == "rlino"):
        cfg = load_config(None, bench.rlino_overrides(c, tmp_path / "model"))
        method = validate(cfg)
        assert (method.name, method.beta) == (c.method, c.beta)
        assert method.epochs_per_batch == 1 and cfg.model.dtype == "float32"
        assert cfg.model.autocast == ("bf16" if c.precision == "bf16" else "off")
        assert cfg.sampling.autocast == "model" and cfg.sampling.engine == c.engine
        assert cfg.sampling.batch_size >= cfg.train.prompts_per_step * cfg.train.group_size  # one generation batch
        assert cfg.train.micro_batch_size == bench.MICRO_BATCH
    task = load_task("bench_steps:make_task")
    items = task.items("train")
    assert len({len(it.prompt.encode()) for it in items}) == 1  # equal prompt lengths: no prompt padding anywhere
    assert {task.score("abc", items[0]), task.score("\u00e9t\u00e9", items[0])} == {0.0, 1.0}


def test_trl_configuration_builds_one_generation_of_32_per_optimizer_step(tmp_path):
    trl = pytest.importorskip("trl")
    for c in (c for c in TRAINERS if c.side == "trl"):
        args = trl.GRPOConfig(**bench.trl_config_kwargs(c, tmp_path / "trl"))
        assert args.generation_batch_size == 32 and args.num_generations == 8
        assert args.generation_batch_size // args.num_generations == bench.PROMPTS_PER_STEP
        # one generation feeds exactly one optimizer step: no reuse of a batch, no old log-probs to compute
        assert args.steps_per_generation == args.gradient_accumulation_steps and args.num_iterations == 1
        assert args.per_device_train_batch_size == bench.MICRO_BATCH
        assert args.max_completion_length == 128 and args.temperature == 1.0 and args.top_p == 1.0
        assert (args.beta, args.loss_type) == (c.beta, "grpo") and not args.mask_truncated_completions
        assert args.bf16 == (c.precision == "bf16")
        assert not (args.fp16 or args.gradient_checkpointing or args.use_vllm)
        assert args.use_cpu and args.learning_rate == bench.LEARNING_RATE and args.max_grad_norm == 1.0


def test_the_benchmark_model_samples_every_token_on_both_samplers(tmp_path):
    """The end-of-sequence token is never drawn (its logit sits ~100 below the others), so rlino's sampler and
    model.generate both sample every one of the 128 tokens of every response."""
    from rlino.models import load_model
    from rlino.rollout import sample

    folder = bench.build_model("1m", tmp_path / "model-1m")
    model, tok = load_model(str(folder), device="cpu")
    assert 0.9e6 < sum(p.numel() for p in model.parameters()) < 1.1e6
    prompts = bench.step_prompts(1)
    assert len(prompts) == 32 and len(set(prompts)) == 4
    with torch.no_grad():
        enc = tok(prompts[::8], return_tensors="pt", add_special_tokens=False)
        logits = model(**enc).logits
    others = torch.cat([logits[..., : tok.eos_token_id], logits[..., tok.eos_token_id + 1:]], dim=-1)
    assert float((others.min(dim=-1).values - logits[..., tok.eos_token_id]).min()) > 50
    rows = prompts[::4]  # two responses per prompt keep the test quick; the full 32 x 128 runs in the benchmark
    rollout = sample(model, tok, rows, list(range(len(rows))), seed=0, step=1, temperature=1.0, top_p=1.0,
                     max_new_tokens=bench.MAX_NEW_TOKENS)
    assert rollout.completion_mask.shape == (8, 128) and int(rollout.completion_mask.sum()) == 8 * 128
    assert len(set(rollout.texts)) == 8  # still a random model: every response differs
    torch.manual_seed(0)
    out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=128,
                         pad_token_id=tok.eos_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    assert new.shape == (4, 128) and not bool((new == tok.eos_token_id).any())


def test_the_30m_shape_is_about_30m_parameters():
    from transformers import Qwen2Config

    from rlino.embedded.byte_qwen2 import byte_tokenizer

    config = Qwen2Config(vocab_size=len(byte_tokenizer()), tie_word_embeddings=True, **bench.SIZES["30m"])
    h, i, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * h // config.num_attention_heads
    per_layer = 2 * h * h + 2 * h * kv + (h + 2 * kv) + 3 * h * i + 2 * h
    assert 30e6 < n * per_layer + config.vocab_size * h + h < 33e6


@pytest.mark.parametrize("batch_size", [12, 5])
def test_in_place_kv_cache_changes_no_sample(tiny, monkeypatch, batch_size):
    """The sampler writes each token's keys and values into a buffer instead of concatenating: same logits, bit
    for bit, as transformers' own growing cache, with rows finishing early (and the batch compacted) too."""
    import rlino.rollout as rollout

    model, tok = tiny
    prompts = ["3 5 7 -> 22\n", "1 2 -> 3\n", "9 9 9 9 -> 81\n"] * 4
    kw = dict(seed=0, step=1, temperature=1.0, top_p=0.9, max_new_tokens=48, batch_size=batch_size)
    seen = {}
    real_choose = rollout.choose_tokens

    def recording(key):
        def choose(logits, *args, **kwargs):
            seen.setdefault(key, []).append(logits.clone())
            return real_choose(logits, *args, **kwargs)
        return choose

    monkeypatch.setattr(rollout, "choose_tokens", recording("in_place"))
    fast = rollout.sample(model, tok, prompts, list(range(len(prompts))), **kw)
    monkeypatch.setattr(rollout, "choose_tokens", recording("concat"))
    monkeypatch.setattr(rollout, "_grow_in_place", lambda cache, capacity: None)
    plain = rollout.sample(model, tok, prompts, list(range(len(prompts))), **kw)
    assert 0 < float(fast.truncated.float().mean()) < 1  # some rows ended early, so the cache was compacted
    assert torch.equal(fast.completion_ids, plain.completion_ids) and fast.texts == plain.texts
    assert len(seen["in_place"]) == len(seen["concat"])
    assert all(torch.equal(a, b) for a, b in zip(seen["in_place"], seen["concat"]))


def test_in_place_cache_is_used(tiny):
    """The swap happens (a transformers upgrade that renames the cache layers would silently lose the speed-up)."""
    import rlino.rollout as rollout

    model, tok = tiny
    ids = tok(["1 2 -> 3\n"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    cache, _ = rollout._step(model, None, rollout._cache_argument(model), input_ids=ids,
                             attention_mask=torch.ones_like(ids))
    rollout._grow_in_place(cache, ids.shape[1] + 8)
    assert all(type(layer) is rollout._in_place_layer() for layer in cache.layers)


def test_the_trainer_reports_each_phase_of_a_step_to_the_hook(tmp_path):
    """The benchmark times rlino through `Run(on_phase=...)`, not by patching: every phase of a step is heard once
    per step (the optimizer once per epoch), and the update contains the reference and optimizer phases."""
    from rlino.config import load_config
    from rlino.trainer import Run

    heard: list[tuple[str, float]] = []
    cfg = load_config(ROOT / "configs" / "smoke.toml", ["train.steps=1", "eval.every=0", "method.epochs_per_batch=2"])
    result = Run(cfg, tmp_path / "r", on_phase=lambda name, s: heard.append((name, s))).train_step(1)
    names = [n for n, _ in heard]
    assert names == ["sample", "score", "reference", "optimizer", "optimizer", "update"]
    seconds = dict(heard)
    assert seconds["update"] >= seconds["reference"] + sum(s for n, s in heard if n == "optimizer")
    assert result.rollout.completion_mask.shape[0] == cfg.train.prompts_per_step * cfg.train.group_size


def test_same_outputs_finds_a_changed_number_and_ignores_timings(tmp_path):
    import same_outputs

    rows = [{"step": 1, "loss": 0.5, "step_time_s": 1.0}, {"step": 2, "loss": 0.25, "step_time_s": 2.0}]
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in rows))
    new.write_text("".join(json.dumps(r | {"step_time_s": 9.0, "clip_frac_low": 0.0}) + "\n" for r in rows))
    assert same_outputs.main(["metrics", str(old), str(new), "--added", "clip_frac_low"]) == 0
    assert same_outputs.main(["metrics", str(old), str(new)]) == 1  # an undeclared new key
    new.write_text("".join(json.dumps(r | {"loss": r["loss"] + 1e-12}) + "\n" for r in rows))
    assert same_outputs.main(["metrics", str(old), str(new)]) == 1
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"arms": {"x": {"accuracy": 0.5, "wall_time_s": 3.0}}}))
    b.write_text(json.dumps({"arms": {"x": {"accuracy": 0.5, "wall_time_s": 4.0}}}))
    assert same_outputs.main(["results", str(a), str(b)]) == 0
    b.write_text(json.dumps({"arms": {"x": {"accuracy": 0.52, "wall_time_s": 3.0}}}))
    assert same_outputs.main(["results", str(a), str(b)]) == 1
