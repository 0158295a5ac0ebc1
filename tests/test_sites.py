"""Sites on every Llama-shaped architecture transformers ships a config for, built tiny and random.

For each: every site resolves (or is reported not applicable, with the reason), the frozen-prefix
suffix equals the full forward, and hook mode equals merged mode for vector / LoRA / local-weight
updates at each resolvable site (or merged mode refuses, naming the real reason).
"""

import functools
import re

import pytest
import torch

from easyedit_split.core.apply import MergeError, apply_updates, merged_updates
from easyedit_split.core.forward import capture_prefix, output_head, position_ids_from_mask, run_suffix
from easyedit_split.core.sites import (
    ARCHITECTURES,
    Site,
    SiteError,
    decoder_layers,
    describe_model,
    final_norm,
    layer_sites,
    resolve_site,
)
from easyedit_split.core.structure import find_final_norm, find_layer_lists, find_layer_parts
from tests.test_core import random_update
from tests.tiny_models import available_archs, tiny_inputs
from tests.tiny_models import tiny_model as build_tiny_model

ARCHS = available_archs()
REQUIRED = ("llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "gemma2", "gpt2", "gpt_neox")

#: (arch, layer) → sites that do not exist there, and the words of the reason.
NOT_APPLICABLE = {
    ("mixtral", "mlp_down"): "mixture of experts",
    ("deepseek_v3", "mlp_down"): "mixture of experts",  # layers >= first_k_dense_replace = 1
}
#: arch → why a residual vector cannot be merged exactly (None: it merges into the MLP down-projection).
NO_FOLD = {
    "olmo2": "a norm ('post_feedforward_layernorm') sits between the MLP output and the residual add",
    "gemma2": "a norm ('post_feedforward_layernorm') sits between the MLP output and the residual add",
    "gemma3_text": "a norm ('post_feedforward_layernorm') sits between the MLP output and the residual add",
    "mixtral": "the MLP is a mixture of experts",
    "deepseek_v3": "the MLP is a mixture of experts",
    "granite": "the config's residual_multiplier (0.5) scales the MLP output before the residual add",
}
#: arch → parts found by structure (no table row).
INFERRED = {"phi3", "olmo2", "mixtral", "cohere", "starcoder2", "granite", "deepseek_v3"}
LAYER = 2


@functools.cache
def tiny_model(arch):
    return build_tiny_model(arch)


def test_the_required_architectures_are_all_covered():
    assert set(REQUIRED) <= set(ARCHS)


def _intermediate(model):
    cfg = model.config
    return cfg.intermediate_size if getattr(cfg, "intermediate_size", None) else 4 * cfg.n_embd


@pytest.mark.parametrize("arch", ARCHS)
def test_every_site_resolves_or_is_reported_not_applicable(arch):
    model = tiny_model(arch)
    d = model.config.hidden_size
    where = describe_model(model)
    assert where["table_row"] == (arch not in INFERRED)
    assert ("mlp_down" in where["inferred"] or "attn_out" in where["inferred"]) == (arch in INFERRED)
    assert final_norm(model) is not None and where["final_norm"].endswith(("norm", "ln_f", "final_layer_norm"))
    for layer in range(len(decoder_layers(model)[1])):
        for component in ("residual", "mlp_down", "attn_out"):
            site = Site(layer, component)
            reason = NOT_APPLICABLE.get((arch, component))
            if reason and not (arch == "deepseek_v3" and layer == 0):
                with pytest.raises(SiteError, match=f"{reason}.*module_path"):
                    resolve_site(model, site)
                continue
            rs = resolve_site(model, site)
            assert rs.d_out == d
            if component == "mlp_down":  # the MLP's down-projection, not its input projection
                assert rs.kind in ("linear", "conv1d") and rs.d_in == _intermediate(model)
            if component == "attn_out":
                assert rs.kind in ("linear", "conv1d") and rs.module_path.rsplit(".", 1)[1] in ("o_proj", "c_proj", "dense")
        parts = layer_sites(model, layer)
        if arch in NO_FOLD and not (arch == "deepseek_v3" and layer == 0):
            assert parts.residual_writer is None and NO_FOLD[arch] in parts.missing["residual_writer"]
        else:
            assert parts.residual_writer == parts.mlp_down is not None


@pytest.mark.parametrize("arch", [a for a in ARCHS if a in ARCHITECTURES])
def test_structure_finds_what_the_table_says(arch):
    """The name-and-shape rules, run on the families the table covers, give the table's answers."""
    model = tiny_model(arch)
    layers_path, layers = decoder_layers(model)
    assert find_layer_lists(model, model.config.num_hidden_layers if hasattr(model.config, "num_hidden_layers")
                            else model.config.n_layer)[0][0] == layers_path
    spec = ARCHITECTURES[model.config.model_type]
    assert find_final_norm(model, layers_path) == spec.final_norm[0]
    found = find_layer_parts(layers[1], model.config.hidden_size)
    assert (found.mlp_down, found.attn_out, found.residual_writer) == (spec.mlp_down, spec.attn_out, spec.residual_writer)
    assert found.post_mlp_norm == spec.post_mlp_norm


@pytest.mark.parametrize("arch", ARCHS)
def test_frozen_prefix_suffix_equals_full_forward(arch):
    model = tiny_model(arch)
    ids = tiny_inputs(batch=3, seq=9)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    keep = mask.bool()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                     use_cache=False).logits
        for start in (1, 3):
            ours = output_head(model)(run_suffix(model, capture_prefix(model, ids, mask, start)))
            assert (full[keep] - ours[keep]).abs().max() < 1e-4, (arch, start)


def test_a_wrong_final_norm_is_an_error_not_a_silent_loss(monkeypatch):
    import easyedit_split.core.forward as fwd

    model = tiny_model("phi3")
    monkeypatch.setattr(fwd, "final_norm", lambda m: None)  # what the table-only lookup gave Phi-3
    with pytest.raises(SiteError, match="frozen-prefix path cannot reproduce this Phi3ForCausalLM"):
        capture_prefix(model, tiny_inputs(), None, 2)


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, use_cache=False).logits


@pytest.mark.parametrize("arch", ARCHS)
def test_hook_equals_merged_at_every_resolvable_site(arch):
    model = tiny_model(arch)
    ids = tiny_inputs()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base = _logits(model, ids)
    checked = 0
    for component in ("mlp_down", "attn_out", "residual"):
        site = Site(LAYER, component)
        if (arch, component) in NOT_APPLICABLE:
            with pytest.raises(SiteError):
                resolve_site(model, site)
            continue
        for seed, form in enumerate(("vector", "lora", "local_weight")):
            u = random_update(model, form, site, seed=seed)
            with apply_updates(model, u, 1.7):
                hooked = _logits(model, ids)
            assert (hooked - base).abs().max() > 1e-3, (arch, component, form)  # the update does something
            if component == "residual" and form != "vector":
                with pytest.raises(MergeError, match="ΔW on the residual stream"), merged_updates(model, u, 1.7):
                    pass
                continue
            if component == "residual" and arch in NO_FOLD:
                with pytest.raises(MergeError, match=re.escape(f"(model.layers.{LAYER}): {NO_FOLD[arch]}")), \
                        merged_updates(model, u, 1.7):
                    pass
                continue
            with merged_updates(model, u, 1.7):
                merged = _logits(model, ids)
            assert (hooked - merged).abs().max() < 1e-4, (arch, component, form)
            checked += 1
    assert checked >= 3  # at least one linear site, every form
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-for-bit restored
    assert torch.equal(_logits(model, ids), base)


@pytest.mark.parametrize("arch", ["phi3", "mixtral"])
def test_module_path_template_addresses_any_linear(arch):
    model = tiny_model(arch)
    ids = tiny_inputs()
    site = Site(LAYER, "module", module_path="model.layers.{layer}.self_attn.o_proj")
    assert site.module_path == f"model.layers.{LAYER}.self_attn.o_proj"
    u = random_update(model, "lora", site)
    with apply_updates(model, u, 1.0):
        hooked = _logits(model, ids)
    with merged_updates(model, u, 1.0):
        assert (_logits(model, ids) - hooked).abs().max() < 1e-4
    assert Site(1, "mlp_down", module_path="model.layers.{layer}.mlp.gate_proj").component == "module"


def test_hparams_module_path_places_the_trained_update(tmp_path):
    from easyedit_split.training.hparams import SplitHyperParams
    from easyedit_split.training.trainer import build_update

    model = build_tiny_model("llama")
    yaml_file = tmp_path / "split_lora.yaml"
    yaml_file.write_text("alg_name: split\nlayers: [1, 2]\nintervention_method: lora\n"
                         "intervention_module_path: model.layers.{layer}.mlp.up_proj\n")
    hp = SplitHyperParams.from_hparams(str(yaml_file))
    for layer in hp.layers:
        u = build_update(model, hp, layer)
        assert u.site == Site(layer, "module", module_path=f"model.layers.{layer}.mlp.up_proj")
        assert (u.d_in, u.d_out) == (32, 48)
    literal = SplitHyperParams.from_dict({"layers": [1, 2], "intervention_module_path": "model.layers.1.mlp.up_proj"})
    build_update(model, literal, 1)
    with pytest.raises(SiteError, match=r"in decoder layer 1 but the site is for layer 2.*\{layer\}"):
        build_update(model, literal, 2)


def test_run_command_module_path_reaches_the_hparams():
    from easyedit_split.cli import build_parser
    from easyedit_split.jobs.main_job import _hparams_for, config_from_args

    args = build_parser().parse_args(["run", "--module-path", "model.layers.{layer}.self_attn.o_proj"])
    cfg = config_from_args(args)
    hp, _ = _hparams_for(cfg, "split", "vector")
    assert hp.intervention_module_path == "model.layers.{layer}.self_attn.o_proj"


def test_train_command_module_path_on_an_architecture_without_a_table_row(tmp_path, tiny_tokenizer, capsys):
    import json

    from easyedit_split.cli import main
    from easyedit_split.core.serialization import load_updates

    folder = tmp_path / "phi3"
    build_tiny_model("phi3").save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    data = tmp_path / "d.jsonl"
    rows = [{"question": f"is the {w} great ?", "answer_matching_behavior": "yes", "answer_not_matching_behavior": "no"}
            for w in ("film", "food", "pizza", "place")]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rc = main(["train", "--hparams", "hparams/smollm2/split_vector.yaml", "--model", str(folder), "--data", str(data),
               "--output", str(tmp_path / "out"), "--no-progress", "--module-path", "model.layers.{layer}.self_attn.o_proj",
               "layers=[1]", "test_size=null", "max_num_of_examples=null", "n_epochs=1"])
    assert rc == 0
    saved = load_updates(tmp_path / "out" / "split_vector" / "layer_1.safetensors").updates[0]
    assert saved.site == Site(1, "module", module_path="model.layers.1.self_attn.o_proj")
    assert saved.delta_bias().abs().sum() > 0  # trained


def test_info_reports_inferred_sites(tmp_path, tiny_tokenizer, capsys):
    import json

    from easyedit_split.cli import main

    folder = tmp_path / "olmo2"
    build_tiny_model("olmo2").save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    assert main(["info", "--model", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["known_architecture"] and info["final_norm"] == "model.norm"
    assert {"layers", "final_norm", "mlp_down", "attn_out"} <= set(info["inferred"])
    row = info["sites"][1]
    assert row["mlp_down"].startswith("model.layers.1.mlp.down_proj") and row["inferred"] == ["mlp_down", "attn_out"]
    assert "post_feedforward_layernorm" in row["residual_merge_blocked_by"]
    assert main(["info", "--model", str(folder)]) == 0
    text = capsys.readouterr().out
    assert "found by module names and shapes: layers, final_norm" in text
    assert "mlp_down=model.layers.1.mlp.down_proj [linear 48->32] (inferred)" in text
