"""A writable EasyEdit run folder made from a (possibly read-only) checkout: ``easyedit-split easyedit prepare``.

EasyEdit's ``examples/run_SPILT.py`` runs from its checkout: it reads
``hparams/Steer/experiment_hparams/spilt_experiment/<dataset>/<model>/<method>/`` configs, loads
``./models/<model>`` and ``./data/<dataset>/{train,test}.jsonl`` and writes ``vectors/`` and
``generation/`` there. :func:`prepare_run_folder` builds such a folder without touching the
checkout: it copies EasyEdit's ``steer/``, ``hparams/``, ``examples/`` and top-level scripts as they
are, adds the package's EasyEdit-layout configs for SmolLM2 (``resources/easyedit/``), links the
model under a name EasyEdit's wrapper recognises (its ``get_model`` picks the wrapper class from the
path string; SmolLM2 is a Llama) and writes a seeded split of the shipped dataset in EasyEdit's field
names: ``train.jsonl`` (EasyEdit trains on it), ``test.jsonl`` (EasyEdit generates for each row) and
``heldout.jsonl`` (all held-out pairs, ``test.jsonl`` being its first rows; not read by EasyEdit, the
default evaluation set of ``easyedit-split easyedit report``).

One optional change to the copies: EasyEdit's top-level ``spilt_experiment/config.yaml`` and
``apply_config.yaml`` say ``dtype: bfloat16`` and ``run_SPILT.py`` cannot override it; on a CPU
without native bfloat16 that is several times slower than float32 (upstream CAA on SmolLM2: ~35 s per
training prompt on the measuring machine). ``dtype=...`` rewrites that one line in the run folder's
copies (the checkout is never touched) and records it in ``EASYEDIT_SPLIT_PREPARED.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["CONFIG_DIR", "DEFAULT_MODEL_NAME", "PreparedRun", "prepare_run_folder", "shipped_configs"]

#: where EasyEdit's run_SPILT.py looks for per-method configs, relative to the run folder
CONFIG_DIR = Path("hparams/Steer/experiment_hparams/spilt_experiment")
#: the model folder name the shipped configs are filed under ("llama" selects EasyEdit's LlamaWrapper)
DEFAULT_MODEL_NAME = "smollm2-135m-llama"
#: the dataset the shipped configs and EasyEdit's dataset_format.yaml (``./data/psychopathy/*.jsonl``) cover
DATASET = "psychopathy"
_COPIED_DIRS = ("steer", "hparams", "examples")
_TOP_CONFIGS = ("config.yaml", "apply_config.yaml")
_CHECKOUT_MARKERS = ("steer/utils/alg_dict.py", "examples/run_SPILT.py", "vectors_generate.py", "vectors_apply.py")


@dataclass
class PreparedRun:
    folder: Path
    model_name: str
    model_link: Path
    model_target: Path
    train_file: Path
    test_file: Path
    heldout_file: Path
    n_train: int
    n_test: int
    n_heldout: int
    dtype: str | None = None
    configs: list[Path] = field(default_factory=list)

    def run_command(self, method: str = "all", intervention_method: str = "vector", device: str = "cpu") -> str:
        """The run_SPILT.py command line for this folder (run from inside it)."""
        return (f"{shlex.quote(sys.executable)} examples/run_SPILT.py --dataset {DATASET} --method {method} --model_name {self.model_name} "
                f"--intervention_method {intervention_method} --device {device}")


def shipped_configs() -> Path:
    """The package's ``spilt_experiment`` configs (``<dataset>/<model>/<method>/*.yaml``)."""
    return Path(str(resources.files("easyedit_split") / "resources" / "easyedit" / "spilt_experiment"))


def _check_checkout(checkout: Path) -> None:
    missing = [m for m in _CHECKOUT_MARKERS if not (checkout / m).is_file()]
    if missing:
        raise FileNotFoundError(f"{checkout} is not an EasyEdit checkout with the steering framework: "
                                f"missing {', '.join(missing)}")


def _copy_checkout(checkout: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in _COPIED_DIRS:
        shutil.copytree(checkout / name, dest / name, ignore=ignore)
        _make_writable(dest / name)
    for script in sorted(checkout.glob("*.py")):
        shutil.copy2(script, dest / script.name)
        os.chmod(dest / script.name, 0o644)
    for extra in ("LICENSE", "SNAPSHOT.md"):
        if (checkout / extra).is_file():
            shutil.copy2(checkout / extra, dest / f"EASYEDIT_{extra}")


def _make_writable(root: Path) -> None:
    """Copies of a read-only checkout stay read-only; the run writes next to them (hydra, configs)."""
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def _install_configs(dest: Path, model_name: str, dataset: str) -> list[Path]:
    source = shipped_configs() / dataset / DEFAULT_MODEL_NAME
    target = dest / CONFIG_DIR / dataset / model_name
    if target.exists():
        raise FileExistsError(f"{target} already exists in the checkout's configs; choose another --model-name")
    shutil.copytree(source, target)
    return sorted(target.rglob("*.yaml"))


def _write_split(dest: Path, dataset: str, n_train: int, n_test: int, n_heldout: int, seed: int) -> list[Path]:
    from easyedit_split.data.pairs import load_builtin, train_test_split

    pairs = load_builtin(dataset)
    if n_train < 1 or n_test < 1 or n_heldout < n_test:
        raise InputError(f"--train-pairs and --test-pairs must be >= 1 and --heldout-pairs >= --test-pairs, got "
                         f"{n_train}, {n_test}, {n_heldout}")
    if n_train + n_heldout > len(pairs):
        raise InputError(f"{n_train} train + {n_heldout} held-out pairs exceed the {len(pairs)} pairs of {dataset}")
    rest, heldout = train_test_split(pairs, n_heldout, seed=seed)
    folder = dest / "data" / dataset
    folder.mkdir(parents=True)
    paths = []
    for name, part in (("train", rest[:n_train]), ("test", heldout[:n_test]), ("heldout", heldout)):
        # EasyEdit's dataset_format.yaml maps these field names for psychopathy
        rows = [{"question": p.question, "answer_matching_behavior": p.positive,
                 "answer_not_matching_behavior": p.negative, "id": p.id} for p in part]
        path = folder / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        paths.append(path)
    return paths


def _set_top_dtype(dest: Path, dtype: str) -> list[str]:
    """Rewrite the ``dtype:`` line of the run folder's copies of EasyEdit's top-level configs."""
    changed = []
    for name in _TOP_CONFIGS:
        path = dest / CONFIG_DIR / name
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        hits = [i for i, line in enumerate(lines) if re.match(r"dtype\s*:", line)]
        if len(hits) != 1:
            raise InputError(f"{path}: expected one top-level 'dtype:' line, found {len(hits)}")
        old = lines[hits[0]].strip()
        lines[hits[0]] = f"dtype: {dtype}  # easyedit-split easyedit prepare --dtype (EasyEdit's copy said: {old})\n"
        path.write_text("".join(lines), encoding="utf-8")
        changed.append(f"{CONFIG_DIR / name}: {old} -> dtype: {dtype}")
    return changed


def prepare_run_folder(checkout: str | os.PathLike, into: str | os.PathLike, *, model: str | os.PathLike | None = None,
                       model_name: str = DEFAULT_MODEL_NAME, n_train: int = 32, n_test: int = 8,
                       n_heldout: int = 100, seed: int = 0, dtype: str | None = None) -> PreparedRun:
    """Build the run folder ``into`` (must not exist, or be empty) from ``checkout``; see module doc.

    ``model``: a Hugging Face model folder (default: the built-in SmolLM2-135M-Instruct, converted on
    first use); it is linked as ``models/<model_name>``. The folder is built next to ``into`` and
    renamed into place, so a failure leaves nothing half-made.
    """
    checkout, dest = Path(checkout).resolve(), Path(into).resolve()
    _check_checkout(checkout)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"{dest} exists and is not an empty folder")
    if "/" in model_name or not model_name.strip():
        raise InputError(f"--model-name {model_name!r}: a plain folder name is needed")
    if model is None:
        from easyedit_split.core.models import builtin_model_path

        target = builtin_model_path("smollm2")
    else:
        target = Path(model).resolve()
        if not (target / "config.json").is_file():
            raise FileNotFoundError(f"model folder {target} has no config.json")
    from easyedit_split.base.atomic_io import atomic_dir

    with atomic_dir(dest, overwrite=dest.exists()) as tmp:  # an existing dest is an empty folder (checked above)
        _copy_checkout(checkout, tmp)
        configs = _install_configs(tmp, model_name, DATASET)
        (tmp / "models").mkdir()
        (tmp / "models" / model_name).symlink_to(target, target_is_directory=True)
        files = _write_split(tmp, DATASET, n_train, n_test, n_heldout, seed)
        changes = _set_top_dtype(tmp, dtype) if dtype else []
        (tmp / "EASYEDIT_SPLIT_PREPARED.json").write_text(json.dumps({
            "checkout": str(checkout), "model": str(target), "model_name": model_name, "dataset": DATASET,
            "n_train": n_train, "n_test": n_test, "n_heldout": n_heldout, "seed": seed,
            "changed_in_copies": changes}, indent=2), encoding="utf-8")
    train_file, test_file, heldout_file = (dest / f.relative_to(tmp) for f in files)
    run = PreparedRun(dest, model_name, dest / "models" / model_name, target, train_file, test_file, heldout_file,
                      n_train, n_test, n_heldout, dtype, [dest / c.relative_to(tmp) for c in configs])
    logger.info("prepared EasyEdit run folder %s (model %s -> %s; %d train / %d test pairs)", dest, model_name,
                target, n_train, n_test)
    return run
