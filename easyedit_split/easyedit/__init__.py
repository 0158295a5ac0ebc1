"""Running the plugin inside a real EasyEdit checkout.

* :mod:`.easyedit_hparams` — the hyperparameter classes registered into EasyEdit: the plugin's classes plus
  EasyEdit's base keys (``dtype``, ``seed``, ``use_cache``, ``vllm_enable``, ``save_activations`` …),
  validated however EasyEdit builds them;
* :mod:`.host` — EasyEdit's model wrapper: recognising it, loading one with EasyEdit's own loader,
  and making its ``reset_all()`` / ``reset(name)`` take the plugin's steering off;
* :mod:`.autoregister` — the opt-in import hook (``easyedit-split easyedit enable``) that registers
  the plugin whenever EasyEdit's registry module is imported, in any process of this environment;
* :mod:`.evaluator` — ``preference_utility`` as an ``eval_methods`` entry of EasyEdit's steering ``Evaluator``;
* :mod:`.run_folder` — a writable run folder for EasyEdit's ``examples/run_SPILT.py``
  (``easyedit-split easyedit prepare``);
* :mod:`.comparison` — the preference–utility report of such a run's vectors directory
  (``easyedit-split easyedit report``).

This package imports neither torch nor EasyEdit at import time.
"""
