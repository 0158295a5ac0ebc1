"""Layer 5, adapters: other methods' artefacts as updates.

* :mod:`.builders` — peft LoRA adapters, EasyEdit ``.pt`` interventions and edited weights as updates
  (``from_peft``, ``from_easyedit_pt``, ``from_edited_weights``);
* :mod:`.lm_steer`, :mod:`.sae`, :mod:`.prompt_baseline` — lm_steer checkpoints, SAE-built vectors and
  EasyEdit's weight-free prompt baseline;
* :mod:`.artefacts` — :func:`load_artefact`: any of these (or a saved update file) from one argument.

The names of the former ``easyedit_split.adapters`` module, and ``load_artefact``, are importable from here.
"""

from __future__ import annotations

from easyedit_split.adapters.artefacts import load_artefact
from easyedit_split.adapters.builders import AdapterError, from_easyedit_pt, from_edited_weights, from_peft

__all__ = ["AdapterError", "from_easyedit_pt", "from_edited_weights", "from_peft", "load_artefact"]
