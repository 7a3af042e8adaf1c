"""The MLflow tags autoft writes (design.md, "Tracking layout"): one name each, one place."""

#: What a run is: ``search`` (a parent), ``train`` (``autoft train``), ``confirm`` (a retrain).
ROLE_TAG = "autoft.role"
SEARCH_ID_TAG = "autoft.search_id"
TRIAL_TAG = "autoft.trial_id"
#: ``completed``, ``pruned`` or ``failed`` (:func:`autoft.core.trials.trial_status`).
STATUS_TAG = "autoft.status"
ERROR_TAG = "autoft.error"
#: On a confirmation retrain: the trial whose configuration it trains with another seed.
CONFIRMS_TAG = "autoft.confirms"
#: On a trial that is one of the search's first points: which (``warm start: baseline``, ...).
FIRST_POINT_TAG = "autoft.first_point"
#: On the parent run: which trial the search chose, and why.
SELECTION_TAG = "autoft.selection"
