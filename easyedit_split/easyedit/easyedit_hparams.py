"""The hyperparameter classes EasyEdit builds for the plugin's methods.

EasyEdit builds hyperparameters itself: ``load_generate_vector_hparams`` merges a method YAML with
the top-level hydra config (top level wins) and calls ``cls(**{k: v for k in the class's fields})``,
so only keys that are dataclass fields arrive and ``from_hparams`` never runs. The classes here are
the plugin's own classes plus EasyEdit's base keys (``steer.utils.hparams.HyperParams``: ``dtype``,
``seed``, ``use_cache``, ``vllm_enable``, ``save_activations`` …), and ``__post_init__`` applies the
plugin's type coercion and validation however the object is built. EasyEdit's ``dtype`` key is
honoured (it sets ``torch_dtype``). ``use_chat_template``/``system_prompt`` default as in EasyEdit
(false, ``''``) and prompts follow EasyEdit's rule (``prompt_rule: easyedit``).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from easyedit_split.base.hparams_io import HParamsError, HyperParams, coerce_value
from easyedit_split.base.methods import METHOD_NAMES, hparams_class

__all__ = ["EASYEDIT_APPLY_HPARAMS", "EASYEDIT_TRAIN_HPARAMS", "EasyEditKeys", "is_easyedit_hparams"]


def _plain(value: Any) -> Any:
    """OmegaConf containers (top-level hydra values) as plain Python containers."""
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


@dataclass
class EasyEditKeys:
    """EasyEdit's base hyperparameter keys that the plugin's classes lack, with EasyEdit's defaults."""

    dtype: str | None = None  # EasyEdit's name; sets torch_dtype when given
    seed: int = 42
    use_cache: bool = True
    generate_orig_output: bool = False
    vllm_enable: bool = False
    vllm_gpu_memory_utilization: float = 0.9
    vllm_max_model_len: int | None = None
    save_activations: bool = True
    enable_thinking: bool | None = None
    use_chat_template: bool = False  # EasyEdit's default
    system_prompt: str | None = ""  # EasyEdit's default ('' = none)
    # prompts are rendered as EasyEdit's own code renders them (easyedit_split/data/prompts.py)
    prompt_rule: str = "easyedit"

    def __post_init__(self) -> None:
        source = f"{type(self).__name__} (built by EasyEdit)"
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _plain(getattr(self, f.name))
            if f.name in ("steer_train_dataset", "steer_vector_load_dir") and isinstance(value, list):
                # the top-level config gives lists (one entry per hparams file); EasyEdit sets the
                # right entry after construction
                value = value[0] if len(value) == 1 else None
            setattr(self, f.name, coerce_value(value, hints.get(f.name, Any), f"{source}: key '{f.name}'"))
        if self.dtype:
            self.torch_dtype = self.dtype
        names = getattr(type(self), "ALG_NAMES", ())
        if names and str(self.alg_name).lower() not in names:
            raise HParamsError(f"{source}: key 'alg_name' is {self.alg_name!r}; {type(self).__name__} accepts {list(names)}")
        self.apply_sentinels(source)
        self.validate(source)


def _easyedit_class(base: type[HyperParams]) -> type[HyperParams]:
    cls = dataclass(type(f"EasyEdit{base.__name__}", (EasyEditKeys, base), {
        "__module__": __name__,
        "__doc__": f"{base.__name__} with EasyEdit's base keys, validated on construction.",
        "__qualname__": f"EasyEdit{base.__name__}",
    }))
    return cls


def _table(kind: str) -> dict[str, type[HyperParams]]:
    return {name: _easyedit_class(hparams_class(name, kind)) for name in METHOD_NAMES}


#: method name → class EasyEdit builds for training (``HYPERPARAMS_CLASS_DICT[name]['train']``)
EASYEDIT_TRAIN_HPARAMS = _table("train")
#: method name → class EasyEdit builds for applying (``HYPERPARAMS_CLASS_DICT[name]['apply']``)
EASYEDIT_APPLY_HPARAMS = _table("apply")

for _cls in (*EASYEDIT_TRAIN_HPARAMS.values(), *EASYEDIT_APPLY_HPARAMS.values()):
    globals()[_cls.__name__] = _cls  # importable by name (pickling, lazy "module:attr" targets)
    __all__.append(_cls.__name__)


def is_easyedit_hparams(hp: Any) -> bool:
    """True for an object EasyEdit built from the plugin's registered classes."""
    return isinstance(hp, EasyEditKeys)
