"""Knowledge editing: the request data, the easyeditor import shim, SPLIT through EasyEdit's BaseEditor,
edits as updates, and the editor comparison end to end (tiny random Llama model).

Tests that need EasyEdit's editing side skip, with the reason, where :mod:`tests.easyedit_checkout`
finds no checkout or where ``import easyeditor`` fails (the ``editing`` extra is not installed).
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch

from easyedit_split.data.formats import DataError
from easyedit_split.editing import easyeditor_import as shim
from easyedit_split.editing.requests import (
    as_continuation,
    edit_kwargs,
    edit_pairs,
    locality_pairs,
    read_requests,
)
from tests.easyedit_checkout import EDITING, require_checkout, save_tiny_llama


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10x faster on one thread than on two on a busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ data


def test_shipped_requests_are_complete_counterfact_records():
    reqs = read_requests()
    assert len(reqs) >= 50
    for r in reqs:
        assert r.subject in r.prompt
        assert r.target_new != r.ground_truth
        assert r.locality_prompt and r.locality_ground_truth and r.rephrase_prompt
    kw = edit_kwargs(reqs[:3])
    assert kw["prompts"] == [r.prompt for r in reqs[:3]]
    assert kw["locality_inputs"]["neighborhood"]["ground_truth"] == [r.locality_ground_truth for r in reqs[:3]]
    e, loc = edit_pairs(reqs[:1])[0], locality_pairs(reqs[:1])[0]
    assert (e.question, e.positive, e.negative) == (reqs[0].prompt, " " + reqs[0].target_new, " " + reqs[0].ground_truth)
    assert (loc.question, loc.positive, loc.negative) == (reqs[0].locality_prompt, " " + reqs[0].locality_ground_truth,
                                                          " " + reqs[0].target_new)
    assert as_continuation(" x") == " x"


@pytest.mark.parametrize("record, message", [
    ({"prompt": "The A is in", "target_new": "B", "ground_truth": "C", "locality_prompt": "p",
      "locality_ground_truth": "q"}, "field 'subject'"),
    ({"subject": "Z", "prompt": "The A is in", "target_new": "B", "ground_truth": "C", "locality_prompt": "p",
      "locality_ground_truth": "q"}, "does not occur in prompt"),
    ({"subject": "A", "prompt": "The A is in", "target_new": "B", "ground_truth": "B", "locality_prompt": "p",
      "locality_ground_truth": "q"}, "target_new equals ground_truth"),
])
def test_bad_request_rows_name_file_line_and_field(tmp_path, record, message):
    good = {"subject": "A", "prompt": "The A is in", "target_new": "B", "ground_truth": "C",
            "locality_prompt": "p", "locality_ground_truth": "q"}
    f = tmp_path / "req.jsonl"
    f.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(DataError, match=rf"req.jsonl:2: .*{message}"):
        read_requests(f)


def test_request_slices_for_validation_and_report_do_not_overlap():
    every = read_requests()
    validation = read_requests(skip=40, limit=20)
    report = read_requests(limit=10)
    assert [r.case_id for r in validation] == [r.case_id for r in every[40:60]]
    assert not {r.case_id for r in validation} & {r.case_id for r in report}
    with pytest.raises(DataError, match="leaves none"):
        read_requests(skip=len(every))
    with pytest.raises(DataError, match="skip must be >= 0"):
        read_requests(skip=-1)


# ------------------------------------------------------------------------------------------ import shim


def test_shim_replaces_only_listed_modules_and_is_removed_afterwards(tmp_path, monkeypatch):
    pkg = tmp_path / "fakeedit"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .vision import *\nfrom .vision import VisionModel\nfrom . import text\n")
    (pkg / "vision.py").write_text("import no_such_vision_library_xyz\nclass VisionModel: pass\n")
    (pkg / "text.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list(sys.meta_path)
    try:
        with shim._shim({"fakeedit.vision": "needs no_such_vision_library_xyz"}):
            import fakeedit
        assert sys.meta_path == before
        assert fakeedit.text.VALUE == 42  # a real module, imported normally
        with pytest.raises(shim.MultimodalUnavailable, match="fakeedit.vision.VisionModel.*no_such_vision"):
            fakeedit.VisionModel()
    finally:
        for name in [n for n in sys.modules if n.startswith("fakeedit")]:
            del sys.modules[name]


def test_missing_dependencies_checks_each_listed_module():
    mods = (shim.OptionalModule("a.b", ("json",), "x"), shim.OptionalModule("c.d", ("json", "no_such_mod_xyz"), "y"))
    assert shim.missing_dependencies(mods) == {"c.d": ("no_such_mod_xyz",)}


def test_find_checkout_rejects_a_folder_without_easyeditor(tmp_path):
    with pytest.raises(shim.EasyEditNotFound, match="no easyeditor/__init__.py"):
        shim.find_easyedit_checkout(tmp_path)


# ------------------------------------------------------------------------------------------ EasyEdit


@pytest.fixture(scope="session")
def easyedit():
    path = require_checkout(EDITING)
    from easyedit_split.editing import register_editor

    try:
        register_editor(path)
    except shim.EasyEditNotFound as exc:
        pytest.skip(f"easyeditor does not import ({exc}); pip install -e '.[editing]'")
    return path


@pytest.fixture()
def tiny_dir(tmp_path):
    """A tiny random Llama model saved in a folder whose name tells EasyEdit its family."""
    return save_tiny_llama(tmp_path / "tiny-llama")


def _reference(folder):
    from easyedit_split.core.models import load_model

    return load_model(folder)


TINY_REQUESTS = [
    {"case_id": 0, "subject": "sky", "prompt": "is the sky blue ?", "rephrase_prompt": "the sky is blue ?",
     "ground_truth": "yes", "target_new": "no", "locality_prompt": "i like this film", "locality_ground_truth": "great"},
    {"case_id": 1, "subject": "food", "prompt": "the food was", "rephrase_prompt": "this food was",
     "ground_truth": "great", "target_new": "awful", "locality_prompt": "is the sky blue ?",
     "locality_ground_truth": "yes"},
]


def _split_hparams(folder, **kw):
    from easyedit_split.editing import SplitEditHyperParams

    cfg = {"alg_name": "SPLIT", "model_name": str(folder), "layers": [1], "n_epochs": 12, "lr": 0.05, **kw}
    return SplitEditHyperParams.from_dict(cfg, source="test")


def test_split_hparams_refuse_what_basededitor_cannot_run(tmp_path):
    from easyedit_split.base.hparams_io import HParamsError

    with pytest.raises(HParamsError, match="'batch_size' must be 1"):
        _split_hparams(tmp_path, batch_size=2)
    with pytest.raises(HParamsError, match="'model_name' is missing"):
        _split_hparams("")
    with pytest.raises(HParamsError, match="local_weight or lora"):
        _split_hparams(tmp_path, intervention_method="vector")
    assert _split_hparams(tmp_path, alg_name="split").alg_name == "SPLIT"


@pytest.mark.parametrize("name", ["SPLIT", "FT", "LoRA", "ROME", "MEMIT"])
def test_shipped_editing_yamls_load(easyedit, name):
    from easyedit_split.editing.compare import SHIPPED_HPARAMS, load_editor_hparams

    hp = load_editor_hparams(SHIPPED_HPARAMS / f"{name}.yaml")
    assert hp.alg_name == name and hp.layers


def test_split_edits_through_base_editor_and_restores_exactly(easyedit, tiny_dir, tmp_path, monkeypatch):
    from easyeditor import BaseEditor
    from easyeditor.util.alg_dict import ALG_DICT

    from easyedit_split.editing import apply_split_to_model

    assert ALG_DICT["SPLIT"] is apply_split_to_model
    monkeypatch.chdir(tmp_path)  # BaseEditor writes ./logs
    editor = BaseEditor.from_hparams(_split_hparams(tiny_dir))
    before = {k: v.clone() for k, v in editor.model.state_dict().items()}
    kw = edit_kwargs(read_requests_from(tmp_path, TINY_REQUESTS[:1]))
    metrics, _, weights_copy = editor.edit(**kw, sequential_edit=False, verbose=False)
    assert metrics[0]["pre"]["rewrite_acc"] == [0.0]
    assert metrics[0]["post"]["rewrite_acc"] == [1.0]  # "no" now follows "is the sky blue ?"
    assert "neighborhood_acc" in metrics[0]["post"]["locality"]
    assert list(weights_copy) == ["model.layers.1.mlp.down_proj.weight"]
    after = editor.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def read_requests_from(tmp_path, records):
    f = tmp_path / "requests.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    return read_requests(f)


@pytest.mark.parametrize("alg", ["FT", "LoRA", "SPLIT"])
def test_an_edit_becomes_an_update_that_reproduces_it(easyedit, tiny_dir, alg):
    """The captured update at m = 1 (hook mode, on a separate unedited copy) gives the edited model's logits."""
    from easyeditor import FTHyperParams, LoRAHyperParams
    from easyeditor.util.alg_dict import ALG_DICT

    from easyedit_split.core.apply import apply_updates
    from easyedit_split.editing.capture import edit_as_updates

    model, tok = _reference(tiny_dir)
    reference, _ = _reference(tiny_dir)
    tok.pad_token_id = tok.eos_token_id
    if alg == "FT":
        hp = FTHyperParams(layers=[1], num_steps=3, lr=1e-2, weight_decay=0, kl_factor=0, norm_constraint=False,
                           rewrite_module_tmp="model.layers.{}.mlp.down_proj.weight", layer_module_tmp="",
                           mlp_module_tmp="", attn_module_tmp="", ln_f_module="", lm_head_module="", device="cpu",
                           alg_name="FT", model_name=str(tiny_dir), objective_optimization="target_new", batch_size=1)
    elif alg == "LoRA":
        hp = LoRAHyperParams(lora_type="lora", layers=[1], num_steps=3, lr=5e-2, weight_decay=0, kl_factor=0,
                             norm_constraint=False, target_modules=["down_proj", "o_proj"], rank=2, lora_alpha=4,
                             lora_dropout=0.0, device="cpu", alg_name="LoRA", model_name=str(tiny_dir), batch_size=1)
    else:
        hp = _split_hparams(tiny_dir, n_epochs=3)
    request = {"prompt": "is the sky blue ?", "target_new": "no", "ground_truth": "yes", "subject": "sky",
               "portability": {}, "locality": {}}
    edited, weights_copy = ALG_DICT[alg](model, tok, [request], hp, copy=False, return_orig_weights=True,
                                         keep_original_weight=False)
    updates, note = edit_as_updates(reference, edited, weights_copy)
    assert updates and not note
    assert {u.form for u in updates} == ({"lora"} if alg == "LoRA" else {"local_weight"})
    ids = tok(["is the sky blue ? no"], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        want = edited(input_ids=ids).logits
        base = reference(input_ids=ids).logits
        with apply_updates(reference, updates, multiplier=1.0):
            got = reference(input_ids=ids).logits
    assert (want - base).abs().max() > 1e-4  # the edit changed the output
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4)


def test_editor_comparison_end_to_end(easyedit, tiny_dir, tmp_path):
    from easyedit_split.editing.compare import compare_editors

    common = textwrap.dedent("""\
        model_name: tiny
        device: cpu
        rewrite_module_tmp: "model.layers.{}.mlp.down_proj"
        layer_module_tmp: "model.layers.{}"
        mlp_module_tmp: "model.layers.{}.mlp"
        attn_module_tmp: "model.layers.{}.self_attn"
        ln_f_module: "model.norm"
        lm_head_module: "lm_head"
        """)
    rome_like = ("fact_token: subject_last\nv_num_grad_steps: 4\nv_lr: 0.5\nv_loss_layer: 3\nv_weight_decay: 0.001\n"
                 "clamp_norm_factor: 4\nkl_factor: 0.0625\nmom2_adjustment: true\nmom2_dataset: easyedit_split_local\n"
                 "mom2_n_samples: 64\nmom2_dtype: float32\nstats_dir: ./stats\n")
    yamls = {
        "SPLIT": "alg_name: SPLIT\nmodel_name: tiny\nlayers: [1]\nn_epochs: 10\nlr: 0.05\n",
        "FT": common.replace('down_proj"', 'down_proj.weight"', 1) + (
            "alg_name: FT\nlayers: [1]\nnum_steps: 4\nlr: 1e-2\nweight_decay: 0\nkl_factor: 0\nnorm_constraint: false\n"
            "objective_optimization: target_new\nbatch_size: 1\n"),
        "LoRA": ("alg_name: LoRA\nmodel_name: tiny\ndevice: cpu\nlora_type: lora\nlayers: [1]\nnum_steps: 4\nlr: 5e-2\n"
                 "weight_decay: 0\nkl_factor: 0\nnorm_constraint: false\ntarget_modules: [down_proj]\nrank: 2\n"
                 "lora_alpha: 4\nlora_dropout: 0.0\nbatch_size: 1\n"),
        "ROME": common + rome_like + "alg_name: ROME\nlayers: [1]\ncontext_template_length_params: [[3, 5]]\n",
        "MEMIT": common + rome_like + "alg_name: MEMIT\nlayers: [1, 2]\nlayer_selection: all\nmom2_update_weight: 100\n",
    }
    # a second FT that cannot run (no parameter matches its module template): reported, not fatal
    yamls["FT_broken"] = yamls["FT"].replace("down_proj.weight", "no_such_module.weight")
    files = []
    for name, text in yamls.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(text)
        files.append(f)
    requests = read_requests_from(tmp_path, TINY_REQUESTS)
    out = tmp_path / "cmp"
    results = compare_editors(files, out, requests=requests, model=tiny_dir, multipliers=[-2, -1, -0.5, 0, 0.5, 1, 2],
                              n_boot=50)
    assert set(results["methods"]) == {"SPLIT", "FT (FT)", "LoRA", "ROME", "MEMIT"}
    assert list(results["failed"]) == ["FT (FT_broken)"]
    for name, r in results["methods"].items():
        assert r["n_edits"] == 2, name
        assert r["n_edits_changing_weights"] >= 1, name
        e = r["easyedit"]
        assert 0.0 <= e["rewrite_acc_post"] <= 1.0 and 0.0 <= e["locality_acc_post"] <= 1.0, name
        assert len(r["edit_pairs"]["summary"]["m"]) == 7, name
    split = results["methods"]["SPLIT"]
    assert split["edit_pairs"]["pref_m1"] > split["edit_pairs"]["pref_m0"] + 0.5  # the edit raises target_new
    assert split["easyedit"]["rewrite_acc_post"] > split["easyedit"]["rewrite_acc_pre"]
    assert any("local texts" in n for n in results["methods"]["ROME"]["notes"])
    assert list((out / "work" / "stats").rglob("*.npz"))  # EasyEdit's cache format, read back by ROME/MEMIT
    for f in ("report.md", "comparison.png", "results.json", "edit_pairs/report.md", "locality_pairs/curves.png",
              "edit_pairs/sweep_SPLIT.csv"):
        assert (out / f).is_file(), f
    text = (out / "report.md").read_text()
    assert "| SPLIT |" in text and "| MEMIT |" in text and "FT (FT_broken): **failed**" in text


def test_register_with_easyedit_registers_the_editor_where_easyeditor_is_imported(easyedit):
    from easyeditor.util import alg_dict

    from easyedit_split.easyedit import registry
    from easyedit_split.editing.split_editor import apply_split_to_model

    del alg_dict.ALG_DICT["SPLIT"]  # put in by the fixture; registration must put it back
    try:
        assert "easyeditor.util.alg_dict" in registry.register_with_easyedit(("split",))
        assert registry.REGISTRATIONS["easyeditor.util.alg_dict"].added == ["SPLIT"]
        assert alg_dict.ALG_DICT["SPLIT"] is apply_split_to_model
    finally:
        alg_dict.ALG_DICT.setdefault("SPLIT", apply_split_to_model)  # later tests edit with it


def test_autoregister_hook_puts_the_editor_into_alg_dict_when_easyeditor_is_imported(easyedit):
    """The import hook that `easyedit-split easyedit enable` installs also covers editing: a fresh
    process that imports easyeditor (through the shim) finds SPLIT in ALG_DICT without calling anything;
    EASYEDIT_SPLIT_AUTOREGISTER=0 turns it off."""
    import os
    import subprocess

    code = textwrap.dedent(f"""
        import easyedit_split.easyedit.autoregister as hook
        hook.install()
        from easyedit_split.editing import import_easyeditor
        import_easyeditor({str(easyedit)!r})
        from easyeditor.util.alg_dict import ALG_DICT
        from easyedit_split.editing.split_editor import apply_split_to_model
        print("SPLIT", ALG_DICT.get("SPLIT") is apply_split_to_model)
    """)
    for switch, expected in (("1", "SPLIT True"), ("0", "SPLIT False")):
        env = {**os.environ, "EASYEDIT_SPLIT_AUTOREGISTER": switch, "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.strip().splitlines()[-1] == expected


def test_enabled_hook_makes_an_unmodified_script_import_easyeditor(easyedit, tmp_path):
    """After `easyedit-split easyedit enable`, a script that only says `from easyeditor import BaseEditor`
    (EasyEdit's editing examples do) imports, with SPLIT in ALG_DICT; placeholders are made only for the
    modules whose dependencies are missing here. Without the hook the same script fails where they are."""
    import os
    import subprocess

    from easyedit_split.cli import main
    from tests.easyedit_checkout import REPO

    site_dir = tmp_path / "site"
    assert main(["easyedit", "enable", "--site-dir", str(site_dir)]) == 0
    script = tmp_path / "edit_script.py"
    script.write_text(textwrap.dedent("""
        from easyeditor import BaseEditor
        from easyeditor.util.alg_dict import ALG_DICT
        from easyedit_split.editing.easyeditor_import import stubbed_modules
        print("RESULT", BaseEditor.__name__, "SPLIT" in ALG_DICT, len(stubbed_modules()))
    """))
    boot = textwrap.dedent(f"""
        import runpy, site, sys
        sys.path[:0] = [{str(REPO)!r}, {str(easyedit)!r}]
        if {{site_arg}}:
            site.addsitedir({str(site_dir)!r})
        runpy.run_path({str(script)!r}, run_name="__main__")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EASYEDIT_SPLIT_")}
    env["OMP_NUM_THREADS"] = "1"
    missing = shim.shim_reasons()
    enabled = subprocess.run([sys.executable, "-c", boot.replace("{site_arg}", "True")], check=False,
                             capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert enabled.returncode == 0, enabled.stderr[-3000:]
    tag, name, has_split, n_stubbed = enabled.stdout.strip().splitlines()[-1].split()
    assert (tag, name, has_split) == ("RESULT", "BaseEditor", "True")
    assert (int(n_stubbed) > 0) == bool(missing)  # placeholders only where dependencies are missing
    plain = subprocess.run([sys.executable, "-c", boot.replace("{site_arg}", "False")], check=False,
                           capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    if missing:
        assert plain.returncode != 0 and "ModuleNotFoundError" in plain.stderr
    assert main(["easyedit", "disable", "--site-dir", str(site_dir)]) == 0


# ------------------------------------------------------------------------------------------ EasyEdit benchmarks (#18 item 4)


def _benchmark_file(tmp_path, data_type):
    """TINY_REQUESTS in the JSON layout of EasyEdit's ZsRE, CounterFact and KnowEdit files."""
    rows = []
    for r in TINY_REQUESTS:
        if data_type == "zsre":
            rows.append({"subject": r["subject"], "src": r["prompt"], "alt": r["target_new"],
                         "answers": [r["ground_truth"]], "rephrase": r["rephrase_prompt"],
                         "loc": "nq question: " + r["locality_prompt"], "loc_ans": r["locality_ground_truth"]})
        elif data_type == "counterfact":
            rows.append(dict(r))
        else:
            rows.append({"subject": r["subject"], "prompt": r["prompt"], "target_new": r["target_new"],
                         "ground_truth": r["ground_truth"], "rephrase": r["rephrase_prompt"],
                         "portability": {}, "locality": {"Relation_Specificity": [
                             {"prompt": r["locality_prompt"], "ground_truth": [r["locality_ground_truth"]]}]}})
    if data_type == "zsre":  # EasyEdit's ZsreDataset skips a row with an empty alt
        rows.append({**rows[0], "alt": ""})
    path = tmp_path / f"{data_type}.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("data_type", ["zsre", "counterfact", "knowedit"])
def test_easyedit_benchmarks_read_by_easyedits_dataset_classes(easyedit, tmp_path, data_type):
    from easyedit_split.editing.datasets import read_easyedit_dataset

    requests = read_easyedit_dataset(data_type, _benchmark_file(tmp_path, data_type))
    assert len(requests) == 2  # ZsRE's empty-alt row dropped by EasyEdit's class
    r = requests[1]
    loc = ("nq question: " if data_type == "zsre" else "") + TINY_REQUESTS[1]["locality_prompt"]
    assert (r.subject, r.prompt, r.target_new, r.ground_truth, r.rephrase_prompt, r.locality_prompt,
            r.locality_ground_truth) == (
        "food", "the food was", "awful", "great", "this food was", loc, "yes")


def test_benchmark_record_without_ground_truth_is_named(easyedit, tmp_path):
    from easyedit_split.editing.datasets import read_easyedit_dataset

    path = tmp_path / "knowedit.json"
    rows = json.loads(_benchmark_file(tmp_path, "knowedit").read_text())
    del rows[1]["ground_truth"]
    path.write_text(json.dumps(rows))
    with pytest.raises(DataError, match=r"knowedit.json: record 2: field 'ground_truth'"):
        read_easyedit_dataset("knowedit", path)


def test_edit_command_runs_split_beside_easyedits_editors(easyedit, tiny_dir, tmp_path, capsys):
    """`easyedit-split easyedit edit --editing_method SPLIT FT --data_type knowedit ...` through BaseEditor:
    EasyEdit's metrics and the preference-utility report; SplitEditHyperParams importable from easyeditor."""
    import easyeditor

    from easyedit_split.cli import main
    from easyedit_split.editing import SplitEditHyperParams

    assert easyeditor.SplitEditHyperParams is SplitEditHyperParams
    hp = tmp_path / "hparams"
    hp.mkdir()
    (hp / "SPLIT.yaml").write_text("alg_name: SPLIT\nmodel_name: tiny\nlayers: [1]\nn_epochs: 6\nlr: 0.05\n")
    (hp / "FT.yaml").write_text(
        "alg_name: FT\nmodel_name: tiny\ndevice: cpu\nlayers: [1]\nrewrite_module_tmp: 'model.layers.{}.mlp.down_proj.weight'\n"
        "layer_module_tmp: 'model.layers.{}'\nmlp_module_tmp: 'model.layers.{}.mlp'\nattn_module_tmp: "
        "'model.layers.{}.self_attn'\nln_f_module: 'model.norm'\nlm_head_module: 'lm_head'\nnum_steps: 3\nlr: 1e-2\n"
        "weight_decay: 0\nkl_factor: 0\nnorm_constraint: false\nobjective_optimization: target_new\nbatch_size: 1\n")
    out = tmp_path / "out"
    code = main(["easyedit", "edit", "--editing_method", "SPLIT", "FT", "--data_type", "knowedit",
                 "--data_dir", str(_benchmark_file(tmp_path, "knowedit")), "--hparams_dir", str(hp),
                 "--model", str(tiny_dir), "--multipliers=-1,0,0.5,1", "--easyedit", str(easyedit),
                 "--output", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "SPLIT: rewrite acc" in printed and "FT: rewrite acc" in printed and "(2 knowedit requests)" in printed
    results = json.loads((out / "results.json").read_text())
    assert set(results["methods"]) == {"SPLIT", "FT"} and results["n_requests"] == 2
    assert (out / "report.md").is_file() and (out / "edit_pairs" / "report.md").is_file()
