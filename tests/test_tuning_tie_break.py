"""Tie-aware pruning: a toy search whose metric ties and whose loss does not, through Ray's
own ASHA and HyperBand bookkeeping (no cluster needed: the schedulers are driven directly);
and HyperBand's brackets decided when their last trial leaves instead of reporting
(:mod:`autoft.tuning.hyperband`)."""

from __future__ import annotations

import pytest
from ray.tune.schedulers import ASHAScheduler, HyperBandScheduler, TrialScheduler

from autoft.tuning.tie_break import TieBreakingASHA, TieBreakingHyperBand


class Trial:
    """The little of a Ray trial the schedulers read (hashable by identity, as Ray's is)."""

    def __init__(self, trial_id: str) -> None:
        self.trial_id, self.status, self.config, self.is_saving = trial_id, "RUNNING", {}, False


class Controller:
    """Stops trials as Ray's TuneController does: the scheduler hears of it, then the trial
    is TERMINATED."""

    def __init__(self, scheduler: TrialScheduler) -> None:
        self.scheduler, self.stopped = scheduler, []

    def stop_trial(self, trial: Trial) -> None:
        if trial.status in ("TERMINATED", "ERROR"):
            return
        if trial.status == "PAUSED":
            self.scheduler.on_trial_remove(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, {})
        trial.status = "TERMINATED"
        self.stopped.append(trial.trial_id)

    def report(self, trial: Trial, epoch: int, mcc: float) -> str:
        """``trial``'s result of ``epoch``, paused as Ray pauses it when so decided."""
        action = self.scheduler.on_trial_result(self, trial, {
            "training_iteration": epoch, "eval_mcc": mcc, "eval_loss": 1.0})
        if action == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
        return action

    def leave(self, trial: Trial, epoch: int, mcc: float, status: str = "TERMINATED") -> None:
        """``trial`` ends on its own: its last result comes as the end of the trial (Ray's
        path for a function trainable that returns right after its last report), or it fails."""
        if status == "ERROR":
            self.scheduler.on_trial_error(self, trial)
        else:
            self.scheduler.on_trial_complete(self, trial, {
                "training_iteration": epoch, "eval_mcc": mcc, "eval_loss": 1.0})
        trial.status = status


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


def hyperband(max_t: int, trials: int) -> tuple[Controller, list[Trial]]:
    scheduler = TieBreakingHyperBand(time_attr="training_iteration", max_t=max_t,
                                     reduction_factor=3)
    scheduler.set_search_properties(metric="eval_mcc", mode="max")
    added = [Trial(f"t{i}") for i in range(trials)]
    for trial in added:
        scheduler.on_trial_add(None, trial)
    return Controller(scheduler), added


def test_hyperband_stops_the_trials_paused_at_max_t_when_the_others_leave_on_their_own() -> None:
    # max_t 3, reduction 3: the first bracket holds 2 trials that run straight to epoch 3.
    controller, (first, last, *_) = hyperband(max_t=3, trials=2)
    assert controller.report(first, 3, 0.5) == TrialScheduler.PAUSE
    controller.leave(last, 3, 0.4)
    assert controller.stopped == ["t0"] and first.status == "TERMINATED"


def test_hyperband_decides_a_halved_bracket_when_a_kept_trial_fails() -> None:
    # max_t 9, reduction 3: brackets of 3 and 5 trials, then 9 trials from epoch 1.
    controller, trials = hyperband(max_t=9, trials=17)
    halving = trials[8:]
    for i, trial in enumerate(halving):
        controller.report(trial, 1, i / 10)
    kept = [t for t in halving if t.trial_id not in controller.stopped]
    assert [t.trial_id for t in kept] == ["t14", "t15", "t16"]
    for trial in kept:
        trial.status = "RUNNING"  # the controller runs the unpaused trials again
    assert controller.report(kept[1], 3, 0.7) == TrialScheduler.PAUSE
    assert controller.report(kept[2], 3, 0.6) == TrialScheduler.PAUSE
    controller.leave(kept[0], 2, 0.0, status="ERROR")
    # The two waiting at epoch 3 are decided: the better one runs on, the other stops.
    assert "t16" in controller.stopped and "t15" not in controller.stopped
    assert controller.scheduler.choose_trial_to_run(controller) is kept[1]
