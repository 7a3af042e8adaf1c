"""``autoft predict``: a model folder from ``autoft train`` on new data, and its bad inputs.

Two tiny models are trained once for the module (a 2-layer random BERT with MiniLM's tokenizer,
timm's ``test_efficientnet`` from random weights): the predictions of each are checked against
what the model says in a plain forward pass, then every bad input is refused with exit 2, one
line, and no predictions file. (Real models on real data: ``tests/test_train.py`` and
``tests/test_tasks.py`` check that the predictions score what evaluation scored.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import autoft
from autoft.cli import main as cli_main
from tests.test_bad_input import write_images
from tests.test_trainables_loop import tiny_bert

PAIRS = [("a good film", "fine"), ("a dull film", "flat"), ("great acting", "warm"),
         ("awful plot", "cold")]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A text model (sentence pairs, 2 classes) and an image model (2 classes), trained."""
    root = tmp_path_factory.mktemp("predict")
    rows = "".join(f"{a} {i}\t{b}\t{i % 2}\n" for i in range(8) for a, b in PAIRS)
    (root / "train.tsv").write_text(rows, encoding="utf-8")
    write_images(root / "images", {"ants": 4, "bees": 4})
    fixed = {"num_epochs": 1, "batch_size": 8, "max_length": 8}
    text = autoft.train({"name": "text", "trainable": "text", "model": str(tiny_bert(
        root / "bert")), "data": {"train": str(root / "train.tsv"), "text_pair_column": 1,
                                  "label_column": 2},
        "fixed": fixed, "storage": str(root / "results")})
    image = autoft.train({"name": "image", "trainable": "image", "model": "test_efficientnet",
                          "pretrained": False, "data": {"train": str(root / "images")},
                          "fixed": fixed, "storage": str(root / "results")})
    return {"text": text.model_dir, "image": image.model_dir, "root": root}


def test_text_pairs_are_predicted_in_file_order_with_probabilities(models, tmp_path) -> None:
    data = tmp_path / "new.tsv"
    data.write_text("".join(f"{a}\t{b}\n" for a, b in PAIRS), encoding="utf-8")  # no labels
    output = tmp_path / "out.jsonl"
    assert cli_main(["predict", str(models["text"]), str(data), "-o", str(output)]) == 0
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["text"], r["text_pair"]) for r in rows] == PAIRS
    for row in rows:
        assert set(row["probabilities"]) == {"0", "1"}
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert row["label"] == max(row["probabilities"], key=row["probabilities"].get)


def test_images_under_a_folder_are_predicted_and_a_corrupt_one_skipped(models,
                                                                         tmp_path) -> None:
    images = write_images(tmp_path / "new", {"x": 3}, corrupt=1)
    done = autoft.predict(models["image"], images, tmp_path / "out.csv")
    lines = done.output.read_text().splitlines()
    assert done.count == 2 and lines[0] == "file,label,p:ants,p:bees"
    assert [line.split(",")[0] for line in lines[1:]] == [str(images / "x" / f"{i}.png")
                                                          for i in (1, 2)]


def _not_a_model(models: dict[str, Path], tmp_path: Path) -> list[str]:
    (tmp_path / "empty").mkdir()
    return ["predict", str(tmp_path / "empty"), str(models["root"] / "train.tsv")]


def _weights_gone(models: dict[str, Path], tmp_path: Path) -> list[str]:
    broken = shutil.copytree(models["image"], tmp_path / "broken")
    (broken / "model.safetensors").unlink()
    return ["predict", str(broken), str(models["root"] / "images")]


BAD = {
    "not-a-model-folder": (_not_a_model, "empty", "not a model folder written by autoft train"),
    "weights-gone": (_weights_gone, "broken", "not a timm model folder"),
    "data-missing": (lambda m, t: ["predict", str(m["text"]), str(t / "nope.tsv")], "nope.tsv",
                     "data file not found"),
    "empty-table": (lambda m, t: ["predict", str(m["text"]), str(_write(t / "e.tsv", ""))],
                    "e.tsv", "data to predict: the dataset is empty"),
    "only-corrupt-images": (lambda m, t: ["predict", str(m["image"]), str(
        write_images(t / "bad", {"x": 2}, corrupt=2))], "bad", "none of the 2 image files"),
    "output-suffix": (lambda m, t: ["predict", str(m["text"]), str(m["root"] / "train.tsv"),
                                    "-o", str(t / "out.txt")], "out.txt", r"\.csv or \.jsonl"),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, models, tmp_path, monkeypatch,
                                                            capsys) -> None:
    argv, names, says = BAD[case]
    monkeypatch.chdir(tmp_path)  # the default output, predictions.csv, would land here
    argv = argv(models, tmp_path)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("autoft: error: ") and names in line, line
    assert re.search(says, line), line
    assert not list(tmp_path.glob("*.csv")) + list(tmp_path.glob("*.jsonl"))
