"""EasyEdit's model wrapper (``steer.models.model_wrapper.BaseModelWrapper``) as the plugin meets it.

EasyEdit's appliers receive and return a wrapper (``.model`` the Hugging Face model with each decoder
layer wrapped in place, ``.tokenizer``, ``.device``, ``.VLLM_model``, ``reset_all()``, ``reset(name)``).
The plugin steers ``wrapper.model`` with its own hooks (sites resolve through EasyEdit's layer
wrappers, see :func:`easyedit_split.sites._get`), keeps the live handles on the wrapper, and makes
the wrapper's own reset path take them off: after ``reset_all()`` the model computes exactly what it
computed before steering.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["STEERING_ATTR", "attach_steering", "detach_steering", "easyedit_loaded", "load_wrapper",
           "suspended_steering"]

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
    """Run without the plugin's steering (its multipliers set to 0), e.g. for EasyEdit's ``ori_generate``."""
    stacks = getattr(wrapper, STEERING_ATTR, None) or {}
    states = [s for stack in stacks.values() for s in getattr(stack, "easyedit_split_states", [])]
    saved = [s.multiplier for s in states]
    for s in states:
        s.set_multiplier(0.0)
    try:
        yield
    finally:
        for s, m in zip(states, saved):
            s.multiplier = m


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
