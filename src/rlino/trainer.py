"""The on-policy loop: sample G responses per prompt, verify, weight each token, one loss, one optimizer step.

    for step in 1..steps:
        prompts  = next prompts_per_step items of a seeded shuffle of the train split      (schedule.prompt_indices)
        rollout  = G responses per prompt from the current model                           (rollout.sample)
        rewards  = task.score(response, item)                                              (the verifier)
        weights  = response_weights(rewards, G, method)                                    (objectives)
        for epoch in 1..epochs_per_batch, part in the step's groups in mini_batches parts:  (one optimizer step each)
            loss = Σ_micro-batches token_loss(logp, mask, weights, ...)   (the part's normalisers)
            AdamW step, gradient clipping, scheduler step
        evaluate on held-out items every eval.every steps; checkpoint every train.save_every steps

`step.py` holds the step's phases; this file builds the run (model, reference, optimizer) from a config, runs the
loop, and writes the run folder through `run_folder.RunFolder` (its format is described there).
"""

from __future__ import annotations

import copy
import random
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from rlino.checks import changed_critic_keys, check_config
from rlino.config import (
    Config,
    config_to_dict,
    eval_max_new_tokens,
    load_config,
    sampling_autocast,
    save_config,
)
from rlino.critic import build_critic, load_critic_, save_critic
from rlino.distributed import init_world, local_device
from rlino.errors import RlinoError
from rlino.evaluate import evaluate
from rlino.lora import attach_lora, resume_lora
from rlino.models import autocast, load_model, precision, precision_note, resolve_device, save_model
from rlino.objectives import Method, resolve_method
from rlino.prompts import RAW, config_prompt_format
from rlino.run_folder import CONFIG, EVAL_SAMPLES, METRICS, STATE_FILE, RunFolder, timestamped
from rlino.schedule import lr_schedule
from rlino.sharding import SHARDED_DIR, full_state_dict, gathered, is_sharded, load_sharded, save_sharded, shard_
from rlino.step import Clock, NonFiniteStep, Policy, StepResult, records, sample_groups, score, update
from rlino.tasks import load_task
from rlino.trackers import Trackers


class RlinoWarning(UserWarning):
    """A run that goes on but is probably not learning (truncation, zero-variance groups)."""


warnings.simplefilter("always", RlinoWarning)


def validate(cfg: Config) -> Method:
    """Check the settings that can be checked before anything is loaded; return the resolved method."""
    method = resolve_method(cfg.method)
    if method.needs_groups and cfg.train.group_size < 2:
        raise RlinoError(f"method '{method.name}' compares responses within a group (weights '{method.weights}'): "
                         f"train.group_size must be >= 2, got {cfg.train.group_size}")
    check_config(cfg)
    changed = changed_critic_keys(cfg)
    if changed and not method.has_critic:
        raise RlinoError(f"{', '.join(changed)} set, but method '{method.name}' has no critic (weights "
                         f"'{method.weights}'); the [critic] settings are for ppo (or method.weights = 'gae')")
    if method.has_critic and cfg.critic.warmup_steps >= cfg.train.steps:
        raise RlinoError(f"critic.warmup_steps ({cfg.critic.warmup_steps}) must be < train.steps "
                         f"({cfg.train.steps}): the policy would never be trained")
    return method


def resolved_config(cfg: Config, method: Method) -> Config:
    """The config with the method row's choices written out, as saved in the run folder."""
    cfg = copy.deepcopy(cfg)
    for key in ("weights", "aggregation", "clip", "clip_eps", "clip_eps_high", "beta", "term", "mini_batches"):
        setattr(cfg.method, key, getattr(method, key))
    return cfg


def lr_lambda(cfg: Config) -> Callable[[int], float]:
    """The run's LR factor per optimizer step (steps × epochs_per_batch × mini_batches of them; `cfg` resolved)."""
    t = cfg.train
    updates = cfg.method.epochs_per_batch * (cfg.method.mini_batches or 1)
    return lr_schedule(warmup_steps=t.warmup_steps, total_steps=t.steps * updates,
                       shape=t.lr_schedule)


class Run:
    """One training run in one folder: build everything from the config, then `fit()`.

    `on_phase(name, seconds)`, when given, hears the end of each phase of each step (sample, score, reference,
    optimizer, update): the benchmarks time the loop through it.
    """

    def __init__(self, cfg: Config, out_dir: str | Path, resume: bool = False, label: str | None = None,
                 on_phase: Callable[[str, float], None] | None = None, quiet: bool = False):
        self.label = label
        self.quiet = quiet  # no progress bar or precision line (runs in a compare's worker processes)
        self.method = validate(cfg)
        self.cfg = c = resolved_config(cfg, self.method)
        self.folder = RunFolder(out_dir)
        self.out = self.folder.path
        if not resume and self.folder.holds_run():
            raise RlinoError(f"{self.out} already holds a run: pass --resume {self.out} to continue it, "
                             f"or choose another --out")
        self.device = local_device(resolve_device(c.model.device))
        self.world = init_world(self.device)  # one process, or this rank of a torchrun launch
        if c.train.prompts_per_step < self.world.size:
            raise RlinoError(f"train.prompts_per_step ({c.train.prompts_per_step}) must be >= the number of "
                             f"processes ({self.world.size}): each rank samples whole groups")
        self.task = load_task(c.task.name, **c.task.options)
        self.train_items = self.task.items("train")
        self.eval_items = self.task.items("test")[: c.eval.num_items] if c.eval.every else []
        self.policy = self._build_policy()
        self.clock = Clock(on_phase)
        self.step = 0
        self.elapsed = 0.0  # wall seconds spent in steps and evaluations, across resumes
        self.zero_std_streak = 0
        torch.manual_seed(c.train.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._resume()
        if self.world.is_main:
            save_config(self.cfg, self.folder.file(CONFIG))
        # train.report_to: TensorBoard / W&B / Trackio beside metrics.jsonl, on rank 0 (a missing package stops here)
        self.trackers = Trackers(c.train.report_to if self.world.is_main else [], self.out,
                                 label or self.out.name, config_to_dict(c), resume_step=self.step)
        if self.world.is_main and not quiet:
            tqdm.write(f"rlino: {precision_note(c.model.autocast, sampling_autocast(c), self.device)}", file=sys.stderr)
            if self.policy.prompt_format != RAW:  # a chat template or a BOS token: say what the model reads
                tqdm.write(f"rlino: {self.policy.prompt_format.describe()}", file=sys.stderr)

    # the parts of the policy, by their usual names
    model = property(lambda self: self.policy.model)
    tokenizer = property(lambda self: self.policy.tokenizer)
    ref_model = property(lambda self: self.policy.ref_model)
    optimizer = property(lambda self: self.policy.optimizer)
    scheduler = property(lambda self: self.policy.scheduler)

    def autocast(self):
        """The configured mixed precision (model.autocast) as a fresh context; a no-op for fp32."""
        return autocast(self.cfg.model.autocast, self.device)

    def sample_autocast(self):
        """The precision of sampling and evaluation (sampling.autocast) as a fresh context."""
        return autocast(sampling_autocast(self.cfg), self.device)

    def _build_policy(self) -> Policy:
        """The policy (with LoRA adapters when configured), its frozen reference when β > 0, AdamW and the schedule;
        every rank starts from rank 0's weights."""
        c, device = self.cfg, str(self.device)
        if not self.world.is_main:
            self.world.barrier()  # rank 0 loads first (and builds a cached embedded model once, not N times)
        model, tokenizer = load_model(c.model.name_or_path, dtype=c.model.dtype, device=device, seed=c.train.seed)
        # LoRA (model.lora.rank > 0): adapters injected into the model in place; None without LoRA
        self.lora = attach_lora(model, c.model.lora, seed=c.train.seed, base_name=c.model.name_or_path)
        ref_model = None
        if self.method.beta > 0 and self.lora is not None:
            # with LoRA the reference is the policy itself with its adapters disabled (PEFT's disable_adapter()):
            # the frozen base weights are the initial model, so no second full copy is loaded
            ref_model = self.lora.reference()
        elif self.method.beta > 0:  # the reference model exists only when the KL term does
            ref_model, _ = load_model(c.model.name_or_path, dtype=c.model.dtype, device=device, seed=c.train.seed)
            ref_model.eval().requires_grad_(False)
        if self.world.is_main:
            self.world.barrier()
        self.world.broadcast_params_(model)
        if c.train.gradient_checkpointing:
            # non-reentrant: frozen embeddings (LoRA) would otherwise cut the adapters' gradients
            if hasattr(model, "activation_checkpointing_enable"):  # the transformers 5.x name
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if ref_model is not None and self.lora is None:
            self.world.broadcast_params_(ref_model)
        for part in (model, ref_model):
            self._shard(part)
        optimizer, scheduler = self._optimizer(model, c.train.learning_rate)
        policy = Policy(model, tokenizer, ref_model, optimizer, scheduler, self.autocast, self.sample_autocast,
                        prompt_format=config_prompt_format(c, tokenizer))
        if self.method.has_critic:
            policy.critic = build_critic(c.critic.model or c.model.name_or_path, dtype=c.model.dtype, device=device,
                                         seed=c.train.seed)
            self.world.broadcast_params_(policy.critic)
            self._shard(policy.critic)
            lr = c.critic.learning_rate or 10 * c.train.learning_rate
            policy.critic_optimizer, policy.critic_scheduler = self._optimizer(policy.critic, lr)
        return policy

    def _shard(self, model: torch.nn.Module | None) -> None:
        """train.sharding = "fsdp" on several ranks: FSDP2 on `model` (after every rank holds rank 0's weights, before
        its optimizer exists); bf16 compute when training resolves to bf16. One process has nothing to shard."""
        if model is not None and self.cfg.train.sharding == "fsdp" and self.world.active:
            shard_(model, bf16_compute=precision(self.cfg.model.autocast, self.device) == "bf16")

    def _optimizer(self, model: torch.nn.Module, lr: float):
        """AdamW over the trainable parameters and the run's LR schedule."""
        t = self.cfg.train
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                      betas=(t.adam_beta1, t.adam_beta2), eps=t.adam_eps, weight_decay=t.weight_decay)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(self.cfg))

    # ---- one step -------------------------------------------------------------------------------------------------
    def train_step(self, step: int) -> StepResult:
        c, m, clock = self.cfg, self.method, self.clock
        clock.seconds = {}
        with clock.phase("sample"):
            batch = sample_groups(self.policy, c, self.world, self.train_items, step)
        with clock.phase("score"):
            scored = score(self.task, batch, m, c.train.group_size)
        try:
            with clock.phase("update"):
                stats = update(self.policy, batch, scored, c, m, self.world, clock, step)
        except NonFiniteStep as e:
            raise RlinoError(f"{e} {self._last_checkpoint_note()}") from None
        result = records(step, batch, scored, stats, c, m, self.world, self.scheduler.get_last_lr()[0],
                         has_ref=self.ref_model is not None,
                         prompt_fields=lambda prompt: self.policy.prompt_format.log_fields(self.tokenizer, prompt))
        seconds = clock.seconds
        sampled, updated = seconds["sample"] + seconds["score"], seconds["update"]
        result.metrics.update(step_time_s=sampled + updated, sample_time_s=sampled, update_time_s=updated,
                              tokens_per_s=stats.num_tokens / max(sampled + updated, 1e-9))
        self._warn(step, result.metrics)
        return result

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

    def evaluate(self, step: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Held-out metrics (eval/ keys) and the logged held-out responses."""
        c = self.cfg
        with gathered(self.model), self.sample_autocast():
            result = evaluate(self.model, self.tokenizer, self.task, self.eval_items, seed=c.train.seed,
                              temperature=c.eval.temperature, top_p=c.eval.top_p, max_new_tokens=eval_max_new_tokens(c),
                              batch_size=c.sampling.batch_size, log_samples=c.eval.log_samples, world=self.world,
                              engine=c.sampling.engine, prompt_format=self.policy.prompt_format)
        return result, [{"step": step, **s} for s in result.pop("samples", [])]

    # ---- the loop -------------------------------------------------------------------------------------------------
    def fit(self) -> Path:
        c = self.cfg
        bar = tqdm(total=c.train.steps, initial=self.step, desc=self.label or self.method.name, file=sys.stderr,
                   dynamic_ncols=True, disable=self.quiet or not self.world.is_main)
        last_eval = None
        try:
            for step in range(self.step + 1, c.train.steps + 1):
                t0 = time.perf_counter()
                result = self.train_step(step)
                metrics, lines = result.metrics, result.lines
                if c.eval.every and (step % c.eval.every == 0 or step == c.train.steps):
                    held_out, lines[EVAL_SAMPLES] = self.evaluate(step)
                    metrics.update(held_out)
                    last_eval = metrics["eval/accuracy"]
                self.elapsed += time.perf_counter() - t0
                metrics["time_s"] = self.elapsed
                lines[METRICS] = [metrics]
                if self.world.is_main:  # rank 0 writes the logs
                    self.folder.append(lines)
                    self.trackers.log(metrics)
                self.step = step
                if step == c.train.steps or (c.train.save_every and step % c.train.save_every == 0):
                    self.save_checkpoint()
                postfix = dict(reward=f"{metrics['reward_mean']:.3f}", acc=f"{metrics['accuracy']:.3f}")
                if last_eval is not None:
                    postfix["eval"] = f"{last_eval:.3f}"
                bar.set_postfix(postfix)
                bar.update(1)
        finally:
            bar.close()
            self.trackers.close()
        return self.checkpoint_dir(self.step)

    # ---- checkpoints ----------------------------------------------------------------------------------------------
    def checkpoint_dir(self, step: int) -> Path:
        return self.folder.checkpoint_dir(step)

    def save_checkpoint(self) -> Path:
        """Write model + optimizer + scheduler + RNG + step, atomically (a folder appears only when complete)."""
        if is_sharded(self.model):
            return self._save_sharded()
        if not self.world.is_main:  # rank 0 writes the checkpoint; the others wait until it is complete
            self.world.barrier()
            return self.checkpoint_dir(self.step)

        def write(folder: Path) -> None:
            if self.lora is not None:  # merged full weights (a plain HF folder) + the adapter in folder/adapter/
                self.lora.save(self.tokenizer, folder)
            else:
                save_model(self.model, self.tokenizer, folder)
            state = self._trainer_state()
            state["optimizer"] = self.optimizer.state_dict()
            if self.policy.critic is not None:  # the critic's weights beside the model's, its optimizer in the state
                save_critic(self.policy.critic, folder)
                state["critic_optimizer"] = self.policy.critic_optimizer.state_dict()
            torch.save(state, folder / STATE_FILE)

        final = self.folder.write_checkpoint(self.step, write, keep=self.cfg.train.keep_checkpoints)
        self.world.barrier()
        return final

    def _save_sharded(self) -> Path:
        """FSDP: every rank writes its shards of the weights and AdamW states (torch.distributed.checkpoint, in
        sharded/); rank 0 gathers the full weights into a plain Hugging Face folder beside them, and the state."""
        tmp = self.folder.start_checkpoint(self.step) if self.world.is_main else None
        self.world.barrier()  # the temporary folder exists before any rank writes into it
        save_sharded(self.folder.checkpoint_tmp(self.step) / SHARDED_DIR, self._sharded_parts())
        weights = full_state_dict(self.model)  # collectives: every rank takes part, rank 0 receives
        critic = full_state_dict(self.policy.critic) if self.policy.critic is not None else None
        if tmp is not None:
            save_model(self.model, self.tokenizer, tmp, state_dict=weights)
            if critic is not None:
                save_critic(self.policy.critic, tmp, state_dict=critic)
            torch.save(self._trainer_state(), tmp / STATE_FILE)
            self.folder.commit_checkpoint(self.step, keep=self.cfg.train.keep_checkpoints)
        self.world.barrier()
        return self.checkpoint_dir(self.step)

    def _sharded_parts(self) -> dict:
        critic = self.policy.critic
        return {"policy": (self.model, self.optimizer)} | ({} if critic is None else
                                                            {"critic": (critic, self.policy.critic_optimizer)})

    def _trainer_state(self) -> dict[str, Any]:
        """What a checkpoint holds beside the weights and optimizer states: schedules, RNG, step, counters."""
        state = {"step": self.step, "scheduler": self.scheduler.state_dict(), "zero_std_streak": self.zero_std_streak,
                 "elapsed": self.elapsed, "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()}
        if self.policy.critic is not None:
            state["critic_scheduler"] = self.policy.critic_scheduler.state_dict()
        return state

    def _last_checkpoint_note(self) -> str:
        done = self.folder.complete_checkpoints()
        return f"Last good checkpoint: {done[-1]}" if done else "No checkpoint was written yet."

    def _resume(self) -> None:
        done = self.folder.complete_checkpoints()
        if not done:
            raise RlinoError(f"--resume {self.out}: no complete checkpoint in {self.checkpoint_dir(0).parent}")
        ckpt = done[-1]
        state = torch.load(ckpt / STATE_FILE, weights_only=False)
        if (ckpt / SHARDED_DIR).is_dir():  # written under FSDP: loads on any number of ranks, sharded or not
            load_sharded(ckpt / SHARDED_DIR, self._sharded_parts())
        elif is_sharded(self.model):
            raise RlinoError(f"--resume {self.out}: {ckpt} was written without sharding (no {SHARDED_DIR}/); resume "
                             f"it with train.sharding = 'none'")
        else:
            self._load_full_checkpoint(ckpt, state)
        self.scheduler.load_state_dict(state["scheduler"])
        if self.policy.critic is not None:
            self.policy.critic_scheduler.load_state_dict(state["critic_scheduler"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        self.step, self.zero_std_streak, self.elapsed = state["step"], state["zero_std_streak"], state["elapsed"]
        if self.world.is_main:  # drop log lines the checkpoint does not cover: no step lost, none repeated
            self.folder.truncate_logs(self.step)

    def _load_full_checkpoint(self, ckpt: Path, state: dict[str, Any]) -> None:
        """Weights from the checkpoint's Hugging Face folder (or its LoRA adapter), optimizers from its state."""
        if not resume_lora(self.lora, ckpt):  # LoRA: the base model is reloaded as configured; load the adapter
            loaded, _ = load_model(str(ckpt), dtype=self.cfg.model.dtype,
                                   device=str(next(self.model.parameters()).device))
            self.model.load_state_dict(loaded.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        if self.policy.critic is not None:
            load_critic_(self.policy.critic, ckpt)
            self.policy.critic_optimizer.load_state_dict(state["critic_optimizer"])


def train(config_path: str | Path | None, overrides: list[str] | None = None, out: str | Path | None = None,
          resume: str | Path | None = None) -> Path:
    """`rlino train`: build a run from a config (or from the run folder being resumed) and fit it."""
    if resume is not None:
        resume = Path(resume)
        if not (resume / CONFIG).is_file():
            raise RlinoError(f"--resume {resume}: no config.toml there; is it a run folder?")
        cfg = load_config(resume / CONFIG, overrides)
        run = Run(cfg, resume, resume=True)
    else:
        cfg = load_config(config_path, overrides)
        if out is None:
            out = timestamped(cfg.method.name)
        run = Run(cfg, out)
    return run.fit()
