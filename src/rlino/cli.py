"""The `rlino` command line."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from rlino.errors import RlinoError


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set method.name=fisft_pos --set train.steps=50")


def _train_parser(sub) -> None:
    t = sub.add_parser("train", help="run the on-policy loop for one method")
    t.add_argument("config", nargs="?", help="TOML config (optional with --resume: the run folder's config is used)")
    _add_set(t)
    t.add_argument("--out", help="run folder (default: runs/METHOD-TIMESTAMP)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last complete checkpoint")
    t.add_argument("--arm", help="with a compare config: train this one of its arms (its seed: --set train.seed=N)")


def _train(args) -> None:
    from rlino.compare import is_compare_config, train_arm
    from rlino.trainer import train

    if args.config is None and args.resume is None and args.arm is None:
        raise RlinoError("rlino train needs a CONFIG file (or --resume DIR)")
    if args.resume is not None and args.arm is not None:
        raise RlinoError("--resume DIR continues the run in DIR with its own config; leave out --arm")
    if args.resume is None and (args.arm is not None or is_compare_config(args.config)):
        final = train_arm(args.config, args.overrides, args.arm, out=args.out)
    else:
        final = train(args.config, args.overrides, out=args.out, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks for the run
        print(f"final model: {final}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlino", description="Outcome-reward post-training: GRPO and Filtered "
                                     "Iterative SFT as rows of one loop.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    c = sub.add_parser("compare", help="run several arms under identical conditions and write a report")
    c.add_argument("config", nargs="?", help="TOML compare config (default: the embedded Countdown comparison)")
    _add_set(c)
    c.add_argument("--out", help="output folder (default: runs/compare-TIMESTAMP)")
    c.add_argument("--quick", action="store_true", help="a shorter profile of the same comparison")
    c.add_argument("--seeds", type=int, metavar="N", help="run every arm on N seeds (sets compare.seeds)")
    c.add_argument("--resume", action="store_true", help="finish an interrupted comparison in --out")

    e = sub.add_parser("eval", help="held-out accuracy (greedy, k samples, pass@k) and lengths of a model")
    e.add_argument("--model", required=True, help="hub id, local model folder, .gguf file or embedded:NAME")
    e.add_argument("--task", help="countdown, gsm8k, math, reasoning_gym, module:factory (default: the config's)")
    e.add_argument("--config", help="take task, sampling and eval settings from this TOML (e.g. a run's config.toml)")
    _add_set(e)
    e.add_argument("--k", type=int, default=8, help="samples per item (default 8)")
    e.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    e.add_argument("--json", default="eval.json", help="where to write the results (default eval.json)")

    r = sub.add_parser("report", help="re-render a comparison's report from its run folders")
    r.add_argument("dir", help="a folder written by rlino compare")

    b = sub.add_parser("base", help="find the shipped embedded:countdown base model, or build (once, then cached) "
                                    "another seed or recipe")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--rebuild", action="store_true",
                   help="build here even if shipped or cached (the default recipe's build is compared with the "
                        "shipped weights)")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a recipe field (repeatable), e.g. --set slip_rate=0.7 --set steps=3600; "
                        "a changed recipe is cached under its own key")

    q = sub.add_parser("equivalence", help="compare the gradients of pairs of methods on the same sampled batches")
    q.add_argument("config", nargs="?", help="run or compare config (default: the embedded Countdown comparison)")
    _add_set(q)
    q.add_argument("--batches", type=int, default=3, help="sampled batches (default 3)")
    q.add_argument("--json", help="also write the full results as JSON to this file")

    p = sub.add_parser("plan", help="the memory a run needs (sampling, training, optimizer, reference) from its "
                       "config and the model's config.json, and whether it fits a GPU")
    p.add_argument("config", help="run or compare config (TOML)")
    _add_set(p)
    p.add_argument("--gpu-memory", metavar="SIZE", help="the GPU's memory, e.g. 24GiB, 80GB or 80 (GiB): says whether "
                   "the run fits and which settings to change if not")
    p.add_argument("--device", choices=["cuda", "cpu"], help="plan for this device (default: cuda unless "
                   "model.device = cpu): bf16 autocast under `auto`, and the base memory of the process")
    p.add_argument("--prompt-tokens", type=int, metavar="N", help="longest prompt in tokens (default 256)")
    p.add_argument("--world-size", type=int, metavar="N", default=1, help="processes (GPUs) of the torchrun launch "
                   "(default 1): plan one rank, its share of the rows (under train.sharding=fsdp 1/N of the state)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")

    sub.add_parser("methods", help="print the table of methods")
    return parser


def _compare(args) -> None:
    from rlino.compare import compare
    from rlino.run_folder import timestamped

    if args.resume and not args.out:
        raise RlinoError("--resume needs --out DIR (the comparison to finish)")
    out = Path(args.out) if args.out else timestamped("compare")
    overrides = args.overrides + ([] if args.seeds is None else [f"compare.seeds={args.seeds}"])
    compare(args.config, overrides, out, quick=args.quick, resume=args.resume)
    print(f"report: {out / 'report.html'} (and report.md, results.json)")


def _eval(args) -> None:
    from rlino.compare import load_run_or_compare
    from rlino.config import eval_max_new_tokens, load_config, sampling_autocast
    from rlino.evaluate import evaluate_k
    from rlino.files import write_json
    from rlino.models import autocast, load_model
    from rlino.prompts import config_prompt_format
    from rlino.tasks import load_task

    if args.k < 1:
        raise RlinoError(f"--k must be >= 1, got {args.k}")
    # a run's config, or a compare config's shared settings (the base model of a comparison is evaluated on them)
    cfg = load_run_or_compare(args.config, args.overrides)[0] if args.config else load_config(None, args.overrides)
    cfg.model.name_or_path = args.model
    if args.task:
        if args.task != cfg.task.name:
            cfg.task.options = {}  # options of another task do not apply
        cfg.task.name = args.task
    elif args.config is None:
        raise RlinoError("rlino eval needs --task NAME or --config FILE")
    task = load_task(cfg.task.name, **cfg.task.options)
    items = task.items("test")[: cfg.eval.num_items]
    model, tokenizer = load_model(cfg.model.name_or_path, dtype=cfg.model.dtype, device=cfg.model.device,
                                  seed=cfg.train.seed)
    with autocast(sampling_autocast(cfg), next(model.parameters()).device):
        result = evaluate_k(model, tokenizer, task, items, k=args.k, seed=cfg.train.seed,
                            temperature=args.temperature, top_p=cfg.eval.top_p,
                            max_new_tokens=eval_max_new_tokens(cfg), batch_size=cfg.sampling.batch_size,
                            engine=cfg.sampling.engine, prompt_format=config_prompt_format(cfg, tokenizer))
    result = {"model": args.model, "task": cfg.task.name, **result}
    write_json(args.json, result)
    print(_eval_table(result))
    print(f"written: {args.json}")


def _eval_table(r: dict) -> str:
    def pct(x):
        return f"{100 * x:.1f}%"

    def tok(x):
        return "—" if x is None else f"{x:.1f}"

    k = r["k"]
    rows = [("items", str(r["num_items"])),
            ("greedy accuracy", f"{pct(r['greedy_accuracy'])} [{pct(r['greedy_accuracy_lo'])}, "
                                f"{pct(r['greedy_accuracy_hi'])}]"),
            (f"sampled accuracy (T={r['temperature']}, mean of {k})",
             f"{pct(r['sampled_accuracy'])} [{pct(r['sampled_accuracy_lo'])}, {pct(r['sampled_accuracy_hi'])}]"),
            (f"pass@{k}", pct(r[f"pass@{k}"])),
            ("length, all sampled (tokens)", tok(r["length_mean"])),
            ("length, correct", tok(r["length_correct_mean"])),
            ("length, wrong", tok(r["length_wrong_mean"])),
            ("truncated", pct(r["truncated_frac"]))]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


def _equivalence(args) -> None:
    from rlino.compare import load_run_or_compare
    from rlino.equivalence import run_equivalence, to_markdown
    from rlino.files import write_json

    if args.batches < 1:
        raise RlinoError(f"--batches must be >= 1, got {args.batches}")
    cfg = load_run_or_compare(args.config, args.overrides)[0]  # a compare's shared settings (default: the embedded)
    result = run_equivalence(cfg, batches=args.batches)
    print(to_markdown(result))
    if args.json:
        write_json(args.json, result)
        print(f"written: {args.json}")


def _methods_table() -> str:
    from rlino.objectives import METHODS

    rows = ["| name | weights | aggregation | ratio + clip | KL β | optimizer steps a batch |",
            "|---|---|---|---|---|---|"]
    for m in METHODS.values():
        clip = f"yes ({m.clip_eps}, {m.clip_eps_high})" if m.clip else "no"
        weights = m.weights + (f" (λ = {m.pos_weight})" if m.pos_weight != 1 else "")
        rows.append(f"| {m.name} | {weights} | {m.aggregation} | {clip} | {m.beta} | {m.mini_batches} |")
    return "\n".join(rows)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line, written through tqdm so they do not break the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"rlino: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one progress bar (the run's), not one per saved checkpoint
    warnings.showwarning = _show_warning
    try:
        if args.command == "train":
            _train(args)
        elif args.command == "compare":
            _compare(args)
        elif args.command == "eval":
            _eval(args)
        elif args.command == "report":
            from rlino.report import build_report

            build_report(args.dir)
            print(f"report: {Path(args.dir) / 'report.html'} (and report.md, results.json)")
        elif args.command == "base":
            from rlino.embedded.countdown_base import base_model_dir, recipe_with

            print(base_model_dir(seed=args.seed, recipe=recipe_with(args.overrides), rebuild=args.rebuild))
        elif args.command == "equivalence":
            _equivalence(args)
        elif args.command == "plan":
            from rlino.plan import plan, render, to_json

            result = plan(args.config, args.overrides, device=args.device, gpu_memory=args.gpu_memory,
                          prompt_tokens=args.prompt_tokens, world_size=args.world_size)
            print(to_json(result) if args.json else render(result))
        elif args.command == "methods":
            print(_methods_table())
    except RlinoError as e:
        print(f"rlino: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlino: interrupted; the run folder keeps its last complete checkpoint (continue with --resume)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
