import pytest
import torch

from easyedit_split.core.apply import MergeError, apply_updates, merge_updates, merged_updates, steer
from easyedit_split.core.sites import Site, SiteError, resolve_site
from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate
from tests.tiny_models import tiny_inputs, tiny_model

ARCHS = ["llama", "gemma2", "gpt2", "qwen2", "gpt_neox"]


def random_update(model, form, site, seed=0):
    g = torch.Generator().manual_seed(seed)
    rs = resolve_site(model, site)
    if form == "vector":
        return VectorUpdate(site, rs.d_out, vector=torch.randn(rs.d_out, generator=g))
    if form == "lora":
        return LoRAUpdate(site, rs.d_in, rs.d_out, rank=2, scale=0.5,
                          A=torch.randn(2, rs.d_in, generator=g) * 0.3, B=torch.randn(rs.d_out, 2, generator=g) * 0.3)
    return LocalWeightUpdate(site, rs.d_in, rs.d_out, weight=torch.randn(rs.d_out, rs.d_in, generator=g) * 0.1,
                             bias=torch.randn(rs.d_out, generator=g) * 0.3)


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
@pytest.mark.parametrize("component", ["mlp_down", "attn_out"])
def test_hook_equals_merged_on_linear_sites(arch, form, component):
    model = tiny_model(arch)
    ids = tiny_inputs()
    u = random_update(model, form, Site(1, component))
    base = logits(model, ids)
    with apply_updates(model, u, 1.7):
        hooked = logits(model, ids)
    with merged_updates(model, u, 1.7):
        merged = logits(model, ids)
    assert (hooked - base).abs().max() > 1e-3  # the update does something
    assert (hooked - merged).abs().max() < 1e-4
    assert torch.equal(logits(model, ids), base)  # restored


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "qwen2"])
def test_residual_vector_merges_exactly_into_residual_writer(arch):
    model = tiny_model(arch)
    ids = tiny_inputs()
    u = random_update(model, "vector", Site(2, "residual"))
    with apply_updates(model, u, -2.0):
        hooked = logits(model, ids)
    with merged_updates(model, u, -2.0):
        merged = logits(model, ids)
    assert (hooked - merged).abs().max() < 1e-4


def test_gemma2_residual_vector_refuses_to_merge():
    model = tiny_model("gemma2")
    u = random_update(model, "vector", Site(1, "residual"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(MergeError, match=r"\(model.layers.1\): a norm \('post_feedforward_layernorm'\) sits between the MLP output and the residual add"), merged_updates(model, u, 1.0):
        pass
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_residual_delta_weight_refuses_to_merge():
    model = tiny_model("llama")
    u = random_update(model, "local_weight", Site(1, "residual"))
    with pytest.raises(MergeError, match="residual stream"):
        merge_updates(model, u, 1.0)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
def test_zero_multiplier_is_bitwise_base(arch, form):
    model = tiny_model(arch)
    ids = tiny_inputs()
    base = logits(model, ids)
    u = random_update(model, form, Site(1, "mlp_down"))
    with apply_updates(model, u, 0.0):
        assert torch.equal(logits(model, ids), base)
    with apply_updates(model, u, torch.zeros(ids.shape[0])):
        assert torch.equal(logits(model, ids), base)


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_unmerge_restores_weights_bitwise(arch):
    model = tiny_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ups = [random_update(model, f, Site(i, "mlp_down"), seed=i) for i, f in enumerate(["vector", "lora", "local_weight"])]
    ups.append(random_update(model, "lora", Site(1, "mlp_down"), seed=9))  # two updates on one module
    handle = merge_updates(model, ups, 3.0)
    assert any(k not in before or not torch.equal(before[k], v) for k, v in model.state_dict().items())
    handle.unmerge()
    after = model.state_dict()
    assert set(after) == set(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bias_free_module_gets_delta_b_and_loses_it_again():
    model = tiny_model("llama")  # llama's down_proj has no bias
    ids = tiny_inputs()
    site = Site(1, "mlp_down")
    module = resolve_site(model, site).module
    assert module.bias is None
    u = random_update(model, "vector", site)
    with apply_updates(model, u, 1.0):
        hooked = logits(model, ids)
    with merged_updates(model, u, 1.0):
        assert module.bias is not None
        assert (logits(model, ids) - hooked).abs().max() < 1e-4
    assert module.bias is None


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
@pytest.mark.parametrize("form", ["vector", "lora", "local_weight"])
def test_per_row_multipliers_equal_separate_runs(arch, form):
    model = tiny_model(arch)
    ids = tiny_inputs(batch=1).repeat(4, 1)
    ms = torch.tensor([-3.0, 0.0, 0.5, 2.0])
    u = random_update(model, form, Site(2, "mlp_down" if form != "vector" else "residual"))
    with apply_updates(model, u, ms):
        batched = logits(model, ids)
    for i, m in enumerate(ms.tolist()):
        with apply_updates(model, u, m):
            single = logits(model, ids[i:i + 1])
        assert (batched[i] - single[0]).abs().max() < 1e-5


def test_vector_equals_local_weight_with_zero_delta_w():
    model = tiny_model("llama")
    ids = tiny_inputs()
    site = Site(1, "mlp_down")
    rs = resolve_site(model, site)
    v = torch.randn(rs.d_out)
    vec = VectorUpdate(site, rs.d_out, vector=v)
    lw = LocalWeightUpdate(site, rs.d_in, rs.d_out, weight=torch.zeros(rs.d_out, rs.d_in), bias=v)
    with apply_updates(model, vec, 1.3):
        a = logits(model, ids)
    with apply_updates(model, lw, 1.3):
        b = logits(model, ids)
    assert (a - b).abs().max() < 1e-5


def test_hooks_are_removed_after_an_exception():
    model = tiny_model("llama")
    ids = tiny_inputs()
    base = logits(model, ids)
    u = random_update(model, "lora", Site(1, "mlp_down"))
    with pytest.raises(RuntimeError, match="boom"), apply_updates(model, u, 2.0):
        raise RuntimeError("boom")
    assert torch.equal(logits(model, ids), base)
    assert not any(m._forward_hooks for m in model.modules())
    assert not model._forward_pre_hooks
    with pytest.raises(RuntimeError, match="boom"), steer(model, u, 2.0, mode="merged"):
        raise RuntimeError("boom")
    assert torch.equal(logits(model, ids), base)


def test_residual_vector_equals_manual_addition():
    model = tiny_model("llama")
    ids = tiny_inputs()
    layer = model.model.layers[1]
    v = torch.randn(32)
    u = VectorUpdate(Site(1, "residual"), 32, vector=v)
    handle = layer.register_forward_hook(lambda mod, a, out: (out[0] + 0.7 * v,) + tuple(out[1:]) if isinstance(out, tuple) else out + 0.7 * v)
    try:
        manual = logits(model, ids)
    finally:
        handle.remove()
    with apply_updates(model, u, 0.7):
        assert (logits(model, ids) - manual).abs().max() < 1e-6


def test_padding_positions_are_not_steered():
    from easyedit_split.core.record import record_site_outputs

    model = tiny_model("llama")
    ids = tiny_inputs(batch=2, seq=6)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding on row 0
    site = Site(1, "residual")
    u = random_update(model, "vector", site)
    with torch.no_grad():
        with record_site_outputs(model, [site]) as plain:
            model(input_ids=ids, attention_mask=mask)
        # registered after the steering hook, the recorder sees the steered output
        with apply_updates(model, u, 5.0), record_site_outputs(model, [site]) as steered:
            model(input_ids=ids, attention_mask=mask)
    diff = (steered[site][0] - plain[site][0]).abs().sum(-1)
    assert torch.all(diff[0, :2] == 0)
    assert torch.all(diff[0, 2:] > 0) and torch.all(diff[1] > 0)


def test_unknown_architecture_is_read_by_structure_and_explicit_path_still_works():
    model = tiny_model("llama")
    model.config.model_type = "mystery"
    rs = resolve_site(model, Site(1, "mlp_down"))
    assert rs.module_path == "model.layers.1.mlp.down_proj" and rs.d_in == 48
    u = random_update(model, "lora", Site(1, "module", module_path="model.layers.{layer}.mlp.down_proj"))
    assert u.site.module_path == "model.layers.1.mlp.down_proj"
    ids = tiny_inputs()
    with apply_updates(model, u, 1.0):
        a = logits(model, ids)
    with merged_updates(model, u, 1.0):
        assert (logits(model, ids) - a).abs().max() < 1e-4


def test_unresolvable_site_error_names_what_is_missing_and_module_path():
    model = tiny_model("llama")
    model.config.model_type = "mystery"
    for layer in model.model.layers:  # an MLP child nobody could recognise by name
        layer.add_module("transform", layer.mlp)
        del layer.mlp
    with pytest.raises(SiteError, match=r"no MLP-like child.*module_path"):
        resolve_site(model, Site(1, "mlp_down"))
    assert resolve_site(model, Site(1, "attn_out")).module_path == "model.layers.1.self_attn.o_proj"
    with pytest.raises(SiteError, match="is in decoder layer 1 but the site is for layer 2"):
        resolve_site(model, Site(2, "module", module_path="model.layers.1.transform.down_proj"))


def test_dimension_mismatch_is_a_clear_error():
    model = tiny_model("llama")
    u = VectorUpdate(Site(1, "residual"), 16)
    with pytest.raises(SiteError, match="another model"), apply_updates(model, u):
        pass
