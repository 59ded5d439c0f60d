"""`rlino plan`: every paper config planned offline from folders holding only a config.json (real Qwen2.5 sizes, written
by hand) and a tokenizer; the parameter count against the model transformers builds on the meta device, the KV cache
against a hand computation, the saved activations against what autograd really keeps, the verdict and the advice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from rlino.cli import main
from rlino.embedded.byte_qwen2 import byte_tokenizer
from rlino.errors import RlinoError
from rlino.plan import parse_memory
from rlino.plan_memory import GIB, Setup, activation_bytes, arch_from_config, vocab_bytes

PAPER = sorted((Path(__file__).parents[1] / "configs" / "paper").glob("*.toml"))
# config.json values of the released models (huggingface.co/Qwen/Qwen2.5-0.5B, -1.5B, -7B)
QWEN = {
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True),
    "7b": dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
               num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False),
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A model folder per size holding only config.json and tokenizer files (no weights)."""
    out = {}
    for name, sizes in QWEN.items():
        folder = tmp_path_factory.mktemp(f"qwen2.5-{name}")
        (folder / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
                                                        "max_position_embeddings": 32768, **sizes}))
        byte_tokenizer().save_pretrained(folder)
        out[name] = folder
    return out


def meta_count(folder: Path) -> int:
    """The oracle: the parameters of the model transformers builds from the same config.json, on the meta device."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
    return sum(p.numel() for p in model.parameters())


def run_plan(capsys, *args) -> dict:
    assert main(["plan", *map(str, args), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("config", PAPER, ids=[p.stem for p in PAPER])
def test_every_paper_config_plans_offline_from_a_config_json(config, folders, capsys):
    size = "1.5b" if "1.5b" in config.name else "0.5b"
    result = run_plan(capsys, config, "--set", f"model.name_or_path={folders[size]}")
    runs = result["runs"]
    assert len(runs) == (5 if "train" not in config.name else 1)
    worst = runs[0]
    assert worst["run"] == "grpo" and worst["static"]["reference"] > 0  # β = 0.04: the reference copy is planned
    assert all(r["static"]["reference"] == 0 for r in runs[1:])
    s, a = worst["setup"], QWEN[size]
    assert s["params"] == s["trainable"] == meta_count(folders[size])
    head_dim = a["hidden_size"] // a["num_attention_heads"]
    batch, seq = (320 if size == "0.5b" else 160), 256 + 1024  # sampling.batch_size, default prompt + max_new_tokens
    kv = 2 * a["num_hidden_layers"] * a["num_key_value_heads"] * head_dim * batch * seq * 2  # bf16 on cuda (auto)
    assert worst["sampling"]["kv_cache"] == kv
    assert worst["tokens_per_step"] == 64 * 5 * seq
    assert worst["static"]["optimizer"] == 2 * 4 * s["params"]


def test_parameters_of_an_untied_model_count_the_output_head(folders, capsys):
    result = run_plan(capsys, PAPER[0], "--set", f"model.name_or_path={folders['7b']}")
    assert result["runs"][0]["setup"]["params"] == meta_count(folders["7b"])


def test_lora_trains_the_adapters_only_and_drops_the_reference_copy(folders, capsys):
    peft = pytest.importorskip("peft")
    result = run_plan(capsys, PAPER[0], "--set", f"model.name_or_path={folders['0.5b']}", "--set",
                      "model.lora.rank=8")
    s = result["runs"][0]["setup"]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folders["0.5b"]))
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                             "gate_proj", "up_proj", "down_proj"]))
    assert s["trainable"] == sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
    assert result["runs"][0]["static"]["reference"] == 0
    assert result["runs"][0]["static"]["optimizer"] == 2 * 4 * s["trainable"]


def test_fits_or_not_and_the_knob_to_turn(folders, capsys):
    base = [PAPER[0], "--set", f"model.name_or_path={folders['0.5b']}"]
    peak = run_plan(capsys, *base)["runs"][0]["peak"] / GIB
    roomy = run_plan(capsys, *base, "--gpu-memory", f"{peak + 1:.2f}GiB")["runs"][0]
    assert roomy["fits"] and roomy["advice"] == []
    tight = run_plan(capsys, *base, "--gpu-memory", f"{peak - 1:.2f}")["runs"][0]
    assert not tight["fits"] and tight["peak_phase"] == "training"
    assert tight["advice"][0]["set"] == "train.gradient_checkpointing=true" and tight["fits_after_advice"]
    assert tight["advice"][-1]["peak_gib"] <= peak - 1
    # a sampling batch far too large: the sampling phase is the peak, and the advice names its batch size
    wide = run_plan(capsys, *base, "--set", "sampling.batch_size=4096", "--set", "train.prompts_per_step=1024",
                    "--gpu-memory", "40GiB")["runs"][0]
    assert wide["peak_phase"] == "sampling" and not wide["fits"]
    knob = wide["advice"][0]["set"]  # checkpointing and micro-batches do not lower a sampling peak: not advised
    assert knob.startswith("sampling.batch_size=") and 1 <= int(knob.split("=")[1]) < 4096
    assert wide["fits_after_advice"] and wide["advice"][0]["peak_gib"] <= 40
    # nothing fits in 1 GiB: said so
    assert main(["plan", *map(str, base), "--gpu-memory", "1GiB"]) == 0
    assert "still does not fit" in capsys.readouterr().out


def test_the_table_names_every_term(folders, capsys):
    assert main(["plan", str(PAPER[0]), "--set", f"model.name_or_path={folders['0.5b']}", "--gpu-memory", "80"]) == 0
    text = capsys.readouterr().out
    for words in ("494,032,768", "KV cache", "AdamW", "reference model", "activations", "checkpointing",
                  "logits", "CUDA context", "fits in 80.0 GiB"):
        assert words in text


def test_a_folder_without_config_json_is_a_clear_error(tmp_path, capsys):
    assert main(["plan", str(PAPER[0]), "--set", f"model.name_or_path={tmp_path}"]) == 2
    assert f"no config.json at {tmp_path / 'config.json'}" in capsys.readouterr().err


def test_memory_sizes():
    assert parse_memory("24GiB") == parse_memory("24") == parse_memory("24g") == 24 * GIB
    assert parse_memory("80GB") == 80 * 10 ** 9 and parse_memory("512MiB") == 2 ** 29
    with pytest.raises(RlinoError, match="--gpu-memory"):
        parse_memory("lots")


def test_saved_activations_are_what_autograd_keeps():
    """The activation and log-softmax terms against the tensors autograd saves in a real training forward."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from rlino.rollout import token_logprobs

    raw = dict(model_type="qwen2", vocab_size=3000, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
               num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(Qwen2Config(**raw)).train()
    b, p, t = 3, 17, 40
    prompt_mask = torch.ones(b, p, dtype=torch.long)
    prompt_mask[0, :5] = 0  # left padding, as sampled prompts have
    params = {q.untyped_storage().data_ptr() for q in model.parameters()}
    saved: dict[int, int] = {}

    def pack(x):
        if x.dtype.is_floating_point and x.untyped_storage().data_ptr() not in params:
            saved[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        token_logprobs(model, torch.randint(0, 3000, (b, p)), prompt_mask, torch.randint(0, 3000, (b, t)),
                       torch.ones(b, t, dtype=torch.long), temperature=0.6, with_entropy=True)
    s = Setup(params=0, trainable=0, param_bytes=4, train_bf16=False, sample_bf16=False, reference=False,
              critic_params=0, gen_batch=b, micro_batch=b, prompt_tokens=p, new_tokens=t, group_size=1,
              checkpointing=False, gpu=False)
    arch = arch_from_config(raw)
    log_softmax = b * t * 3000 * 4
    expected = activation_bytes(arch, s, b, checkpointing=False) + log_softmax
    assert abs(sum(saved.values()) - expected) / expected < 0.02
    assert vocab_bytes(arch, s, b) > log_softmax  # the logits themselves come on top


def test_the_optimizer_step_can_be_the_peak_of_a_full_fine_tune(folders, capsys):
    """7B in fp32 with checkpointing and micro-batches of 1: foreach AdamW's square roots of every second moment
    (one trained-parameter-sized list on CUDA) outweigh one micro-batch's activations; by hand."""
    run = run_plan(capsys, PAPER[0], "--set", f"model.name_or_path={folders['7b']}", "--set",
                   "train.gradient_checkpointing=true", "--set", "train.micro_batch_size=1", "--set",
                   "sampling.batch_size=8", "--device", "cuda")["runs"][0]
    n = meta_count(folders["7b"])
    by_hand = 0.5 * GIB + 4 * n * (1 + 1 + 1 + 2) + 4 * n  # base; weights, reference, grads, 2 moments; the sqrt list
    assert run["phase_peak"]["optimizer"] == by_hand
    assert run["peak_phase"] == "optimizer" and run["peak"] == by_hand


def test_a_7b_full_fine_tune_fits_8_gpus_of_80gb_with_fsdp_only(folders, capsys):
    """Qwen2.5-7B, full fine-tune in fp32 with AdamW and grpo's reference, on 8 ranks of 80 GB: data parallel holds
    20 bytes per parameter on every rank (does not fit, and the advice names FSDP first); FSDP holds 1/8 of it plus
    what it gathers (fits). By hand."""
    base = [PAPER[0], "--set", f"model.name_or_path={folders['7b']}", "--device", "cuda", "--gpu-memory", "80GB",
            "--world-size", "8"]
    ddp = run_plan(capsys, *base)["runs"][0]
    fsdp = run_plan(capsys, *base, "--set", "train.sharding=fsdp")["runs"][0]
    n, budget, cuda = meta_count(folders["7b"]), 80 * 10 ** 9, GIB // 2
    assert sum(ddp["static"].values()) == 4 * n * (1 + 1 + 1 + 2)  # weights, reference, gradients, 2 moments
    assert not ddp["fits"] and ddp["peak"] > cuda + 20 * n > budget
    assert ddp["advice"][0]["set"] == "train.sharding=fsdp" and ddp["fits_after_advice"]
    per_rank = {"weights": 4 * n // 8, "reference": 4 * n // 8, "gradients": 4 * n // 8, "optimizer": 8 * n // 8}
    assert n % 8 == 0 and fsdp["static"] == per_rank
    static = 20 * n // 8
    assert fsdp["phase_peak"]["optimizer"] == cuda + static + 4 * n // 8  # foreach AdamW's square roots, 1/8
    # sampling: the whole policy gathered in bf16 (autocast auto on cuda = bf16 compute), beside each rank's 40 rows
    assert fsdp["sampling"]["gathered_weights"] == 2 * n
    assert fsdp["setup"]["gen_batch"] == 64 // 8 * 5 and ddp["sampling"]["kv_cache"] == fsdp["sampling"]["kv_cache"]
    # training: the root group (untied embeddings and head, final norm) and 2 layers gathered in bf16, one layer's
    # full fp32 gradient; activations and logits as without sharding (the same rows per rank)
    root = 2 * 152064 * 3584 + 3584
    layer = (n - root) // 28
    assert layer * 28 == n - root
    gathered = (root + 2 * layer) * 2 + layer * 4
    rest = ddp["training"]["activations"] + ddp["training"]["logits"]
    assert fsdp["training"] == {"activations": ddp["training"]["activations"], "logits": ddp["training"]["logits"],
                                "gathered_layers": gathered}
    assert fsdp["phase_peak"]["training"] == cuda + static + rest + gathered
    assert fsdp["peak"] == max(fsdp["phase_peak"].values()) <= budget and fsdp["fits"]


def test_world_size_must_be_positive(folders, capsys):
    assert main(["plan", str(PAPER[0]), "--set", f"model.name_or_path={folders['0.5b']}", "--world-size", "0"]) == 2
    assert "--world-size must be >= 1" in capsys.readouterr().err


# ---- every model source `rlino plan` accepts ---------------------------------------------------------------------

MAIN_JOB = Path(__file__).parents[1] / "src" / "rlino" / "compare_default.toml"


def real_count(name: str) -> int:
    """The oracle: the parameters of the model rlino really loads under that name."""
    from rlino.models import load_model

    model, _ = load_model(name, device="cpu")
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["embedded:countdown", "embedded:tiny"])
def test_the_main_jobs_own_config_plans_each_embedded_model(name, capsys):
    """`rlino plan src/rlino/compare_default.toml` once ended in an AttributeError on the recipe's field names."""
    result = run_plan(capsys, MAIN_JOB, "--set", f"model.name_or_path={name}")
    assert {r["setup"]["params"] for r in result["runs"]} == {real_count(name)}


def test_a_base_seed_of_the_countdown_model_plans_without_building_it(capsys):
    """`embedded:countdown@7` is not built here; its sizes come from the recipe, the same as the shipped build's."""
    result = run_plan(capsys, MAIN_JOB, "--set", "model.name_or_path=embedded:countdown@7")
    assert result["runs"][0]["setup"]["params"] == real_count("embedded:countdown")


def test_a_gguf_file_plans_from_its_metadata_before_and_after_its_folder_is_built(tmp_path, monkeypatch, capsys):
    from tiny_gguf import write_tiny_gguf

    monkeypatch.setenv("RLINO_CACHE", str(tmp_path / "cache"))
    file = write_tiny_gguf(tmp_path / "tiny.gguf")
    before = run_plan(capsys, MAIN_JOB, "--set", f"model.name_or_path={file}")
    assert not (tmp_path / "cache").exists()  # planning loads no weights and builds nothing
    count = real_count(str(file))  # builds the folder
    after = run_plan(capsys, MAIN_JOB, "--set", f"model.name_or_path={file}")
    assert before["runs"][0]["setup"]["params"] == after["runs"][0]["setup"]["params"] == count


def test_a_hub_id_that_is_not_cached_offline_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["plan", str(MAIN_JOB), "--set", "model.name_or_path=nobody-here/no-such-model-xyz"]) == 2
    assert "point model.name_or_path at a local folder" in capsys.readouterr().err
