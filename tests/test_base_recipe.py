"""Changing the embedded base recipe (`rlino base --set`) and reading where a trace goes wrong (`trace_error`)."""

import json
import random
from pathlib import Path

import pytest

from rlino.cli import main
from rlino.embedded.countdown_base import RECIPE, recipe_with
from rlino.embedded.countdown_traces import trace_error, write_trace
from rlino.errors import RlinoError
from rlino.tasks import load_task


def test_recipe_overrides_change_fields_and_the_cache_key():
    r = recipe_with(["slip_rate=0.7", "false_yes_rate=0.05", "steps=3600", "task_options.max_value=12"])
    assert (r.slip_rate, r.false_yes_rate, r.steps) == (0.7, 0.05, 3600)
    assert r.task_options["max_value"] == 12 and RECIPE.task_options["max_value"] == 9  # the default is untouched
    assert r.key(0) != RECIPE.key(0)
    assert recipe_with([]) == RECIPE and recipe_with([]).key(0) == RECIPE.key(0)
    assert recipe_with(["miss_rate=0"]).miss_rate == 0.0  # an int where a float is expected is fine


@pytest.mark.parametrize("bad, message", [
    ("slip_rat=0.7", "unknown recipe field 'slip_rat'"),
    ("steps=1.5", "takes an int"),
    ("steps", "expects KEY=VALUE"),
    ("task_options={}", "unknown recipe field 'task_options'"),
])
def test_bad_recipe_overrides_are_clear_errors(bad, message):
    with pytest.raises(RlinoError, match=message):
        recipe_with([bad])


def test_rlino_base_builds_a_changed_recipe_under_its_own_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RLINO_CACHE", str(tmp_path))
    tiny = ["traces=64", "hidden_size=32", "intermediate_size=64", "num_layers=1", "num_heads=2", "num_kv_heads=1",
            "steps=2", "batch_size=8", "warmup_steps=1"]
    args = ["base"] + [x for kv in tiny for x in ("--set", kv)]
    assert main(args + ["--set", "slip_rate=0.7"]) == 0
    folder = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((folder / "recipe.json").read_text())["slip_rate"] == 0.7
    assert folder.name == f"countdown-{recipe_with(tiny + ['slip_rate=0.7']).key(0)}"
    assert main(args + ["--set", "slip_rate=0.7"]) == 0  # cached: same folder
    assert Path(capsys.readouterr().out.strip().splitlines()[-1]) == folder
    assert main(["base", "--set", "nope=1"]) == 2
    assert "unknown recipe field 'nope'" in capsys.readouterr().err
    assert main(["base", "--set", "task_options.foo=1"]) == 2  # checked by the task, before any training
    assert "has no option 'foo'" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "embedded").iterdir()) == [folder.name]  # nothing half-built left


def test_trace_error_names_each_kind_of_mistake_the_solver_writes():
    task = load_task("countdown", **RECIPE.task_options)
    rng = random.Random(0)
    seen = {}
    for item in task.items("test")[:200]:
        for mistake in (None, "false_yes", "slip", "miss"):
            text = write_trace(item.numbers, item.target, "+-*", mistake, rng)
            kind = trace_error(text, item.numbers, item.target)
            correct = task.score(text, item) == 1.0
            seen.setdefault((mistake, correct), set()).add(kind)
    assert seen[(None, True)] == {"slip"}  # a sound search that said yes: right when the verifier says so
    assert seen[("false_yes", False)] == {"false_yes"}
    assert seen[("slip", False)] == {"slip"}
    assert seen[("miss", False)] <= {"gave_up", "slip"}  # a miss searches on and gives up (or finds another pair)
    assert "gave_up" in seen[("miss", False)]


def test_trace_error_finds_arithmetic_mistakes():
    good = "7: 3+2=5 3-2=1 3*2=6\n19-7=12 no\n19+7=26 no\n3: 7+2=9 7-2=5 7*2=14\n19-3=16 no\n19+3=22 no\n" \
           "2: 7+3=10 7-3=4 7*3=21\n19-2=17 no\n19+2=21 yes 7*3\n<answer>(7*3)-2</answer>"
    assert trace_error(good, (7, 3, 2), 19) == "slip"
    assert trace_error(good.replace("3-2=1", "3-2=2"), (7, 3, 2), 19) == "listing"
    assert trace_error(good.replace("19-3=16", "19-3=15"), (7, 3, 2), 19) == "candidate"
    assert trace_error(good.replace("19+2=21 yes 7*3", "19+2=21 yes 7+3"), (7, 3, 2), 19) == "false_yes"
    assert trace_error(good.replace("19+2=21 yes 7*3", "19+2=21 no"), (7, 3, 2), 19) == "gave_up"
    assert trace_error("", (7, 3, 2), 19) == "gave_up"


def test_countdown_errors_script_prints_a_row_per_temperature():
    import subprocess
    import sys

    script = Path(__file__).parents[1] / "experiments" / "countdown_errors.py"
    out = subprocess.run([sys.executable, str(script), "embedded:tiny", "--n", "4"], capture_output=True, text=True,
                         check=True).stdout
    rows = [line.split() for line in out.splitlines() if line.startswith("embedded:tiny")]
    assert [r[1] for r in rows] == ["0.0", "1.0"]
    assert all(abs(sum(map(float, r[2:])) - 100) < 0.5 for r in rows)  # every response counted once
