"""Knowledge editing: SPLIT as an EasyEdit editor, and EasyEdit's editors on the preference–utility scale.

* :func:`register_editor` — ``alg_name: SPLIT`` in EasyEdit's ``ALG_DICT``
  (:mod:`.split_editor`: :class:`SplitEditHyperParams`, :func:`apply_split_to_model`);
* :func:`import_easyeditor` — ``import easyeditor`` with an opt-in shim for the multimodal-only
  modules whose dependencies are missing (:mod:`.easyeditor_import`);
* :mod:`.requests` — CounterFact-style edit requests (the shipped ``counterfact_smollm2.jsonl``);
* :mod:`.capture` — each edit of an EasyEdit editor as updates ``(ΔW, Δb)``;
* :mod:`.covariance` — ROME/MEMIT statistics from local text in EasyEdit's cache format;
* :mod:`.compare` — ``python -m easyedit_split.editing.compare``: the editor comparison report.

Needs EasyEdit's checkout (``$EASYEDIT_PATH`` or ``path=``) and the ``editing`` extra.
"""

from __future__ import annotations

from easyedit_split.editing.easyeditor_import import (
    EasyEditNotFound,
    MultimodalUnavailable,
    find_easyedit_checkout,
    import_easyeditor,
)
from easyedit_split.editing.requests import (
    EditRequest,
    edit_kwargs,
    edit_pairs,
    locality_pairs,
    read_requests,
)
from easyedit_split.editing.split_editor import (
    ALG_NAME,
    SplitEditHyperParams,
    apply_split_to_model,
    register_editor,
)

__all__ = [
    "ALG_NAME",
    "EasyEditNotFound",
    "EditRequest",
    "MultimodalUnavailable",
    "SplitEditHyperParams",
    "apply_split_to_model",
    "edit_kwargs",
    "edit_pairs",
    "find_easyedit_checkout",
    "import_easyeditor",
    "locality_pairs",
    "read_requests",
    "register_editor",
]
