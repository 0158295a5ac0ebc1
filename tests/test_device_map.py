"""A model split over devices by accelerate (here: some decoder layers offloaded to disk, on CPU): hook
mode, mixed updates, sweeps and training give what they give on the plain model."""

from __future__ import annotations

import pytest
import torch

from easyedit_split.core.apply import apply_mixed_updates, apply_updates, site_device
from easyedit_split.core.models import load_model, parse_max_memory
from easyedit_split.core.sites import Site, resolve_site
from easyedit_split.errors import EasyEditSplitError
from easyedit_split.evaluation.sweep import sweep
from tests.dist_workers import TOK, encoded_pairs
from tests.test_core import random_update
from tests.tiny_models import tiny_inputs, tiny_model

pytest.importorskip("accelerate")

OFFLOAD = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "disk",
           "model.layers.3": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
UPDATES = [("vector", Site(1, "residual")), ("lora", Site(2, "mlp_down")), ("local_weight", Site(1, "attn_out")),
           ("lora", Site(3, "attn_out"))]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_tokenizer):
    folder = tmp_path_factory.mktemp("dm") / "m"
    tiny_model("llama").save_pretrained(folder)
    tiny_tokenizer.save_pretrained(folder)
    plain, _ = load_model(str(folder))
    split, _ = load_model(str(folder), device_map=OFFLOAD)
    auto, _ = load_model(str(folder), device_map="auto", max_memory="cpu=60KB")
    assert "disk" in set(split.hf_device_map.values()) and "disk" in set(auto.hf_device_map.values())
    return plain, split, auto


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("which", [1, 2])
def test_hook_and_mixed_mode_on_an_offloaded_model_equal_the_plain_model(models, which):
    plain, other = models[0], models[which]
    rs = resolve_site(other, Site(1, "residual"))
    assert next(rs.module.parameters()).device.type == "meta" and site_device(other, rs) == torch.device("cpu")
    ids = tiny_inputs(batch=4)
    groups = [[random_update(plain, form, site, seed=k)] for k, (form, site) in enumerate(UPDATES)]
    m = torch.tensor([1.5, -1.0, 2.0, 0.5])
    for g in groups:
        with apply_updates(plain, g, m):
            a = _logits(plain, ids)
        with apply_updates(other, g, m):
            b = _logits(other, ids)
        assert torch.allclose(a, b, atol=1e-6, rtol=0), g[0].site
        assert not torch.allclose(a, _logits(plain, ids), atol=1e-3)  # the update acts
    sel = torch.tensor([0, 1, 2, 3])
    with apply_mixed_updates(plain, groups, sel, m):
        a = _logits(plain, ids)
    with apply_mixed_updates(other, groups, sel, m):
        b = _logits(other, ids)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)
    assert all(p.device.type == "meta" for p in resolve_site(other, Site(2, "mlp_down")).module.parameters())


def test_sweep_and_training_on_an_offloaded_model(models):
    from easyedit_split.training.hparams import SplitHyperParams
    from easyedit_split.training.trainer import Trainer

    plain, split, _ = models
    data = encoded_pairs(6, 2, single=False)
    for form, site in UPDATES[:3]:
        u = [random_update(plain, form, site)]
        a = sweep(plain, TOK, data, u, [-1.0, 0.0, 2.0], batch_rows=8, progress=False)
        b = sweep(split, TOK, data, u, [-1.0, 0.0, 2.0], batch_rows=8, progress=False)
        assert (a["L_p"] - b["L_p"]).abs().max() <= 1e-5 and (a["L_n"] - b["L_n"]).abs().max() <= 1e-5
    hp = SplitHyperParams.from_dict({"layers": [1], "lr": 0.05, "n_epochs": 1, "batch_size": 3,
                                     "steering_factors": [1.0], "seed": 0, "intervention_method": "lora"})
    ra = Trainer(plain, TOK, hp).train(data, progress=False)
    rb = Trainer(split, TOK, hp).train(data, progress=False)
    pa, pb = dict(ra.updates[0].named_parameters()), dict(rb.updates[0].named_parameters())
    assert max(float((pa[k] - pb[k]).detach().abs().max()) for k in pa) <= 1e-6
    assert float(pa["B"].detach().abs().max()) > 0  # it trained


def test_max_memory_and_device_map_options():
    assert parse_max_memory("0=20GiB,1=20GiB,cpu=60GiB") == {0: "20GiB", 1: "20GiB", "cpu": "60GiB"}
    assert parse_max_memory({"cpu": 1000}) == {"cpu": 1000}
    with pytest.raises(EasyEditSplitError, match="DEVICE=SIZE"):
        parse_max_memory("cpu:60GiB")
    with pytest.raises(EasyEditSplitError, match="unknown device 'gpu0'"):
        parse_max_memory("gpu0=1GiB")
    with pytest.raises(EasyEditSplitError, match="max_memory needs a device_map"):
        load_model("nowhere", max_memory="cpu=1GiB")
    with pytest.raises(EasyEditSplitError, match="--device-map 'everywhere'"):
        load_model("nowhere", device_map="everywhere")
