"""EasyEdit's ``prompt`` method as a comparison baseline: the prompt is applied, no weight changes.

EasyEdit's prompt applier sets ``model.prompt`` and its generation puts it before each input as
``f"{prompt} {input}"`` before the chat template is applied. :class:`PromptBaseline` does the same to
polarity pairs, so an evaluator scores the *unmodified* model on prompted questions and reports the
result as one more row beside the weight updates. It is not an update: it has no multiplier, so it
is a point (the prompted model) rather than a curve.

Interface for evaluators: ``baseline.apply_to_pairs(pairs)`` gives the prompted pairs; score them
with no update (or at ``m = 0``) and label the row ``baseline.name``; ``baseline.updates`` is
empty and ``baseline.form`` is ``"prompt"`` so a table of methods can list it with the others.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from easyedit_split.data.pairs import PolarityPair
from easyedit_split.errors import InputError

__all__ = ["PromptBaseline"]


@dataclasses.dataclass(frozen=True)
class PromptBaseline:
    """A prompt put before every question, with the model's weights untouched."""

    prompt: str
    name: str = "prompt"
    form: ClassVar[str] = "prompt"
    updates: ClassVar[tuple] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise InputError("PromptBaseline: the prompt is empty")

    def render(self, question: str) -> str:
        """The question as EasyEdit's applier sees it after ``apply_prompt``."""
        return f"{self.prompt} {question}"

    def apply_to_pairs(self, pairs: Sequence[PolarityPair]) -> list[PolarityPair]:
        return [dataclasses.replace(p, question=self.render(p.question), meta={**p.meta, "prompt": self.prompt})
                for p in pairs]

    def to_dict(self) -> dict[str, Any]:
        return {"form": self.form, "name": self.name, "prompt": self.prompt}

    @classmethod
    def from_hparams(cls, hparams: str | os.PathLike | Mapping[str, Any], name: str = "prompt") -> PromptBaseline:
        """From EasyEdit's ``apply_prompt`` hparams (``alg_name: prompt``, ``prompt: ...``), a YAML path or a dict.
        ``generate_prompt_params`` (letting the model write the prompt) is refused: the row would then
        depend on a generation, not on a fixed prompt."""
        where = "prompt hparams"
        if not isinstance(hparams, Mapping):
            from easyedit_split.base.hparams_io import read_yaml_mapping

            where = str(hparams)
            hparams = read_yaml_mapping(Path(hparams))
        if str(hparams.get("alg_name", "prompt")).lower() != "prompt":
            raise InputError(f"{where}: alg_name is {hparams.get('alg_name')!r}, not 'prompt'")
        if hparams.get("generate_prompt_params"):
            raise InputError(f"{where}: generate_prompt_params (a model-written prompt) is not supported; give `prompt`")
        if not hparams.get("prompt"):
            raise InputError(f"{where}: no `prompt` given")
        return cls(str(hparams["prompt"]), name=name)
