"""The lean decode step (`sampling.engine = "lean"`) against the model's own forward, in fp32.

The lean step does the same math in another floating-point order, so its logits are compared within a tolerance,
and the samples of these fixed fixtures must come out the same; the guarantees that do not depend on the order
(layout independence, greedy equal to `generate`) are checked exactly. Architectures it does not cover fall back to
the model's forward with a notice, and then sample exactly what `hf` samples.
"""

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from rlino.embedded.byte_qwen2 import byte_tokenizer
from rlino.engine import LeanDecoder, unsupported
from rlino.rollout import _cache_argument, _step, encode_prompts, sample

PROMPTS = ["3 5 7 -> 22\n", "1 2 -> 3\n", "12 9 4 8 -> 100\n", "7 ->\n"] * 3  # mixed lengths: left padding
KW = dict(seed=5, step=3, temperature=0.7, top_p=0.9, max_new_tokens=24)


def byte_model(kind: str):
    """A random model of the given architecture over the byte tokenizer, at a scale that uses positions."""
    tok = byte_tokenizer()
    eos = tok.eos_token_id
    common = dict(vocab_size=len(tok), eos_token_id=eos, pad_token_id=eos, bos_token_id=None)
    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.1, **common)
        model = LlamaForCausalLM(config)
    else:
        config = GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=256, initializer_range=0.1, **common)
        model = GPT2LMHeadModel(config)
    return model.eval(), tok


@pytest.fixture(params=["qwen2", "llama"])
def covered(request, sharp):
    return sharp if request.param == "qwen2" else byte_model("llama")


def assert_lean_step_matches_the_forward(model, ids: torch.Tensor, mask: torch.Tensor, steps: int) -> torch.Tensor:
    """Step by step from a left-padded batch, the lean step's logits equal the model's cached forward's within 1e-4
    (the next token alternately noisy and greedy, so the cache sees tokens of both kinds); the last logits."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    arg = _cache_argument(model)
    with torch.no_grad():
        cache, logits = _step(model, None, arg, input_ids=ids, attention_mask=mask, position_ids=positions)
        lean = LeanDecoder(model, cache, ids.shape[1] + steps + 4)
        attention, position = mask, positions[:, -1:]
        for t in range(steps):
            nxt = logits.argmax(-1) if t % 2 else (logits + torch.randn_like(logits)).argmax(-1)
            attention = torch.cat([attention, torch.ones_like(attention[:, :1])], 1)
            position = position + 1
            cache, logits = _step(model, cache, arg, input_ids=nxt[:, None], attention_mask=attention,
                                  position_ids=position)
            torch.testing.assert_close(lean.step(nxt, position, attention), logits, rtol=0, atol=1e-4)
    return logits


def test_lean_step_logits_match_the_models_forward(covered):
    """Step by step on a left-padded batch, the lean step's logits equal the model's cached forward's."""
    model, tok = covered
    assert unsupported(model) is None
    ids, mask = encode_prompts(tok, PROMPTS, "cpu")
    logits = assert_lean_step_matches_the_forward(model, ids, mask, steps=12)
    assert logits.std() > 0.5  # the logits do vary: a step that ignored its input would not pass


def test_lean_samples_are_the_reference_samples(covered):
    model, tok = covered
    ref = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="hf", **KW)
    lean = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="lean", **KW)
    assert lean.texts == ref.texts
    assert torch.equal(lean.completion_ids, ref.completion_ids) and torch.equal(lean.completion_mask,
                                                                                ref.completion_mask)
    assert len(set(ref.texts)) > 3  # varied responses


def test_lean_samples_do_not_depend_on_the_batch_layout(covered):
    model, tok = covered
    whole = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="lean", **KW)
    chunks = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="lean", batch_size=5, **KW)
    alone = sample(model, tok, PROMPTS[7:8], [7], engine="lean", **KW)
    assert chunks.texts == whole.texts and alone.texts[0] == whole.texts[7]


def test_lean_greedy_equals_generate(covered):
    model, tok = covered
    prompt = PROMPTS[2]
    ids = torch.tensor([tok(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                         pad_token_id=tok.eos_token_id)[0, ids.shape[1]:]
    ours = sample(model, tok, [prompt], [0], seed=0, step=0, temperature=0.0, top_p=1.0, max_new_tokens=24,
                  engine="lean")
    n = int(ours.completion_mask[0].sum())
    assert n > 0 and ours.completion_ids[0, :n].tolist() == out[:n].tolist()


def test_an_uncovered_architecture_falls_back_with_a_notice():
    model, tok = byte_model("gpt2")
    assert "gpt2" in unsupported(model)
    ref = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="hf", **KW)
    with pytest.warns(UserWarning, match="does not cover architecture 'gpt2'"):
        lean = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="lean", **KW)
    assert lean.texts == ref.texts


def test_auto_takes_the_lean_step_where_it_covers_the_model_and_falls_back_silently(covered, monkeypatch):
    """`auto` (the config default) decodes with the lean step on a covered model, and with the model's forward,
    without a notice, on one it does not cover."""
    import warnings

    import rlino.rollout

    steps = []

    class Spy(LeanDecoder):
        def step(self, *args):
            steps.append(1)
            return super().step(*args)

    monkeypatch.setattr(rlino.rollout, "LeanDecoder", Spy)
    model, tok = covered
    sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="auto", **KW)
    assert len(steps) > 0
    steps.clear()
    sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="hf", **KW)
    assert steps == []
    gpt2, gtok = byte_model("gpt2")
    ref = sample(gpt2, gtok, PROMPTS, list(range(len(PROMPTS))), engine="hf", **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = sample(gpt2, gtok, PROMPTS, list(range(len(PROMPTS))), engine="auto", **KW)
    assert auto.texts == ref.texts and steps == []


def lora_model(kind: str, rank: int = 4, **peft_options):
    """A covered model with PEFT LoRA adapters on every projection, B drawn at random (PEFT starts B at 0, where the
    adapters would change nothing and a step that ignored them would pass)."""
    from conftest import build_sharp

    from rlino.config import LoraConfig
    from rlino.lora import attach_lora

    model, tok = build_sharp() if kind == "qwen2" else byte_model("llama")  # fresh: adapters go in in place
    if peft_options:
        import peft

        peft.get_peft_model(model, peft.LoraConfig(r=rank, target_modules="all-linear", **peft_options))
    else:
        attach_lora(model, LoraConfig(rank=rank), seed=0, base_name=kind)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval(), tok


@pytest.mark.parametrize("kind", ["qwen2", "llama"])
def test_a_lora_policy_is_covered_with_its_adapters_merged(kind):
    """The lean step on a LoRA policy gives PEFT's own forward's logits (the oracle: W·x + s·B(A(x)) per module), and
    the adapters matter: the same step with them disabled is far off; the samples are `hf`'s."""
    model, tok = lora_model(kind)
    assert unsupported(model) is None
    ids, mask = encode_prompts(tok, PROMPTS, "cpu")
    logits = assert_lean_step_matches_the_forward(model, ids, mask, steps=8)
    with model.disable_adapter() if hasattr(model, "disable_adapter") else _adapters_off(model):
        assert unsupported(model) is None
        off = assert_lean_step_matches_the_forward(model, ids, mask, steps=8)
    assert (logits - off).abs().max() > 0.1  # B·A moved the logits: the merge is tested, not a no-op
    ref = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="hf", **KW)
    lean = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), engine="lean", **KW)
    assert lean.texts == ref.texts and len(set(ref.texts)) > 3


def _adapters_off(model):
    """PEFT's adapter switch on a model whose adapters were injected in place (no PeftModel wrapper at hand)."""
    from contextlib import contextmanager

    from peft.tuners.lora import LoraLayer

    @contextmanager
    def off():
        layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        for m in layers:
            m.enable_adapters(False)
        try:
            yield
        finally:
            for m in layers:
                m.enable_adapters(True)

    return off()


def test_lora_adapters_the_step_cannot_merge_are_not_covered():
    model, _ = lora_model("llama", use_dora=True)
    assert "LoRA variants" in unsupported(model)
    model, _ = lora_model("llama", lora_dropout=0.1)
    assert unsupported(model) is None  # in eval mode dropout is the identity
    assert "dropout" in unsupported(model.train())


@pytest.mark.parametrize("kind", ["qwen2", "llama", "gpt2"])
@pytest.mark.parametrize("engine", ["hf", "lean"])
def test_shared_prompt_prefill_gives_the_separate_prefills_responses(kind, engine, sharp):
    """A group's rows share one prompt, prefilled once and copied: the first logits and the cache equal those of
    prefilling every row, and the responses are the same tokens (fixtures with 3 copies of 4 prompts)."""
    from rlino.rollout import _prefill

    model, tok = sharp if kind == "qwen2" else byte_model(kind)
    ids, mask = encode_prompts(tok, PROMPTS, "cpu")
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    arg = _cache_argument(model)
    with torch.no_grad():
        shared_cache, shared = _prefill(model, arg, ids, mask, positions, share_prompts=True)
        rows_cache, rows = _prefill(model, arg, ids, mask, positions, share_prompts=False)
    torch.testing.assert_close(shared, rows, rtol=0, atol=1e-5)
    for a, b in zip(shared_cache.layers, rows_cache.layers):
        torch.testing.assert_close(a.keys, b.keys, rtol=0, atol=1e-5)
        torch.testing.assert_close(a.values, b.values, rtol=0, atol=1e-5)
    assert torch.equal(shared[0], shared[4]) and torch.equal(shared[4], shared[8])  # one prefill, copied
    kw = dict(engine=engine, **KW)
    once = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), share_prompts=True, **kw)
    every = sample(model, tok, PROMPTS, list(range(len(PROMPTS))), share_prompts=False, **kw)
    assert torch.equal(once.completion_ids, every.completion_ids) and once.texts == every.texts
    assert len(set(once.texts)) > 3
