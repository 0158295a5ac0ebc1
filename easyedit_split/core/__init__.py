"""Layer 3, the core: where updates live in a model (:mod:`.structure`, :mod:`.sites`), the update forms
(:mod:`.updates`), applying them (:mod:`.apply`, :mod:`.apply_hparams`), forward passes and
activation records (:mod:`.forward`, :mod:`.record`), pair scoring (:mod:`.scoring`), saving and loading
(:mod:`.serialization`, :mod:`.easyedit_layout`), models (:mod:`.models`), generation
(:mod:`.generation`) and merged-weight export (:mod:`.export`). Imports only the layers below it
(errors, base, data)."""
