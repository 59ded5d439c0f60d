"""Write the shipped `embedded:countdown` base (src/rlino/embedded/countdown/) from a build of the recipe.

    python tools/ship_base.py                 # build RECIPE with seed 0 here (or take this machine's cached build)
    python tools/ship_base.py --from FOLDER   # ship a build made elsewhere (its recipe.json must be RECIPE's, seed 0)

The maintainers' step when the recipe changes (bump `Recipe.version` or change a field, run this, commit the
folder). It copies the model folder, then writes `recipe.json`: the recipe and seed, the key, the SHA-256 of
`model.safetensors`, the fingerprint of the build's first `PREFIX_STEPS` steps (rebuilt here, which
`tests/test_shipped_base.py` compares against), and the machine and versions that made it.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
import transformers

from rlino.embedded.countdown_base import (
    RECIPE,
    SHIPPED,
    base_model_dir,
    build_prefix,
    cached_dir,
    recipe_record,
)
from rlino.files import file_sha256, read_json, write_json

FILES = ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", help="a built model folder (default: this machine's cached build)")
    args = ap.parse_args()
    key = RECIPE.key(0)
    source = Path(args.source) if args.source else cached_dir(RECIPE, 0)
    t0 = time.perf_counter()
    if not (source / "model.safetensors").is_file():
        if args.source:
            sys.exit(f"{source}: no model.safetensors")
        source = base_model_dir(0, RECIPE, rebuild=True)  # the recipe's build here, into the cache
    expected = recipe_record(RECIPE, 0)
    built = read_json(source / "recipe.json")
    if {k: built.get(k) for k in expected} != expected:
        sys.exit(f"{source}/recipe.json is not RECIPE with seed 0")
    print("rebuilding the fingerprint prefix", flush=True)
    prefix = build_prefix(RECIPE, 0)
    tmp = SHIPPED.with_name(SHIPPED.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name in FILES:
        shutil.copy2(source / name, tmp / name)
    write_json(tmp / "recipe.json", {
        **expected, "key": key,
        "sha256": file_sha256(tmp / "model.safetensors"),
        "prefix": prefix,
        "built_with": {"cpu": cpu_name(), "torch": torch.__version__, "transformers": transformers.__version__,
                       "python": platform.python_version(), "shipped": time.strftime("%Y-%m-%d")},
    }, indent=1)
    shutil.rmtree(SHIPPED, ignore_errors=True)
    tmp.rename(SHIPPED)
    print(f"shipped {SHIPPED} (key {key}) in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
