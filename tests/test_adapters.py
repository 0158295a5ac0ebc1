import pytest
import torch

from easyedit_split.adapters.builders import (
    AdapterError,
    from_easyedit_pt,
    from_edited_weights,
    from_peft,
)
from easyedit_split.core.apply import apply_updates, merged_updates
from easyedit_split.core.record import record_site_outputs
from easyedit_split.core.sites import Site
from easyedit_split.core.updates import LocalWeightUpdate, LoRAUpdate, VectorUpdate
from easyedit_split.training.diffmean import diffmean_vector
from tests.tiny_models import tiny_inputs, tiny_model


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_diffmean_vector_is_mean_difference_and_equals_manual_residual_addition():
    model = tiny_model("llama")
    site = Site(2, "residual")
    pos = tiny_inputs(batch=3, seq=6, seed=3)
    neg = tiny_inputs(batch=3, seq=6, seed=4)
    mask = torch.zeros(3, 6, dtype=torch.bool)
    mask[:, 3:] = True
    u = diffmean_vector(model, site, [(pos, torch.ones_like(pos), mask)], [(neg, torch.ones_like(neg), mask)])
    with record_site_outputs(model, [site]) as rec, torch.no_grad():
        model(input_ids=pos)
        model(input_ids=neg)
    expected = rec[site][0][mask].mean(0) - rec[site][1][mask].mean(0)
    assert torch.allclose(u.vector, expected, atol=1e-5)
    # applying it equals adding it to the residual stream by hand
    ids = tiny_inputs()
    v = u.vector.detach()
    h = model.model.layers[2].register_forward_hook(lambda m, a, o: o + 2.0 * v if isinstance(o, torch.Tensor) else (o[0] + 2.0 * v,) + o[1:])
    try:
        manual = logits(model, ids)
    finally:
        h.remove()
    with apply_updates(model, u, 2.0):
        assert (logits(model, ids) - manual).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_peft_lora_adapter_gives_same_logits_as_peft(tmp_path, arch):
    peft = pytest.importorskip("peft")
    model = tiny_model(arch)
    targets = ["down_proj", "o_proj"] if arch == "llama" else ["c_proj"]
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, lora_dropout=0.0, init_lora_weights=False,
                          fan_in_fan_out=(arch == "gpt2"))
    base_copy = tiny_model(arch)
    pm = peft.get_peft_model(base_copy, cfg)
    pm.eval()
    ids = tiny_inputs()
    with torch.no_grad():
        peft_logits = pm(input_ids=ids).logits
    pm.save_pretrained(tmp_path / "adapter")
    for source in (tmp_path / "adapter", pm):
        ups = from_peft(source, model)
        assert all(isinstance(u, LoRAUpdate) for u in ups) and len(ups) >= 4
        with apply_updates(model, ups, 1.0):
            ours = logits(model, ids)
        assert (ours - peft_logits).abs().max() < 1e-4
        with merged_updates(model, ups, 1.0):
            assert (logits(model, ids) - peft_logits).abs().max() < 1e-4


def test_easyedit_pt_files_load_as_the_right_form(tmp_path):
    model = tiny_model("llama")
    ids = tiny_inputs()
    d, d_ff, r = 32, 48, 3
    v = torch.randn(1, d)
    torch.save(v, tmp_path / "layer_1.pt")
    torch.save({"proj.weight": v, "proj.bias": torch.zeros(1)}, tmp_path / "layer_2.pt")
    A, B = torch.randn(d_ff, r) * 0.3, torch.randn(r, d) * 0.3
    (tmp_path / "lora").mkdir()
    torch.save({"lora_A": A, "lora_B": B}, tmp_path / "lora" / "layer_3.pt")
    W, b = torch.randn(d_ff, d) * 0.1, torch.randn(d) * 0.1
    (tmp_path / "lw").mkdir()
    torch.save({"weight": W, "bias": b}, tmp_path / "lw" / "layer_0.pt")

    u1 = from_easyedit_pt(tmp_path / "layer_1.pt", model)
    assert isinstance(u1, VectorUpdate) and u1.site == Site(1, "residual")
    u2 = from_easyedit_pt(tmp_path / "layer_2.pt", model)
    assert isinstance(u2, VectorUpdate) and u2.site.layer == 2 and torch.equal(u2.vector.detach(), v[0])
    u3 = from_easyedit_pt(tmp_path / "lora" / "layer_3.pt", model)
    assert isinstance(u3, LoRAUpdate) and u3.site == Site(3, "mlp_down")
    u4 = from_easyedit_pt(tmp_path / "lw" / "layer_0.pt", model)
    assert isinstance(u4, LocalWeightUpdate) and u4.site == Site(0, "mlp_down")

    # same outputs as EasyEdit's own arithmetic: x_mid @ (A @ B) and x_mid @ W + b added to down_proj output
    for u, delta in ((u3, lambda x: x @ (A @ B)), (u4, lambda x: x @ W + b)):
        mod = model.model.layers[u.site.layer].mlp.down_proj
        h = mod.register_forward_hook(lambda m, a, o, delta=delta: o + 1.5 * delta(a[0]))
        try:
            manual = logits(model, ids)
        finally:
            h.remove()
        with apply_updates(model, u, 1.5):
            assert (logits(model, ids) - manual).abs().max() < 1e-4


def test_easyedit_pt_errors(tmp_path):
    model = tiny_model("llama")
    torch.save({"something": torch.zeros(3)}, tmp_path / "layer_1.pt")
    with pytest.raises(AdapterError, match="match no EasyEdit"):
        from_easyedit_pt(tmp_path / "layer_1.pt", model)
    torch.save(torch.zeros(7), tmp_path / "layer_2.pt")
    with pytest.raises(AdapterError, match="7 elements"):
        from_easyedit_pt(tmp_path / "layer_2.pt", model)
    with pytest.raises(AdapterError, match="does not exist"):
        from_easyedit_pt(tmp_path / "layer_9.pt", model)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_knowledge_edit_as_edited_weights(tmp_path, arch):
    model = tiny_model(arch)
    edited = tiny_model(arch)
    with torch.no_grad():
        lin = edited.model.layers[1].mlp.down_proj if arch == "llama" else edited.transformer.h[1].mlp.c_proj
        lin.weight.add_(torch.randn_like(lin.weight) * 0.05)  # a ROME-style rank-1 edit would do as well
    ids = tiny_inputs()
    target = logits(edited, ids)
    edited.save_pretrained(tmp_path / "edited")
    for source in (edited, tmp_path / "edited"):
        ups = from_edited_weights(model, source)
        assert len(ups) == 1 and ups[0].site == Site(1, "mlp_down")
        with apply_updates(model, ups, 1.0):
            assert (logits(model, ids) - target).abs().max() < 1e-4
        with merged_updates(model, ups, 1.0):
            assert (logits(model, ids) - target).abs().max() < 1e-4
    with pytest.raises(AdapterError, match="nothing to express"):
        from_edited_weights(model, model)
