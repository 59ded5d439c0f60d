"""The mutation check: realistic one-line bugs, each applied to a throwaway copy of the code, and the tests that must
catch it.

    python tools/mutation_check.py                 # every mutation (about 10 minutes on 2 cores)
    python tools/mutation_check.py --list          # the names, files and tests
    python tools/mutation_check.py --only top_p_boundary --only eos_not_in_mask
    python tools/mutation_check.py --baseline      # first check that the unmutated copy passes the same tests

Each mutation is a textual replacement that must match exactly once in the current code (so a refactor that moves
the code makes this script fail loudly instead of silently testing nothing). For each one, `src/`, `tests/` and
`configs/` are copied to a temporary folder, the replacement is applied there, and pytest runs the named tests
against the copy (`PYTHONPATH` puts the copy's `src/` ahead of the installed package, subprocesses included).
A mutation is *caught* when pytest reports a failing test (exit code 1); any other non-zero exit (a collection
error, a crash) is reported as *error*, since it says nothing about whether a test noticed. Exit status: 0 when
every mutation was caught, 1 otherwise.

Why a hand-written list rather than mutmut or cosmic-ray: those generate thousands of operator swaps over the whole
package; with a one-minute suite on 2 cores that is hours per run, and most generated mutants are equivalent or
cosmetic. The named list holds the bugs that matter to a user of this library (what each would do is in `effect`);
add one whenever a bug slips past the suite. The current score is in docs/testing.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "configs")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    """Path under the repository root."""
    old: str
    """Exact text, present exactly once in `file`."""
    new: str
    tests: tuple[str, ...]
    """pytest node ids or files (relative to the repository root) that must catch it."""
    effect: str
    """What the bug would do to a user."""


M = Mutation
OBJ, ROLL, TRAIN = "src/rlino/objectives.py", "src/rlino/rollout.py", "src/rlino/trainer.py"
STEP, FOLDER = "src/rlino/step.py", "src/rlino/run_folder.py"

MUTATIONS: list[Mutation] = [
    # ---- the table (bugs the suite missed in the audit) --------------------------------------------------
    M("logprobs_ignore_temperature", ROLL,
      "scale = 1.0 / temperature if temperature > 0 else 1.0", "scale = 1.0",
      ("tests/test_logprob_oracle.py",),
      "ratio != 1 on the first update whenever T != 1 (the paper samples at 0.6)"),
    # The literal "forward without attention_mask" is an equivalent mutant under transformers >= 5: given
    # position_ids and no mask, it detects the left padding's repeated position 0 as packed sequences and masks it
    # (docs/testing.md). The bug that does reach a user is a mask (and positions) built as if nothing were padded.
    M("logprobs_without_attention_mask", ROLL,
      "attention = torch.cat([prompt_mask, completion_mask], dim=1)", "attention = torch.ones_like(ids)",
      ("tests/test_logprob_oracle.py",),
      "left padding attended: wrong log-probs for short prompts"),
    M("decode_position_not_advanced", ROLL,
      "        position = position + 1\n", "        position = position\n",
      ("tests/test_logprob_oracle.py", "tests/test_rollout_and_grads.py"),
      "every sampled token at the same position"),
    M("top_p_drops_boundary_token", ROLL,
      "drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= top_p", "drop_sorted = cum > top_p",
      ("tests/test_logprob_oracle.py",),
      "the nucleus is one token short"),
    M("eos_not_in_mask", ROLL,
      "before = is_eos.long().cumsum(dim=1) - is_eos.long()", "before = is_eos.long().cumsum(dim=1)",
      ("tests/test_logprob_oracle.py",),
      "the end-of-sequence token gets no gradient: the model never learns to stop"),
    M("old_logp_refreshed_every_epoch", STEP,
      "    if part.old_logps[k] is None:\n        part.old_logps[k] = logp.detach()",
      "    if True:\n        part.old_logps[k] = logp.detach()",
      ("tests/test_train.py", "tests/test_mini_batches.py"),
      "ratio always 1: the clip never acts with epochs_per_batch > 1"),
    M("scheduler_not_restored", TRAIN,
      '        self.scheduler.load_state_dict(state["scheduler"])\n', "",
      ("tests/test_train.py",),
      "a resumed cosine run restarts its schedule"),
    M("grad_clipping_disabled", STEP,
      'max_norm = cfg.train.max_grad_norm if cfg.train.max_grad_norm > 0 else float("inf")',
      'max_norm = float("inf")',
      ("tests/test_train.py",),
      "max_grad_norm silently ignored"),
    M("resolve_method_drops_std", OBJ,
      "neg_weight=cfg.neg_weight, std=cfg.std,", "neg_weight=cfg.neg_weight,",
      ("tests/test_objectives.py",),
      "the paper configs' std = 'population' silently ignored"),
    M("rng_not_restored", TRAIN,
      '        torch.set_rng_state(state["torch_rng"])\n', "",
      ("tests/test_train.py",),
      "a resumed run with dropout draws different masks than an uninterrupted one"),
    # ---- more bugs of the same kind in the core ---------------------------------------------------------------
    M("kl_sign_flipped", OBJ, "delta = ref_logp - logp", "delta = logp - ref_logp",
      ("tests/test_objectives.py",), "the k3 KL estimate of the wrong direction: a different penalty and gradient"),
    M("clip_min_becomes_max", OBJ, "per_token = -torch.minimum(ratio * w, clipped * w)",
      "per_token = -torch.maximum(ratio * w, clipped * w)",
      ("tests/test_objectives.py",), "the pessimistic PPO bound becomes optimistic: the clip never limits a step"),
    M("clip_high_uses_low_eps", OBJ, "ratio.clamp(1 - method.clip_eps, 1 + method.clip_eps_high)",
      "ratio.clamp(1 - method.clip_eps, 1 + method.clip_eps)",
      ("tests/test_objectives.py",), "DAPO's clip-higher silently symmetric"),
    M("seq_mean_divides_by_all_tokens", OBJ, "lengths = mask.sum(dim=1).clamp(min=1)",
      "lengths = mask.sum().clamp(min=1)",
      ("tests/test_objectives.py",),
      "GRPO's per-response mean becomes a global token mean: the length effect vanishes"),
    M("token_mean_per_micro_batch", OBJ, "total = mask.sum() if num_tokens is None else num_tokens",
      "total = mask.sum()",
      ("tests/test_rollout_and_grads.py",),
      "token-mean normalised per micro-batch: the update depends on micro_batch_size"),
    M("group_std_always_population", OBJ, 'unbiased=method.std == "sample"', "unbiased=False",
      ("tests/test_objectives.py",), "std = 'sample' silently ignored"),
    M("neg_weight_ignored", OBJ, "return method.pos_weight * ok - method.neg_weight * (1 - ok)",
      "return method.pos_weight * ok - (1 - ok)",
      ("tests/test_objectives.py",), "method.neg_weight silently ignored by fisft_pos_neg"),
    M("format_bonus_counts_as_correct", OBJ, "return rewards >= 1.0 - 1e-6", "return rewards > 0",
      ("tests/test_objectives.py",), "a partial (format) reward gets the +1 of a correct answer"),
    M("groups_interleaved", OBJ, "g = r.view(-1, group_size)", "g = r.view(group_size, -1).t()",
      ("tests/test_objectives.py",), "advantages computed across prompts instead of within each prompt's group"),
    M("micro_batch_drops_a_prompt_token", ROLL, "first = int((pm.sum(dim=0) > 0).long().argmax())",
      "first = int((pm.sum(dim=0) > 0).long().argmax()) + 1",
      ("tests/test_logprob_oracle.py",), "the longest prompt of a micro-batch loses its first token"),
    M("micro_batch_drops_the_last_token", ROLL, "last = max(int(cm.sum(dim=1).max()), 1)",
      "last = max(int(cm.sum(dim=1).max()) - 1, 1)",
      ("tests/test_logprob_oracle.py",), "the longest response of a micro-batch loses its last token (often its EOS)"),
    M("logprobs_shifted_by_one", ROLL, "logits = logits[:, p - 1: p - 1 + completion_ids.shape[1]]",
      "logits = logits[:, p: p + completion_ids.shape[1]]",
      ("tests/test_logprob_oracle.py",), "each token scored by the logits of the next position"),
    M("generation_config_eos_ignored", ROLL, "        ids.update(extra)\n", "        pass\n",
      ("tests/test_logprob_oracle.py",), "Llama 3 instruct's second EOS never ends a response"),
    M("gumbel_noise_ignores_position", ROLL, "h = _mix((keys + position * 0x5BD1E99) & MASK32)",
      "h = _mix(keys & MASK32)",
      ("tests/test_logprob_oracle.py",), "the same noise at every position of a response: not a sample of the policy"),
    M("exponential_instead_of_gumbel", ROLL, "return -torch.log(-torch.log(u))", "return -torch.log(u)",
      ("tests/test_logprob_oracle.py",), "samples from a distribution other than softmax(logits / T)"),
    M("resume_drops_the_checkpoint_step", FOLDER, 'json.loads(line)["step"] <= step:',
      'json.loads(line)["step"] < step:',
      ("tests/test_train.py",), "a resumed run loses the last checkpointed step's log lines"),
    M("same_shuffle_every_pass", "src/rlino/schedule.py", "random.Random(seed * 1_000_003 + epoch)",
      "random.Random(seed * 1_000_003)",
      ("tests/test_train.py",), "every pass over the training split visits the prompts in the same order"),
    M("grads_kept_across_epochs", STEP, "        policy.optimizer.zero_grad(set_to_none=True)\n", "",
      ("tests/test_train.py",), "the second epoch on a batch also applies the first epoch's gradient again"),
    M("reference_is_the_policy", "src/rlino/mini_batches.py",
      "ref = frozen_logprobs(ref_model, autocast,", "ref = frozen_logprobs(model, autocast,",
      ("tests/test_train.py",), "the KL penalty measured against the current policy: always 0, no regularisation"),
    M("keep_checkpoints_deletes_the_newest", FOLDER, "self.complete_checkpoints()[:-keep]",
      "self.complete_checkpoints()[keep:]",
      ("tests/test_train.py",), "keep_checkpoints removes the newest checkpoints instead of the oldest"),
    M("schedule_ignores_epochs_per_batch", TRAIN,
      "updates = cfg.method.epochs_per_batch * (cfg.method.mini_batches or 1)",
      "updates = cfg.method.mini_batches or 1",
      ("tests/test_train.py",), "with epochs_per_batch > 1 the schedule reaches 0 halfway through the run"),
    M("step_normaliser_per_rank", "src/rlino/mini_batches.py",
      "counts = world.sum_floats(*(x for r in rows for x in (float(len(r)), float(mask[r].sum()))))",
      "counts = [x for r in rows for x in (float(len(r)), float(mask[r].sum()))]",
      ("tests/test_distributed.py::test_two_ranks_match_one_process",),
      "with N ranks every update is N times too large"),
    M("clip_sides_swapped", OBJ, "clip_low = (was_clipped & m & (ratio < 1))",
      "clip_low = (was_clipped & m & (ratio > 1))",
      ("tests/test_objectives.py",), "clip_frac_low reports clip-higher's clipping: DAPO's asymmetry misread"),
    M("weights_line_without_aggregation", STEP, '"aggregation": method.aggregation, ', "",
      ("tests/test_length_study.py", "tests/test_train.py"),
      "the length study falls back to guessing the aggregation of each step"),
    M("lean_step_attends_padding", "src/rlino/engine.py", "mask = attention.bool()[:, None, None, :]", "mask = None",
      ("tests/test_engine.py",), "sampling.engine = lean attends the left padding: wrong samples for short prompts"),
    M("lean_step_rotary_one_off", "src/rlino/engine.py", "cos, sin = self._rotary(positions, x.dtype)",
      "cos, sin = self._rotary(positions + 1, x.dtype)",
      ("tests/test_engine.py",), "sampling.engine = lean samples every token one position too far"),
    M("lean_step_ignores_lora", "src/rlino/engine.py",
      "weight = weight + m.scaling[name] * (b.to(weight.dtype) @ a.to(weight.dtype))", "weight = weight",
      ("tests/test_engine.py",), "a LoRA policy samples from its base weights: the adapters never reach sampling"),
    M("shared_prefill_rows_shifted", "src/rlino/rollout.py", "    cache.batch_select_indices(inverse)\n",
      "    cache.batch_select_indices(inverse.roll(1))\n",
      ("tests/test_engine.py",), "a prompt prefilled once is copied to the wrong rows: answers to other prompts"),
    M("sampling_in_training_precision", STEP, "    with gathered(policy.model), policy.sample_autocast():",
      "    with gathered(policy.model), policy.autocast():",
      ("tests/test_train.py",), "sampling.autocast ignored: training in bf16 silently samples in bf16 too"),
    M("auto_engine_never_lean", "src/rlino/rollout.py", 'if engine in ("lean", "auto"):', 'if engine == "lean":',
      ("tests/test_engine.py",), "the default engine quietly decodes with the slower reference path"),
    M("pass_at_k_needs_every_sample", "src/rlino/evaluate.py", "int(correct.any(dim=0).sum()) / n",
      "int(correct.all(dim=0).sum()) / n",
      ("tests/test_evaluate.py",), "pass@k reported as 'all k correct'"),
    # ---- compare, report, tasks and verifiers ---------------------------------------------------------------------
    M("compare_resume_ignores_config_change", "src/rlino/compare.py",
      "if _results_config(started) != _results_config(raw):",
      "if False:",
      ("tests/test_compare.py",), "a resumed comparison mixes two configs in one report"),
    M("compare_resume_drops_seeds", "src/rlino/compare.py", "    if dropped:", "    if False:",
      ("tests/test_compare.py",), "--resume with fewer seeds leaves finished runs outside the plan it reports"),
    M("compare_finished_off_by_one", FOLDER,
      "return last is not None and last >= steps", "return last is not None and last > steps",
      ("tests/test_compare.py",), "--resume never treats a finished arm as finished and trains it again"),
    M("countdown_file_test_not_deduplicated", "src/rlino/tasks/countdown.py",
      "    test_rows = [i for i in test_rows if _key(*problems[i]) not in seen]\n", "",
      ("tests/test_tasks.py",), "held-out accuracy on a file or hub source counts problems the model trained on"),
    M("gsm8k_gym_test_not_deduplicated", "src/rlino/tasks/gsm8k.py",
      "            splits[split] = [item for item in items if item.question not in seen]\n",
      "            splits[split] = items\n",
      ("tests/test_tasks.py",), "reasoning-gym held-out accuracy counts questions the model trained on"),
    M("countdown_number_reuse_accepted", "src/rlino/tasks/countdown.py",
      "and sorted(literals) == sorted(item.numbers)", "and set(literals) == set(item.numbers)",
      ("tests/test_verifiers.py",), "the verifier rewards answers that use a number twice: RL learns to cheat"),
    M("gsm8k_first_boxed_wins", "src/rlino/tasks/answers.py",
      'start = text.rfind("\\\\boxed", 0, end)', 'start = text.find("\\\\boxed", 0, end)',
      ("tests/test_verifiers.py",), "a response that corrects its first \\boxed{} answer is graded on the wrong one"),
    M("wilson_half_width_slip", "src/rlino/stats.py", "z * z / (4 * n * n))", "z * z / (4 * n))",
      ("tests/test_report.py",), "every 95% interval far too wide: real differences reported as overlapping"),
    M("length_plot_panels_swapped", "src/rlino/report/plots.py",
      '("length_correct_mean", "length_wrong_mean"), ("correct", "wrong")',
      '("length_wrong_mean", "length_correct_mean"), ("correct", "wrong")',
      ("tests/test_report.py",), "the correct-length plot shows wrong-response lengths and vice versa"),
    M("claim_comparable_by_overlap", "src/rlino/report/claims.py",
      'if -MARGIN <= fit["lo"] and fit["hi"] <= MARGIN:', 'if -MARGIN <= fit["hi"] and fit["lo"] <= MARGIN:',
      ("tests/test_claims.py",), "'comparable' whenever the interval touches ±5: too few seeds reads as agreement"),
    M("claim_pairs_by_position", "src/rlino/report/evidence.py",
      "sa, sb = finished(ra), finished(rb)",
      "sa, sb = finished(ra), dict(zip(finished(ra), finished(rb).values()))",
      ("tests/test_claims.py",), "differences taken between different seeds: the pairing of common noise is lost"),
    M("claim_collapse_one_sided", "src/rlino/report/claims.py",
      'if fit["hi"] < COLLAPSE:', 'if fit["mean"] < COLLAPSE:',
      ("tests/test_claims.py",), "a collapse declared on the mean alone, whatever the spread over seeds"),
    M("unfinished_seed_pooled", "src/rlino/report/results.py",
      'and r["steps"] == r["planned_steps"]}', "}",
      ("tests/test_report.py",), "a seed that stopped early is averaged with finished ones: a wrong final figure"),
    M("seed_interval_df_slip", "src/rlino/stats.py",
      "half = t_quantile_975(n - 1) * used / math.sqrt(n)", "half = t_quantile_975(n) * used / math.sqrt(n)",
      ("tests/test_report.py",), "intervals over seeds too narrow: verdicts claimed on too little evidence"),
    M("rloo_baseline_includes_itself", OBJ,
      "return (g - (g.sum(dim=1, keepdim=True) - g) / (group_size - 1)).reshape(-1)",
      "return (g - g.sum(dim=1, keepdim=True) / group_size).reshape(-1)",
      ("tests/test_objectives.py",), "RLOO silently becomes Dr. GRPO's group-centred weight (G/(G−1) too small)"),
    M("reinforce_rej_keeps_uniform_groups", OBJ,
      "return ((ok - method.neg_weight * (1 - ok)) * mixed).reshape(-1)",
      "return (ok - method.neg_weight * (1 - ok)).reshape(-1)",
      ("tests/test_objectives.py",), "Reinforce-Rej trains on all-wrong prompts: it becomes F-ISFT+− and collapses"),
    M("seed_interval_without_floor", "src/rlino/stats.py",
      "used = max(sd, floor_sd or 0.0)", "used = sd",
      ("tests/test_claims.py", "tests/test_report.py"), "two seeds that agree by chance give a zero-width interval"),
    M("every_seed_same_prompts", "src/rlino/compare.py",
      '    data["train"]["seed"] = rep.seed\n', "",
      ("tests/test_compare.py",), "every seed reruns seed 0: the 'spread over seeds' is zero and intervals lie"),
    M("accuracy_plot_without_base_step", "src/rlino/report/plots.py",
      "        if steps[0] > 0:  # the base model is every arm's step 0\n",
      "        if False:  # the base model is every arm's step 0\n",
      ("tests/test_report.py",), "accuracy curves start at the first evaluation instead of at the base model"),
    # issue 15: PPO's critic and credit per token, NFT
    M("gae_without_lambda", "src/rlino/gae.py",
      "running = (delta + gamma * lam * running) * mask[:, t]", "running = (delta + gamma * running) * mask[:, t]",
      ("tests/test_ppo.py",), "GAE ignores λ: every ppo advantage is the Monte Carlo one, critic.lam does nothing"),
    M("gae_bootstraps_from_padding", "src/rlino/gae.py",
      "    values = values * mask\n", "",
      ("tests/test_ppo.py",), "the value read on padding leaks into the last token's advantage"),
    M("value_clip_takes_the_min", "src/rlino/gae.py",
      "per_token = 0.5 * torch.maximum(unclipped, clipped)", "per_token = 0.5 * torch.minimum(unclipped, clipped)",
      ("tests/test_ppo.py",), "the clipped value loss becomes optimistic: the critic can move as far as it likes"),
    M("critic_reads_the_next_position", "src/rlino/critic.py",
      "hidden = hidden[:, p - 1: p - 1 + completion_ids.shape[1]]",
      "hidden = hidden[:, p: p + completion_ids.shape[1]]",
      ("tests/test_ppo.py",), "V_t is the value after token t, not before: the advantage credits the wrong token"),
    M("whitening_per_rank", "src/rlino/credit.py",
      "n, a1, a2, r1, r2, e1, e2, v1 = world.sum_floats(", "n, a1, a2, r1, r2, e1, e2, v1 = (lambda *x: list(x))(",
      ("tests/test_distributed.py::test_two_ranks_match_one_process",),
      "under torchrun each rank whitens its own advantages: 2 ranks train another model than 1"),
    M("critic_not_in_checkpoint", "src/rlino/trainer.py",
      "            load_critic_(self.policy.critic, ckpt)\n", "",
      ("tests/test_train.py::test_resume_matches_an_uninterrupted_run",),
      "--resume restarts the critic from scratch: a resumed ppo run is not the uninterrupted one"),
    M("nft_floor_drops_the_gradient", OBJ,
      "floored = negative + (negative.clamp(min=NFT_EPS) - negative).detach()",
      "floored = negative.clamp(min=NFT_EPS)",
      ("tests/test_objectives.py",), "NFT's wrong responses stop pushing down once R > 1 (its code keeps it)"),
    M("nft_weight_is_the_hit_rate", OBJ,
      "return ((1 - ok.mean(dim=1, keepdim=True)) * mixed)", "return ((ok.mean(dim=1, keepdim=True)) * mixed)",
      ("tests/test_objectives.py",), "NFT's prompt weight ω = r̂ instead of 1 − r̂: easy prompts dominate"),
    M("position_thirds_off_by_one", "src/rlino/step.py",
      "third = torch.div(3 * t, lengths.clamp(min=1), rounding_mode=\"floor\")",
      "third = torch.div(3 * (t + 1), lengths.clamp(min=1), rounding_mode=\"floor\").clamp(max=2)",
      ("tests/test_ppo.py",), "the per-position credit plot shifts tokens into the next third"),
    # issue 16: GSM8K answers as models box them
    M("boxed_units_not_read", "src/rlino/tasks/answers.py",
      "        return boxed_answer(boxed)\n", "        return boxed\n",
      ("tests/test_tasks.py",), "\\boxed{42 \\text{ apples}} and \\boxed{x = 42} score 0: right answers punished"),
    M("bos_doubled", "src/rlino/prompts.py",
      "        if self.bos == \"add\" and ids[:1] != [self.bos_id]:\n", "        if self.bos == \"add\":\n",
      ("tests/test_prompts.py",), "a prompt that already starts with BOS gets a second one (Llama reads <s><s>)"),
    M("chat_template_not_in_training", "src/rlino/step.py",
      "engine=c.sampling.engine, prompt_format=policy.prompt_format)", "engine=c.sampling.engine)",
      ("tests/test_prompts.py",), "training samples raw prompts while evaluation uses the chat template"),
    M("fsdp_silently_off", "src/rlino/trainer.py",
      'if model is not None and self.cfg.train.sharding == "fsdp" and self.world.active:',
      'if False and model is not None and self.cfg.train.sharding == "fsdp":',
      ("tests/test_distributed.py::test_fsdp_two_ranks_match_one_process_and_resume_like_it",),
      "train.sharding = fsdp runs data parallel: every rank holds the whole model, and a 7B run does not fit"),
    M("fsdp_gradients_averaged", "src/rlino/sharding.py",
      "module.set_gradient_divide_factor(1.0)",
      "module.set_gradient_divide_factor(float(torch.distributed.get_world_size()))",
      ("tests/test_distributed.py::test_fsdp_two_ranks_match_one_process_and_resume_like_it",),
      "FSDP averages the gradients over ranks: a sharded run takes another update than one process"),
    M("shipped_base_ignored", "src/rlino/embedded/countdown_base.py",
      "if shipped is not None and not rebuild:", "if shipped is not None and rebuild:",
      ("tests/test_shipped_base.py::test_embedded_countdown_loads_the_shipped_weights_without_building",),
      "every machine builds its own base again: the arms inherit its float paths"),
    M("learning_rate_pair_with_other_changes", "src/rlino/report/claims.py",
      "len(sets) == 1 and sets[0]", "len(sets) >= 1 and sets[0]",
      ("tests/test_claims.py::test_claim_1_states_the_verdict_at_another_learning_rate_beside_its_own",),
      "an arm that changed more than the rate is reported as claim 1 at that rate"),
    M("tmp_checkpoint_counted_complete", "src/rlino/run_folder.py",
      'if p.name.startswith("step-") and not p.name.endswith(".tmp")\n'
      '                      and (p / STATE_FILE).is_file())',
      'if p.name.startswith("step-"))',
      ("tests/test_distributed.py::test_fsdp_killed_during_a_sharded_save_resumes_from_the_last_complete_checkpoint",),
      "a run killed in the middle of a (sharded) save resumes from the half-written checkpoint (either condition "
      "alone keeps it out: the state file is written after the shards)"),
    M("progress_rate_counts_resumed_steps", "src/rlino/progress.py",
      "(total - done) * elapsed / (done - start)", "(total - done) * elapsed / done",
      ("tests/test_progress.py::test_off_a_terminal_progress_is_a_log_line_a_minute_with_the_time_left",),
      "a resumed comparison counts the steps it found done as steps done in this invocation's time: it promises "
      "the rest too soon"),
    M("progress_counts_a_stale_log", "src/rlino/progress.py",
      "last = (r.folder.last_step() or 0) if fresh else r.start", "last = r.folder.last_step() or 0",
      ("tests/test_progress.py::test_off_a_terminal_progress_is_a_log_line_a_minute_with_the_time_left",),
      "the steps of a run that never checkpointed and starts over are counted done before it redoes them"),
    M("report_first_screen_without_findings", "src/rlino/report/document.py", "        *_findings(results),\n", "",
      ("tests/test_report.py::test_the_first_screen_says_what_was_found_claim_by_claim",),
      "the report opens on a dense table: a reader has to dig for what was found"),
    M("crowded_accuracy_plot_keeps_the_bands", "src/rlino/report/plots.py",
      "crowded = len(results[\"arms\"]) > CROWDED", "crowded = False",
      ("tests/test_report.py::test_a_crowded_legend_goes_under_the_plot_not_over_the_curves",),
      "a comparison of many arms draws a band per arm over each other: the accuracy curves disappear under them"),
    M("crowded_legend_on_the_axes", "src/rlino/report/plots.py", "CROWDED = 5\n", "CROWDED = 50\n",
      ("tests/test_report.py::test_a_crowded_legend_goes_under_the_plot_not_over_the_curves",),
      "a report with many arms has its legend over the curves"),
    M("unfinished_seed_shows_a_partial_slope", "src/rlino/report/document.py", "    if unfinished:\n",
      "    if False:\n",
      ("tests/test_report.py::test_seeds_are_pooled_with_a_t_interval_and_unfinished_seeds_left_out",),
      "a stopped seed's slope over its partial steps stands beside the finished seeds' figures"),
    M("shared_legend_from_the_first_panel_only", "src/rlino/report/plots.py", "    for ax in axes:\n        for handle",
      "    for ax in axes[:1]:\n        for handle",
      ("tests/test_report.py::test_the_crowded_position_plot_has_one_legend_naming_the_arms_of_both_panels",),
      "the shared legend of the credit plot leaves out the arms only the wrong-responses panel shows"),
    M("gguf_folder_trusted_without_its_marker", "src/rlino/gguf.py",
      'return (folder / MARKER).is_file() and (folder / "config.json").is_file()',
      'return (folder / "config.json").is_file()',
      ("tests/test_gguf.py::test_a_build_killed_midway_leaves_nothing_that_is_loaded_and_the_next_build_cleans_up",),
      "a folder left by a killed GGUF build (or copied in half) is loaded as the model"),
    M("gguf_partial_folders_never_cleared", "src/rlino/gguf.py",
      "if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():", "if False:",
      ("tests/test_gguf.py::test_a_build_killed_midway_leaves_nothing_that_is_loaded_and_the_next_build_cleans_up",),
      "every killed GGUF build leaves a half-written folder of hundreds of MB in the cache for good"),
    M("gym_partial_credit_counted_correct", "src/rlino/tasks/gym.py",
      "return 1.0 if self.raw_score(answer, item) >= FULL_MARKS else 0.0", "return self.raw_score(answer, item)",
      ("tests/test_reasoning_gym_task.py",),
      "a well-formed wrong answer earns reasoning-gym's partial credit as reward: not the 0/1 the methods assume"),
    M("math_guard_off", "src/rlino/tasks/symbolic.py",
      "if not answer or not gold or too_costly(answer) is not None:", "if not answer or not gold:",
      ("tests/test_math_task.py::test_a_costly_batch_never_reaches_the_worker",),
      "a policy that writes power towers stalls every step by the grader's 5-second limit per response"),
    M("gsm8k_empty_box_is_the_answer", "src/rlino/tasks/answers.py",
      "if content is None or content.strip():", "if True:",
      ("tests/test_tasks.py::test_gsm8k_reads_real_model_endings_as_math_verify_does",),
      "a response that states its answer, then copies the prompt's empty \\boxed{}, scores 0"),
    M("gsm8k_fraction_read_as_its_denominator", "src/rlino/tasks/answers.py",
      'if numerator and "," not in token:', "if False:",
      ("tests/test_tasks.py::test_gsm8k_reads_real_model_endings_as_math_verify_does",),
      "a response ending in 1/24 is graded correct when the gold answer is 24"),
    M("w_reinforce_lambda_sign", OBJ,
      "return method.pos_weight * ok - method.neg_weight * (1 - ok)",
      "return -method.pos_weight * ok - method.neg_weight * (1 - ok)",
      ("tests/test_objectives.py::test_negative_reinforcement_rows_by_hand",),
      "W-REINFORCE pushes correct responses down as well as wrong ones: negatives only, twice over"),
    M("nsr_without_its_clip", OBJ,
      '"nsr": Method("nsr", "neg", "token-mean", clip=True, mini_batches=4)',
      '"nsr": Method("nsr", "neg", "token-mean", clip=False, mini_batches=4)',
      ("tests/test_objectives.py::test_negative_reinforcement_rows_by_hand",),
      "NSR loses the clipped ratio: it becomes F-ISFT− in mini-batches, the very difference the row exists to test"),
    M("mini_batch_pi_old_after_a_step", "src/rlino/mini_batches.py",
      "old = ([None] * len(batches) if j == 0 else", "old = ([None] * len(batches) if True else",
      ("tests/test_mini_batches.py",),
      "each mini-batch's ratio starts at 1 after the previous step: the clip never acts on PSR, NSR, W-REINFORCE"),
    M("mini_batch_whole_step_normaliser", STEP,
      "num_responses=part.num_responses, num_tokens=part.num_tokens,",
      "num_responses=stats.num_responses, num_tokens=stats.num_tokens,",
      ("tests/test_mini_batches.py",),
      "each mini-batch's loss divided by the whole step's counts: an M-times smaller step than verl's"),
    M("projection_without_t", "src/rlino/report/evidence.py",
      "if t_quantile_975(n - 1) * sd / math.sqrt(n) < distance), None)", "if sd / math.sqrt(n) < distance), None)",
      ("tests/test_claims.py::test_an_inconclusive_verdict_projects_the_seeds_that_would_decide_it",),
      "the seeds projected to decide a claim are about 4 times too few"),
    M("gym_answer_format_ignored", "src/rlino/tasks/gym.py",
      "answer = read_answer(completion, self.options.answer_format)", "answer = extract_answer(completion)",
      ("tests/test_reasoning_gym_task.py::test_answer_formats_read_where_the_model_writes",),
      "a model that never writes <answer> tags scores 0 on every item whatever task.options.answer_format says"),
]


def by_name(names: list[str]) -> list[Mutation]:
    known = {m.name: m for m in MUTATIONS}
    unknown = [n for n in names if n not in known]
    if unknown:
        sys.exit(f"unknown mutation(s): {', '.join(unknown)}; --list shows them")
    return [known[n] for n in names]


def make_copy(dest: Path) -> None:
    for name in COPIED:
        shutil.copytree(ROOT / name, dest / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache"))


def apply(mutation: Mutation, root: Path) -> None:
    path = root / mutation.file
    text = path.read_text()
    count = text.count(mutation.old)
    if count != 1:
        raise SystemExit(f"mutation '{mutation.name}': its text occurs {count} times in {mutation.file} (expected "
                         f"once); update the mutation to the current code")
    path.write_text(text.replace(mutation.old, mutation.new))


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=str(root / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
               HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "timed out"
    lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
    failed = [ln for ln in lines if ln.startswith("FAILED") or ln.startswith("ERROR")]
    return done.returncode, (failed[0] if failed else (lines[-1] if lines else ""))


def check_imports_the_copy(root: Path) -> None:
    """Guard against testing the installed package instead of the mutated copy."""
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    where = subprocess.run([sys.executable, "-c", "import rlino; print(rlino.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True).stdout.strip()
    if not where.startswith(str(root)):
        raise SystemExit(f"the copy's rlino is not the one imported (got {where!r}); is rlino installed "
                         f"non-editable somewhere that shadows PYTHONPATH?")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="run this mutation (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--baseline", action="store_true", help="first run each mutation's tests on the unmutated copy")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutation")
    args = ap.parse_args()
    chosen = by_name(args.only) if args.only else MUTATIONS
    if args.list:
        for m in chosen:
            print(f"{m.name:36s} {m.file:32s} {' '.join(m.tests)}\n{'':36s} {m.effect}")
        return 0
    with tempfile.TemporaryDirectory(prefix="rlino-mutation-") as tmp:
        for m in chosen:  # every mutation's text must be present before anything runs
            make_copy(Path(tmp) / m.name)
            apply(m, Path(tmp) / m.name)
        if args.baseline:
            clean = Path(tmp) / "_clean"
            make_copy(clean)
            check_imports_the_copy(clean)
            tests = tuple(sorted({t for m in chosen for t in m.tests}))
            code, last = run_tests(clean, tests, args.timeout * 2)
            print(f"baseline (unmutated) on {len(tests)} test targets: {'passed' if code == 0 else 'FAILED'} {last}")
            if code != 0:
                return 1
        caught = 0
        for m in chosen:
            root = Path(tmp) / m.name
            t0 = time.perf_counter()
            code, last = run_tests(root, m.tests, args.timeout)
            verdict = "caught" if code == 1 else ("MISSED" if code == 0 else "error")
            caught += verdict == "caught"
            detail = f"  {last}" if verdict != "MISSED" else ""
            print(f"{verdict:7s} {m.name:36s} {time.perf_counter() - t0:6.1f}s{detail}", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{caught} of {len(chosen)} mutations caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
