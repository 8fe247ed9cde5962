"""Labels: where they come from and how good they are.

The label store (:mod:`._store`, lake area ``labels``) keeps every label an
item was given and by whom: hand labels imported from CSV, JSONL or a Label
Studio export (``mlsd label import``). :func:`agreement` measures how far
annotators agree (Cohen's and Fleiss' kappa, Krippendorff's alpha, each
annotator against the others, the labels they confuse, the items to label
again); :func:`majority_vote` and :func:`dawid_skene` make one label an item
from the votes, with a confidence; :mod:`._functions` is weak supervision
(labeling functions and their label model).
"""

from ..._lazy import attach

_WHERE = {
    "agreement": "_agreement",
    "cohen_kappa": "_agreement",
    "fleiss_kappa": "_agreement",
    "krippendorff_alpha": "_agreement",
    "vote_counts": "_agreement",
    "DawidSkene": "_aggregate",
    "dawid_skene": "_aggregate",
    "majority_vote": "_aggregate",
    "labeling_function": "_functions",
    "label_model": "_functions",
    "apply_functions": "_functions",
    "AREA": "_store",
    "KINDS": "_store",
    "SCHEMA": "_store",
    "read_label_file": "_store",
    "read_label_studio": "_store",
    "read_labels": "_store",
    "store_labels": "_store",
    "vote_matrix": "_store",
}
__getattr__, __dir__ = attach(__name__, _WHERE)

__all__ = sorted(_WHERE)
