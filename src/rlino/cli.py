"""The `rlino` command line."""

from __future__ import annotations

import argparse
import sys
import warnings

from rlino.errors import RlinoError


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set method.name=fisft_pos --set train.steps=50")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlino", description="Outcome-reward post-training: GRPO and Filtered "
                                     "Iterative SFT as rows of one loop.")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="run the on-policy loop for one method")
    t.add_argument("config", nargs="?", help="TOML config (optional with --resume: the run folder's config is used)")
    _add_set(t)
    t.add_argument("--out", help="run folder (default: runs/METHOD-TIMESTAMP)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last complete checkpoint")
    sub.add_parser("methods", help="print the table of methods")
    return parser


def _methods_table() -> str:
    from rlino.objectives import METHODS

    rows = ["| name | weights | aggregation | ratio + clip | KL β |", "|---|---|---|---|---|"]
    for m in METHODS.values():
        clip = f"yes ({m.clip_eps}, {m.clip_eps_high})" if m.clip else "no"
        rows.append(f"| {m.name} | {m.weights} | {m.aggregation} | {clip} | {m.beta} |")
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
            from rlino.trainer import train

            if args.config is None and args.resume is None:
                raise RlinoError("rlino train needs a CONFIG file (or --resume DIR)")
            final = train(args.config, args.overrides, out=args.out, resume=args.resume)
            print(f"final model: {final}")
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
