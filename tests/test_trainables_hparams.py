"""Hyperparameters of the text and image trainables: names, defaults, ranges."""

import numpy as np
import pytest

from autoft.core.errors import InputError
from trainables.hparams import KNOWN_HPARAMS, HParams, check_hparam_names, parse_hparams


def test_known_names_are_design_md_table():
    table = {"learning_rate", "batch_size", "num_epochs", "lr_schedule", "cut_frac", "ratio",
             "warmup_proportion", "end_lr_ratio", "dis_blocks", "factor", "frz_blocks",
             "weight_decay", "l2sp_alpha", "l2sp_beta", "max_length", "threshold", "seed"}
    exported = {"stop_after_epochs"}  # written by export for a best epoch, rarely by hand
    assert table | exported == KNOWN_HPARAMS


def test_stopping_after_more_epochs_than_planned_is_refused():
    assert parse_hparams({"num_epochs": 4, "stop_after_epochs": 2}).epochs_to_train == 2
    with pytest.raises(InputError, match=r"stop_after_epochs \(5\) is more than num_epochs "
                                         r"\(4\)"):
        parse_hparams({"num_epochs": 4, "stop_after_epochs": 5})


def test_defaults_and_learning_rate_per_trainable():
    text, image = parse_hparams({}, "text"), parse_hparams({}, "image")
    assert (text.learning_rate, image.learning_rate) == (5e-5, 1e-4)
    assert text.model_dump(exclude={"learning_rate"}) == {
        "batch_size": 32, "num_epochs": 3, "lr_schedule": "constant", "cut_frac": 0.1,
        "ratio": 32, "warmup_proportion": 0.1, "end_lr_ratio": 0.0, "dis_blocks": 0,
        "factor": 2.6, "frz_blocks": 0, "weight_decay": 0.01, "l2sp_alpha": 0.0,
        "l2sp_beta": 0.0, "max_length": 128, "threshold": 0.5, "seed": 0,
        "stop_after_epochs": None}


def test_given_values_win_and_sampler_types_are_accepted():
    hp = parse_hparams({"learning_rate": 2e-5, "batch_size": np.int64(16), "num_epochs": 2.0,
                        "lr_schedule": "stlr"}, "image")
    assert (hp.learning_rate, hp.batch_size, hp.num_epochs, hp.lr_schedule) == (
        2e-5, 16, 2, "stlr")
    assert isinstance(hp, HParams) and isinstance(hp.batch_size, int)


def test_unknown_name_is_an_input_error_listing_it():
    with pytest.raises(InputError, match="unknown hyperparameter.*batchsize"):
        parse_hparams({"batchsize": 16}, "text")
    with pytest.raises(InputError, match="space.yaml: unknown hyperparameter.*dropout"):
        check_hparam_names(["learning_rate", "dropout"], "space.yaml")
    check_hparam_names(["learning_rate", "frz_blocks"])


@pytest.mark.parametrize("name, value", [
    ("batch_size", 0), ("learning_rate", 0.0), ("num_epochs", 0), ("lr_schedule", "cosine"),
    ("cut_frac", 1.5), ("ratio", 0.5), ("dis_blocks", -1), ("factor", 0), ("max_length", 1),
    ("weight_decay", -0.1), ("batch_size", 2.5)])
def test_out_of_range_is_an_input_error_naming_the_parameter(name, value):
    with pytest.raises(InputError, match=f"hyperparameters: {name}:"):
        parse_hparams({name: value}, "text")
