"""The on-policy loop: sample G responses per prompt, verify, weight each token, one loss, one optimizer step.

    for step in 1..steps:
        prompts  = next prompts_per_step items of a seeded shuffle of the train split
        rollout  = G responses per prompt from the current model           (rollout.sample)
        rewards  = task.score(response, item)                              (the verifier)
        weights  = response_weights(rewards, G, method)                    (objectives)
        for epoch in 1..epochs_per_batch:                                  (one optimizer step each)
            loss = Σ_micro-batches token_loss(logp, mask, weights, ...)   (step-wide normalisers)
            AdamW step, gradient clipping, scheduler step

A run folder holds config.toml (resolved), metrics.jsonl, samples.jsonl and checkpoints/step-NNNNNN/ (a plain
Hugging Face model folder plus trainer_state.pt; with LoRA, the merged weights plus adapter/: see rlino.lora).
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from rlino.config import Config, load_config, save_config
from rlino.distributed import init_world, local_device
from rlino.errors import RlinoError
from rlino.evaluate import evaluate, length_stats, score_all
from rlino.lora import attach_lora, resume_lora, validate_lora
from rlino.models import autocast, check_autocast, load_model, resolve_device, save_model
from rlino.objectives import Method, is_correct, resolve_method, response_weights, token_loss
from rlino.rollout import sample, token_logprobs
from rlino.tasks import load_task


class RlinoWarning(UserWarning):
    """A run that goes on but is probably not learning (truncation, zero-variance groups)."""


warnings.simplefilter("always", RlinoWarning)

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
LOG_FILES = ("metrics.jsonl", "samples.jsonl", "eval_samples.jsonl", "weights.jsonl")
"""One JSON line per step (or per logged sample); weights.jsonl holds, per response, its length, correctness,
weight w_i and the per-token weight the step's loss really gave it (−∂loss/∂log π_t averaged over its tokens, × N)."""
TIMING_KEYS = ("step_time_s", "tokens_per_s", "sample_time_s", "update_time_s", "time_s")


def validate(cfg: Config) -> Method:
    """Check the settings that can be checked before anything is loaded; return the resolved method."""
    method = resolve_method(cfg.method)
    t, s, e = cfg.train, cfg.sampling, cfg.eval
    if method.needs_groups and t.group_size < 2:
        raise RlinoError(f"method '{method.name}' compares responses within a group (weights '{method.weights}'): "
                         f"train.group_size must be >= 2, got {t.group_size}")
    for key, value in (("train.steps", t.steps), ("train.prompts_per_step", t.prompts_per_step),
                       ("train.group_size", t.group_size), ("train.micro_batch_size", t.micro_batch_size),
                       ("sampling.max_new_tokens", s.max_new_tokens), ("sampling.batch_size", s.batch_size)):
        if value < 1:
            raise RlinoError(f"{key} must be >= 1, got {value}")
    for key, value in (("train.save_every", t.save_every), ("train.warmup_steps", t.warmup_steps),
                       ("eval.every", e.every), ("eval.num_items", e.num_items), ("eval.max_new_tokens",
                       e.max_new_tokens), ("train.keep_checkpoints", t.keep_checkpoints)):
        if value < 0:
            raise RlinoError(f"{key} must be >= 0, got {value}")
    if t.learning_rate <= 0:
        raise RlinoError(f"train.learning_rate must be > 0, got {t.learning_rate}")
    if t.lr_schedule not in ("constant", "linear", "cosine"):
        raise RlinoError(f"train.lr_schedule must be constant, linear or cosine, got '{t.lr_schedule}'")
    if s.temperature <= 0:
        raise RlinoError(f"sampling.temperature must be > 0 for training (0 would sample G identical responses), "
                         f"got {s.temperature}")
    if not 0 < s.top_p <= 1 or not 0 < e.top_p <= 1:
        raise RlinoError("sampling.top_p and eval.top_p must be in (0, 1]")
    check_autocast(cfg.model.autocast)
    validate_lora(cfg.model.lora)
    return method


def resolved_config(cfg: Config, method: Method) -> Config:
    """The config with the method row's choices written out, as saved in the run folder."""
    cfg = copy.deepcopy(cfg)
    for key in ("weights", "aggregation", "clip", "clip_eps", "clip_eps_high", "beta"):
        setattr(cfg.method, key, getattr(method, key))
    return cfg


def lr_lambda(cfg: Config):
    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.lr_schedule == "constant":
            return 1.0
        progress = (step - t.warmup_steps) / max(1, t.steps * cfg.method.epochs_per_batch - t.warmup_steps)
        progress = min(progress, 1.0)
        return 1.0 - progress if t.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def prompt_indices(step: int, per_step: int, num_items: int, seed: int) -> list[int]:
    """Items for a step (1-based): consecutive slices of a fresh seeded shuffle of the split per pass."""
    orders: dict[int, list[int]] = {}  # one shuffle per pass touched by this step
    out = []
    for k in range((step - 1) * per_step, step * per_step):
        epoch, pos = divmod(k, num_items)
        if epoch not in orders:
            orders[epoch] = list(range(num_items))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        out.append(orders[epoch][pos])
    return out


class Run:
    """One training run in one folder: build everything from the config, then `fit()`."""

    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False, label: str | None = None):
        self.label = label
        self.method = validate(cfg)
        self.cfg = resolved_config(cfg, self.method)
        self.out = Path(out_dir)
        if not resume and (self.out / "metrics.jsonl").exists():
            raise RlinoError(f"{self.out} already holds a run: pass --resume {self.out} to continue it, "
                             f"or choose another --out")
        c = self.cfg
        device = local_device(resolve_device(c.model.device))
        self.world = init_world(device)  # one process, or this rank of a torchrun launch
        if c.train.prompts_per_step < self.world.size:
            raise RlinoError(f"train.prompts_per_step ({c.train.prompts_per_step}) must be >= the number of "
                             f"processes ({self.world.size}): each rank samples whole groups")
        self.task = load_task(c.task.name, **c.task.options)
        self.train_items = self.task.items("train")
        self.eval_items = self.task.items("test")[: c.eval.num_items] if c.eval.every else []
        if not self.world.is_main:
            self.world.barrier()  # rank 0 loads first (and builds a cached embedded model once, not N times)
        self.model, self.tokenizer = load_model(c.model.name_or_path, dtype=c.model.dtype, device=str(device),
                                                seed=c.train.seed)
        # LoRA (model.lora.rank > 0): adapters injected into self.model in place; None without LoRA
        self.lora = attach_lora(self.model, c.model.lora, seed=c.train.seed, base_name=c.model.name_or_path)
        self.ref_model = None
        if self.method.beta > 0 and self.lora is not None:
            # with LoRA the reference is the policy itself with its adapters disabled (PEFT's disable_adapter()):
            # the frozen base weights are the initial model, so no second full copy is loaded
            self.ref_model = self.lora.reference()
        elif self.method.beta > 0:  # the reference model exists only when the KL term does
            self.ref_model, _ = load_model(c.model.name_or_path, dtype=c.model.dtype, device=str(device),
                                           seed=c.train.seed)
            self.ref_model.eval().requires_grad_(False)
        if self.world.is_main:
            self.world.barrier()
        self.world.broadcast_params_(self.model)  # every rank starts from rank 0's weights
        self.device = device
        if c.train.gradient_checkpointing:
            # non-reentrant: frozen embeddings (LoRA) would otherwise cut the adapters' gradients
            if hasattr(self.model, "activation_checkpointing_enable"):  # the transformers 5.x name
                self.model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if self.ref_model is not None and self.lora is None:
            self.world.broadcast_params_(self.ref_model)
        self.optimizer = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad],
                                           lr=c.train.learning_rate,
                                           betas=(c.train.adam_beta1, c.train.adam_beta2), eps=c.train.adam_eps,
                                           weight_decay=c.train.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(c))
        self.step = 0
        self.elapsed = 0.0  # wall seconds spent in steps and evaluations, across resumes
        self.zero_std_streak = 0
        torch.manual_seed(c.train.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        if self.world.is_main:
            save_config(self.cfg, self.out / "config.toml")

    def autocast(self):
        """The configured mixed precision (model.autocast) as a fresh context; a no-op for fp32."""
        return autocast(self.cfg.model.autocast, self.device)

    # ---- one step -------------------------------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, Any]:
        c, m = self.cfg, self.method
        t0 = time.perf_counter()
        G = c.train.group_size
        world = self.world
        items = [self.train_items[i] for i in
                 prompt_indices(step, c.train.prompts_per_step, len(self.train_items), c.train.seed)]
        mine = world.share(len(items))  # this rank's prompts (all of them on one process)
        row_items = [items[p] for p in mine for _ in range(G)]  # a group's G responses are adjacent
        rows_global = [p * G + g for p in mine for g in range(G)]  # noise keys: the same on any number of ranks
        with self.autocast():
            rollout = sample(self.model, self.tokenizer, [it.prompt for it in row_items], rows_global,
                             seed=c.train.seed, step=step, temperature=c.sampling.temperature, top_p=c.sampling.top_p,
                             max_new_tokens=c.sampling.max_new_tokens, batch_size=c.sampling.batch_size)
        rewards = score_all(self.task, rollout.texts, row_items)
        t_sample = time.perf_counter()

        device = rollout.completion_ids.device
        weights = response_weights(rewards, G, m).to(device)
        # the whole step's counts, over all ranks: every aggregation normalises as one process would
        n_resp = len(items) * G
        (n_tok,) = world.sum_floats(float(rollout.completion_mask.sum()))
        batches = list(rollout.micro_batches(c.train.micro_batch_size))
        ref_logps = [None] * len(batches)
        if self.ref_model is not None:
            with torch.no_grad(), self.autocast():
                ref_logps = [token_logprobs(self.ref_model, *mb, temperature=c.sampling.temperature)[0]
                             for _, mb in batches]
        old_logps: list[torch.Tensor | None] = [None] * len(batches)
        sums = dict(loss=0.0, kl=0.0, clip=0.0, entropy=0.0, clip_n=0)
        token_weight = torch.zeros(len(row_items), device=device)
        bad_loss = None
        self.model.train()
        for epoch in range(m.epochs_per_batch):
            self.optimizer.zero_grad(set_to_none=True)
            for k, (rows, mb) in enumerate(batches):
                with self.autocast():
                    logp, entropy = token_logprobs(self.model, *mb, temperature=c.sampling.temperature,
                                                   with_entropy=epoch == 0)
                if epoch == 0:
                    old_logps[k] = logp.detach()  # the sampling-time policy, for the ratio of later epochs
                    logp.retain_grad()  # d loss / d log π_t: the weight the step really gives each token
                out = token_loss(logp, mb[3], weights[rows], m, old_logp=old_logps[k], ref_logp=ref_logps[k],
                                 num_responses=n_resp, num_tokens=n_tok, max_new_tokens=c.sampling.max_new_tokens)
                if not torch.isfinite(out.loss):
                    bad_loss = bad_loss or f"loss is {float(out.loss.detach())} at step {step} (epoch {epoch + 1}, " \
                                           f"micro-batch {k + 1})"
                    continue
                out.loss.backward()
                tokens = float(mb[3].sum())
                if epoch == 0:
                    # per response, the mean over its tokens of −∂loss/∂log π_t, times the step's response count
                    token_weight[rows] = -(logp.grad * mb[3]).sum(dim=1) / mb[3].sum(dim=1).clamp(min=1) * n_resp
                    sums["loss"] += float(out.loss.detach())
                    sums["entropy"] += float((entropy * mb[3]).sum())
                    if out.kl is not None:
                        sums["kl"] += float(out.kl) * tokens
                if out.clip_frac is not None:
                    sums["clip"] += float(out.clip_frac) * tokens
                    sums["clip_n"] += tokens
            (num_bad,) = world.sum_floats(float(bad_loss is not None))  # every rank stops together
            if num_bad:
                raise RlinoError(f"{bad_loss or 'a non-finite loss on another rank'}; stopping without applying "
                                 f"it. {self._last_checkpoint_note()}")
            world.sum_grads_(self.model.parameters())  # each rank's loss already carries the step-wide normaliser
            max_norm = c.train.max_grad_norm if c.train.max_grad_norm > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
            if not math.isfinite(grad_norm):
                raise RlinoError(f"gradient norm is {grad_norm} at step {step}; stopping without applying it. "
                                 f"{self._last_checkpoint_note()}")
            self.optimizer.step()
            self.scheduler.step()
        t_end = time.perf_counter()

        keys = ("loss", "entropy", "kl", "clip", "clip_n")  # the step's sums over all ranks
        sums.update(zip(keys, world.sum_floats(*(sums[k] for k in keys))))
        texts = world.gather_list(rollout.texts[:c.train.log_samples])
        rewards, weights, token_weight = (world.gather_cat(x.cpu()) for x in (rewards, weights, token_weight))
        lengths, truncated = world.gather_cat(rollout.lengths.cpu()), world.gather_cat(rollout.truncated.cpu())
        all_rows = [it for it in items for _ in range(G)]  # the whole step's rows, in global order
        groups = rewards.view(-1, G)
        ok = is_correct(rewards)
        metrics: dict[str, Any] = {
            "step": step,
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
            "accuracy": float(ok.float().mean()),
            "frac_zero_std_groups": float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean()),
            "truncated_frac": float(truncated.float().mean()),
            **length_stats(lengths, rewards),
            "loss": sums["loss"],
            "grad_norm": grad_norm,
            "entropy": sums["entropy"] / max(n_tok, 1.0),
            "lr": self.scheduler.get_last_lr()[0],
        }
        if self.ref_model is not None:
            metrics["kl"] = sums["kl"] / max(n_tok, 1.0)
        if m.clip:
            metrics["clip_frac"] = sums["clip"] / max(sums["clip_n"], 1.0)
        metrics.update(step_time_s=t_end - t0, sample_time_s=t_sample - t0, update_time_s=t_end - t_sample,
                       tokens_per_s=n_tok / max(t_end - t0, 1e-9))
        self._warn(step, metrics)
        samples = [{"step": step, "prompt": it.prompt, "response": texts[i], "reward": float(rewards[i]),
                    "length": int(lengths[i]), "truncated": bool(truncated[i]), "uid": getattr(it, "uid", None)}
                   for i, it in zip(range(min(c.train.log_samples, len(texts))), all_rows)]
        weights_row = {"step": step, "num_responses": n_resp, "num_tokens": int(n_tok),
                       "length": lengths.tolist(), "correct": ok.tolist(),
                       "response_weight": [round(float(x), 6) for x in weights],
                       "token_weight": [float(f"{float(x):.6g}") for x in token_weight]}
        return metrics | {"_samples": samples, "_weights": [weights_row]}

    def _warn(self, step: int, metrics: dict[str, Any]) -> None:
        if metrics["truncated_frac"] >= 1.0:
            warnings.warn(f"step {step}: every response was truncated at sampling.max_new_tokens="
                          f"{self.cfg.sampling.max_new_tokens}; rewards are probably all 0 and nothing is learned. "
                          f"Raise max_new_tokens or check the prompt format.", RlinoWarning, stacklevel=2)
        self.zero_std_streak = self.zero_std_streak + 1 if metrics["frac_zero_std_groups"] >= 1.0 else 0
        n = self.cfg.train.warn_zero_std_steps
        if self.method.needs_groups and n and self.zero_std_streak >= n and self.zero_std_streak % n == 0:
            warnings.warn(f"step {step}: every group has had zero reward variance for {self.zero_std_streak} steps "
                          f"in a row (reward_mean={metrics['reward_mean']:.3f}): all advantages are 0 and the "
                          f"model is not being updated by the reward.", RlinoWarning, stacklevel=2)

    # ---- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        c = self.cfg
        eval_tokens = c.eval.max_new_tokens or c.sampling.max_new_tokens
        bar = tqdm(total=c.train.steps, initial=self.step, desc=self.label or self.method.name, file=sys.stderr,
                   dynamic_ncols=True, disable=not self.world.is_main)
        last_eval = None
        files = {name: open(self.out / name, "a") for name in LOG_FILES} if self.world.is_main else {}
        try:
            for step in range(self.step + 1, c.train.steps + 1):
                t0 = time.perf_counter()
                metrics = self.train_step(step)
                lines = {"samples.jsonl": metrics.pop("_samples"), "weights.jsonl": metrics.pop("_weights")}
                if c.eval.every and (step % c.eval.every == 0 or step == c.train.steps):
                    with self.autocast():
                        result = evaluate(self.model, self.tokenizer, self.task, self.eval_items,
                                          seed=c.train.seed, temperature=c.eval.temperature, top_p=c.eval.top_p,
                                          max_new_tokens=eval_tokens, batch_size=c.sampling.batch_size,
                                          log_samples=c.eval.log_samples, world=self.world)
                    lines["eval_samples.jsonl"] = [{"step": step, **s} for s in result.pop("samples", [])]
                    metrics.update(result)
                    last_eval = metrics["eval/accuracy"]
                self.elapsed += time.perf_counter() - t0
                metrics["time_s"] = self.elapsed
                lines["metrics.jsonl"] = [metrics]
                for name, rows in lines.items() if files else ():  # rank 0 writes the logs
                    files[name].write("".join(json.dumps(r) + "\n" for r in rows))
                    files[name].flush()
                self.step = step
                if step == c.train.steps or (c.train.save_every and step % c.train.save_every == 0):
                    self.save_checkpoint()
                postfix = dict(reward=f"{metrics['reward_mean']:.3f}", acc=f"{metrics['accuracy']:.3f}")
                if last_eval is not None:
                    postfix["eval"] = f"{last_eval:.3f}"
                bar.set_postfix(postfix)
                bar.update(1)
        finally:
            for f in files.values():
                f.close()
            bar.close()
        return self.checkpoint_dir(self.step)

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.out / CHECKPOINTS / f"step-{step:06d}"

    def save_checkpoint(self) -> Path:
        """Write model + optimizer + scheduler + RNG + step, atomically (a folder appears only when complete)."""
        final = self.checkpoint_dir(self.step)
        if not self.world.is_main:  # rank 0 writes the checkpoint; the others wait until it is complete
            self.world.barrier()
            return final
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        if self.lora is not None:  # merged full weights (a plain HF folder) + the adapter in tmp/adapter/
            self.lora.save(self.tokenizer, tmp)
        else:
            save_model(self.model, self.tokenizer, tmp)
        torch.save({"step": self.step, "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "zero_std_streak": self.zero_std_streak,
                    "elapsed": self.elapsed,
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}, tmp / STATE_FILE)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        keep = self.cfg.train.keep_checkpoints
        if keep:
            for old in complete_checkpoints(self.out)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
        self.world.barrier()
        return final

    def _last_checkpoint_note(self) -> str:
        done = complete_checkpoints(self.out)
        return f"Last good checkpoint: {done[-1]}" if done else "No checkpoint was written yet."

    def _resume(self) -> None:
        done = complete_checkpoints(self.out)
        if not done:
            raise RlinoError(f"--resume {self.out}: no complete checkpoint in {self.out / CHECKPOINTS}")
        ckpt = done[-1]
        state = torch.load(ckpt / STATE_FILE, weights_only=False)
        if not resume_lora(self.lora, ckpt):  # LoRA: the base model is reloaded as configured; load the adapter
            loaded, _ = load_model(str(ckpt), dtype=self.cfg.model.dtype,
                                   device=str(next(self.model.parameters()).device))
            self.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step, self.zero_std_streak, self.elapsed = state["step"], state["zero_std_streak"], state["elapsed"]
        # drop log lines written after the checkpoint, so the resumed run neither loses nor repeats a step
        for name in LOG_FILES if self.world.is_main else ():
            path = self.out / name
            if path.exists():
                lines = [ln for ln in path.read_text().splitlines() if ln.strip()
                         and json.loads(ln)["step"] <= self.step]
                path.write_text("".join(ln + "\n" for ln in lines))


def complete_checkpoints(out: Path) -> list[Path]:
    """Checkpoint folders that were fully written, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith("step-") and not p.name.endswith(".tmp")
                  and (p / STATE_FILE).is_file())


def train(config_path: str | Path | None, overrides: list[str] | None = None, out: str | Path | None = None,
          resume: str | Path | None = None) -> Path:
    """`rlino train`: build a run from a config (or from the run folder being resumed) and fit it."""
    if resume is not None:
        resume = Path(resume)
        if not (resume / "config.toml").is_file():
            raise RlinoError(f"--resume {resume}: no config.toml there; is it a run folder?")
        cfg = load_config(resume / "config.toml", overrides)
        run = Run(cfg, resume, resume=True)
    else:
        cfg = load_config(config_path, overrides)
        if out is None:
            out = Path("runs") / f"{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = Run(cfg, out)
    final = run.fit()
    return final
