import pytest
import torch

from easyedit_split.core.apply import apply_updates
from easyedit_split.core.forward import (
    capture_prefix,
    final_hidden,
    logits_at,
    output_head,
    position_ids_from_mask,
    run_suffix,
    site_start_layer,
)
from easyedit_split.core.sites import Site
from tests.test_core import random_update
from tests.tiny_models import tiny_inputs, tiny_model


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2", "qwen2", "gpt_neox"])
@pytest.mark.parametrize("start", [0, 2])
def test_suffix_from_cached_prefix_equals_full_forward(arch, start):
    model = tiny_model(arch)
    ids = tiny_inputs(batch=3, seq=9)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
        cache = capture_prefix(model, ids, mask, start)
        h = run_suffix(model, cache)
        ours = output_head(model)(h)
    keep = mask.bool()
    assert (full[keep] - ours[keep]).abs().max() < 1e-5
    from easyedit_split.core.sites import decoder_layers

    assert not any("forward" in layer.__dict__ for layer in decoder_layers(model)[1])  # layers restored
    assert not any(layer._forward_pre_hooks for layer in decoder_layers(model)[1])
    assert torch.allclose(final_hidden(model, ids, mask)[keep], h[keep], atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_suffix_with_hooks_and_per_row_multipliers_equals_full_steered_forward(arch):
    model = tiny_model(arch)
    ids = tiny_inputs(batch=2, seq=8)
    u = random_update(model, "lora", Site(2, "mlp_down"))
    start = site_start_layer(model, [u.site])
    assert start == 2
    cache = capture_prefix(model, ids, None, start).repeat(3)
    ms = torch.tensor([-1.0, -1.0, 0.0, 0.0, 2.0, 2.0])
    with torch.no_grad(), apply_updates(model, u, ms):
        ours = output_head(model)(run_suffix(model, cache))
    for k, m in enumerate([-1.0, 0.0, 2.0]):
        with torch.no_grad(), apply_updates(model, u, m):
            full = model(input_ids=ids).logits
        assert (ours[2 * k:2 * k + 2] - full).abs().max() < 1e-5


def test_select_rows_and_logits_at():
    model = tiny_model("llama")
    ids = tiny_inputs(batch=4, seq=5)
    cache = capture_prefix(model, ids, None, 1)
    sub = cache.select([3, 1])
    with torch.no_grad():
        h = run_suffix(model, sub)
        full = model(input_ids=ids[[3, 1]]).logits
        part = logits_at(model, h, torch.tensor([0, 1]), torch.tensor([4, 2]))
    assert (part[0] - full[0, 4]).abs().max() < 1e-5
    assert (part[1] - full[1, 2]).abs().max() < 1e-5


def test_gradients_flow_through_suffix_to_update_only():
    model = tiny_model("llama")
    ids = tiny_inputs(batch=2, seq=6)
    u = random_update(model, "vector", Site(2, "residual"))
    cache = capture_prefix(model, ids, None, 2)
    with apply_updates(model, u, 1.0):
        out = output_head(model)(run_suffix(model, cache))
    out.sum().backward()
    assert u.vector.grad is not None and u.vector.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_site_output_stops_early_and_equals_full_recording(arch):
    from easyedit_split.core.record import record_site_outputs, site_output

    model = tiny_model(arch)
    ids = tiny_inputs()
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    for site in (Site(1, "residual"), Site(2, "mlp_down")):
        with record_site_outputs(model, [site]) as rec, torch.no_grad():
            model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask))
        early = site_output(model, site, ids, mask)
        assert torch.allclose(early, rec[site][0], atol=1e-6)
    assert not any(m._forward_hooks for m in model.modules())
