"""Search spaces: both file formats, every validation error, and the pure-Python methods (sample,
check_point, clip, grid, describe) of the loaded model. The consumers (Optuna, Ray's OptunaSearch,
PBT, Nevergrad, the plots) are tests/test_space_adapters.py."""

from __future__ import annotations

import doctest
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autoft.core.space
from autoft.core.errors import InputError
from autoft.core.space import CategoricalParam, FloatParam, IntParam, SearchSpace
from autoft.core.space_files import load_space
from autoft.tuning.space_adapters import suggest

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = [ROOT / "search_spaces" / name for name in ("ulmfit_text.yaml", "ulmfit_image.yaml")]

ULMFIT = {
    "lr_schedule": {"type": "categorical", "choices": ["constant", "warmup_linear", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "when": {"lr_schedule": "stlr"}},
    "warmup_proportion": {"type": "float", "low": 0.0, "high": 0.2,
                          "when": {"lr_schedule": ["warmup_linear"]}},
    "dis_blocks": {"type": "int", "low": 0, "high": 5},
    "batch_size": {"type": "categorical", "choices": [8, 16, 32]},
    "learning_rate": {"type": "float", "low": 1.0e-5, "high": 2.0e-4, "log": True},
}

PADDLEHUB = """\
param_list:
- name : learning_rate
  init_value : 0.001
  type : float
  lower_than : 0.05
  greater_than : 0.000005
- name : batch_size
  init_value : 12
  type : int
  lower_than : 20
  greater_than : 10
"""


def _expected_names(point: dict) -> set[str]:
    names = set(ULMFIT) - {"cut_frac", "warmup_proportion"}
    if point["lr_schedule"] == "stlr":
        names.add("cut_frac")
    if point["lr_schedule"] == "warmup_linear":
        names.add("warmup_proportion")
    return names


def test_docstring_examples_hold() -> None:
    result = doctest.testmod(autoft.core.space)
    assert result.attempted >= 8 and result.failed == 0


def test_autoft_file_loads_in_order_with_conditions(tmp_path: Path) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("""\
lr_schedule: {type: categorical, choices: [constant, stlr]}
cut_frac: {type: float, low: 0.0, high: 0.3, step: 0.05, when: {lr_schedule: stlr}}
dis_blocks: {type: int, low: 0, high: 4, step: 2}
learning_rate: {type: float, low: 1e-5, high: 2.0e-4, log: true}
""")
    space = load_space(path)
    assert space.source == str(path) and space.initial_points == ()
    assert space.names == ["lr_schedule", "cut_frac", "dis_blocks", "learning_rate"]
    cut_frac = space.params[1]
    assert cut_frac == FloatParam(name="cut_frac", low=0.0, high=0.3, step=0.05,
                                  when={"lr_schedule": ("stlr",)})
    assert space.params[2].values() == [0, 2, 4]
    # YAML 1.1 reads 1e-5 (no dot) as text; the bound is still a number.
    assert space.params[3].low == 1e-5 and space.params[3].log is True


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_ulmfit_spaces_cover_the_study(path: Path) -> None:
    space = load_space(path)
    params = {param.name: param for param in space.params}
    assert params["lr_schedule"].choices == ("constant", "warmup_linear", "stlr")
    assert params["cut_frac"].when == {"lr_schedule": ("stlr",)}
    assert params["warmup_proportion"].when == {"lr_schedule": ("warmup_linear",)}
    # the study's settings: cut_frac 0.01 / 0.1 / 0.2, 3 or 5 blocks, warm-up 0.1
    for name, value in [("cut_frac", 0.01), ("cut_frac", 0.2), ("warmup_proportion", 0.1),
                        ("dis_blocks", 0), ("dis_blocks", 5), ("frz_blocks", 3),
                        ("batch_size", 16), ("batch_size", 32), ("learning_rate", 1e-4)]:
        assert params[name].problem(value) is None, (name, value)
    assert params["learning_rate"].log
    assert "lr_schedule = stlr" in space.describe()


def test_paddlehub_file_gives_bounds_and_first_point(tmp_path: Path) -> None:
    path = tmp_path / "hparam.yaml"
    path.write_text(PADDLEHUB)
    space = load_space(path)
    assert space.params == (FloatParam(name="learning_rate", low=5e-6, high=0.05),
                            IntParam(name="batch_size", low=10, high=20))
    assert space.initial_points == ({"learning_rate": 0.001, "batch_size": 12},)
    space.check_point(space.initial_points[0], "initial")
    assert "initial point 1: learning_rate=0.001, batch_size=12" in space.describe()


def test_mapping_source_defaults_to_space() -> None:
    with pytest.raises(InputError, match=r"^space: x: type must be"):
        load_space({"x": {"type": "bool"}})
    with pytest.raises(InputError, match=r"^cfg.yaml: space: x: type must be"):
        load_space({"x": {"type": "bool"}}, source="cfg.yaml: space")


def _entry(**changes: object) -> dict:
    return {"lr_schedule": ULMFIT["lr_schedule"], "x": {"type": "float", "low": 0.0,
                                                        "high": 1.0, **changes}}


BAD_AUTOFT = [
    ({}, "space: the space is empty"),
    ({"x": 3}, "space: x: expected a mapping such as"),
    ({"x": {"low": 0, "high": 1}}, "space: x: type must be float, int or categorical, got None"),
    ({"x": {"type": "str"}}, "type must be float, int or categorical, got 'str'"),
    (_entry(lw=0), "space: x: unknown key(s) lw for a float parameter (allowed:"),
    ({"x": {"type": "categorical", "choices": [1], "low": 0}}, "unknown key(s) low for a categ"),
    ({"x": {"type": "float", "high": 1.0}}, "space: x: no low (lower bound)"),
    ({"x": {"type": "int", "low": 1}}, "space: x: no high (upper bound)"),
    (_entry(low="a"), "space: x: low must be a number, got 'a'"),
    (_entry(high=True), "space: x: high must be a number, got True"),
    (_entry(high=float("nan")), "high must be a number"),
    (_entry(low=2.0), "space: x: low (2) must be below high (1)"),
    (_entry(low=1.0), "low (1) must be below high (1); a constant belongs in the config's fixed"),
    ({"x": {"type": "int", "low": 0.5, "high": 3}}, "low must be a whole number for an int"),
    (_entry(log="yes"), "space: x: log must be true or false, got 'yes'"),
    (_entry(log=True), "space: x: log: true needs low > 0, got 0"),
    ({"x": {"type": "int", "low": 0, "high": 8, "log": True}}, "log: true needs low > 0"),
    ({"x": {"type": "float", "low": 0.5, "high": 8, "log": True, "step": 0.5}},
     "step cannot be combined with log: true"),
    (_entry(step=0), "space: x: step must be positive, got 0"),
    (_entry(step=-0.1), "step must be positive"),
    (_entry(step=0.3), "space: x: high - low (1.0) is not a multiple of step (0.3)"),
    ({"x": {"type": "int", "low": 0, "high": 5, "step": 2}}, "is not a multiple of step (2)"),
    ({"x": {"type": "categorical"}}, "space: x: choices must be a non-empty list"),
    ({"x": {"type": "categorical", "choices": []}}, "choices must be a non-empty list"),
    ({"x": {"type": "categorical", "choices": "abc"}}, "choices must be a non-empty list"),
    ({"x": {"type": "categorical", "choices": [[1, 2]]}}, "choice [1, 2] is not a number, text"),
    ({"x": {"type": "categorical", "choices": [16, 32, 16]}}, "choice 16 is listed twice"),
    (_entry(when={"schedule": "stlr"}), "space: x: when names unknown parameter 'schedule'"),
    (_entry(when={"lr_schedule": "slanted"}),
     "space: x: when: lr_schedule can never be 'slanted': 'slanted' is not one of the choices"),
    (_entry(when={"lr_schedule": ["stlr", 3]}), "when: lr_schedule can never be 3"),
    (_entry(when={"lr_schedule": []}), "when: lr_schedule: the list of allowed values is empty"),
    (_entry(when={}), "space: x: when must map parameters defined above"),
    (_entry(when="lr_schedule"), "when must map parameters defined above"),
    (_entry(when={"x": 0.5}), "space: x: when names the parameter itself"),
    ({"a": {"type": "int", "low": 0, "high": 2, "when": {"b": 1}},
      "b": {"type": "int", "low": 0, "high": 2, "when": {"a": 1}}},
     "space: a: when names b, which is defined below it; a condition may only name a parameter "
     "defined above it"),
    ({"x": {"type": "int", "low": 0, "high": 3},
      "y": {"type": "int", "low": 0, "high": 3, "when": {"x": 7}}},
     "space: y: when: x can never be 7: 7 is outside [0, 3]"),
    ({1: {"type": "int", "low": 0, "high": 3}}, "space: 1: a parameter name must be non-empty"),
    ({"model/lr": {"type": "int", "low": 0, "high": 3}}, "'/' is not allowed in a parameter name"),
    ({"": {"type": "int", "low": 0, "high": 3}}, "space: '': a parameter name must be non-empty"),
    (_entry(name="y"), "space: x: unknown key(s) name for a float parameter"),
    (_entry(lw=0, zz=1), "space: x: unknown key(s) lw, zz for a float parameter"),
    (_entry(when={"lr_schedule": [[1]]}), "when: lr_schedule can never be [1]: not a number"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_AUTOFT, ids=[m for _, m in BAD_AUTOFT])
def test_bad_autoft_space_is_one_clear_input_error(raw: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        load_space(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def _hub(**changes: object) -> dict:
    entry = {"name": "lr", "init_value": 0.01, "type": "float", "greater_than": 0.001,
             "lower_than": 0.1, **changes}
    return {"param_list": [{key: value for key, value in entry.items() if value != "DROP"}]}


BAD_PADDLEHUB = [
    ({"param_list": []}, "space: param_list must be a non-empty list"),
    ({"param_list": None}, "param_list must be a non-empty list"),
    ({"param_list": [3]}, "space: param_list[0]: expected a mapping with name"),
    ({**_hub(), "popsize": 5}, "top-level key(s) popsize; a PaddleHub hparam.yaml has only"),
    (_hub(name="DROP"), "space: param_list[0]: a parameter name must be non-empty text, got None"),
    ({"param_list": _hub()["param_list"] * 2}, "param_list[1]: parameter 'lr' is defined twice"),
    (_hub(init="x"), "space: lr: unknown key(s) init (allowed: greater_than, init_value,"),
    (_hub(type="categorical"), "space: lr: type must be int or float in a PaddleHub hparam.yaml"),
    (_hub(greater_than="DROP"), "space: lr: no greater_than (lower bound)"),
    (_hub(lower_than="DROP"), "space: lr: no lower_than (upper bound)"),
    (_hub(greater_than=0.1), "space: lr: greater_than (0.1) must be below lower_than (0.1)"),
    (_hub(greater_than=0.5), "greater_than (0.5) must be below lower_than (0.1)"),
    (_hub(init_value="DROP"), "space: lr: no init_value"),
    (_hub(init_value=0.5), "space: lr: init_value 0.5 is outside [0.001, 0.1]"),
    (_hub(init_value="fast"), "space: lr: init_value must be a number, got 'fast'"),
    (_hub(type="int", greater_than=1, lower_than=9, init_value=2.5),
     "init_value must be a whole number for an int parameter, got 2.5"),
]


@pytest.mark.parametrize(("raw", "message"), BAD_PADDLEHUB, ids=[m for _, m in BAD_PADDLEHUB])
def test_bad_paddlehub_file_is_one_clear_input_error(raw: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        load_space(raw)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("text", "message"), [
    ("x: {type: int, low: 0, high: [", "malformed YAML (line 1"),
    ("- a\n- b\n", "expected a mapping of parameter names (or a PaddleHub hparam.yaml with "
                   "param_list), got list"),
    ("", "the space is empty"),
])
def test_bad_space_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=rf"^{path}: ") as error:
        load_space(path)
    assert message in str(error.value)


def test_missing_space_file() -> None:
    with pytest.raises(InputError, match="space file not found"):
        load_space("/nonexistent/space.yaml")


def test_is_active_needs_every_condition() -> None:
    param = IntParam(name="x", low=0, high=3, when={"a": ("u", "v"), "b": (1,)})
    assert param.is_active({"a": "v", "b": 1})
    assert not param.is_active({"a": "w", "b": 1})
    assert not param.is_active({"a": "u"})
    assert not param.is_active({"a": "u", "b": True})  # true is not the choice 1
    assert IntParam(name="y", low=0, high=3).is_active({})


@pytest.mark.parametrize(("point", "message"), [
    ({"lr": 0.1}, "where: lr: not a parameter of the space (space: lr_schedule, cut_frac,"),
    ({"learning_rate": 1.0}, "where: learning_rate: 1.0 is outside [1e-05, 0.0002]"),
    ({"learning_rate": "fast"}, "where: learning_rate: 'fast' is not a number"),
    ({"dis_blocks": 2.5}, "where: dis_blocks: 2.5 is not a whole number"),
    ({"batch_size": 24}, "where: batch_size: 24 is not one of the choices [8, 16, 32]"),
    ({"batch_size": "16"}, "'16' is not one of the choices"),
    ({"lr_schedule": "constant", "cut_frac": 0.1},
     "where: cut_frac: only used when lr_schedule = stlr, but lr_schedule is 'constant'"),
    ({"cut_frac": 0.1}, "where: cut_frac: only used when lr_schedule = stlr; give lr_schedule"),
    ([0.1], "where: expected a mapping of hyperparameter values, got list"),
])
def test_check_point_rejects(point: object, message: str) -> None:
    with pytest.raises(InputError) as error:
        load_space(ULMFIT).check_point(point, "where")
    assert message in str(error.value)


def test_check_point_accepts_partial_and_full_points() -> None:
    space = load_space(ULMFIT)
    space.check_point({}, "where")
    space.check_point({"learning_rate": 1e-4, "dis_blocks": 3}, "where")
    space.check_point({"lr_schedule": "stlr", "cut_frac": 0, "dis_blocks": 5, "batch_size": 16,
                       "learning_rate": 2e-4}, "where")
    stepped = load_space({"x": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1}})
    stepped.check_point({"x": 0.3}, "where")
    with pytest.raises(InputError, match="0.15 is not 0 plus a multiple of 0.1"):
        stepped.check_point({"x": 0.15}, "where")


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    """Random valid spaces: every type, steps, log scales, conditions on earlier parameters."""
    raw: dict[str, dict] = {}
    for index in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["float", "int", "categorical"]))
        if kind == "categorical":
            entry: dict = {"type": kind, "choices": draw(st.lists(
                st.one_of(st.integers(-5, 5), st.sampled_from(["a", "b", "c"]), st.booleans()),
                min_size=1, max_size=4, unique_by=lambda v: (type(v), v)))}
        else:
            low = draw(st.integers(1, 50)) if kind == "int" else draw(st.sampled_from(
                [0.0, 1e-6, 0.1, 2.5]))
            steps = draw(st.integers(1, 40))
            mode = draw(st.sampled_from(["plain", "step", "log"]))
            step = draw(st.sampled_from([1, 3]) if kind == "int" else st.sampled_from(
                [0.05, 0.1, 0.25]))
            high = Decimal(str(low)) + steps * Decimal(str(step))
            entry = {"type": kind, "low": low, "high": int(high) if kind == "int" else float(high)}
            if mode == "step":
                entry["step"] = step
            if mode == "log" and low > 0:
                entry["log"] = True
        earlier = [name for name, other in raw.items() if other["type"] == "categorical"]
        if earlier and draw(st.booleans()):
            key = draw(st.sampled_from(earlier))
            entry["when"] = {key: draw(st.lists(st.sampled_from(raw[key]["choices"]),
                                                min_size=1, max_size=2))}
        raw[f"p{index}"] = entry
    return load_space(raw)


def drawn(space: SearchSpace, seed: int) -> dict:
    """One point as a search draws it: Optuna's random sampler through the define-by-run
    space (autoft draws no samples of its own)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return suggest(space, study.ask())


def test_drawn_points_honour_conditions_and_are_reproducible() -> None:
    space = load_space(ULMFIT)
    points = [drawn(space, seed) for seed in range(60)]
    assert points == [drawn(space, seed) for seed in range(60)]
    for point in points:
        assert set(point) == _expected_names(point)
        space.check_point(point, "sample")
    assert {point["lr_schedule"] for point in points} == {"constant", "warmup_linear", "stlr"}
    assert all(isinstance(point["dis_blocks"], int) for point in points)


@settings(max_examples=150, deadline=None)
@given(space=spaces(), seed=st.integers(0, 2**31 - 1))
def test_drawn_points_always_pass_check_point(space: SearchSpace, seed: int) -> None:
    point = drawn(space, seed)
    space.check_point(point, "sample")
    assert [name for name in space.names if name in point] == list(point)
    assert all(param.is_active(point) == (param.name in point) for param in space.params)


def test_clip_pulls_values_into_range_and_onto_grid() -> None:
    space = load_space({"x": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.1},
                        "n": {"type": "int", "low": 1, "high": 64, "log": True},
                        "c": {"type": "categorical", "choices": ["a"]}})
    assert space.clip({"x": 0.36, "n": 80.4, "c": "a", "other": 7}) == {
        "x": 0.3, "n": 64, "c": "a", "other": 7}
    assert space.clip({"x": 0.13, "n": 3.6}) == {"x": 0.1, "n": 4}


def test_grid_needs_a_step_on_every_float() -> None:
    with pytest.raises(InputError, match=r"^space: grid search needs a step on every float "
                                         r"parameter; without one: cut_frac, "
                                         r"warmup_proportion, learning_rate \(add step"):
        load_space(ULMFIT).grid()


def test_describe_lists_every_parameter() -> None:
    lines = load_space(ULMFIT).describe().splitlines()
    assert lines[0].split() == ["name", "type", "values", "log", "when"]
    assert lines[1].split() == ["lr_schedule", "categorical", "{constant,", "warmup_linear,",
                                "stlr}", "no", "-"]
    assert lines[3].split() == ["warmup_proportion", "float", "[0,", "0.2]", "no", "lr_schedule",
                                "=", "warmup_linear"]
    assert lines[6].split() == ["learning_rate", "float", "[1e-05,", "0.0002]", "yes", "-"]
    two = load_space({**ULMFIT, "x": {"type": "int", "low": 0, "high": 2, "when": {
        "lr_schedule": ["stlr", "constant"], "batch_size": 8}}}).describe()
    assert two.splitlines()[-1].endswith("lr_schedule in {stlr, constant} and batch_size = 8")


def test_models_validate_when_built_in_code_too() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="low \\(1\\) must be below high \\(0\\)"):
        FloatParam(name="x", low=1.0, high=0.0)
    with pytest.raises(ValidationError, match="choice 16 is listed twice"):
        CategoricalParam(name="b", choices=(16, 16))
    schedule = CategoricalParam(name="s", choices=("constant", "stlr"))
    cut = FloatParam(name="cut", low=0.0, high=0.2, when={"s": ("stlr",)})
    assert SearchSpace(params=(schedule, cut)).names == ["s", "cut"]
    with pytest.raises(ValidationError, match="cut: when names s, which is defined below it"):
        SearchSpace(params=(cut, schedule))
    with pytest.raises(ValidationError, match="parameter 's' is defined twice"):
        SearchSpace(params=(schedule, schedule))
    with pytest.raises(ValidationError, match="initial point 1: cut: 0.5 is outside"):
        SearchSpace(params=(schedule, cut), initial_points=({"s": "stlr", "cut": 0.5},))


def test_core_imports_none_of_the_search_stack() -> None:
    code = ("import sys, autoft.core.space; "
            "print(sorted(m for m in ('optuna', 'ray', 'nevergrad', 'torch', 'mlflow') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=ROOT)
    assert result.stdout.strip() == "[]"
