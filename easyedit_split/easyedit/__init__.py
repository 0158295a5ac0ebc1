"""Running the plugin inside a real EasyEdit checkout.

* :mod:`.hparams` — the hyperparameter classes registered into EasyEdit: the plugin's classes plus
  EasyEdit's base keys (``dtype``, ``seed``, ``use_cache``, ``vllm_enable``, ``save_activations`` …),
  validated however EasyEdit builds them;
* :mod:`.host` — EasyEdit's model wrapper: recognising it, loading one with EasyEdit's own loader,
  and making its ``reset_all()`` / ``reset(name)`` take the plugin's steering off;
* :mod:`.autoregister` — the opt-in import hook (``easyedit-split easyedit enable``) that registers
  the plugin whenever EasyEdit's registry module is imported, in any process of this environment.

This package imports neither torch nor EasyEdit at import time.
"""
