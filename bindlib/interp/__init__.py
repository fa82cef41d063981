"""How does a model bind? Counterfactual pairs, interchange interventions and the position-id swap,
attention knockouts, linear probes, and a hand-wired model with a known mechanism (the positive
control). Following the measurement spec (notes/measurement-spec.md, SPEC §4).

Every activation is read or written with nnsight 0.8.1 through the model's named hook points,
never through its weights, so the same code runs on the trained Transformer and on ToyBindingModel.
``from bindlib import interp as I`` gives the measurements below; ``interp.runs`` runs them on
checkpoints and ``interp.results`` reads their results files back.
"""
from .knockouts import (head_knockout_sweep, image_target_sets, knockout, knockout_layers,  # noqa: F401
                        knockout_sweep, relative_change, target_sets)
from .pairs import (Pairs, RebindPairs, association_lines, concat_rebind_pairs, correct_on_both,  # noqa: F401
                    distinct_targets, make_pairs, make_rebind_pairs, readout_logits, rebind_pairs_from_base, requery)
from .patching import (binding_score, interchange, interchange_record, patched_logits, position_swap,  # noqa: F401
                       rebind, time_sweep)
from .probes import fit_probe, identity_split, probe, role_positions  # noqa: F401
from .toy import ToyBindingModel  # noqa: F401
from ..core.task import build_prompts  # noqa: F401
