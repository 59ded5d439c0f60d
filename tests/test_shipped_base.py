"""The shipped `embedded:countdown` base is the recipe's build, and it is what every machine loads.

The prefix tolerance: the fingerprint was recorded on the machine that shipped the base; another machine's float
paths (other SIMD widths, other BLAS blocking) move a 20-step build by ~1e-6 relative, while a change of the
builder's data, order, model or optimizer moves step losses by 1e-2 or more by step 20 (see the second test), so
1e-4 relative tells the two apart.
"""

import dataclasses
import json

import pytest
import torch

from rlino.embedded.countdown_base import (
    PREFIX_STEPS,
    RECIPE,
    SHIPPED,
    base_model_dir,
    build_prefix,
    recipe_with,
    shipped_dir,
)
from rlino.files import file_sha256

TOLERANCE = 1e-4  # relative, on each step's loss and each tensor's norm


@pytest.fixture(scope="module")
def record():
    return json.loads((SHIPPED / "recipe.json").read_text())


def close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(a), abs(b))


def test_shipped_base_records_the_recipe_its_key_and_its_file(record):
    assert {k: record[k] for k in dataclasses.asdict(RECIPE)} == json.loads(json.dumps(dataclasses.asdict(RECIPE)))
    assert record["seed"] == 0 and record["key"] == RECIPE.key(0)
    assert file_sha256(SHIPPED / "model.safetensors") == record["sha256"]
    assert (SHIPPED / "model.safetensors").stat().st_size < 8 << 20  # a few MB in the package


def test_a_fresh_prefix_of_the_build_matches_the_shipped_fingerprint(record):
    shipped = record["prefix"]
    assert shipped["steps"] == PREFIX_STEPS and len(shipped["losses"]) == PREFIX_STEPS
    fresh = build_prefix(RECIPE, 0)
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(fresh["losses"], shipped["losses"])) if not close(a, b)]
    assert not bad, f"step losses differ from the shipped build's: {bad[:3]}"
    assert fresh["norms"].keys() == shipped["norms"].keys()
    bad = [(k, fresh["norms"][k], v) for k, v in shipped["norms"].items() if not close(fresh["norms"][k], v)]
    assert not bad, f"tensor norms after {PREFIX_STEPS} steps differ from the shipped build's: {bad[:3]}"
    # the tolerance can fail: a slightly different recipe lands far outside it within the same prefix
    other = build_prefix(recipe_with(["slip_rate=0.45"]), 0)
    assert sum(not close(a, b) for a, b in zip(other["losses"], shipped["losses"])) >= PREFIX_STEPS // 2


def test_embedded_countdown_loads_the_shipped_weights_without_building(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from rlino.models import load_model

    monkeypatch.setenv("RLINO_CACHE", str(tmp_path))
    built = []
    assert base_model_dir(0, log=built.append) == SHIPPED and not built
    model, _ = load_model("embedded:countdown", device="cpu", seed=5)  # a run's seed does not pick another base
    weights = load_file(SHIPPED / "model.safetensors")
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items())
    assert not (tmp_path / "embedded").exists()  # nothing built, nothing cached
    # another seed or a changed recipe is not the shipped build: each has its own key and is built
    assert shipped_dir(RECIPE, 1) is None and shipped_dir(recipe_with(["steps=1201"]), 0) is None
