import logging
import sys
import types
from dataclasses import dataclass

import pytest

from easyedit_split.base.hparams_io import HParamsError, HyperParams, parse_overrides
from easyedit_split.easyedit import registry


def test_method_names_are_case_insensitive_with_upstream_alias():
    assert registry.canonical_method("SPLIT") == "split"
    assert registry.canonical_method("spilt") == "split"
    assert registry.canonical_method("BiPO") == "dpo"
    assert "Spilt" in registry.METHODS_CLASS_DICT
    with pytest.raises(KeyError, match="known: split"):
        registry.canonical_method("nope")


def test_register_with_easyedit_inserts_into_a_steer_checkout(monkeypatch):
    steer = types.ModuleType("steer")
    utils = types.ModuleType("steer.utils")
    alg = types.ModuleType("steer.utils.alg_dict")
    alg.HYPERPARAMS_CLASS_DICT = {"caa": {"train": object, "apply": object}}
    alg.METHOD_FNS = {"caa": {"train": "x:y", "apply": "x:z"}}
    alg.METHODS_CLASS_DICT = {}
    for name, mod in (("steer", steer), ("steer.utils", utils), ("steer.utils.alg_dict", alg)):
        monkeypatch.setitem(sys.modules, name, mod)
    import easyedit_split

    done = easyedit_split.register_with_easyedit(("split", "caa"))
    assert "steer.utils.alg_dict" in done
    assert alg.METHOD_FNS["split"] == {"train": "easyedit_split.easyedit.entry_points:generate_split",
                                       "apply": "easyedit_split.easyedit.entry_points:apply_split"}
    assert alg.METHOD_FNS["spilt"] == alg.METHOD_FNS["split"]
    assert alg.HYPERPARAMS_CLASS_DICT["caa"] == {"train": object, "apply": object}  # built-in kept
    assert "diffmean" in alg.METHOD_FNS


def test_register_without_easyedit_logs(caplog, monkeypatch):
    for name in ("steer", "steer.utils", "steer.utils.alg_dict", "easyeditor", "easyeditor.util", "easyeditor.util.alg_dict"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    with caplog.at_level(logging.WARNING, logger="easyedit_split.easyedit.registry"):
        assert registry.register_with_easyedit() == []
    assert "EasyEdit not found" in caplog.text and "nothing was registered" in caplog.text


@dataclass
class _HP(HyperParams):
    ALG_NAMES = ("demo",)
    layers: list[int] = None  # type: ignore[assignment]
    lr: float = 0.01
    n_epochs: int = 1
    name: str | None = None


def test_hparams_yaml_types_unknown_keys_and_errors(tmp_path, caplog):
    f = tmp_path / "hp.yaml"
    f.write_text("alg_name: DEMO\nlayers: 3\nlr: 1e-3\nn_epochs: 2\nmystery: 1\n")
    with caplog.at_level(logging.WARNING):
        hp = _HP.from_hparams(f)
    assert hp.layers == [3] and hp.lr == 0.001 and hp.n_epochs == 2
    assert "mystery" in caplog.text and str(f) in caplog.text
    f.write_text("alg_name: demo\nn_epochs: two\n")
    with pytest.raises(HParamsError, match=r"hp.yaml: key 'n_epochs'"):
        _HP.from_hparams(f)
    f.write_text("alg_name: other\n")
    with pytest.raises(HParamsError, match="alg_name"):
        _HP.from_hparams(f)
    with pytest.raises(HParamsError, match="does not exist"):
        _HP.from_hparams(tmp_path / "missing.yaml")
    assert _HP.from_hparams(f, overrides={"alg_name": "demo"}).alg_name == "demo"
    assert parse_overrides(["lr=0.5", "layers=[1, 2]"]) == {"lr": 0.5, "layers": [1, 2]}
    with pytest.raises(HParamsError, match="key=value"):
        parse_overrides(["lr"])


def test_required_key_missing_names_file_and_key(tmp_path):
    import dataclasses

    Req = dataclasses.make_dataclass("Req", [("must", int, dataclasses.field(kw_only=True))], bases=(HyperParams,))
    f = tmp_path / "x.yaml"
    f.write_text("alg_name: a\n")
    with pytest.raises(HParamsError, match=r"x.yaml: required key 'must' is missing"):
        Req.from_hparams(f)


def test_every_table_is_derived_from_the_method_and_form_tables():
    from easyedit_split.base import methods
    from easyedit_split.core import updates
    from easyedit_split.jobs import main_job as pipeline
    from easyedit_split.training.objectives import OBJECTIVES

    assert registry.METHOD_NAMES == methods.METHOD_NAMES == pipeline.METHODS
    assert set(registry.HYPERPARAMS_CLASS_DICT_TARGETS) == set(methods.METHOD_NAMES)
    assert tuple(updates.FORMS) == methods.FORM_NAMES == pipeline.FORMS
    for spec in methods.METHODS:
        train_cls, apply_cls = methods.hparams_class(spec.name), methods.hparams_class(spec.name, "apply")
        assert registry.get_hparams_class(spec.name) is train_cls
        for alias in spec.aliases:
            assert registry.canonical_method(alias) == spec.name
            assert registry.get_hparams_class(alias, "apply") is apply_cls
            assert train_cls.from_dict({"alg_name": alias}).method == spec.name
        if spec.trained:
            assert OBJECTIVES[spec.objective] is spec.needs_reference
    assert registry.canonical_method("reps_lora") == "reps" and registry.canonical_method("BiPO_vector") == "dpo"
    assert OBJECTIVES["reps"] is False and OBJECTIVES["dpo"] is True  # RePS is reference-free
    for alias, form in (("weight", "local_weight"), ("LoRA", "lora"), ("vector", "vector")):
        assert methods.canonical_form(alias) == form
        assert updates.update_class(alias) is updates.FORMS[form]
    with pytest.raises(ValueError, match="unknown update form"):
        methods.canonical_form("conv")


def test_reps_needs_the_reference_only_when_asked():
    from easyedit_split.training.hparams import DPOHyperParams, RePSHyperParams
    from easyedit_split.training.trainer import needs_reference

    reps = RePSHyperParams.from_dict({"alg_name": "reps"})
    assert not needs_reference("reps", reps)
    assert needs_reference("reps", RePSHyperParams.from_dict({"alg_name": "reps", "reps_reference_scale": True}))
    assert needs_reference("dpo", DPOHyperParams.from_dict({"alg_name": "bipo"}))
