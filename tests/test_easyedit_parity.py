"""Inside EasyEdit, the plugin renders every prompt as EasyEdit's own code does (issue #18, item 1).

For each combination of ``use_chat_template`` (true/false), ``system_prompt`` (absent, ``''``, text)
and chat template (none on the tokenizer, one without a default system prompt, one with a default
system prompt, one without a system role), the plugin's training prompts (the hparams EasyEdit
builds through the registered classes), scoring prompts (``preference_utility`` in EasyEdit's
``Evaluator``) and generation prompts are compared with EasyEdit's ``build_model_input`` — both the
host's function (called inside EasyEdit) and the plugin's written-out copy of the rule (used outside).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import TINY_CHAT_TEMPLATE, build_tiny_tokenizer
from tests.easyedit_checkout import require_steering, steer_on_path

EASYEDIT = require_steering()

from omegaconf import OmegaConf

TEMPLATES = {
    "no_template": None,
    "plain": TINY_CHAT_TEMPLATE,
    # SmolLM2-like: a default system turn when the messages have none
    "default_system": (
        "{% if messages[0]['role'] != 'system' %}<|system|> you are a helpful assistant <|end|> {% endif %}"
        + TINY_CHAT_TEMPLATE
    ),
    # Gemma-like: no system role at all
    "no_system_role": (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
        "{% if add_generation_prompt %}<|assistant|> {% endif %}"
    ),
}
ABSENT = object()
SYSTEM_PROMPTS = {"absent": ABSENT, "empty": "", "text": "be brief ."}
QUESTIONS = ["is the sky blue ?", "  i like this film : yes or no ?  "]


@pytest.fixture(scope="module")
def host():
    with steer_on_path(EASYEDIT):
        import steer.vector_generators.vector_generators as generators
        from steer.utils import alg_dict

        saved = (dict(alg_dict.HYPERPARAMS_CLASS_DICT), dict(alg_dict.METHOD_FNS),
                 list(generators.REQUIRED_DATASET_METHODS))
        from easyedit_split import register_with_easyedit

        register_with_easyedit()
        yield alg_dict
        alg_dict.HYPERPARAMS_CLASS_DICT.clear()
        alg_dict.HYPERPARAMS_CLASS_DICT.update(saved[0])
        alg_dict.METHOD_FNS.clear()
        alg_dict.METHOD_FNS.update(saved[1])
        generators.REQUIRED_DATASET_METHODS[:] = saved[2]


def _tokenizer(template_kind: str):
    tok = build_tiny_tokenizer()
    tok.chat_template = TEMPLATES[template_kind]
    return tok


def _easyedit_hparams(tmp_path: Path, use_chat_template: bool, system_prompt):
    """Training hparams exactly as EasyEdit builds them (its YAML + top-level config, its loader)."""
    from steer.utils import load_generate_vector_hparams

    method = tmp_path / "generate_split.yaml"
    method.write_text(json.dumps({"alg_name": "split", "layers": [1], "n_epochs": 1}))
    top = {"model_name_or_path": str(tmp_path / "tiny-llama"), "device": "cpu", "dtype": "float32",
           "use_chat_template": use_chat_template, "steer_train_hparam_paths": [str(method)],
           "steer_vector_output_dirs": [str(tmp_path / "vectors")], "steer_train_dataset": ["pairs"]}
    if system_prompt is not ABSENT:
        top["system_prompt"] = system_prompt
    return load_generate_vector_hparams(OmegaConf.create(top))["split"]


@pytest.mark.parametrize("template_kind", list(TEMPLATES))
@pytest.mark.parametrize("system_kind", list(SYSTEM_PROMPTS))
@pytest.mark.parametrize("use_chat_template", [True, False])
@pytest.mark.parametrize("outside", [False, True], ids=["host_function", "plugin_copy"])
def test_training_scoring_generation_prompts_equal_easyedits(host, tmp_path, monkeypatch, template_kind,
                                                              system_kind, use_chat_template, outside):
    from steer.utils.templates import build_model_input

    from easyedit_split.core.generation import render_prompts
    from easyedit_split.data import prompts as prompt_rules
    from easyedit_split.data.encoding import encode_pairs
    from easyedit_split.data.pairs import PolarityPair
    from easyedit_split.easyedit.evaluator import _prompt_kwargs
    from easyedit_split.training.trainer import encode_for

    if outside:  # the plugin's own copy of the rule, as used where EasyEdit's module is not imported
        monkeypatch.setattr(prompt_rules, "easyedit_builder", lambda: None)
    tok = _tokenizer(template_kind)
    hp = _easyedit_hparams(tmp_path, use_chat_template, SYSTEM_PROMPTS[system_kind])
    assert hp.prompt_rule == "easyedit"
    # EasyEdit's own hparams class (its base HyperParams) for the same config gives the same two values
    sp = SYSTEM_PROMPTS[system_kind]
    expected_system = "" if sp is ABSENT else sp
    assert (hp.use_chat_template, hp.system_prompt) == (use_chat_template, expected_system)

    expected = [build_model_input(q, tok, expected_system, use_chat_template) for q in QUESTIONS]
    expected_ids = [tok(t, add_special_tokens=not use_chat_template)["input_ids"] for t in expected]
    pairs = [PolarityPair(id=str(i), question=q, positive="yes", negative="no", source="t") for i, q in enumerate(QUESTIONS)]

    # training: the plugin's trainer encodes with the hparams EasyEdit built
    trained = encode_for(hp, pairs, tok)
    assert [e.prompt_ids for e in trained] == expected_ids

    # scoring: preference_utility in EasyEdit's Evaluator renders from the wrapper's hparams
    class Wrapper:
        hparams = hp

    scored = encode_pairs(pairs, tok, **_prompt_kwargs(Wrapper(), None, None))
    assert [e.prompt_ids for e in scored] == expected_ids

    # generation: the plugin's generation path under the same rule
    rendered, _ = render_prompts(tok, QUESTIONS, chat_template=hp.use_chat_template, system_prompt=hp.system_prompt,
                                 prompt_rule=hp.prompt_rule)
    assert rendered == expected


def test_plugin_rule_outside_easyedit_keeps_an_explicit_empty_system_turn():
    """Outside EasyEdit the plugin's own hparams keep the documented plugin rule: '' is an empty system
    turn (the shipped SmolLM2 configs rely on it to suppress SmolLM2's default system prompt)."""
    from easyedit_split.data.encoding import render_prompt
    from easyedit_split.training.hparams import SplitHyperParams

    tok = _tokenizer("default_system")
    assert SplitHyperParams().prompt_rule == "plugin"
    plugin = render_prompt(tok, "is the sky blue ?", chat_template=True, system_prompt="")
    easyedit = render_prompt(tok, "is the sky blue ?", chat_template=True, system_prompt="", prompt_rule="easyedit")
    assert "helpful" not in plugin and "<|system|>" in plugin
    assert "helpful" in easyedit


def test_unknown_prompt_rule_is_refused():
    from easyedit_split.base.hparams_io import HParamsError
    from easyedit_split.training.hparams import SplitHyperParams

    with pytest.raises(HParamsError, match="key 'prompt_rule'.*'upstream' is not a prompt rule"):
        SplitHyperParams.from_dict({"prompt_rule": "upstream"})


def test_training_warns_where_upstreams_trainer_would_drop_the_system_prompt(host, tmp_path, caplog):
    from easyedit_split.data.pairs import PolarityPair
    from easyedit_split.training.trainer import encode_for

    hp = _easyedit_hparams(tmp_path, False, "be brief .")
    with caplog.at_level("WARNING"):
        encode_for(hp, [PolarityPair(id="0", question="is it ?", positive="yes", negative="no", source="t")], _tokenizer("plain"))
    assert any("would drop the system prompt" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


# ------------------------------------------------------------------------------ upstream trainer keys (item 2)

UPSTREAM_REPS_LORA = ("hparams/Steer/experiment_hparams/spilt_experiment/psychopathy/gemma-2-9b-it/reps/"
                      "generate_reps_lora.yaml")


def _load_upstream_yaml(tmp_path: Path, **changes):
    """EasyEdit's own spilt_experiment YAML (its keys as shipped, with ``changes``), built by EasyEdit's loader."""
    import yaml
    from steer.utils import load_generate_vector_hparams

    data = yaml.safe_load((EASYEDIT / UPSTREAM_REPS_LORA).read_text())
    data.update(changes)
    method = tmp_path / "generate_reps_lora.yaml"
    method.write_text(json.dumps(data))
    top = {"model_name_or_path": str(tmp_path / "tiny-llama"), "device": "cpu", "dtype": "float32",
           "steer_train_hparam_paths": [str(method)], "steer_vector_output_dirs": [str(tmp_path / "vectors")],
           "steer_train_dataset": ["pairs"]}
    return load_generate_vector_hparams(OmegaConf.create(top))[data["alg_name"]]


def test_upstream_yaml_warns_at_warning_naming_each_unimplemented_key(host, tmp_path, caplog):
    with caplog.at_level("WARNING"):
        hp = _load_upstream_yaml(tmp_path, intervention_positions_dropout=0.2, loss_output_dir=str(tmp_path))
    assert hp.intervention_type == "addition" and hp.steering_prompt_type == "blend_in" and hp.max_concepts == 1
    warned = {r.getMessage().split("key '")[1].split("'")[0] for r in caplog.records
              if r.levelname == "WARNING" and "is not implemented by the plugin" in r.getMessage()}
    assert warned == {"intervention_positions_dropout", "dropout", "output_length", "loss_output_dir"}


@pytest.mark.parametrize("changes, message", [
    ({"intervention_type": "clamping"}, "key 'intervention_type' is 'clamping' with intervention_method 'lora'"),
    ({"intervention_type": "scaling"}, "key 'intervention_type' is 'scaling'; use one of addition, clamping"),
    ({"inference": True}, "key 'inference' is true"),
    ({"steering_prompt_type": "append"}, "key 'steering_prompt_type' must be prepend or blend_in"),
    ({"preference_pairs": ["steered_mul"]}, "supported: orig_add, orig_sub, steered_add, steered_sub"),
])
def test_upstream_keys_that_would_change_the_update_are_refused(host, tmp_path, changes, message):
    from easyedit_split.base.hparams_io import HParamsError

    with pytest.raises(HParamsError, match=message):
        _load_upstream_yaml(tmp_path, **changes)


def test_upstream_yaml_with_clamping_on_a_vector_trains_a_clamped_vector(host, tmp_path):
    """EasyEdit's own reps YAML with intervention_method: vector and intervention_type: clamping (the value its
    comment names) builds hparams whose trainer makes a clamped vector."""
    from easyedit_split.core.updates import ClampedVectorUpdate
    from easyedit_split.training.trainer import build_update
    from tests.tiny_models import tiny_model

    hp = _load_upstream_yaml(tmp_path, intervention_type="clamping", intervention_method="vector", layers=[1])
    assert hp.intervention_type == "clamping"
    assert isinstance(build_update(tiny_model("llama"), hp, 1), ClampedVectorUpdate)


def test_upstream_trainer_cannot_clamp(host):
    """Upstream's own SFT trainer (spilt's) raises for intervention_type clamping: the plugin's clamping has no
    upstream run to compare with (its math is tested against a hand-computed projection, test_clamping.py)."""
    from steer.trainer.SFTTrainer import SFTTrainer

    trainer = SFTTrainer.__new__(SFTTrainer)

    class Cfg:
        hidden_size = 8

    class Wrapper:
        class model:
            config = Cfg

    trainer.model = Wrapper
    with pytest.raises(ValueError, match="Intervention type clamping not supported"):
        trainer.make_model(intervention_type="clamping", intervention_method="vector")
