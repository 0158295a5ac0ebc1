"""What EasyEdit's steering scripts need to run directly on one model (``easyedit-split easyedit scaffold``).

EasyEdit's ``vectors_generate.py`` / ``vectors_apply.py`` are hydra scripts. Run unmodified they need:

* a top-level hydra config (``--config-path``/``--config-name``) with the keys EasyEdit reads without a
  default: ``save_activations``, ``vllm_enable``, ``generation_data_size``, ``num_responses`` … ;
* a model folder whose *path* names its family (EasyEdit's ``get_model`` picks its wrapper from the
  string: ``llama``/``gpt``/``gemma``/``qwen``); SmolLM2 is a Llama, so ``models/<name>-llama`` — a
  folder of links to the model's files, nothing copied;
* the data layout EasyEdit reads from the *working directory*: ``hparams/Steer/dataset_format.yaml``
  (EasyEdit's own file, copied from the checkout) naming ``./data/psychopathy/{train,test}.jsonl`` with
  the fields ``question``/``answer_matching_behavior``/``answer_not_matching_behavior``.

:class:`Scaffold` holds all of it for one model; :meth:`Scaffold.write` writes the folder and
:meth:`Scaffold.describe` the commands that run the two scripts verbatim from it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easyedit_split.errors import EasyEditSplitError, InputError

__all__ = ["DATASET", "Scaffold"]

DATASET = "psychopathy"  # a name EasyEdit's dataset_format.yaml knows, with its field names
FORMAT_FILE = Path("hparams/Steer/dataset_format.yaml")


def _checkout(path: str | os.PathLike | None) -> Path:
    given = path or os.environ.get("EASYEDIT_PATH")
    if not given:
        raise InputError("give the EasyEdit checkout (--checkout or $EASYEDIT_PATH): the scripts and "
                         f"{FORMAT_FILE} come from it")
    root = Path(given).expanduser().resolve()
    missing = [p for p in ("vectors_generate.py", "vectors_apply.py", str(FORMAT_FILE)) if not (root / p).is_file()]
    if missing:
        raise InputError(f"{root} is not an EasyEdit checkout: it lacks {', '.join(missing)}")
    return root


def _model_folder(model: str) -> tuple[Path, str]:
    """The model's Hugging Face folder and its ``model_type``."""
    from easyedit_split.core.models import builtin_model_path, canonical_builtin

    path = Path(model).expanduser()
    if not path.exists():
        builtin = canonical_builtin(model)
        if builtin is None:
            raise InputError(f"--model {model!r} is neither a folder nor a built-in model name")
        path = builtin_model_path(builtin)
    config = path.resolve() / "config.json"
    if not config.is_file():
        raise InputError(f"--model {model}: {config} not found (a Hugging Face model folder is needed)")
    cfg = json.loads(config.read_text(encoding="utf-8"))
    return path.resolve(), str(cfg.get("model_type", "")), cfg


FAMILIES = ("llama", "gpt", "gemma", "qwen")  # what EasyEdit's steering get_model recognises in a path


@dataclass
class Scaffold:
    checkout: Path
    model_source: Path
    model_name: str  # the folder name under models/, naming the family
    layer: int
    method: str = "split"
    n_train: int = 8
    n_test: int = 2
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_model(cls, model: str, *, checkout: str | os.PathLike | None = None, method: str = "split",
                  layer: int | None = None, n_train: int = 8, n_test: int = 2) -> Scaffold:
        from easyedit_split.base.methods import canonical_method

        try:
            canonical_method(method)  # a name the plugin registers (the configs keep the spelling given)
        except EasyEditSplitError as exc:
            raise InputError(f"--method {method}: {exc}") from None
        root = _checkout(checkout)
        source, model_type, cfg = _model_folder(model)
        family = next((f for f in FAMILIES if f in model_type.lower()), None)
        if family is None:
            raise InputError(f"--model {model}: model_type {model_type!r} is none of the families EasyEdit's "
                             f"get_model loads ({', '.join(FAMILIES)})")
        name = source.name.lower() if family in source.name.lower() else f"{source.name.lower()}-{family}"
        n_layers = int(cfg.get("num_hidden_layers") or cfg.get("n_layer") or 2)
        chosen = n_layers // 2 if layer is None else int(layer)
        if not 0 <= chosen < n_layers:
            raise InputError(f"--layer {chosen} is outside the model's {n_layers} layers")
        if n_train < 1 or n_test < 1:
            raise InputError("--train-pairs and --test-pairs must be >= 1")
        return cls(root, source, name, chosen, method, n_train, n_test)

    # ------------------------------------------------------------------------------------------ content
    def configs(self, out: Path) -> dict[str, dict[str, Any]]:
        """``config/<name>.yaml`` contents (JSON is YAML) for a scaffold written at ``out``."""
        model = str(out / "models" / self.model_name)
        vectors = str(out / "vectors")
        common = {"model_name_or_path": model, "dtype": "float32", "device": "cpu", "seed": 42,
                  "use_chat_template": True, "system_prompt": "", "save_activations": False, "vllm_enable": False}
        train = {"alg_name": self.method, "layers": [self.layer], "intervention_method": "vector", "n_epochs": 1,
                 "lr": 0.05, "batch_size": 2, "gradient_accumulation_steps": 1}
        apply = {"alg_name": self.method, "layers": [self.layer], "multipliers": [1.0], "intervention_method": "vector"}
        generate = {**common, "steer_train_hparam_paths": [str(out / "config" / f"generate_{self.method}.yaml")],
                    "steer_train_dataset": [DATASET], "save_vectors": True, "steer_vector_output_dirs": [vectors]}
        applying = {**common, "apply_steer_hparam_paths": [str(out / "config" / f"apply_{self.method}.yaml")],
                    "steer_vector_load_dir": [str(Path(vectors) / DATASET / f"{self.method}_vector")],
                    "generation_data": [DATASET], "generation_data_size": None,
                    "generation_output_dir": str(out / "generation"), "num_responses": 1,
                    "steer_from_end_position": False, "generate_orig_output": False,
                    "generation_params": {"max_new_tokens": 16, "do_sample": False}}
        return {"generate": generate, "apply": applying, f"generate_{self.method}": train,
                f"apply_{self.method}": apply}

    def commands(self, out: Path) -> list[str]:
        """The two scripts, run verbatim from ``out`` with this environment's interpreter."""
        py = shlex.quote(sys.executable)
        return [f"cd {shlex.quote(str(out))} && {py} {shlex.quote(str(self.checkout / script))} "
                f"--config-path {shlex.quote(str(out / 'config'))} --config-name {name}"
                for script, name in (("vectors_generate.py", "generate"), ("vectors_apply.py", "apply"))]

    # ------------------------------------------------------------------------------------------ writing
    def write(self, out: str | os.PathLike) -> Path:
        from easyedit_split.base.atomic_io import atomic_write_text
        from easyedit_split.data.pairs import load_builtin, train_test_split

        root = Path(out).expanduser().resolve()
        if root.exists() and any(root.iterdir()):
            raise InputError(f"--out {root} exists and is not empty")
        models = root / "models" / self.model_name
        models.mkdir(parents=True)
        for item in self.model_source.iterdir():  # a folder of links: nothing is copied
            (models / item.name).symlink_to(item)
        fmt = root / FORMAT_FILE
        fmt.parent.mkdir(parents=True)
        shutil.copyfile(self.checkout / FORMAT_FILE, fmt)
        train, test = train_test_split(load_builtin(DATASET), self.n_test, seed=0)
        data = root / "data" / DATASET
        data.mkdir(parents=True)
        for split, part in (("train", train[: self.n_train]), ("test", test)):
            rows = [{"question": p.question, "answer_matching_behavior": p.positive,
                     "answer_not_matching_behavior": p.negative} for p in part]
            atomic_write_text(data / f"{split}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        (root / "config").mkdir()
        for name, content in self.configs(root).items():
            atomic_write_text(root / "config" / f"{name}.yaml", json.dumps(content, indent=2) + "\n")
            self.files[name] = str(root / "config" / f"{name}.yaml")
        return root

    def describe(self, out: str | os.PathLike | None) -> str:
        root = Path(out).expanduser().resolve() if out else Path("<OUT>")
        lines = [f"model folder: models/{self.model_name} -> links to {self.model_source} (EasyEdit's get_model picks "
                 f"its wrapper from the path: it must say {', '.join(FAMILIES)})",
                 f"data layout (read from the working directory): {FORMAT_FILE} (EasyEdit's, copied), "
                 f"data/{DATASET}/train.jsonl ({self.n_train} pairs), data/{DATASET}/test.jsonl ({self.n_test})",
                 f"hydra configs: config/generate.yaml, config/apply.yaml (+ generate_{self.method}.yaml, "
                 f"apply_{self.method}.yaml); layer {self.layer}"]
        if not out:
            for name, content in self.configs(root).items():
                lines.append(f"--- config/{name}.yaml\n{json.dumps(content, indent=2)}")
        lines.append("run (after `easyedit-split easyedit enable`):")
        lines.extend(f"  {c}" for c in self.commands(root))
        return "\n".join(lines) + "\n"
