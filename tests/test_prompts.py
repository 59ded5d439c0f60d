"""Prompt formats (rlino.prompts): raw text with the tokenizer's BOS rule, the chat template with a system prompt, and
`model.add_bos`; checked against ids written by hand (the byte tokenizer: one id per byte) and against the
tokenizer's own `apply_chat_template`; and the ids the trainer really feeds the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_tokenizers import BOS_TEMPLATE, CHATML, byte_ids, make_tokenizer

import rlino.rollout
from rlino.checks import check_config
from rlino.config import load_config
from rlino.embedded.byte_qwen2 import byte_qwen2
from rlino.errors import RlinoError
from rlino.prompts import RAW, prompt_format
from rlino.rollout import sample
from rlino.tasks import load_task
from rlino.trainer import train

IM_START, IM_END, BOS_ID = 257, 258, 259  # the byte tokenizer's specials: <|endoftext|> 256, then these, then <s>
SMOKE = str(Path(__file__).parents[1] / "configs" / "smoke.toml")


def chatml_ids(user: str, system: str = "") -> list[int]:
    """The ChatML prompt written out by hand: [system turn,] user turn, the assistant's generation prompt."""
    ids = []
    for role, content in ([("system", system)] if system else []) + [("user", user)]:
        ids += [IM_START] + byte_ids(f"{role}\n{content}") + [IM_END] + byte_ids("\n")
    return ids + [IM_START] + byte_ids("assistant\n")


def test_the_byte_tokenizer_has_no_bos_rule_so_raw_prompts_are_its_bytes():
    """The embedded models' prompts are unchanged by the BOS rule: every figure measured on them stays put."""
    tok = make_tokenizer()
    fmt = prompt_format(tok)
    assert fmt == RAW
    assert fmt.encode(tok, "12 + 3 -> 15\n") == byte_ids("12 + 3 -> 15\n")


def test_a_tokenizer_that_adds_bos_gets_exactly_one():
    tok = make_tokenizer(bos_rule=True)
    assert tok("ab")["input_ids"] == [BOS_ID, 97, 98]  # the rule this tokenizer follows
    fmt = prompt_format(tok)
    assert fmt.encode(tok, "ab") == [BOS_ID, 97, 98]
    assert fmt.encode(tok, "<s>ab") == [BOS_ID, 97, 98]  # a prompt that already starts with BOS is not doubled
    assert prompt_format(tok, add_bos=False).encode(tok, "ab") == [97, 98]
    assert prompt_format(tok, add_bos=False).encode(tok, "<s>ab") == [97, 98]


def test_add_bos_true_for_a_tokenizer_whose_rule_forgets_it():
    tok = make_tokenizer(bos_token=True)  # a BOS token, but a post-processor that does not add it
    assert tok("ab")["input_ids"] == [97, 98]
    assert prompt_format(tok).encode(tok, "ab") == [97, 98]
    assert prompt_format(tok, add_bos=True).encode(tok, "ab") == [BOS_ID, 97, 98]
    with pytest.raises(RlinoError, match="no BOS token"):
        prompt_format(make_tokenizer(), add_bos=True)


@pytest.mark.parametrize("system", ["", "Answer briefly."])
def test_chat_prompts_are_the_templates_own_ids(system):
    tok = make_tokenizer(template=CHATML)
    fmt = prompt_format(tok, chat_template=True, system_prompt=system)
    ids = fmt.encode(tok, "3 5 -> 8")
    assert ids == chatml_ids("3 5 -> 8", system)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": "3 5 -> 8"}]
    assert ids == list(tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"])


def test_a_template_that_writes_bos_on_a_tokenizer_that_adds_it_gives_one_bos():
    """Llama 3's situation: the template writes <|begin_of_text|> and the tokenizer's rule would add it again."""
    tok = make_tokenizer(bos_rule=True, template=BOS_TEMPLATE)
    ids = prompt_format(tok, chat_template="auto").encode(tok, "hi")
    expected = [BOS_ID, IM_START] + byte_ids("user\nhi") + [IM_END, IM_START] + byte_ids("assistant\n")
    assert ids == expected and ids.count(BOS_ID) == 1
    assert prompt_format(tok, chat_template="auto", add_bos=False).encode(tok, "hi") == expected[1:]


def test_auto_applies_a_template_only_where_the_tokenizer_has_one():
    assert prompt_format(make_tokenizer(template=CHATML), chat_template="auto").chat
    assert not prompt_format(make_tokenizer(), chat_template="auto").chat
    assert not prompt_format(make_tokenizer(template=CHATML), chat_template=False).chat


def test_prompt_format_mistakes_are_clear_errors():
    with pytest.raises(RlinoError, match="has no chat template"):
        prompt_format(make_tokenizer(), chat_template=True)
    with pytest.raises(RlinoError, match="system_prompt needs a chat template.*chat_template is false"):
        prompt_format(make_tokenizer(template=CHATML), system_prompt="Be brief.")
    with pytest.raises(RlinoError, match="system_prompt needs a chat template.*has no chat template"):
        prompt_format(make_tokenizer(), chat_template="auto", system_prompt="Be brief.")
    with pytest.raises(RlinoError, match="task.chat_template must be false, true or"):
        check_config(load_config(None, ["task.chat_template=yes"]))
    with pytest.raises(RlinoError, match="expects bool"):
        load_config(None, ["model.add_bos=1"])
    no_system = make_tokenizer(template="{{ raise_exception('no system role') if messages[0]['role'] == 'system' }}")
    with pytest.raises(RlinoError, match="chat template failed.*system_prompt"):
        prompt_format(no_system, chat_template=True, system_prompt="x").encode(no_system, "hi")


def test_sampling_feeds_the_formatted_ids_left_padded():
    model, _ = byte_qwen2(0, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1)
    tok = make_tokenizer(template=CHATML)
    fmt = prompt_format(tok, chat_template=True, system_prompt="S")
    prompts = ["a", "a longer prompt"]
    r = sample(model, tok, prompts, [0, 1], seed=0, step=0, temperature=1.0, top_p=1.0, max_new_tokens=3,
               prompt_format=fmt)
    for i, p in enumerate(prompts):
        assert r.prompt_ids[i][r.prompt_mask[i].bool()].tolist() == chatml_ids(p, "S")
    assert int(r.prompt_mask[0].sum()) < r.prompt_ids.shape[1]  # the short one is padded on the left


def test_the_trainer_samples_and_evaluates_with_the_configured_format(tmp_path, monkeypatch):
    """What the model reads in training steps and evaluation: the chat template with the system prompt."""
    folder = tmp_path / "model"
    model, _ = byte_qwen2(0, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1)
    model.save_pretrained(folder)
    make_tokenizer(template=CHATML).save_pretrained(folder)
    seen: list[list[int]] = []
    original = rlino.rollout.encode_prompts

    def recording(tokenizer, prompts, device, prompt_format=RAW):
        ids, mask = original(tokenizer, prompts, device, prompt_format)
        seen.extend(row[m.bool()].tolist() for row, m in zip(ids, mask))
        return ids, mask

    monkeypatch.setattr(rlino.rollout, "encode_prompts", recording)
    train(SMOKE, [f"model.name_or_path={folder}", "task.chat_template=true", "task.system_prompt=Be brief.",
                  "train.steps=1", "eval.every=1", "eval.num_items=2"], out=tmp_path / "run")
    task = load_task("countdown", **load_config(SMOKE).task.options)
    expected = {tuple(chatml_ids(it.prompt, "Be brief.")): split for split in ("test", "train")
                for it in task.items(split)}
    assert [expected.get(tuple(ids)) for ids in seen] == ["train"] * 8 + ["test"] * 2  # 2 prompts × G = 4, 2 held out
    # the logs show each prompt as the model read it: the ChatML text written out by hand
    for name in ("samples.jsonl", "eval_samples.jsonl"):
        rows = [json.loads(line) for line in (tmp_path / "run" / name).read_text().splitlines()]
        assert rows and all(r["model_prompt"] == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n"
                            f"{r['prompt']}<|im_end|>\n<|im_start|>assistant\n" for r in rows)


def test_raw_prompts_log_no_model_prompt(tmp_path):
    train(SMOKE, ["train.steps=1", "eval.every=1", "eval.num_items=2"], out=tmp_path / "run")
    rows = [json.loads(line) for name in ("samples.jsonl", "eval_samples.jsonl")
            for line in (tmp_path / "run" / name).read_text().splitlines()]
    assert rows and not any("model_prompt" in r for r in rows)
