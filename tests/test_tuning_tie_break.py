"""Tie-aware pruning: a toy search whose metric ties and whose loss does not, through Ray's
own ASHA and HyperBand bookkeeping (no cluster needed: the schedulers are driven directly)."""

from __future__ import annotations

import pytest
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler

from autoft.tuning.tie_break import TieBreakingASHA, TieBreakingHyperBand


class Trial:
    """The little of a Ray trial the schedulers read (hashable by identity, as Ray's is)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.status, self.config = trial_id, "RUNNING", {}


LOSSES = [0.9, 0.2, 0.8, 0.1, 0.7, 0.3, 0.6, 0.4]  # every trial scores MCC 0 after epoch 1


def stopped(scheduler: TrialScheduler) -> list[int]:
    """The trials ``scheduler`` stops after their first epoch, all tied at MCC 0."""
    scheduler.set_search_properties(metric="eval_mcc", mode="max")
    trials = [Trial(f"t{i}") for i in range(len(LOSSES))]
    for trial in trials:
        scheduler.on_trial_add(None, trial)
    decisions = [scheduler.on_trial_result(None, trial, {
        "training_iteration": 1, "eval_mcc": 0.0, "eval_loss": loss})
        for trial, loss in zip(trials, LOSSES, strict=True)]
    return [i for i, action in enumerate(decisions) if action == TrialScheduler.STOP]


def asha(kind: type) -> TrialScheduler:
    return kind(time_attr="training_iteration", max_t=3, grace_period=1, reduction_factor=2)


def test_plain_asha_stops_no_tied_trial() -> None:
    assert stopped(asha(ASHAScheduler)) == []


def test_tie_breaking_asha_stops_the_tied_trials_with_the_higher_loss() -> None:
    cut = stopped(asha(TieBreakingASHA))
    assert cut, "some tied trial must be stopped"
    kept = [i for i in range(len(LOSSES)) if i not in cut]
    # Each stop is decided against the trials seen so far: a stopped trial's loss is above the
    # median of those before it and itself.
    for i in cut:
        earlier = sorted(LOSSES[: i + 1])
        assert LOSSES[i] > earlier[len(earlier) // 2 - 1], (i, cut)
    assert LOSSES.index(min(LOSSES)) in kept


@pytest.mark.parametrize("kind", [HyperBandScheduler, TieBreakingHyperBand])
def test_hyperband_ranks_the_tied_trials_by_loss_only_when_tie_breaking(kind: type) -> None:
    scheduler = kind(time_attr="training_iteration", max_t=3, reduction_factor=2)
    scheduler.set_search_properties(metric="eval_mcc", mode="max")
    trial = Trial("t0")
    scheduler.on_trial_add(None, trial)
    scheduler.on_trial_result(None, trial, {"training_iteration": 1, "eval_mcc": 0.0,
                                            "eval_loss": 0.5})
    bracket, _ = scheduler._trial_info[trial]
    recorded = bracket._live_trials[trial]
    expected = 0.0 if kind is HyperBandScheduler else -5e-08
    assert recorded["eval_mcc"] == pytest.approx(expected, abs=1e-12)
