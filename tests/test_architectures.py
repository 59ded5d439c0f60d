"""Real architectures, as users bring them: random Qwen2, Qwen3, Llama and GPT-2 models over a locally built
byte tokenizer (saved as a Hugging Face folder: with and without a pad token, with a BOS rule, with a chat template
and a second EOS in the generation config), each sampled greedily on left-padded prompts exactly as `generate`
writes each prompt alone (fed the tokenizer's own ids: its BOS rule, its `apply_chat_template`), and trained for two
steps by `rlino train`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from local_tokenizers import BOS_TEMPLATE, CHATML, make_tokenizer
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from rlino.embedded.byte_qwen2 import EOS
from rlino.models import load_model
from rlino.prompts import prompt_format
from rlino.rollout import _eos_ids, sample
from rlino.trainer import train

PROMPTS = ["3 5 7 -> 22\n", "1 2 -> 3\n", "9 9 9 9 -> 81\n"]  # three lengths: left padding
SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.toml")
SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=256, initializer_range=0.1)


def build(arch: str, vocab: int, eos: int):
    if arch == "gpt2":
        cfg = GPT2Config(vocab_size=vocab, n_embd=64, n_layer=2, n_head=4, n_positions=256, initializer_range=0.1,
                         bos_token_id=eos, eos_token_id=eos)
        return GPT2LMHeadModel(cfg)
    config_cls, model_cls = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "qwen3": (Qwen3Config, Qwen3ForCausalLM),
                             "llama": (LlamaConfig, LlamaForCausalLM)}[arch]
    extra = {"head_dim": 16} if arch == "qwen3" else {}
    return model_cls(config_cls(vocab_size=vocab, eos_token_id=eos, pad_token_id=eos, bos_token_id=None,
                                tie_word_embeddings=arch != "llama", **SIZES, **extra))


# (architecture, tokenizer): a pad token or none; a BOS rule (Llama's); a ChatML template and <|im_end|> as a second
# EOS in the generation config (Qwen instruct's); a template writing BOS on a tokenizer with a BOS rule (Llama 3's)
VARIANTS = {"qwen2": ("qwen2", {}), "qwen3-no-pad": ("qwen3", {"pad": False}),
            "llama-bos": ("llama", {"bos_rule": True}), "gpt2-no-pad": ("gpt2", {"pad": False}),
            "qwen2-chat": ("qwen2", {"template": CHATML}),
            "llama-bos-chat": ("llama", {"bos_rule": True, "template": BOS_TEMPLATE})}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def model_dir(request, tmp_path_factory):
    arch, tokenizer_kind = VARIANTS[request.param]
    tok = make_tokenizer(**tokenizer_kind)  # without a pad token, load_model must supply one (EOS)
    torch.manual_seed(0)
    model = build(arch, len(tok), tok.convert_tokens_to_ids(EOS))
    if tok.chat_template:  # instruct models end a turn with a token of their own besides the tokenizer's EOS
        model.generation_config.eos_token_id = [tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")]
    folder = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("engine", ["auto", "hf"])
def test_greedy_sampling_is_what_generate_writes(model_dir, engine):
    model, tok = load_model(str(model_dir), device="cpu")
    model.eval()
    eos = _eos_ids(model, tok)
    assert eos == sorted(set(model.generation_config.eos_token_id) | {tok.eos_token_id}) if tok.chat_template \
        else eos == [tok.eos_token_id]  # every EOS the saved generation config names
    fmt = prompt_format(tok, chat_template="auto")
    r = sample(model, tok, PROMPTS, [0, 1, 2], seed=0, step=0, temperature=0.0, top_p=1.0, max_new_tokens=10,
               engine=engine, prompt_format=fmt)
    reference = copy.deepcopy(model)
    for i, p in enumerate(PROMPTS):
        # the tokenizer's own ids: its template, or its rule for special tokens (a BOS where it adds one)
        ids = (tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                       return_dict=True, return_tensors="pt") if tok.chat_template
               else tok(p, return_tensors="pt"))
        assert r.prompt_ids[i][r.prompt_mask[i].bool()].tolist() == ids["input_ids"][0].tolist()
        assert ids["input_ids"][0].tolist().count(tok.bos_token_id) == (tok.bos_token_id is not None)
        out = reference.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=10,
                                 do_sample=False, pad_token_id=tok.pad_token_id)
        expected = out[0, ids["input_ids"].shape[1]:].tolist()
        ends = [k for k, t in enumerate(expected) if t in eos]
        expected = expected[: ends[0] + 1] if ends else expected
        assert r.completion_ids[i][r.completion_mask[i].bool()].tolist() == expected, (model_dir.name, i)


def test_two_training_steps_move_every_matrix(model_dir, tmp_path):
    out = train(SMOKE, [f"model.name_or_path={model_dir}", "task.name=toy_task:make", "task.options={rule = 'ascii'}",
                        "task.chat_template=auto",
                        "train.learning_rate=1e-3", "sampling.temperature=0.7", "method.name=grpo",
                        "train.prompts_per_step=4"],
                out=tmp_path / "run")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(0 < r["accuracy"] < 1 and r["grad_norm"] > 0 for r in rows)
    before = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(out).state_dict()
    moved = [k for k in before if before[k].dim() == 2 and not torch.equal(before[k], after[k])]
    assert len(moved) >= len([k for k in before if before[k].dim() == 2]) // 2
