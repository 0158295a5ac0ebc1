"""The two prompt rules: how a question and a system prompt become the text the model reads.

``prompt_rule: plugin`` (the default of the plugin's own hparams and commands)
    A system prompt that is not None is a system turn, even when it is ``''`` (an explicit empty
    system turn: for SmolLM2 this suppresses the template's default system prompt). A template
    without a system role gets ``"{system_prompt}\\n\\n{question}"`` as the user turn; without a
    template the prompt is ``"{system_prompt}\\n\\n{question}"`` (or the question alone for None).
    ``use_chat_template: true`` with a tokenizer that has no template is an error.

``prompt_rule: easyedit`` (the default of every hparams object EasyEdit builds for the plugin)
    EasyEdit's ``steer.utils.templates.build_model_input``, the rule its applier generates with and
    its CAA and lm_steer datasets are built with: the question is stripped; a system prompt counts
    only when it is non-empty (``''`` and None both mean "none", so a template's default system
    prompt appears); a template without a system role gets ``"{system_prompt} {question}"`` as the
    user turn; without a template (or ``use_chat_template: true`` on a tokenizer without one) the
    prompt is ``"{system_prompt} {question}"`` or the question alone. When EasyEdit's module is
    already imported in this process (the plugin runs inside EasyEdit) its function is called
    itself; otherwise :func:`render_easyedit` is the same rule written out here.

Training, scoring and generation use the same rule. Upstream's own spilt/sft/reps trainers (which
cannot run on transformers 5) build training prompts slightly differently: the question is not
stripped and, without a chat template, the system prompt is dropped. The plugin trains on the
prompt EasyEdit's applier generates with and says so at WARNING level in the one case where the two
differ (no template and a non-empty system prompt).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from easyedit_split.data.formats import DataError

logger = logging.getLogger(__name__)

__all__ = ["PROMPT_RULES", "check_prompt_rule", "easyedit_builder", "render_easyedit", "render_plugin",
           "template_in_use", "upstream_training_differs"]

PROMPT_RULES = ("plugin", "easyedit")
EASYEDIT_TEMPLATES_MODULE = "steer.utils.templates"


def check_prompt_rule(rule: Any, where: str = "prompt_rule") -> str:
    """``rule`` lower-cased when it is one of :data:`PROMPT_RULES`; a :class:`DataError` naming ``where`` otherwise."""
    value = str(rule).strip().lower() if rule is not None else "plugin"
    if value not in PROMPT_RULES:
        raise DataError(f"{where}: {rule!r} is not a prompt rule; use one of {', '.join(PROMPT_RULES)}")
    return value


def _has_template(tokenizer: Any) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def template_in_use(tokenizer: Any, chat_template: bool | None, rule: str) -> bool:
    """Whether the rendered prompt goes through the tokenizer's chat template."""
    if chat_template is None:
        return bool(getattr(tokenizer, "chat_template", None))
    if rule == "easyedit":
        return bool(chat_template) and _has_template(tokenizer)
    return bool(chat_template)


def easyedit_builder() -> Callable[..., str] | None:
    """EasyEdit's ``build_model_input`` when its module is imported in this process (running inside EasyEdit)."""
    module = sys.modules.get(EASYEDIT_TEMPLATES_MODULE)
    builder = getattr(module, "build_model_input", None) if module is not None else None
    return builder if callable(builder) else None


def _apply(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_easyedit(tokenizer: Any, question: str, *, chat_template: bool, system_prompt: str | None) -> str:
    """EasyEdit's ``build_model_input(question, tokenizer, system_prompt, chat_template)`` (see module doc)."""
    builder = easyedit_builder()
    if builder is not None:
        return builder(question, tokenizer, system_prompt, chat_template)
    text = question.strip()
    if not chat_template or not _has_template(tokenizer):
        if chat_template:
            logger.warning("use_chat_template is true but the tokenizer has no chat template; the prompt is the "
                           "plain text (EasyEdit's rule)")
        return f"{system_prompt} {text}" if system_prompt else text
    messages = [{"role": "user", "content": text}]
    if system_prompt:
        try:
            return _apply(tokenizer, [{"role": "system", "content": system_prompt}, *messages])
        except Exception:  # noqa: BLE001 - EasyEdit folds on any failure of a system turn
            messages = [{"role": "user", "content": f"{system_prompt} {text}"}]
    return _apply(tokenizer, messages)


def render_plugin(tokenizer: Any, question: str, *, chat_template: bool, system_prompt: str | None) -> str:
    """The plugin's own rule (see module doc)."""
    if not chat_template:
        return question if system_prompt is None else f"{system_prompt}\n\n{question}"
    if not getattr(tokenizer, "chat_template", None):
        raise DataError("chat_template=True but the tokenizer has no chat template")
    messages = [{"role": "user", "content": question}]
    if system_prompt is not None:
        from jinja2 import TemplateError

        try:
            return _apply(tokenizer, [{"role": "system", "content": system_prompt}, *messages])
        except (TemplateError, ValueError, TypeError):  # templates without a system role
            logger.info("chat template rejects a system message; prepending it to the user turn")
            messages = [{"role": "user", "content": f"{system_prompt}\n\n{question}"}]
    return _apply(tokenizer, messages)


def upstream_training_differs(tokenizer: Any, chat_template: bool, system_prompt: str | None) -> bool:
    """True where upstream's spilt/sft/reps trainer would build another training prompt than EasyEdit's
    applier generates with: no template in use and a non-empty system prompt (the trainer drops it)."""
    return bool(system_prompt) and not (chat_template and _has_template(tokenizer))
