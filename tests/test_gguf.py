"""GGUF files as a model source (`rlino.gguf`), on a tiny Llama checkpoint written here with the gguf package's own
writer: the built folder against transformers' own GGUF loader, the cache keyed by content, and every bad input
(missing, not GGUF, truncated, an architecture transformers cannot read, no gguf package, a build killed midway)
a clear error that leaves nothing half-written that is ever loaded."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from tiny_gguf import write_tiny_gguf
from transformers import AutoModelForCausalLM, AutoTokenizer

from rlino.errors import RlinoError
from rlino.files import read_json
from rlino.gguf import MARKER, cached_folder, gguf_folder
from rlino.models import load_model


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RLINO_CACHE", str(root))
    return root


@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


def leftovers(root: Path) -> list[str]:
    """What is in the GGUF cache besides lock files."""
    folder = root / "gguf"
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".lock")) if folder.exists() else []


def test_the_built_folder_gives_the_logits_and_chat_prompt_of_transformers_own_gguf_loader(cache, tiny):
    model, tokenizer = load_model(str(tiny), device="cpu")
    oracle = AutoModelForCausalLM.from_pretrained(tiny.parent, gguf_file=tiny.name, dtype=torch.float32)
    oracle_tok = AutoTokenizer.from_pretrained(tiny.parent, gguf_file=tiny.name)
    ids = torch.tensor([[257, 104, 105, 256, 258, 33]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, oracle(ids).logits)
    chat = [{"role": "user", "content": "ab cd"}]
    assert tokenizer.apply_chat_template(chat, add_generation_prompt=True, tokenize=False) == \
        oracle_tok.apply_chat_template(chat, add_generation_prompt=True, tokenize=False)
    assert tokenizer("ab cd").input_ids == oracle_tok("ab cd").input_ids
    assert tokenizer.eos_token == "<|im_end|>"
    folder = cached_folder(tiny)
    assert "quantization_config" not in read_json(folder / "config.json")  # a plain folder, not a GGUF view
    assert read_json(folder / MARKER)["sha256"]


def test_the_cache_is_keyed_by_the_files_bytes(cache, tiny, tmp_path, capsys):
    first = gguf_folder(str(tiny))
    built_at = (first / MARKER).stat().st_mtime_ns
    assert gguf_folder(str(tiny)) == first and (first / MARKER).stat().st_mtime_ns == built_at
    assert "building" not in capsys.readouterr().err.split("\n", 1)[-1]  # the second call only looked it up
    other = write_tiny_gguf(tmp_path / "other" / "tiny.gguf", seed=1)  # same name, other weights
    assert gguf_folder(str(other)) != first
    assert len(leftovers(cache)) == 2


def test_a_missing_file_is_a_clear_error(cache, tmp_path):
    with pytest.raises(RlinoError, match="GGUF file not found"):
        load_model(str(tmp_path / "nothing.gguf"), device="cpu")


def test_a_file_that_is_not_gguf_is_a_clear_error(cache, tmp_path):
    fake = tmp_path / "weights.gguf"
    fake.write_text('{"not": "a gguf file"}')
    with pytest.raises(RlinoError, match="not a GGUF file"):
        load_model(str(fake), device="cpu")
    assert leftovers(cache) == []


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_a_truncated_file_is_a_clear_error_and_leaves_nothing(cache, tiny, tmp_path, keep):
    data = tiny.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(RlinoError, match="truncated or corrupt"):
        load_model(str(cut), device="cpu")
    assert leftovers(cache) == []


def test_an_architecture_transformers_cannot_read_is_a_clear_error(cache, tmp_path):
    odd = write_tiny_gguf(tmp_path / "odd.gguf", architecture="notamodel")
    with pytest.raises(RlinoError, match="cannot read the GGUF architecture 'notamodel'.*llama"):
        load_model(str(odd), device="cpu")
    assert leftovers(cache) == []


def test_without_the_gguf_package_the_error_names_the_extra(cache, tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "gguf", None)  # `import gguf` now raises ImportError
    with pytest.raises(RlinoError, match=r"needs the gguf package: pip install 'rlino\[gguf\]'"):
        load_model(str(tiny), device="cpu")


KILLED_BUILD = textwrap.dedent("""
    import sys, time
    import rlino.gguf as g

    def stuck(file, out):
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")   # a folder that looks half like a model
        (out / "model.safetensors").write_bytes(b"half")
        print("partial", flush=True)
        time.sleep(600)

    g._build = stuck
    g.gguf_folder(sys.argv[1])
""")


def test_a_build_killed_midway_leaves_nothing_that_is_loaded_and_the_next_build_cleans_up(cache, tiny):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_BUILD, str(tiny)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "RLINO_CACHE": str(cache)}, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "partial"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stdout.close()
    folder = cached_folder(tiny)
    assert [p for p in leftovers(cache) if ".partial-" in p] and not folder.exists()
    folder.mkdir()  # and a folder with no marker (a copy, a build of an older rlino): never trusted
    (folder / "config.json").write_text("{}")
    model, _ = load_model(str(tiny), device="cpu")
    assert leftovers(cache) == [folder.name] and (folder / MARKER).is_file()
    assert sum(p.numel() for p in model.parameters()) > 0


def test_ranks_starting_together_build_once(cache, tiny):
    """Two processes asking for the same file at once: one builds under the lock, the other finds it built."""
    script = "import sys, rlino.gguf as g; print(g.gguf_folder(sys.argv[1]))"
    env = {**os.environ, "RLINO_CACHE": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tiny)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0][0] == outs[1][0]
    assert sum("building" in err for _, err in outs) == 1
    assert leftovers(cache) == [cached_folder(tiny).name]


def test_plan_reads_the_metadata_with_the_same_clear_errors(cache, tiny, tmp_path):
    from rlino.gguf import gguf_config

    assert gguf_config(str(tiny))["num_hidden_layers"] == 2
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny.read_bytes()[: len(tiny.read_bytes()) // 2])
    with pytest.raises(RlinoError, match="truncated or corrupt"):
        gguf_config(str(cut))
    with pytest.raises(RlinoError, match="cannot read the GGUF architecture 'notamodel'"):
        gguf_config(str(write_tiny_gguf(tmp_path / "odd.gguf", architecture="notamodel")))
    assert leftovers(cache) == []
