"""A data-parallel trial trains and scores as one worker does (trainables.parallel, on gloo).

Two real processes joined by torch.distributed run the text trainable's loop on a tiny BERT
without dropout (a deterministic model), with every ULMFiT strategy on: their rank 0 must report
the losses, scores and weights of one process training on the same global batches, and its
score must be that of the whole evaluation set, which the two split between them.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from autoft.core.config import config_from_mapping
from autoft.tuning.data_parallel import trial_resources
from tests.reporters import ListReporter
from tests.test_trainables_loop import tiny_bert
from trainables.parallel import Workers
from trainables.text import tokens
from trainables.text import trainable as text

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Every strategy at once: STLR, discriminative rates, gradual unfreezing (the trainable
#: parameters change per epoch) and L2-SP (its penalty must count once, not once per worker).
HPARAMS = {"num_epochs": 3, "batch_size": 8, "max_length": 12, "learning_rate": 3e-4,
           "lr_schedule": "stlr", "dis_blocks": 2, "frz_blocks": 2, "l2sp_alpha": 0.01,
           "seed": 3}
#: 33 training rows: the last batch has one row, so the second worker has none of it; 150
#: evaluation rows: three evaluation batches, split two and one.
TRAIN, EVAL = 33, 150


@pytest.fixture(scope="module")
def deterministic_text(tmp_path_factory) -> tuple[object, object]:
    folder = tmp_path_factory.mktemp("parallel")
    words = ["good", "great", "fine", "bad", "awful", "dull", "film", "plot", "acting", "very"]
    lines = [f"{words[i % 10]} {words[(3 * i) % 10]} {words[6 + i % 4]} {i}\t{int(i % 10 < 3)}"
             for i in range(TRAIN + EVAL)]
    (folder / "train.tsv").write_text("\n".join(lines[:TRAIN]) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(lines[TRAIN:]) + "\n", encoding="utf-8")
    model = tiny_bert(folder / "bert", dropout=0.0)
    config = config_from_mapping(
        {"name": "parallel", "trainable": "text", "model": str(model),
         "data": {"train": "train.tsv", "eval": "dev.tsv"}, "resources": {"cpu": 1}}, folder)
    return config, text.prepare(config)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _worker(rank: int, size: int, port: int, config, prepared, out: Path) -> None:
    """One of ``size`` workers: the trainable's ``fit`` in a gloo group; rank 0 saves what it
    reported."""
    store = dist.TCPStore("127.0.0.1", port, size, is_master=rank == 0)
    dist.init_process_group("gloo", store=store, rank=rank, world_size=size)
    try:
        assert Workers.current() == Workers(rank, size)
        reporter = ListReporter()
        text.fit(config, prepared, HPARAMS, reporter)
        if rank == 0:
            torch.save({"reports": reporter.reports, "model": reporter.states[-1]["model"]},
                       out)
        else:
            assert reporter.reports == []  # rank 0 alone reports
    finally:
        dist.destroy_process_group()


def test_two_workers_train_and_score_as_one(deterministic_text, tmp_path: Path) -> None:
    config, prepared = deterministic_text
    assert EVAL > 2 * tokens.EVAL_BATCH_SIZE and TRAIN % HPARAMS["batch_size"] == 1
    single = ListReporter()
    text.fit(config, prepared, HPARAMS, single)

    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), config, prepared, out), nprocs=2)
    parallel = torch.load(out, weights_only=True)

    assert len(parallel["reports"]) == len(single.reports) == HPARAMS["num_epochs"]
    for one, two in zip(single.reports, parallel["reports"], strict=True):
        for key in ("train_loss", "eval_loss", "eval_accuracy", "eval_f1", "lr"):
            assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), (one["epoch"], key)
    for name, tensor in single.states[-1]["model"].items():
        torch.testing.assert_close(parallel["model"][name], tensor, rtol=1e-4, atol=1e-5,
                                   msg=name)
    # The loss moved: the equality above is of a model that trained, not of one left as it was.
    assert single.reports[-1]["train_loss"] < single.reports[0]["train_loss"]


def test_workers_split_rows_and_batches_between_them() -> None:
    batch = list(range(7))
    shares = [Workers(rank, 3).rows(batch) for rank in range(3)]
    assert sorted(row for share in shares for row in share) == batch
    assert Workers(1, 8).rows([0]) == []  # a short last batch: nothing for this worker
    assert Workers().rows(batch) == batch and Workers().lead
    assert [list(Workers(rank, 2).share(range(5))) for rank in range(2)] == [[0, 2, 4], [1, 3]]


def test_a_trial_reserves_a_bundle_per_worker() -> None:
    assert trial_resources(2, 0, 1) == {"cpu": 2, "gpu": 0}
    factory = trial_resources(1, 1, 3)
    assert factory.bundles == [{"CPU": 1, "GPU": 1}] * 3 and factory.strategy == "PACK"
    assert trial_resources(2, 0, 2).bundles == [{"CPU": 2}] * 2  # Ray refuses a 0 GPU entry
