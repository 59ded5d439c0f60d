"""`embedded:countdown`: a small Countdown model that can learn, built here by supervised warm-up on solver traces.

The recipe (all of it in `RECIPE`, code and numbers, no weights in git):

1. A solver writes a backward-search trace for each training problem: for each number z it lists what the other
   two numbers make, then for each way z can be the last operation the value those two would have to make, then
   `no`, or `yes` and the pair that makes it, then the answer:

       7, 3, 2 -> 19            (the prompt)
       7: 3+2=5 3-2=1 3*2=6
       19-7=12 no
       19+7=26 no
       3: 7+2=9 7-2=5 7*2=14
       19-3=16 no
       19+3=22 no
       2: 7+3=10 7-3=4 7*3=21
       19-2=17 no
       19+2=21 yes 7*3
       <answer>(7*3)-2</answer>

2. A controlled share of traces carry one mistake, so the model learns to make them sometimes: a *miss* (`no` where
   the pair works; the search goes on and may give up with a guess, a long wrong response), a *false yes* (a pair
   that does not make the value, a short wrong response) or a *slip* (the right pair, then one operator written
   wrong in the answer).
3. A small Qwen2-architecture model with the byte tokenizer is trained on the traces (loss on the response only).

The result follows the format, solves some held-out problems, and its wrong responses vary in length: room for
GRPO and F-ISFT to improve on, and lengths that can move. The build is deterministic (same recipe and seed, same
weights) and cached in the user's cache folder under a key made from the recipe and the seed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from rlino.errors import RlinoError


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the weights of `embedded:countdown`; its hash keys the cache."""

    task_options: dict = field(default_factory=lambda: dict(
        num_numbers=3, min_value=1, max_value=9, min_target=1, max_target=99, operators="+-*",
        train_size=20000, test_size=1000, seed=0, prompt_template="{numbers} -> {target}\n"))
    miss_rate: float = 0.1
    """Share of traces that answer `no` at the first pair that works."""
    false_yes_rate: float = 0.2
    """Share of traces that claim `yes` with a wrong pair before the real solution."""
    slip_rate: float = 0.5
    """Share of traces that find the solution but write one wrong operator in the answer."""
    traces: int = 40000
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    version: int = 1

    def key(self, seed: int) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True) + f"|seed={seed}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


RECIPE = Recipe()


def recipe_with(overrides: list[str], recipe: Recipe = RECIPE) -> Recipe:
    """`recipe` with `KEY=VALUE` overrides (values read as TOML, e.g. `slip_rate=0.7`, `steps=3600`).

    `task_options.KEY=VALUE` changes one task option. A changed recipe is a different model: it has its own cache key.
    """
    from rlino.config import parse_value

    fields = [f.name for f in dataclasses.fields(Recipe)]
    changes: dict = {}
    options = dict(recipe.task_options)
    for item in overrides:
        key, eq, raw = item.partition("=")
        key, value = key.strip(), parse_value(raw.strip())
        if not eq:
            raise RlinoError(f"--set expects KEY=VALUE for a recipe field, got '{item}'")
        if key.startswith("task_options."):
            options[key.split(".", 1)[1]] = value
            continue
        if key not in fields or key == "task_options":
            names = [n for n in fields if n not in ("task_options", "version")]
            raise RlinoError(f"unknown recipe field '{key}'; fields: {', '.join(names)}, task_options.KEY")
        kind = type(getattr(recipe, key))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not kind:
            raise RlinoError(f"recipe field '{key}' takes {'an int' if kind is int else kind.__name__}, got {value!r}")
        changes[key] = value
    return dataclasses.replace(recipe, task_options=options, **changes)


# ---- the solver that writes traces -------------------------------------------------------------------------------

def _pair_exprs(x: int, y: int, ops: str) -> list[tuple[str, int]]:
    """The values two numbers make with one operation, larger number first (no negatives), in a fixed order."""
    hi, lo = max(x, y), min(x, y)
    out = []
    if "+" in ops:
        out.append((f"{x}+{y}", x + y))
    if "-" in ops:
        out.append((f"{hi}-{lo}", hi - lo))
    if "*" in ops:
        out.append((f"{x}*{y}", x * y))
    return out


def _candidates(target: int, z: int, ops: str) -> list[tuple[str, int, str]]:
    """Ways `z` can be the last operation: (trace line, value the pair must make, answer template with {p})."""
    out = []
    if "+" in ops and target - z >= 0:
        out.append((f"{target}-{z}={target - z}", target - z, "({p})+" + str(z)))
    if "-" in ops:
        out.append((f"{target}+{z}={target + z}", target + z, "({p})-" + str(z)))
        if z - target >= 0:
            out.append((f"{z}-{target}={z - target}", z - target, f"{z}-" + "({p})"))
    if "*" in ops and z and target % z == 0:
        out.append((f"{target}/{z}={target // z}", target // z, "({p})*" + str(z)))
    return out


def write_trace(numbers: tuple[int, ...], target: int, ops: str, mistake: str | None,
                rng: random.Random) -> str:
    """The backward-search response for a 3-number problem; `mistake` is None, "miss", "false_yes" or "slip".

    For each number z it first lists what the other two make (so the check that follows is a lookup, which a
    small model can learn), then each way z can be the last operation, with `no` or `yes` and the pair.
    """
    steps = []  # (listing line or None, candidate line, pair expression that works or None, answer template, pairs)
    for i, z in enumerate(numbers):
        x, y = [n for j, n in enumerate(numbers) if j != i]
        pairs = _pair_exprs(x, y, ops)
        listing = f"{z}: " + " ".join(f"{e}={v}" for e, v in pairs)
        for k, (line, need, template) in enumerate(_candidates(target, z, ops)):
            works = next((e for e, v in pairs if v == need), None)
            steps.append((listing if k == 0 else None, line, works, template, pairs))
    first = next((k for k, s in enumerate(steps) if s[2] is not None), None)
    false_at = rng.randrange(first) if mistake == "false_yes" and first else None
    lines = []
    for k, (listing, line, works, template, pairs) in enumerate(steps):
        if listing is not None:
            lines.append(listing)
        if k == false_at:  # a wrong `yes` before the real solution: a short wrong response
            wrong = rng.choice(pairs)[0]
            return "\n".join(lines + [f"{line} yes {wrong}", f"<answer>{template.format(p=wrong)}</answer>"])
        if works is not None and not (mistake == "miss" and k == first):
            answer = template.format(p=works)
            if mistake == "slip":  # the right pair, one operator written wrong: a wrong answer at the end
                at = rng.choice([i for i, ch in enumerate(answer) if ch in "+-*"])
                answer = answer[:at] + rng.choice([op for op in "+-*" if op != answer[at]]) + answer[at + 1:]
            return "\n".join(lines + [f"{line} yes {works}", f"<answer>{answer}</answer>"])
        lines.append(f"{line} no")
    guess = "+".join(map(str, numbers))  # gave up: a guess, almost always wrong (a long wrong response)
    return "\n".join(lines + [f"<answer>{guess}</answer>"])


def trace_error(text: str, numbers: tuple[int, ...], target: int) -> str:
    """Where a response in the trace format first goes wrong, for a response the verifier marked wrong.

    `listing` (a pair value computed wrong), `candidate` (the value a pair must make computed wrong), `false_yes`
    (`yes` with a pair that does not make that value). A sound search is a `slip` when it said `yes` (a wrong answer
    after the right pair) and `gave_up` when it did not; whether the response is wrong at all is the verifier's call.
    """
    def value(expr: str) -> int | None:
        m = re.fullmatch(r"(\d+)([-+*/])(\d+)", expr)
        if not m:
            return None
        a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
        if op == "/":
            return a // b if b and a % b == 0 else None
        return a + b if op == "+" else a - b if op == "-" else a * b

    said_yes = False
    for line in text.split("\n"):
        listing = re.fullmatch(r"\d+: (.*)", line)
        if listing:
            for term in listing.group(1).split():
                expr, _, got = term.partition("=")
                if not got.isdigit() or value(expr) != int(got):
                    return "listing"
            continue
        check = re.fullmatch(r"(\d+[-+/]\d+)=(\d+) (no|yes)(?: (\S+))?", line)
        if check:
            expr, got, verdict, pair = check.groups()
            if value(expr) != int(got):
                return "candidate"
            if verdict == "yes":
                if pair is None or value(pair) != int(got):
                    return "false_yes"
                said_yes = True
    return "slip" if said_yes else "gave_up"


def corpus(recipe: Recipe, seed: int) -> list[tuple[str, str]]:
    """(prompt, response) pairs from the task's train split, with the recipe's share of mistakes."""
    from rlino.tasks import load_task

    items = load_task("countdown", **recipe.task_options).items("train")  # never the test split
    rng = random.Random(f"corpus-{seed}")
    pairs = []
    for k in range(recipe.traces):
        item = items[k % len(items)]
        u, mistake = rng.random(), None
        for kind, rate in (("miss", recipe.miss_rate), ("false_yes", recipe.false_yes_rate),
                           ("slip", recipe.slip_rate)):
            if u < rate:
                mistake = kind
                break
            u -= rate
        pairs.append((item.prompt, write_trace(item.numbers, item.target, recipe.task_options["operators"],
                                               mistake, rng)))
    return pairs


# ---- supervised warm-up ----------------------------------------------------------------------------------------

def _batches(tokenizer, pairs, batch_size: int, rng: random.Random):
    """Endless shuffled batches of right-padded ids and a loss mask on the response tokens and EOS.

    Rows of similar length are batched together (sorted within shuffled chunks), so little compute goes to padding;
    right padding needs no attention mask under a causal model.
    """
    eos = tokenizer.eos_token_id
    encoded = [(tokenizer(p, add_special_tokens=False)["input_ids"],
                tokenizer(r, add_special_tokens=False)["input_ids"] + [eos]) for p, r in pairs]
    chunk = batch_size * 32
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        batches = []
        for c in range(0, len(order) - batch_size + 1, chunk):
            part = sorted(order[c:c + chunk], key=lambda i: len(encoded[i][0]) + len(encoded[i][1]))
            batches += [part[b:b + batch_size] for b in range(0, len(part) - batch_size + 1, batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            rows = [encoded[i] for i in batch]
            width = max(len(p) + len(r) for p, r in rows)
            ids = torch.full((batch_size, width), eos, dtype=torch.long)
            loss_mask = torch.zeros((batch_size, width), dtype=torch.float)
            for b, (p, r) in enumerate(rows):
                ids[b, : len(p) + len(r)] = torch.tensor(p + r)
                loss_mask[b, len(p): len(p) + len(r)] = 1
            yield ids, loss_mask


def train_base(recipe: Recipe, seed: int, log=None) -> tuple[torch.nn.Module, object]:
    """Build and warm-start the model (deterministic for a given recipe and seed, on the CPU, in fp32)."""
    from rlino.models import EOS, byte_tokenizer

    log = log or _stderr
    tokenizer = byte_tokenizer()
    eos = tokenizer.convert_tokens_to_ids(EOS)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=recipe.hidden_size,
                         intermediate_size=recipe.intermediate_size, num_hidden_layers=recipe.num_layers,
                         num_attention_heads=recipe.num_heads, num_key_value_heads=recipe.num_kv_heads,
                         max_position_embeddings=512, tie_word_embeddings=True, eos_token_id=eos,
                         pad_token_id=eos, bos_token_id=None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    pairs = corpus(recipe, seed)
    batches = _batches(tokenizer, pairs, recipe.batch_size, random.Random(f"batches-{seed}"))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)

    def lr_factor(step: int) -> float:  # linear warm-up, cosine decay to 10%
        if step < recipe.warmup_steps:
            return (step + 1) / recipe.warmup_steps
        progress = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    model.train()
    t0 = time.perf_counter()
    for step in range(recipe.steps):
        ids, loss_mask = next(batches)
        logits = model(input_ids=ids).logits[:, :-1]
        target, mask = ids[:, 1:], loss_mask[:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                reduction="none").view_as(mask)
        loss = (nll * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == recipe.steps - 1:
            log(f"base: step {step + 1}/{recipe.steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return model, tokenizer


# ---- the cache -----------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """`$RLINO_CACHE`, else `$XDG_CACHE_HOME/rlino`, else `~/.cache/rlino`."""
    if os.environ.get("RLINO_CACHE"):
        return Path(os.environ["RLINO_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rlino"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def base_model_dir(seed: int = 0, recipe: Recipe = RECIPE, log=None, rebuild: bool = False) -> Path:
    """The folder of the built `embedded:countdown` model, building it first if it is not cached."""
    from rlino.models import save_model

    log = log or _stderr
    folder = cache_root() / "embedded" / f"countdown-{recipe.key(seed)}"
    if (folder / "config.json").is_file() and (folder / "recipe.json").is_file() and not rebuild:
        return folder
    log(f"building embedded:countdown (seed {seed}) into {folder}; cached for next time")
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model, tokenizer = train_base(recipe, seed, log=log)
        save_model(model, tokenizer, tmp)
        (tmp / "recipe.json").write_text(json.dumps({"seed": seed, **dataclasses.asdict(recipe)}, indent=2))
    except OSError as e:
        raise RlinoError(f"could not write the embedded model cache at {folder}: {e}") from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder
