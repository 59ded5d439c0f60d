"""The README stays true: every config key is documented, every method is in the table, the commands exist."""

import dataclasses
import re
from pathlib import Path

from rlino.config import Config
from rlino.objectives import METHODS

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
GUIDE = (ROOT / "docs" / "guide.md").read_text()


def test_every_config_key_is_in_the_reference():
    for section in dataclasses.fields(Config):
        cls = section.type if isinstance(section.type, type) else getattr(Config(), section.name)
        for key in dataclasses.fields(cls):
            assert f"`{section.name}.{key.name}`" in GUIDE, f"{section.name}.{key.name} missing from docs/guide.md"


def test_every_method_is_in_the_table():
    for name in METHODS:
        assert re.search(rf"^\| `{name}` \|", README, re.M), name


def test_the_readme_is_a_front_page_whose_links_all_land():
    """At most ~200 lines, and every relative link (to a file, or to a heading of one) exists: what moved out of
    the README is one click away."""
    assert len(README.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+\.(?:md|png|toml))(#[^)]*)?\)", README):
        path, anchor = ROOT / target[0], target[1]
        assert path.is_file(), target[0]
        if anchor:
            slugs = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                     for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}
            assert anchor[1:] in slugs, f"{target[0]}{anchor}"


def test_two_set_up_and_go_commands_and_ci_runs_the_test_one():
    commands = re.findall(r"```bash\n(python3 -m venv .*)\n```", README)
    assert len(commands) == 2
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci
    assert "pytest" in commands[1] and "rlino " in commands[0]


def test_the_mutation_count_in_docs_is_the_list_in_the_tool():
    """docs/testing.md and the README state the mutation check's score over the list the tool really holds."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "tools" / "mutation_check.py")
    tool = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = tool  # dataclasses look their module up there
    try:
        spec.loader.exec_module(tool)
    finally:
        del sys.modules["mutation_check"]
    n = len(tool.MUTATIONS)
    assert len({m.name for m in tool.MUTATIONS}) == n  # names are unique
    assert f"{n} of {n} caught" in (ROOT / "docs" / "testing.md").read_text()
    assert f"{n} of {n} realistic bugs caught" in README
