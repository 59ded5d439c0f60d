"""`embedded:countdown`: a small Countdown model that can learn, built here by supervised warm-up on solver traces.

The recipe (all of it in `RECIPE`, code and numbers, no weights in git):

1. The solver in `countdown_traces.py` writes a backward-search trace for each training problem.
2. A controlled share of traces carry one mistake (a *miss*, a *false yes* or a *slip*), so the model learns to
   make them sometimes.
3. A small Qwen2-architecture model with the byte tokenizer (`byte_qwen2`) is trained on the traces (loss on the
   response only).

The result follows the format, solves some held-out problems, and its wrong responses vary in length: room for
GRPO and F-ISFT to improve on, and lengths that can move.

**The shipped base.** The build is deterministic on one machine, but floating-point paths differ between machines
and 1,200 steps of Adam amplify them: two machines built bases that evaluate 1.5 points apart. So the build of
`RECIPE` with seed 0, made once by `tools/ship_base.py`, ships with the package (`countdown/`, 4 MB of fp32
safetensors) and is what `embedded:countdown` loads on every machine. Its `recipe.json` records the recipe, its
key, the file's SHA-256 and a fingerprint of the build's first `PREFIX_STEPS` steps (losses and per-tensor norms),
which `tests/test_shipped_base.py` rebuilds and compares. The recipe and this builder stay the source of truth:
another seed or a changed recipe is built here and cached in the user's cache folder under its own key, and
`rlino base --rebuild` builds the default locally and says how far it lands from the shipped weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rlino.config import parse_value
from rlino.embedded.byte_qwen2 import byte_qwen2
from rlino.embedded.countdown_traces import write_trace
from rlino.errors import RlinoError
from rlino.files import cache_root, write_json
from rlino.schedule import lr_schedule
from rlino.typed import Mismatch, coerce, type_name


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
    hints = typing.get_type_hints(Recipe)
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
        try:
            changes[key] = coerce(value, hints[key])
        except Mismatch:
            kind = "an int" if hints[key] is int else type_name(hints[key])
            raise RlinoError(f"recipe field '{key}' takes {kind}, got {value!r}") from None
    return dataclasses.replace(recipe, task_options=options, **changes)


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


def train_base(recipe: Recipe, seed: int, log=None, stop_after: int | None = None,
               on_step=None) -> tuple[torch.nn.Module, object]:
    """Build and warm-start the model (deterministic for a given recipe and seed, on the CPU, in fp32).

    `stop_after` ends the build after that many steps (the prefix the shipped base's fingerprint covers);
    `on_step(step, loss)` hears every step's loss.
    """
    log = log or _stderr
    model, tokenizer = byte_qwen2(seed, hidden_size=recipe.hidden_size, intermediate_size=recipe.intermediate_size,
                                  num_hidden_layers=recipe.num_layers, num_attention_heads=recipe.num_heads,
                                  num_key_value_heads=recipe.num_kv_heads, max_position_embeddings=512)
    pairs = corpus(recipe, seed)
    batches = _batches(tokenizer, pairs, recipe.batch_size, random.Random(f"batches-{seed}"))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.learning_rate, weight_decay=0.0)
    # linear warm-up, cosine decay to 10%
    factor = lr_schedule(warmup_steps=recipe.warmup_steps, total_steps=recipe.steps, shape="cosine", floor=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
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
        if on_step is not None:
            on_step(step, loss.item())
        if stop_after is not None and step + 1 >= stop_after:
            break
        if step % 100 == 0 or step == recipe.steps - 1:
            log(f"base: step {step + 1}/{recipe.steps} loss {loss.item():.4f} ({time.perf_counter() - t0:.0f}s)")
    model.eval()
    return model, tokenizer


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- the shipped base ------------------------------------------------------------------------------------------

SHIPPED = Path(__file__).with_name("countdown")
"""The canonical build of `RECIPE` with seed 0, shipped with the package (written by `tools/ship_base.py`)."""
PREFIX_STEPS = 20
"""Steps of the build that the shipped base's fingerprint covers (rebuilt by the tests in seconds)."""


def build_prefix(recipe: Recipe = RECIPE, seed: int = 0, steps: int = PREFIX_STEPS) -> dict:
    """The fingerprint of a build's first `steps` steps: each step's loss and each tensor's L2 norm after them."""
    losses: list[float] = []
    model, _ = train_base(recipe, seed, log=lambda _: None, stop_after=steps, on_step=lambda _, x: losses.append(x))
    norms = {name: p.detach().double().norm().item() for name, p in model.named_parameters()}
    return {"steps": steps, "losses": losses, "norms": norms}


def shipped_record() -> dict | None:
    """The shipped base's `recipe.json`, or None when the package has none (a source tree without the weights)."""
    path = SHIPPED / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() and (SHIPPED / "model.safetensors").is_file() else None


def shipped_dir(recipe: Recipe, seed: int) -> Path | None:
    """The shipped folder when it is the build of this recipe and seed, else None."""
    record = shipped_record()
    return SHIPPED if record is not None and record.get("key") == recipe.key(seed) else None


def weight_distance(a: Path, b: Path) -> tuple[float, float]:
    """(max |Δw|, relative L2 distance) between the weights of two model folders of the same shape."""
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    num = sum(((wa[k].double() - wb[k].double()) ** 2).sum().item() for k in wa)
    den = sum((wa[k].double() ** 2).sum().item() for k in wa)
    return diff, (num / den) ** 0.5


# ---- the cache -------------------------------------------------------------------------------------------------

def cached_dir(recipe: Recipe, seed: int) -> Path:
    """Where a local build of this recipe and seed is cached."""
    return cache_root() / "embedded" / f"countdown-{recipe.key(seed)}"


def recipe_record(recipe: Recipe, seed: int) -> dict:
    """What a build's `recipe.json` says it was built from (the shipped one adds its key, hash and fingerprint)."""
    return {"seed": seed, **dataclasses.asdict(recipe)}


def base_model_dir(seed: int = 0, recipe: Recipe = RECIPE, log=None, rebuild: bool = False) -> Path:
    """The folder of `embedded:countdown` for this recipe and seed: the shipped one where it is that build (unless
    `rebuild`), else the cached local build, building it first if it is not cached."""
    log = log or _stderr
    shipped = shipped_dir(recipe, seed)
    if shipped is not None and not rebuild:
        return shipped
    folder = cached_dir(recipe, seed)
    if (folder / "config.json").is_file() and (folder / "recipe.json").is_file() and not rebuild:
        return folder
    log(f"building embedded:countdown (seed {seed}) into {folder}; cached for next time")
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model, tokenizer = train_base(recipe, seed, log=log)
        model.save_pretrained(tmp)  # a plain Hugging Face model folder
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "recipe.json", recipe_record(recipe, seed), indent=2)
    except OSError as e:
        raise RlinoError(f"could not write the embedded model cache at {folder}: {e}") from None
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    if shipped is not None:
        diff, rel = weight_distance(shipped, folder)
        same = "identical to" if diff == 0 else f"max |Δw| {diff:.2e}, relative L2 {rel:.2e} from"
        log(f"this machine's build is {same} the shipped base ({shipped}); embedded:countdown still loads the "
            f"shipped one: set model.name_or_path = \"{folder}\" to train from this build")
    return folder
