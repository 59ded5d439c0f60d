"""`rlino train` end to end on the embedded tiny model: every method, resume, loud failures, clear errors."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlino.cli import main
from rlino.config import load_config
from rlino.embedded import load_embedded
from rlino.errors import RlinoError
from rlino.objectives import METHODS
from rlino.run_folder import TIMING_KEYS, complete_checkpoints
from rlino.trainer import RlinoWarning, train

SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.toml")
KEYS = {"step", "reward_mean", "reward_std", "accuracy", "frac_zero_std_groups", "truncated_frac", "length_mean",
        "length_correct_mean", "length_wrong_mean", "loss", "grad_norm", "entropy", "step_time_s", "tokens_per_s"}


def read_metrics(run):
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines()]


TOY = ["task.name=toy_task:make", "task.options={rule='ascii'}"]
"""The toy task (tests/toy_task.py): a coin flip for a random model, so every method gets a real gradient."""


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_trains_and_saves_a_loadable_checkpoint(tmp_path, name, capsys):
    """Every row of the table gets a non-zero gradient at T = 0.7, moves the weights, and saves a loadable model."""
    out = tmp_path / name
    args = ["train", SMOKE, "--out", str(out)]
    for s in TOY + [f"method.name={name}", "sampling.temperature=0.7", "train.prompts_per_step=4"]:
        args += ["--set", s]
    assert main(args) == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert KEYS <= set(r)
        assert ("kl" in r) == (METHODS[name].beta > 0)
        assert ("clip_frac" in r) == METHODS[name].clip
        assert ("critic/explained_variance" in r) == METHODS[name].has_critic
        assert 0 < r["accuracy"] < 1 and r["frac_zero_std_groups"] < 1
        assert r["grad_norm"] > 0, r
    assert {"eval/accuracy", "eval/length_mean"} <= set(rows[-1])
    corr = [c for line in (out / "weights.jsonl").read_text().splitlines()
            for c in json.loads(line)["token_weight_position_corr"]]
    if METHODS[name].has_critic:  # a critic's advantage varies along the response
        assert sum(c is not None for c in corr) > len(corr) / 2
    elif METHODS[name].mini_batches > 1:  # from the second mini-batch on, ρ ≠ 1 varies the weight along a response
        assert any(c is not None for c in corr)
    elif METHODS[name].beta == 0:  # an outcome row without KL gives every token of a response the same weight
        assert all(c is None for c in corr)
    final = complete_checkpoints(out)[-1]
    assert f"final model: {final}" in capsys.readouterr().out
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert tok.decode(tok("12 + 3 <answer>")["input_ids"]) == "12 + 3 <answer>"
    assert model.config.model_type == "qwen2"
    init = load_embedded("embedded:tiny", seed=0)[0].state_dict()
    trained = model.state_dict()
    assert all(not torch.equal(trained[k], init[k]) for k in init if "norm" not in k)  # every matrix moved
    samples = [json.loads(s) for s in (out / "samples.jsonl").read_text().splitlines()]
    assert {"step", "prompt", "response", "reward"} <= set(samples[0])
    assert (out / "config.toml").read_text().count(f'name = "{name}"') == 1


def cosine_lrs(peak, warmup, total):
    """The learning rate after each optimizer step, by hand: linear warm-up over `warmup` steps, then cosine to 0."""
    out = []
    for k in range(1, total + 1):  # the rate the next (k+1-th) optimizer step will use
        if k < warmup:
            out.append(peak * (k + 1) / warmup)
        else:
            out.append(peak * 0.5 * (1 + math.cos(math.pi * (k - warmup) / (total - warmup))))
    return out


def killed_after(step, sets, out):
    """A run of `sets` killed once `step` is complete (checkpointed), then resumed as the user would: `--resume`."""
    import rlino.trainer as trainer

    real = trainer.Run.train_step

    def dies(self, s):
        if s > step:
            raise KeyboardInterrupt
        return real(self, s)

    trainer.Run.train_step = dies
    try:
        with pytest.raises(KeyboardInterrupt):
            train(SMOKE, sets, out=out)
    finally:
        trainer.Run.train_step = real
    assert [r["step"] for r in read_metrics(out)] == list(range(1, step + 1))
    return train(None, [], resume=out)


@pytest.mark.parametrize("name", ["grpo", "fisft_pos_neg", "ppo"])
def test_resume_matches_an_uninterrupted_run(tmp_path, name, dropout_dir):
    """Killed after step 2 of 4 and resumed: the same weights, metrics and learning rates as one run.

    Built so that each piece of state shows if it is not restored: a cosine schedule with a 3-step warm-up over
    2 optimizer steps per batch (the scheduler), attention dropout (the torch RNG), T = 0.7 and a model that
    depends on positions.
    """
    common = TOY + [f"method.name={name}", f"model.name_or_path={dropout_dir}", "train.save_every=1",
                    "eval.every=2", "train.lr_schedule=cosine", "train.warmup_steps=3", "method.epochs_per_batch=2",
                    "sampling.temperature=0.7", "train.learning_rate=1e-3"]
    if name == "ppo":  # the critic, its optimizer and schedule, its warm-up and the KL in the reward
        common += ["critic.warmup_steps=1", "method.beta=0.01"]
    whole = train(SMOKE, common + ["train.steps=4"], out=tmp_path / "whole")
    split = killed_after(2, common + ["train.steps=4"], tmp_path / "split")
    a = AutoModelForCausalLM.from_pretrained(whole).state_dict()
    b = AutoModelForCausalLM.from_pretrained(split).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = AutoModelForCausalLM.from_pretrained(dropout_dir).state_dict()
    assert all(not torch.equal(a[k], init[k]) for k in init if "norm" not in k)  # training really moved them
    rows = read_metrics(tmp_path / "whole")
    assert all(0 < r["accuracy"] < 1 for r in rows)
    if name != "ppo":  # (ppo's policy is frozen in its warm-up step: checked below)
        assert all(r["grad_norm"] > 0 for r in rows)
        # the logged rate is the one for the next step; 4 steps x 2 epochs = 8 optimizer steps
        assert [r["lr"] for r in rows] == pytest.approx(cosine_lrs(1e-3, 3, 8)[1::2], rel=1e-6)

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]

    assert strip(read_metrics(tmp_path / "whole")) == strip(read_metrics(tmp_path / "split"))
    assert [r["step"] for r in read_metrics(tmp_path / "split")] == [1, 2, 3, 4]
    if name == "ppo":
        ca, cb = (load_file(str(folder / "critic.safetensors")) for folder in (whole, split))
        assert ca.keys() == cb.keys() and all(torch.equal(ca[k], cb[k]) for k in ca)
        assert float(ca["head.weight"].abs().sum()) > 0  # the critic was trained
        assert rows[0]["grad_norm"] == 0 and rows[1]["grad_norm"] > 0  # the policy frozen in the warm-up step


def test_resume_with_dropout_depends_on_the_restored_rng(tmp_path, dropout_dir, monkeypatch):
    """The dropout fixture really draws from the torch RNG during training: reseeding the RNG alone (the prompts and
    the counter-keyed sampling noise stay the same) changes the weights, so a resume test on it sees an unrestored
    RNG."""
    import rlino.trainer as trainer

    common = TOY + ["method.name=fisft_pos_neg", f"model.name_or_path={dropout_dir}", "train.steps=1",
                    "eval.every=0", "train.learning_rate=1e-3"]
    a = train(SMOKE, common, out=tmp_path / "a")
    real = trainer.Run.train_step

    def reseeded(self, step):
        torch.manual_seed(1000 + step)
        return real(self, step)

    monkeypatch.setattr(trainer.Run, "train_step", reseeded)
    b = train(SMOKE, common, out=tmp_path / "b")
    wa = AutoModelForCausalLM.from_pretrained(a).state_dict()
    wb = AutoModelForCausalLM.from_pretrained(b).state_dict()
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)
    assert read_metrics(tmp_path / "a")[0]["reward_mean"] == read_metrics(tmp_path / "b")[0]["reward_mean"]


def test_a_second_epoch_on_the_batch_is_clipped_against_the_sampling_policy(tmp_path):
    """With epochs_per_batch = 2 and a large step, the second epoch's ratio π_θ/π_old moves past 1 ± ε: some tokens
    are clipped. (If π_old were refreshed at every epoch, the ratio would stay 1 and clip_frac 0.) The first epoch's
    ratio is exactly 1, so at most half of the logged tokens can be clipped."""
    train(SMOKE, TOY + ["method.name=grpo_no_kl", "method.epochs_per_batch=2", "train.learning_rate=3e-2",
                        "train.steps=2", "eval.every=0", "sampling.temperature=0.7"], out=tmp_path / "c")
    rows = read_metrics(tmp_path / "c")
    assert all(0 < r["clip_frac"] <= 0.5 for r in rows), [r["clip_frac"] for r in rows]
    train(SMOKE, TOY + ["method.name=grpo_no_kl", "train.learning_rate=3e-2", "train.steps=2", "eval.every=0",
                        "sampling.temperature=0.7"], out=tmp_path / "one")
    assert all(r["clip_frac"] == 0 for r in read_metrics(tmp_path / "one"))  # one epoch: ratio 1, nothing clipped


@pytest.mark.parametrize("max_grad_norm", [0.0, 1e-3])
def test_gradients_are_clipped_to_max_grad_norm(tmp_path, max_grad_norm):
    """After one AdamW step the first moment is (1 − β1) · g for the gradient g the step used: its norm is the logged
    grad_norm without clipping (max_grad_norm = 0) and exactly max_grad_norm when clipping is on."""
    from rlino.config import load_config
    from rlino.trainer import Run

    cfg = load_config(SMOKE, TOY + ["method.name=fisft_pos_neg", "train.steps=1", "eval.every=0",
                                    f"train.max_grad_norm={max_grad_norm}"])
    run = Run(cfg, tmp_path / "r")
    metrics = run.train_step(1).metrics
    g = torch.cat([run.optimizer.state[p]["exp_avg"].flatten() for p in run.model.parameters()]) / (1 - 0.9)
    assert metrics["grad_norm"] > 1e-2  # well above the clip, so clipping must act
    expected = max_grad_norm or metrics["grad_norm"]
    assert float(g.norm()) == pytest.approx(expected, rel=1e-4)


def test_resume_drops_log_lines_written_after_the_last_checkpoint(tmp_path):
    train(SMOKE, ["train.steps=2", "train.save_every=1", "eval.every=0"], out=tmp_path / "r")
    # simulate a crash after step 2's metrics were written but before its checkpoint completed
    ckpts = complete_checkpoints(tmp_path / "r")
    ckpts[-1].rename(ckpts[-1].with_name(ckpts[-1].name + ".tmp"))
    train(None, ["train.steps=3"], resume=tmp_path / "r")
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2, 3]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    import rlino.step as step_module
    import rlino.trainer as trainer

    real = step_module.token_logprobs
    calls = {"n": 0}

    def poisoned(model, *args, **kwargs):
        logp, ent = real(model, *args, **kwargs)
        if torch.is_grad_enabled() and trainer_step["step"] == 2:
            logp = logp * float("nan")
        return logp, ent

    trainer_step = {"step": 0}
    real_step = trainer.Run.train_step

    def counting(self, step):
        trainer_step["step"] = step
        calls["n"] += 1
        return real_step(self, step)

    monkeypatch.setattr(step_module, "token_logprobs", poisoned)
    monkeypatch.setattr(trainer.Run, "train_step", counting)
    with pytest.raises(RlinoError, match=r"loss is nan at step 2 .*Last good checkpoint: .*step-000001"):
        train(SMOKE, ["train.steps=3", "train.save_every=1", "eval.every=0"], out=tmp_path / "n")
    assert [p.name for p in complete_checkpoints(tmp_path / "n")] == ["step-000001"]


def test_warns_when_every_response_is_truncated(tmp_path):
    with pytest.warns(RlinoWarning, match="every response was truncated"):
        train(SMOKE, ["sampling.max_new_tokens=2", "train.steps=1", "eval.every=0"], out=tmp_path / "t")


def test_warns_when_groups_have_zero_variance_for_several_steps(tmp_path):
    # the random tiny model never solves Countdown: every group is all-wrong
    with pytest.warns(RlinoWarning, match="zero reward variance for 2 steps in a row"):
        train(SMOKE, ["train.warn_zero_std_steps=2", "eval.every=0"], out=tmp_path / "z")


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["train", SMOKE, "--set", "train.step=3", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlino: error:") and "did you mean 'train.steps'" in err and "Traceback" not in err
    assert main(["train", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_missing_model_folder(tmp_path):
    with pytest.raises(RlinoError, match="model folder not found: ./no/such/model"):
        train(SMOKE, ["model.name_or_path=./no/such/model"], out=tmp_path / "m")


def test_hub_model_unreachable_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RlinoError, match="could not load model 'nobody/no-such-model'"):
        train(SMOKE, ["model.name_or_path=nobody/no-such-model"], out=tmp_path / "h")


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RlinoError, match="has no config.json"):
        train(SMOKE, [f"model.name_or_path={tmp_path / 'empty'}"], out=tmp_path / "e")


def test_existing_run_folder_needs_resume(tmp_path):
    train(SMOKE, ["train.steps=1", "eval.every=0"], out=tmp_path / "r")
    with pytest.raises(RlinoError, match="already holds a run: pass --resume"):
        train(SMOKE, ["train.steps=1"], out=tmp_path / "r")
    with pytest.raises(RlinoError, match="no config.toml there"):
        train(None, [], resume=tmp_path / "nothing")


def test_local_model_folder_round_trip(tmp_path):
    """A checkpoint is a model folder that rlino itself can start from: a run from it with a negligible learning rate
    ends where the first run ended, not at the embedded initialisation."""
    first = train(SMOKE, TOY + ["train.steps=1", "eval.every=0", "train.learning_rate=1e-2"], out=tmp_path / "a")
    second = train(SMOKE, TOY + ["train.steps=1", "eval.every=0", f"model.name_or_path={first}",
                                 "train.learning_rate=1e-12"], out=tmp_path / "b")
    a = AutoModelForCausalLM.from_pretrained(first).state_dict()
    b = AutoModelForCausalLM.from_pretrained(second).state_dict()
    init = load_embedded("embedded:tiny", seed=0)[0].state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=1e-9)
    assert any((a[k] - init[k]).abs().max() > 1e-3 for k in a)
    assert read_metrics(tmp_path / "b")[0]["grad_norm"] > 0


def test_gsm8k_smoke_config_runs_offline(tmp_path):
    """The GSM8K smoke config trains and evaluates offline on reasoning-gym items; the logged evaluation covers every
    configured item and its accuracy is the mean of the logged rewards."""
    cfg = str(Path(__file__).parents[1] / "configs" / "smoke-gsm8k.toml")
    assert main(["train", cfg, "--set", "eval.log_samples=100", "--out", str(tmp_path / "g")]) == 0
    last = read_metrics(tmp_path / "g")[-1]
    rows = [json.loads(s) for s in (tmp_path / "g" / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == load_config(cfg).eval.num_items == 4
    assert last["eval/accuracy"] == sum(r["reward"] >= 1 for r in rows) / len(rows)
    samples = [json.loads(s) for s in (tmp_path / "g" / "samples.jsonl").read_text().splitlines()]
    assert all(s["prompt"].startswith("Q: ") and s["prompt"].endswith("\nA:") for s in samples)


def test_bad_data_row_stops_before_training(tmp_path, capsys):
    train_file = tmp_path / "train.jsonl"
    train_file.write_text('{"question": "1+1?", "answer": "#### 2"}\n{"question": "2+2?"}\n')
    code = main(["train", SMOKE, "--set", "task.name=gsm8k", "--set", "task.options={}", "--set",
                 f"task.options.train_file='{train_file}'", "--set", f"task.options.test_file='{train_file}'",
                 "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "row 1" in err and "answer" in err
    assert not (tmp_path / "d" / "metrics.jsonl").exists()


@pytest.mark.parametrize("aggregation", ["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"])
def test_logged_token_weights_are_the_analytic_ones(tmp_path, aggregation):
    """weights.jsonl holds −∂loss/∂log π_t measured by autograd; with no ratio and no KL it is w_i · N · f(|o_i|),
    f written here by hand for each aggregation; each line names the aggregation and cap its step used."""
    hand = {"seq-mean-token-mean": lambda L, n, tokens, cap: 1 / (n * L.double()),
            "token-mean": lambda L, n, tokens, cap: torch.full(L.shape, 1 / tokens, dtype=torch.double),
            "seq-mean-token-sum-norm": lambda L, n, tokens, cap: torch.full(L.shape, 1 / (n * cap), dtype=torch.double)}
    out = train(SMOKE, TOY + ["method.name=fisft_pos_neg", f"method.aggregation={aggregation}", "train.steps=2",
                              "eval.every=0"], out=tmp_path / "w")
    run = out.parents[1]
    rows = [json.loads(line) for line in (run / "weights.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    max_new_tokens = load_config(run / "config.toml").sampling.max_new_tokens
    for r in rows:
        lengths = torch.tensor(r["length"])
        assert r["num_tokens"] == int(lengths.sum()) and len(lengths) == r["num_responses"]
        assert (r["aggregation"], r["max_new_tokens"]) == (aggregation, max_new_tokens)
        n = r["num_responses"]
        analytic = (hand[aggregation](lengths, n, r["num_tokens"], max_new_tokens) * n).float()
        w = torch.tensor(r["response_weight"])
        assert torch.equal(w, torch.tensor([1.0 if c else -1.0 for c in r["correct"]]))
        torch.testing.assert_close(torch.tensor(r["token_weight"]), w * analytic, rtol=1e-5, atol=1e-7)


def test_gradient_checkpointing_and_autocast_settings(tmp_path):
    """Checkpointing recomputes the same numbers; autocast `auto` is fp32 on CPU; `bf16` runs and stays close."""
    common = TOY + ["method.name=grpo", "train.steps=1", "eval.every=0", "sampling.temperature=0.7"]
    runs = {name: train(SMOKE, common + sets, out=tmp_path / name) for name, sets in
            {"plain": [], "ckpt": ["train.gradient_checkpointing=true"], "off": ["model.autocast='off'"],
             "bf16": ["model.autocast='bf16'"]}.items()}
    w = {name: AutoModelForCausalLM.from_pretrained(folder).state_dict() for name, folder in runs.items()}
    init = load_embedded("embedded:tiny", seed=0)[0].state_dict()
    for k in w["plain"]:
        assert torch.allclose(w["ckpt"][k], w["plain"][k], rtol=0, atol=1e-6), k
        assert torch.equal(w["off"][k], w["plain"][k]), k  # auto on CPU = no autocast
    # bf16 autocast: the step's update points the same way as fp32's and differs by a fraction of it (measured on
    # this seed: cosine 0.997, relative difference 0.08)
    d32 = torch.cat([(w["plain"][k] - init[k]).flatten() for k in init])
    d16 = torch.cat([(w["bf16"][k] - init[k]).flatten() for k in init])
    assert d32.norm() > 0
    assert float(torch.nn.functional.cosine_similarity(d16, d32, dim=0)) > 0.98
    assert float((d16 - d32).norm() / d32.norm()) < 0.25
    assert not torch.equal(d16, d32)  # bf16 really ran
    with pytest.raises(RlinoError, match="model.autocast must be one of auto, bf16, off"):
        train(SMOKE, ["model.autocast='fp8'"], out=tmp_path / "bad")


def test_sampling_precision_is_its_own_choice(tmp_path, sharp_dir, monkeypatch):
    """sampling.autocast decides the precision the responses are drawn in, apart from training's: training in bf16
    with fp32 sampling draws exactly the fp32 run's tokens; bf16 sampling runs the sampler's logits in bf16 and draws
    the same tokens whether training runs in fp32 or bf16 (`model`, the default, follows model.autocast), and on a CPU
    with native bf16 other tokens than fp32 (without it, as on AVX2-only CPUs, bf16 products are rounded fp32 ones
    and the tokens may all agree)."""
    import rlino.step
    from rlino.models import cpu_has_bf16
    from rlino.trainer import Run

    real_sample, logit_dtypes = rlino.step.sample, []

    def spy(model, *args, **kwargs):
        with torch.no_grad():
            logit_dtypes.append(model(input_ids=torch.tensor([[1, 2, 3]])).logits.dtype)
        return real_sample(model, *args, **kwargs)

    monkeypatch.setattr(rlino.step, "sample", spy)
    settings = {"fp32": [], "train_bf16": ["model.autocast='bf16'", "sampling.autocast='off'"],
                "sample_bf16": ["sampling.autocast='bf16'"], "all_bf16": ["model.autocast='bf16'"]}
    tokens = {}
    for name, sets in settings.items():
        run = Run(load_config(SMOKE, TOY + [f"model.name_or_path='{sharp_dir}'", "train.steps=1", "eval.every=0"]
                              + sets), tmp_path / name)
        tokens[name] = run.train_step(1).rollout.completion_ids
    assert logit_dtypes == [torch.float32, torch.float32, torch.bfloat16, torch.bfloat16]
    assert torch.equal(tokens["train_bf16"], tokens["fp32"])
    assert torch.equal(tokens["sample_bf16"], tokens["all_bf16"])
    if cpu_has_bf16():
        assert not torch.equal(tokens["sample_bf16"], tokens["fp32"])
    with pytest.raises(RlinoError, match="sampling.autocast"):
        train(SMOKE, ["sampling.autocast='fp16'"], out=tmp_path / "bad")


@pytest.mark.parametrize("schedule,after_warmup", [
    ("constant", [1.0, 1.0, 1.0, 1.0]),
    ("linear", [1.0, 0.75, 0.5, 0.25]),
    ("cosine", [1.0, 0.8535534, 0.5, 0.1464466]),  # (1 + cos(π·k/4)) / 2, k = 0..3
])
def test_lr_schedule_by_hand(schedule, after_warmup):
    """3 steps × 2 epochs per batch = 6 optimizer steps, 2 of them warm-up: the multiplier each optimizer step uses."""
    from rlino.config import load_config
    from rlino.trainer import lr_lambda

    cfg = load_config(SMOKE, ["train.steps=3", "method.epochs_per_batch=2", "train.warmup_steps=2",
                              f"train.lr_schedule={schedule}"])
    factor = lr_lambda(cfg)
    assert [factor(k) for k in range(6)] == pytest.approx([0.5, 1.0] + after_warmup, abs=1e-7)


def test_prompt_order_is_consecutive_slices_of_a_fresh_shuffle_per_pass():
    """Steps take consecutive slices of a seeded permutation; each pass over the split is a new permutation."""
    from rlino.schedule import prompt_indices

    got = [i for step in range(1, 11) for i in prompt_indices(step, 3, 5, seed=4)]  # 30 draws = 6 passes of 5
    passes = [got[k:k + 5] for k in range(0, 30, 5)]
    assert all(sorted(p) == list(range(5)) for p in passes)  # every item exactly once per pass
    assert len({tuple(p) for p in passes}) > 1  # the order changes between passes
    assert prompt_indices(3, 3, 5, seed=4) == got[6:9]  # a step is a pure function of (step, seed)
    assert got != [i for step in range(1, 11) for i in prompt_indices(step, 3, 5, seed=5)]


def test_keep_checkpoints_keeps_the_newest(tmp_path):
    """keep_checkpoints = 2 with a checkpoint every step leaves the last two, and the final one is loadable."""
    train(SMOKE, ["train.steps=4", "train.save_every=1", "train.keep_checkpoints=2", "eval.every=0"],
          out=tmp_path / "k")
    assert [p.name for p in complete_checkpoints(tmp_path / "k")] == ["step-000003", "step-000004"]


def test_each_epoch_on_a_batch_uses_only_its_own_gradient(tmp_path):
    """With a learning rate too small to move the weights, the second epoch on a batch sees the first epoch's
    gradient g again (ratio 1, same weights): its logged norm is the one-epoch run's, and AdamW's first moment after
    two steps is 0.9·0.1·g + 0.1·g = 0.19·g (gradients left over from epoch 1 would give 2g and 0.29·g)."""
    from rlino.config import load_config
    from rlino.trainer import Run

    sets = TOY + ["method.name=grpo_no_kl", "train.steps=1", "eval.every=0", "train.learning_rate=1e-30",
                  "train.max_grad_norm=0"]
    one = Run(load_config(SMOKE, sets), tmp_path / "one").train_step(1).metrics
    run = Run(load_config(SMOKE, sets + ["method.epochs_per_batch=2"]), tmp_path / "two")
    two = run.train_step(1).metrics
    assert one["grad_norm"] > 0
    assert two["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    m = torch.cat([run.optimizer.state[p]["exp_avg"].flatten() for p in run.model.parameters()])
    assert float(m.norm()) == pytest.approx(0.19 * one["grad_norm"], rel=1e-4)


def test_kl_is_measured_against_the_initial_model(tmp_path):
    """At step 1 the policy is the reference (KL exactly 0); the updates then move it away (KL > 0 and growing)."""
    train(SMOKE, TOY + ["method.name=grpo", "train.steps=3", "eval.every=0", "train.learning_rate=1e-2"],
          out=tmp_path / "kl")
    kl = [r["kl"] for r in read_metrics(tmp_path / "kl")]
    assert kl[0] == 0 and 0 < kl[1] < kl[2], kl
