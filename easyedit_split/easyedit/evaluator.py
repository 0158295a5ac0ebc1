"""``preference_utility`` as one of the ``eval_methods`` of EasyEdit's steering ``Evaluator``.

EasyEdit's ``steer.evaluate.evaluate.Evaluator.evaluate(results, dataset_name, concept)`` runs each
entry of ``eval_methods`` through a fixed if/elif chain on substrings (``ppl``, ``fluency``, …) and
sees only the generation ``results``; it has no registry and no handle on the model. Without editing
EasyEdit, :func:`patch_evaluator` wraps the class in memory (done by
:func:`easyedit_split.register_with_easyedit` when, or as soon as, ``steer.evaluate.evaluate`` is
imported):

* ``Evaluator(..., model=applier.model, preference_utility_data=PAIRS)`` keeps the plugin's keyword
  arguments (EasyEdit's ``__init__`` ignores unknown ones): ``model`` (the EasyEdit wrapper the
  applier steered, or ``(model, tokenizer)``), ``preference_utility_data`` (a list of
  ``question``/``matching``/``not_matching`` dicts, a data file or a built-in dataset name; default:
  the ``results`` themselves when they carry both answers), optionally ``use_chat_template``,
  ``system_prompt`` (default: the wrapper's hyperparameters; prompts follow EasyEdit's own rule,
  ``build_model_input``, so ``system_prompt: ''`` means no system prompt) and
  ``preference_utility_multiplier``;
* ``evaluate`` hands every other method to EasyEdit's own code and adds
  ``results["preference_utility"]`` from :func:`evaluate_applied_steering`: the per-example
  PrefOdds/UtilOdds of the model *as it is steered now* (the plugin's hooks, EasyEdit's own
  interventions such as CAA, anything), i.e. the numbers ``easyedit-split sweep`` gives for that
  update at the applied multiplier.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from easyedit_split.errors import InputError

logger = logging.getLogger(__name__)

__all__ = ["EVALUATOR_MODULE", "EVAL_NAME", "applied_multipliers", "evaluate_applied_steering", "patch_evaluator"]

EVAL_NAME = "preference_utility"
EVALUATOR_MODULE = "steer.evaluate.evaluate"
#: keyword arguments of EasyEdit's ``Evaluator(...)`` the plugin reads
PLUGIN_KWARGS = ("model", "tokenizer", "preference_utility_data", "preference_utility_multiplier",
                 "use_chat_template", "system_prompt", "batch_rows")
_PATCHED = "_easyedit_split_patched"


def applied_multipliers(model: Any) -> list[dict[str, Any]]:
    """The steering live on an EasyEdit wrapper: ``{"method", "layer", "multiplier"}`` per plugin hook
    state and per EasyEdit intervention that has a ``multiplier``."""
    from easyedit_split.easyedit.host import STEERING_ATTR, easyedit_interventions

    out: list[dict[str, Any]] = []
    for method, stack in (getattr(model, STEERING_ATTR, None) or {}).items():
        for state in getattr(stack, "easyedit_split_states", []):
            m = state.multiplier
            out.append({"method": method, "layer": None, "multiplier": float(m) if not hasattr(m, "tolist") else m.tolist()})
    out.extend({"method": method, "layer": layer, "multiplier": float(intervention.multiplier)}
               for method, layer, intervention in easyedit_interventions(model) if hasattr(intervention, "multiplier"))
    return out


def _prompt_kwargs(model: Any, use_chat_template: bool | None, system_prompt: str | None) -> dict[str, Any]:
    hp = getattr(model, "hparams", None)
    if use_chat_template is None:
        use_chat_template = getattr(hp, "use_chat_template", None)
    if system_prompt is None:
        system_prompt = getattr(hp, "system_prompt", None)
    out: dict[str, Any] = {}
    if use_chat_template is not None:
        out["chat_template"] = bool(use_chat_template)
    if system_prompt is not None:
        out["system_prompt"] = system_prompt
    # EasyEdit-built hparams render as EasyEdit does; a wrapper without hparams too (it is EasyEdit's wrapper)
    out["prompt_rule"] = getattr(hp, "prompt_rule", None) or "easyedit"
    return out


def evaluate_applied_steering(model: Any, pairs: Any, *, tokenizer: Any = None, multiplier: float | None = None,
                              use_chat_template: bool | None = None, system_prompt: str | None = None,
                              batch_rows: int = 128, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Preference–utility of ``model`` with the steering currently applied to it, on polarity ``pairs``.

    ``model``: an EasyEdit wrapper (its ``.model``/``.tokenizer``), ``(model, tokenizer)`` or a model
    with ``tokenizer`` given. ``multiplier`` only labels the result (default: the single multiplier
    found by :func:`applied_multipliers`, else None). Returns plain JSON-able values: means with 95%
    bootstrap CIs, accuracy, and ``per_example`` rows ``example_id, L_p, L_n, pref_odds, util_odds``.
    """
    from easyedit_split.easyedit.entry_points import dataset_to_pairs, unwrap_model
    from easyedit_split.evaluation.logodds import summarize
    from easyedit_split.evaluation.sweep import sweep

    base, tok = unwrap_model(model if tokenizer is None else (getattr(model, "model", model), tokenizer))
    polarity = dataset_to_pairs(pairs, "preference_utility_data")
    live = applied_multipliers(model)
    if multiplier is None:
        values = {repr(s["multiplier"]) for s in live}
        multiplier = live[0]["multiplier"] if len(values) == 1 and not isinstance(live[0]["multiplier"], list) else None
    table = sweep(base, tok, polarity, [], [0.0], batch_rows=batch_rows, use_prefix_cache=False, progress=False,
                  encode_kwargs=_prompt_kwargs(model, use_chat_template, system_prompt))
    row = summarize(table, n_boot=n_boot, seed=seed).iloc[0]

    def num(x: Any) -> float | None:
        x = float(x)
        return None if math.isnan(x) else x

    return {
        "multiplier": multiplier,
        "steering": live,
        "n_pairs": len(polarity),
        "pref_odds": num(row["pref"]), "pref_odds_ci": [num(row["pref_lo"]), num(row["pref_hi"])],
        "util_odds": num(row["util"]), "util_odds_ci": [num(row["util_lo"]), num(row["util_hi"])],
        "accuracy": num(row["accuracy"]),
        "per_example": [{"example_id": str(r.example_id), "L_p": float(r.L_p), "L_n": float(r.L_n),
                         "pref_odds": float(r.pref_odds), "util_odds": float(r.util_odds)}
                        for r in table.itertuples(index=False)],
    }


def _pairs_from(options: Mapping[str, Any], results: Sequence[Any]) -> Any:
    data = options.get("preference_utility_data")
    if data is not None:
        return data
    from easyedit_split.easyedit.entry_points import dataset_to_pairs

    try:
        return dataset_to_pairs(results, "results")
    except (ValueError, TypeError) as exc:
        raise InputError("Evaluator: 'preference_utility' needs polarity pairs: pass preference_utility_data=... "
                         f"to Evaluator(...) (the generation results cannot serve: {exc})") from None


def patch_evaluator(module: Any) -> bool:
    """Wrap ``module.Evaluator`` (once per class object) so that ``eval_methods`` accepts ``preference_utility``;
    True when it was patched now."""
    cls = getattr(module, "Evaluator", None)
    if cls is None or getattr(cls, _PATCHED, False):
        return False
    original_init, original_evaluate = cls.__init__, cls.evaluate

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.easyedit_split_options = {k: kwargs.get(k) for k in PLUGIN_KWARGS}

    def evaluate(self, results, dataset_name, concept=None):
        methods = list(self.eval_methods or [])
        ours = [m for m in methods if str(m).strip().lower() == EVAL_NAME]
        theirs = [m for m in methods if m not in ours]
        out: dict[str, Any] = {}
        if theirs or not ours:
            self.eval_methods = theirs
            try:
                out.update(original_evaluate(self, results, dataset_name, concept))
            finally:
                self.eval_methods = methods
        if ours:
            opts = getattr(self, "easyedit_split_options", {})
            if opts.get("model") is None:
                raise InputError("Evaluator: 'preference_utility' evaluates the steered model: pass model=<the "
                                 "applier's model> to Evaluator(...)")
            out[EVAL_NAME] = evaluate_applied_steering(
                opts["model"], _pairs_from(opts, results), tokenizer=opts.get("tokenizer"),
                multiplier=opts.get("preference_utility_multiplier"), use_chat_template=opts.get("use_chat_template"),
                system_prompt=opts.get("system_prompt"), batch_rows=opts.get("batch_rows") or 128)
            logger.info("%s: preference_utility PrefOdds=%s UtilOdds=%s (m=%s, %d pairs)", dataset_name,
                        out[EVAL_NAME]["pref_odds"], out[EVAL_NAME]["util_odds"], out[EVAL_NAME]["multiplier"],
                        out[EVAL_NAME]["n_pairs"])
        return out

    __init__.__doc__ = (original_init.__doc__ or "") + "\n(easyedit-split: also keeps " + ", ".join(PLUGIN_KWARGS) + ")"
    evaluate.__doc__ = (original_evaluate.__doc__ or "") + f"\n(easyedit-split: '{EVAL_NAME}' in eval_methods)"
    cls.__init__, cls.evaluate = __init__, evaluate
    setattr(cls, _PATCHED, True)
    return True
