"""How a task's prompt text becomes the token ids a model reads: raw text or the tokenizer's chat template, and BOS.

    fmt = prompt_format(tokenizer, chat_template="auto", system_prompt="You are a careful solver.")
    ids = fmt.encode(tokenizer, item.prompt)

Raw prompts (`task.chat_template = false`, the paper's setting) are the text's own tokens, after a BOS token where
the tokenizer itself puts one (Llama's do, Qwen's and GPT-2's do not). Chat prompts are exactly the ids of the
tokenizer's `apply_chat_template` for [system,] user messages with the generation prompt added; the template writes
its own BOS. `model.add_bos` overrides both for odd tokenizers: true gives exactly one leading BOS, false none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rlino.checks import check_chat_template
from rlino.errors import RlinoError


@dataclass(frozen=True)
class PromptFormat:
    """A resolved prompt format: whether to apply the chat template, the system prompt, and the BOS rule."""

    chat: bool = False
    system_prompt: str = ""
    bos: str = "keep"
    """`add` (exactly one leading BOS), `strip` (no leading BOS) or `keep` (as the text or the template has it)."""
    bos_id: int | None = None

    def encode(self, tokenizer: Any, text: str) -> list[int]:
        """The prompt's ids, without padding."""
        if self.chat:
            messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            messages.append({"role": "user", "content": text})
            try:
                out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True)
            except Exception as exc:  # a Jinja TemplateError, e.g. a template without a system role
                raise RlinoError(f"the tokenizer's chat template failed on a prompt ({type(exc).__name__}: {exc}); "
                                 "task.system_prompt may be what it rejects") from None
            ids = list(out["input_ids"])
        else:
            ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.bos == "add" and ids[:1] != [self.bos_id]:
            ids.insert(0, self.bos_id)
        elif self.bos == "strip" and ids[:1] == [self.bos_id]:
            ids.pop(0)
        return ids

    def log_fields(self, tokenizer: Any, text: str) -> dict[str, str]:
        """For a logged sample: `model_prompt`, the prompt as the model reads it with special tokens written out;
        nothing for raw text without a BOS token (the prompt is the text itself)."""
        if self == RAW:
            return {}
        return {"model_prompt": tokenizer.decode(self.encode(tokenizer, text), skip_special_tokens=False)}

    def describe(self) -> str:
        """One line for the run's log."""
        kind = ("the tokenizer's chat template" + (" with a system prompt" if self.system_prompt else "")
                if self.chat else "raw text")
        keep = "BOS as the template writes it" if self.chat else "no BOS token added"
        bos = {"add": "one BOS token first", "strip": "no BOS token", "keep": keep}[self.bos]
        return f"prompts: {kind}, {bos}"


RAW = PromptFormat()
"""Raw text, no BOS added: what a tokenizer without a BOS rule (the embedded ones, Qwen, GPT-2) gets by default."""


def tokenizer_adds_bos(tokenizer: Any) -> bool:
    """Whether the tokenizer's own rule (`add_special_tokens=True`) puts its BOS token before a text."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    with_special = tokenizer("x", add_special_tokens=True)["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return with_special[:1] == [bos] and plain[:1] != [bos]


def prompt_format(tokenizer: Any, *, chat_template: bool | str = False, system_prompt: str = "",
                  add_bos: bool | None = None) -> PromptFormat:
    """Resolve the settings against this tokenizer (`auto`: the template when the tokenizer has one)."""
    check_chat_template(chat_template)
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat_template is True and not has_template:
        raise RlinoError("task.chat_template = true, but the model's tokenizer has no chat template; set it to "
                         "false (raw prompts) or \"auto\", or use a tokenizer that ships one")
    chat = has_template if chat_template == "auto" else bool(chat_template)
    if system_prompt and not chat:
        why = "the tokenizer has no chat template" if chat_template == "auto" else "task.chat_template is false"
        raise RlinoError(f"task.system_prompt needs a chat template, but {why}; for raw prompts write the "
                         "instruction into the task's prompt_template")
    bos_id = tokenizer.bos_token_id
    if add_bos is True and bos_id is None:
        raise RlinoError("model.add_bos = true, but the tokenizer has no BOS token (bos_token)")
    if add_bos is None:
        bos = "add" if not chat and tokenizer_adds_bos(tokenizer) else "keep"
    else:
        bos = "add" if add_bos else ("strip" if bos_id is not None else "keep")
    return PromptFormat(chat=chat, system_prompt=system_prompt, bos=bos, bos_id=bos_id)


def config_prompt_format(cfg: Any, tokenizer: Any) -> PromptFormat:
    """The prompt format of a run config (`task.chat_template`, `task.system_prompt`, `model.add_bos`)."""
    return prompt_format(tokenizer, chat_template=cfg.task.chat_template, system_prompt=cfg.task.system_prompt,
                         add_bos=cfg.model.add_bos)
