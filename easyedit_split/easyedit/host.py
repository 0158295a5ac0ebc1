"""EasyEdit's model wrapper (``steer.models.model_wrapper.BaseModelWrapper``) as the plugin meets it.

EasyEdit's appliers receive and return a wrapper (``.model`` the Hugging Face model with each decoder
layer wrapped in place, ``.tokenizer``, ``.device``, ``.VLLM_model``, ``reset_all()``, ``reset(name)``).
The plugin steers ``wrapper.model`` with its own hooks (sites resolve through EasyEdit's layer
wrappers, see :func:`easyedit_split.core.sites._get`), keeps the live handles on the wrapper, and makes
the wrapper's own reset path take them off: after ``reset_all()`` the model computes exactly what it
computed before steering. :func:`shared_wrapper` keeps the one wrapper the plugin loads per process, so
that EasyEdit's generator and applier (which pass no model to the plugin) use one copy.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["STEERING_ATTR", "attach_steering", "detach_steering", "easyedit_interventions", "easyedit_loaded",
           "has_steering", "load_wrapper",
           "release_shared_wrapper", "shared_wrapper", "suspended_steering"]

#: attribute of the wrapper holding ``{alg_name: ExitStack}`` of the plugin's live steering
STEERING_ATTR = "easyedit_split_steering"
_PATCHED_ATTR = "_easyedit_split_reset_patched"


def easyedit_loaded() -> bool:
    """True when EasyEdit's steering registry is imported in this process (the plugin runs inside EasyEdit)."""
    return "steer.utils.alg_dict" in sys.modules


def load_wrapper(hp: Any) -> Any:
    """An EasyEdit model wrapper loaded by EasyEdit's own ``get_model`` from ``hp`` (its model path,
    ``dtype``, ``device``, ``use_cache``, ``vllm_enable`` …), as EasyEdit's built-in appliers do."""
    from steer.models.get_model import get_model

    wrapper, _ = get_model(hp)
    return wrapper


#: the EasyEdit wrapper the plugin loaded in this process, under (model path, dtype, device): one at a time
_SHARED: dict[tuple[str, str, str], Any] = {}


def _shared_key(hp: Any) -> tuple[str, str, str]:
    path = str(hp.model_name_or_path)
    path = os.path.realpath(path) if os.path.exists(path) else path
    return path, str(getattr(hp, "dtype", None) or getattr(hp, "torch_dtype", None)), str(getattr(hp, "device", None))


def easyedit_interventions(wrapper: Any) -> list[tuple[str, int, Any]]:
    """``(method, layer, intervention)`` for EasyEdit's own steering live on ``wrapper``'s decoder layers
    (its ``intervention_dict`` and ``add_activations_dict`` entries)."""
    layers_fn = getattr(wrapper, "_decoder_layers", None)
    out = []
    for i, layer in enumerate(layers_fn() if callable(layers_fn) else []):
        for table in ("intervention_dict", "add_activations_dict"):
            out.extend((name, i, v) for name, v in (getattr(layer, table, None) or {}).items() if v is not None)
    return out


def has_steering(wrapper: Any) -> bool:
    """True when the plugin's hooks or EasyEdit's own interventions/activation additions are live on ``wrapper``."""
    return bool(getattr(wrapper, STEERING_ATTR, None)) or bool(easyedit_interventions(wrapper))


def shared_wrapper(hp: Any, *, unsteered: bool = False) -> Any:
    """EasyEdit's wrapper for ``hp``'s model, dtype and device, loaded once per process with EasyEdit's own
    ``get_model`` and reused: EasyEdit's ``BaseVectorGenerator`` never passes a model to ``generate_*``
    and its applier, left without one, has each method load its own, so ``steering.py``'s
    generator-then-applier flow would otherwise hold two copies. ``unsteered``: for training, a wrapper
    with no steering live (a separate copy when the shared one is steered)."""
    key = _shared_key(hp)
    wrapper = _SHARED.get(key)
    if wrapper is not None and not (unsteered and has_steering(wrapper)):
        logger.info("reusing the EasyEdit model wrapper already loaded in this process for %s", key[0])
        return wrapper
    if wrapper is not None:
        logger.info("the loaded EasyEdit model is steered; loading a separate copy of %s to train on", key[0])
        return load_wrapper(hp)
    _SHARED.clear()
    _SHARED[key] = wrapper = load_wrapper(hp)
    return wrapper


def release_shared_wrapper() -> None:
    """Drop this process's reference to the shared wrapper (its memory is freed once nothing else holds it)."""
    _SHARED.clear()


def _stacks(wrapper: Any) -> dict[str, contextlib.ExitStack]:
    stacks = getattr(wrapper, STEERING_ATTR, None)
    if not isinstance(stacks, dict):
        stacks = {}
        setattr(wrapper, STEERING_ATTR, stacks)
    return stacks


def attach_steering(wrapper: Any, name: str, stack: contextlib.ExitStack) -> None:
    """Keep ``stack`` (the hooks of one method) on ``wrapper`` and make its reset path close it."""
    detach_steering(wrapper, name)
    _stacks(wrapper)[name] = stack
    _patch_reset(wrapper)


def detach_steering(wrapper: Any, name: str | None = None) -> bool:
    """Take off the plugin's steering of method ``name`` (all methods when None); True when there was some."""
    stacks = getattr(wrapper, STEERING_ATTR, None)
    if not isinstance(stacks, dict):
        return False
    names = list(stacks) if name is None else [n for n in stacks if n == name]
    for n in names:
        stacks.pop(n).close()
    return bool(names)


@contextlib.contextmanager
def suspended_steering(wrapper: Any):
    """Run without the plugin's steering (its hooks switched off: a multiplier of 0 would not be the base model
    for a clamped vector), e.g. for EasyEdit's ``ori_generate``."""
    stacks = getattr(wrapper, STEERING_ATTR, None) or {}
    states = [s for stack in stacks.values() for s in getattr(stack, "easyedit_split_states", [])]
    saved = [s.active for s in states]
    for s in states:
        s.active = False
    try:
        yield
    finally:
        for s, active in zip(states, saved):
            s.active = active


def _patch_reset(wrapper: Any) -> None:
    """Wrap (on this instance only) ``reset_all``, ``reset`` and ``ori_generate`` so that EasyEdit's
    own reset path removes the plugin's hooks and its unsteered generation is unsteered."""
    if getattr(wrapper, _PATCHED_ATTR, False):
        return
    original_reset_all = getattr(wrapper, "reset_all", None)
    original_reset = getattr(wrapper, "reset", None)
    original_ori_generate = getattr(wrapper, "ori_generate", None)

    def reset_all(*args, **kwargs):
        detach_steering(wrapper)
        return original_reset_all(*args, **kwargs) if original_reset_all is not None else None

    def reset(method_name, *args, **kwargs):
        detached = detach_steering(wrapper, str(method_name).lower())
        if original_reset is None:
            return None
        try:
            return original_reset(method_name, *args, **kwargs)
        except ValueError:
            if detached:  # EasyEdit's own reset rejects names it does not know (e.g. split)
                return None
            raise

    def ori_generate(*args, **kwargs):
        with suspended_steering(wrapper):
            return original_ori_generate(*args, **kwargs)

    wrapper.reset_all = reset_all
    wrapper.reset = reset
    if original_ori_generate is not None:
        wrapper.ori_generate = ori_generate
    setattr(wrapper, _PATCHED_ATTR, True)
