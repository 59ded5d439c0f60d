"""Tokenizers as real models ship them, built here over the byte tokenizer (one token per byte, then specials):
with a BOS token its post-processor puts first (Llama's rule), with a ChatML chat template (Qwen's), and with a
Llama-3-style template that writes its BOS token itself."""

from __future__ import annotations

from tokenizers import processors

from rlino.embedded.byte_qwen2 import byte_tokenizer

BOS = "<s>"
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
# Llama 3's shape: the template writes the BOS token, and the tokenizer's own rule would add one too
BOS_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
                "'<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tokenizer(*, bos_rule: bool = False, bos_token: bool | None = None, template: str | None = None,
                   pad: bool = True):
    """The byte tokenizer, with a BOS token (`bos_token`, default: when `bos_rule`), a post-processor that adds it
    (`bos_rule`), a chat template, and without a pad token (`pad=False`)."""
    tok = byte_tokenizer()
    if bos_token or (bos_token is None and bos_rule):
        tok.add_special_tokens({"bos_token": BOS})
    if bos_rule:
        bos = tok.bos_token_id
        tok._tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    if template is not None:
        tok.chat_template = template
    if not pad:
        tok.pad_token = None
    return tok


def byte_ids(text: str) -> list[int]:
    """The byte tokenizer's ids of plain text, by hand: one id per UTF-8 byte."""
    return list(text.encode())
