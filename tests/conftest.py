import os
import signal
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SESSION = f"RLINO_TEST_SESSION={os.getpid()}-{os.urandom(4).hex()}"
"""Marks every process the tests start, however they start it (subprocess, torchrun's ranks in sessions of their
own, compare's spawned workers): each inherits the environment, and /proc/PID/environ keeps what it started with."""
os.environ[SESSION.split("=")[0]] = SESSION.split("=", 1)[1]


SESSION_HELPERS = ("multiprocessing.resource_tracker", "rlino/tasks/symbolic_worker.py")
"""Processes that live as long as the session by design and are closed at its exit: multiprocessing's resource
tracker and the math grader's worker (`rlino.tasks.symbolic`'s pool, reused from call to call)."""


def processes_left() -> list[tuple[int, str]]:
    """(pid, command line) of every process still running that a test of this session started, however deep: found by
    the mark in its environment, not by parentage (a rank whose launcher died belongs to no one). The pytest process
    itself and the SESSION_HELPERS are not counted."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            marked = SESSION.encode() in (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone, or not ours to read
            continue
        if marked and command and not any(helper in command for helper in SESSION_HELPERS):
            out.append((int(entry.name), command))
    return out


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    """After every test, passing or failing: SIGKILL to any process it started that still runs, then an error naming
    them (a test must end what it starts; a failed FSDP test once left its ranks asleep for good)."""
    yield
    left = processes_left()
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        pytest.fail("processes left running by this test (now killed): "
                    + "; ".join(f"{pid}: {cmd[:160]}" for pid, cmd in left), pytrace=False)


@pytest.fixture(scope="session")
def tiny():
    """The embedded tiny model and its tokenizer (fp32, CPU)."""
    from rlino.models import load_model

    return load_model("embedded:tiny", device="cpu", seed=0)


def build_sharp(initializer_range: float = 0.1, attention_dropout: float = 0.0, seed: int = 0):
    """`embedded:tiny`'s architecture and tokenizer with a larger init scale, so that it does depend on positions.

    `embedded:tiny` (init 0.02) barely uses positions: setting every position id to 0 moves its log-probs by at most
    ~0.006, and attending left padding by ~0.5, so position, padding and cache bugs cannot show with it. At init 0.1
    the same changes move log-probs by ~2.5 and ~1.9 nats (`test_sharp_model_depends_on_positions_and_padding`),
    while the next-token distribution stays broad (entropy ~5.2 nats of ln 259 = 5.56), so sampled responses vary
    and the toy task still gets mixed rewards.
    """
    from rlino.embedded import TINY
    from rlino.embedded.byte_qwen2 import byte_qwen2

    model, tok = byte_qwen2(seed, initializer_range=initializer_range, attention_dropout=attention_dropout, **TINY)
    return model.eval(), tok


@pytest.fixture(scope="session")
def sharp():
    """A position-sensitive tiny model and its tokenizer (fp32, CPU, eval mode); see `build_sharp`."""
    return build_sharp()


@pytest.fixture(scope="session")
def sharp_dir(tmp_path_factory):
    """The sharp model saved as a local Hugging Face folder (for `model.name_or_path` in run configs)."""
    from rlino.models import save_model

    folder = tmp_path_factory.mktemp("sharp") / "model"
    save_model(*build_sharp(), folder)
    return folder


@pytest.fixture(scope="session")
def dropout_dir(tmp_path_factory):
    """The sharp model with attention dropout 0.1, so a training step consumes the torch RNG (resume tests)."""
    from rlino.models import save_model

    folder = tmp_path_factory.mktemp("dropout") / "model"
    save_model(*build_sharp(attention_dropout=0.1), folder)
    return folder


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures saved while the test runs, by file stem (the PNG files are still written)."""
    from matplotlib.figure import Figure

    saved = {}
    original = Figure.savefig

    def record(fig, path, *args, **kwargs):
        saved[Path(path).stem] = fig
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", record)
    return saved
