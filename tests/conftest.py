import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlino.models import EMBEDDED, EOS, byte_tokenizer

    tok = byte_tokenizer()
    eos = tok.convert_tokens_to_ids(EOS)
    cfg = Qwen2Config(vocab_size=len(tok), tie_word_embeddings=True, eos_token_id=eos, pad_token_id=eos,
                      bos_token_id=None, initializer_range=initializer_range, attention_dropout=attention_dropout,
                      **EMBEDDED["tiny"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(cfg)
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
