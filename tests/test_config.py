"""The typed config: defaults, overrides, and one clear error per bad input."""

import pytest

from rlino.config import Config, load_config, save_config
from rlino.errors import RlinoError
from rlino.objectives import resolve_method
from rlino.trainer import resolved_config, validate


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_defaults_and_overrides(tmp_path):
    cfg = load_config(write(tmp_path, "[train]\nsteps = 5\n"),
                      ["method.aggregation=token-mean", "method.beta=0.04", "method.clip_eps=0.3",
                       "train.learning_rate=1e-4", "task.options.num_numbers=4", "method.epochs_per_batch=2",
                       "model.name_or_path=embedded:tiny"])
    assert cfg.train.steps == 5 and cfg.train.learning_rate == 1e-4 and cfg.train.group_size == 8
    assert cfg.task.options == {"num_numbers": 4}
    m = resolve_method(cfg.method)
    assert (m.aggregation, m.beta, m.clip_eps, m.clip_eps_high, m.epochs_per_batch) == ("token-mean", 0.04, 0.3,
                                                                                        0.3, 2)
    assert load_config(None).train.steps == Config().train.steps


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["method.name=dapo"])
    res = resolved_config(cfg, validate(cfg))
    save_config(res, tmp_path / "r.toml")
    back = load_config(tmp_path / "r.toml")
    assert back == res
    assert back.method.clip_eps_high == 0.28 and back.method.aggregation == "token-mean"


@pytest.mark.parametrize("text,overrides,message", [
    ("[train]\nstep = 3\n", [], "unknown config key 'train.step' (did you mean 'train.steps'?)"),
    ("[trian]\nsteps = 3\n", [], "unknown config section 'trian' (did you mean 'train'?)"),
    ("", ["sampling.temprature=0.5"], "did you mean 'sampling.temperature'"),
    ("[train]\nsteps = 'ten'\n", [], "config key 'train.steps' expects int, got str 'ten'"),
    ("", ["train.learning_rate=fast"], "config key 'train.learning_rate' expects float, got str 'fast'"),
    ("", ["method.clip=maybe"], "config key 'method.clip' expects"),
    ("[train\n", [], "not valid TOML"),
    ("", ["trainsteps"], "--set expects section.key=value"),
])
def test_bad_config_errors(tmp_path, text, overrides, message):
    with pytest.raises(RlinoError) as e:
        load_config(write(tmp_path, text), overrides)
    assert message in str(e.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(RlinoError, match="config file not found: .*nope.toml"):
        load_config(tmp_path / "nope.toml")


@pytest.mark.parametrize("overrides,message", [
    (["method.name=grpo", "train.group_size=1"], "method 'grpo' compares responses within a group"),
    (["method.name=fisft_adv", "train.group_size=1"], "train.group_size must be >= 2, got 1"),
    (["method.name=gpro"], "unknown method 'gpro' (did you mean 'grpo'?)"),
    (["method.aggregation=token_mean"], "did you mean 'token-mean'"),
    (["method.weights=posneg"], "did you mean 'pos-neg'"),
    (["sampling.temperature=0"], "sampling.temperature must be > 0"),
    (["train.prompts_per_step=0"], "train.prompts_per_step must be >= 1"),
    (["train.lr_schedule=step"], "train.lr_schedule must be constant, linear or cosine"),
    (["sampling.engine=fast"], "sampling.engine must be one of auto, hf, lean, got 'fast'"),
    (["method.epochs_per_batch=0"], "method.epochs_per_batch must be >= 1"),
])
def test_invalid_settings(overrides, message):
    with pytest.raises(RlinoError) as e:
        validate(load_config(None, overrides))
    assert message in str(e.value)


def test_group_size_one_is_fine_without_groups():
    validate(load_config(None, ["method.name=fisft_pos", "train.group_size=1"]))
