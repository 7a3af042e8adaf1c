"""The image trainable's two input paths: images decoded once per search and augmented per batch
on the trial's device (trainables.image.cache), and the streaming DataLoader."""

import dataclasses
import logging
import math
import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from timm.data import create_transform, resolve_model_data_config
from timm.data.transforms import RandomResizedCropAndInterpolation

from autoft.core.config import config_from_mapping
from autoft.core.errors import InputError
from tests.reporters import ListReporter
from trainables.hparams import parse_hparams
from trainables.image import cache as image_cache
from trainables.image import files as images
from trainables.image import trainable as image
from trainables.loop import Runtime
from trainables.parallel import Workers

MODEL = "test_efficientnet"  # 160 px input, crop_pct 0.95, bicubic, ImageNet mean/std
CPU = Runtime(torch.device("cpu"), None)


def make_folder(root: Path, per_class=4, classes=("ants", "bees")) -> Path:
    """JPEGs of several sizes and aspect ratios (wider, taller and smaller than the input)."""
    rng = np.random.default_rng(1)
    shapes = [(90, 120), (200, 150), (64, 64), (300, 100), (130, 170)]
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = shapes[(i + k) % len(shapes)]
            pixels = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
            pixels[..., k % 3] += 160
            pixels[: height // 3] //= 2  # some structure, so that crops differ
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=95)
    return root


def data_config(model: str = MODEL) -> dict:
    return resolve_model_data_config(timm.create_model(model, pretrained=False))


def items_of(root: Path) -> list[images.Item]:
    return images.scan_folder(root, images.class_names(root))


def search_config(tmp_path: Path, **extra) -> object:
    return config_from_mapping(
        {"name": "c", "trainable": "image", "model": MODEL, "pretrained": False,
         "data": {"train": str(make_folder(tmp_path / "train")),
                  "eval": str(make_folder(tmp_path / "val", per_class=2))}, **extra}, tmp_path)


def test_cached_evaluation_tensors_are_the_timm_eval_transforms(tmp_path):
    items = items_of(make_folder(tmp_path / "val"))
    config = data_config()
    built = image_cache.build(config, items, items)
    assert built.cache is not None and built.cache.eval.shape == (8, 3, 160, 160)
    batches = image_cache.CachedBatches(built.cache, torch.device("cpu"))
    cached = [(b["pixel_values"], labels) for b, labels in batches.eval(3)]
    transform = create_transform(**config)
    expected = torch.stack([transform(images.load_rgb(path)) for path, _ in items])
    pixels = torch.cat([p for p, _ in cached])
    assert torch.equal(pixels, expected)  # the same arithmetic: exactly equal
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p, _ in cached)
    assert torch.cat([labels for _, labels in cached]).tolist() == [label for _, label in items]


def test_the_augmentation_is_read_from_the_models_transform():
    config = data_config("tf_efficientnet_lite0")
    augment = image_cache.TrainAugment.of(create_transform(**config, is_training=True))
    assert augment == image_cache.TrainAugment(
        size=(224, 224), scale=(0.08, 1.0), ratio=(0.75, pytest.approx(4 / 3)),
        interpolation="bicubic", hflip=0.5, jitter=((0.6, 1.4),) * 3, mean=(0.5,) * 3,
        std=(0.5,) * 3)
    assert image_cache.store_side(augment) == 305
    plain = image_cache.TrainAugment.of(create_transform(**config, is_training=True, hflip=0,
                                                         color_jitter=0))
    assert plain.hflip == 0 and plain.jitter == ((1.0, 1.0),) * 3
    for unsupported in ({"auto_augment": "rand-m9-mstd0.5"}, {"re_prob": 0.25},
                        {"vflip": 0.5}, {"color_jitter": (0.4, 0.4, 0.4, 0.1)},
                        {"interpolation": "random"}):
        with pytest.raises(image_cache.Unsupported):
            image_cache.TrainAugment.of(create_transform(**{**config, **unsupported},
                                                         is_training=True))


def test_a_transform_it_cannot_reproduce_is_streamed(tmp_path):
    items = items_of(make_folder(tmp_path / "train"))
    built = image_cache.build({**data_config(), "interpolation": "random"}, items, items)
    assert built.cache is None and "random interpolation" in built.note
    assert built.train == items


def box_statistics(boxes: torch.Tensor, width: int, height: int) -> dict[str, torch.Tensor]:
    """Per box (top, left, height, width): its area fraction, log aspect, relative centre, and
    whether it spans the whole width or height (timm's fallback or a large crop)."""
    top, left, h, w = boxes.double().unbind(1)
    return {"area": h * w / (width * height), "aspect": torch.log(w / h),
            "centre y": (top + h / 2) / height, "centre x": (left + w / 2) / width,
            "whole": ((h == height) | (w == width)).double()}


def test_crop_boxes_follow_timms_random_resized_crop():
    """Same distribution as timm's get_params (area, aspect, fallback), always inside."""
    augment = image_cache.TrainAugment.of(create_transform(**data_config(), is_training=True))
    generator = torch.Generator().manual_seed(0)
    random.seed(0)
    count = 4000
    for width, height in ((500, 375), (60, 400), (161, 160)):
        ours = image_cache.crop_boxes(torch.tensor([[width, height]] * count), augment,
                                      generator)
        theirs = torch.tensor([RandomResizedCropAndInterpolation.get_params(
            Image.new("RGB", (width, height)), augment.scale, augment.ratio)
            for _ in range(count)])
        top, left, h, w = ours.unbind(1)
        assert (top >= 0).all() and (left >= 0).all() and (h >= 1).all() and (w >= 1).all()
        assert (top + h <= height).all() and (left + w <= width).all()
        expected = box_statistics(theirs, width, height)
        for name, values in box_statistics(ours, width, height).items():
            assert abs(values.mean() - expected[name].mean()) < 0.03, (width, height, name)
            assert abs(values.std() - expected[name].std()) < 0.03, (width, height, name)


def test_colour_jitter_is_torchvisions_on_tensors():
    generator = torch.Generator().manual_seed(3)
    pixels = torch.rand(6, 3, 20, 24, generator=generator)
    factors = 0.6 + 0.8 * torch.rand(6, 3, generator=generator)
    order = torch.rand(6, 3, generator=generator).argsort(dim=1)
    steps = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation)
    expected = []
    for image_, factor, steps_order in zip(pixels, factors, order, strict=True):
        for step in steps_order.tolist():
            image_ = steps[step](image_, factor[step].item())
        expected.append(image_)
    jittered = image_cache.colour_jitter(pixels.clone(), factors, order)
    torch.testing.assert_close(jittered, torch.stack(expected), atol=1e-6, rtol=0)
    unchanged = image_cache.colour_jitter(pixels.clone(), torch.ones(6, 3), order)
    assert torch.equal(unchanged, pixels)


def test_a_crop_is_resized_as_pillow_resizes_it():
    """Torch's uint8 kernels (the CPU's) give what Pillow's resize of the same crop gives,
    within 1/255; its float ones (CUDA's arithmetic) do not clamp between the horizontal and the
    vertical pass as Pillow does: on this noise (the worst case for bicubic overshoot) a few
    pixels differ by up to ~20/255, the mean by under 0.5/255."""
    stored = np.random.default_rng(0).integers(0, 256, (3, 120, 90), dtype=np.uint8)
    for top, left, height, width in ((10, 5, 100, 70), (40, 30, 30, 20)):  # down, up
        crop = torch.from_numpy(stored[:, top:top + height, left:left + width].copy())
        pil = Image.fromarray(crop.permute(1, 2, 0).numpy()).resize(
            (160, 120), Image.Resampling.BICUBIC)
        theirs = torch.from_numpy(np.asarray(pil).transpose(2, 0, 1).astype(np.float32))
        in_uint8 = image_cache.resize_crop(crop, (120, 160), "bicubic")
        in_float = image_cache.resize_crop(crop.float(), (120, 160), "bicubic")
        assert in_uint8.dtype == torch.uint8 and in_uint8.shape == (3, 120, 160)
        assert (in_uint8.float() - theirs).abs().max() <= 1
        assert (in_float.clamp(0, 255).round() - theirs).abs().mean() < 0.5


def prepared_and_hp(tmp_path, **hparams):
    config = search_config(tmp_path, resources={"cpu": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = image.prepare(config)
    return config, prepared, parse_hparams({"batch_size": 3, **hparams}, "image")


def epoch_pixels(batches, seed: int, epoch: int, batch_size: int = 3):
    pairs = list(batches.train(image.epoch_generator(seed, epoch), batch_size))
    return (torch.cat([b["pixel_values"] for b, _ in pairs]),
            torch.cat([labels for _, labels in pairs]))


def test_cached_augmentation_is_deterministic_for_a_seed_and_differs_by_epoch(tmp_path):
    _, prepared, _ = prepared_and_hp(tmp_path)
    batches = image_cache.CachedBatches(prepared.cache, torch.device("cpu"))
    first, labels = epoch_pixels(batches, 7, 0)
    again, labels_again = epoch_pixels(batches, 7, 0)
    assert first.shape == (8, 3, 160, 160) and first.dtype == torch.float32
    assert torch.equal(first, again) and torch.equal(labels, labels_again)
    assert sorted(labels.tolist()) == sorted(label for _, label in prepared.train)
    assert not torch.equal(first, epoch_pixels(batches, 7, 1)[0])
    assert not torch.equal(first, epoch_pixels(batches, 8, 0)[0])
    mean = torch.tensor(prepared.cache.augment.mean).view(1, 3, 1, 1)
    std = torch.tensor(prepared.cache.augment.std).view(1, 3, 1, 1)
    assert ((first * std + mean).amin() >= -1e-5) and ((first * std + mean).amax() <= 1 + 1e-5)


def test_streaming_augmentation_depends_on_the_seed_only_not_on_workers(tmp_path):
    _, prepared, _ = prepared_and_hp(tmp_path)
    config = data_config()
    train, evaluation = create_transform(**config, is_training=True), create_transform(**config)
    inline = image.Streaming(prepared, train, evaluation, workers=0, pin_memory=False)
    first, labels = epoch_pixels(inline, 7, 0)
    assert torch.equal(first, epoch_pixels(inline, 7, 0)[0])
    assert not torch.equal(first, epoch_pixels(inline, 7, 1)[0])
    pooled = image.Streaming(prepared, train, evaluation, workers=1, pin_memory=False)
    assert pooled.loader.persistent_workers
    for epoch in (0, 1):  # the same worker process serves both epochs
        pixels, pooled_labels = epoch_pixels(pooled, 7, epoch)
        expected = epoch_pixels(inline, 7, epoch)
        assert torch.equal(pixels, expected[0]) and torch.equal(pooled_labels, expected[1])
    evaluated = torch.cat([b["pixel_values"] for b, _ in pooled.eval(3)])
    assert torch.equal(evaluated, torch.stack(
        [evaluation(images.load_rgb(path)) for path, _ in prepared.eval]))


def test_loader_workers_follow_the_trials_cpus_on_cuda_only():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [image.loader_workers(n, cuda) for n in (1, 1.5, 2, 8)] == [0, 0, 1, 7]
    assert [image.loader_workers(n, cpu) for n in (1, 2, 8)] == [0, 0, 0]


def test_prepare_caches_within_the_budget_and_says_so(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="trainables.image.trainable"):
        _, prepared, _ = prepared_and_hp(tmp_path)
    assert prepared.cache is not None
    assert prepared.cache.train.shape == (8, 3, 218, 218)  # 160 / sqrt(0.54), rounded up
    assert prepared.cache.eval.shape == (4, 3, 160, 160)
    assert len(prepared.train) == 8 and len(prepared.eval) == 4
    notes = [r.getMessage() for r in caplog.records if r.name == "trainables.image.trainable"]
    assert notes == ["images: decoded once: 8 training images at 218x218, 4 evaluation images "
                     "at 160x160, 1 MiB of a 2.0 GiB budget; the trials augment them on their "
                     "device"]
    # what Ray's object store hands a trial: the arrays read-only, no copy, no warning
    shipped = pickle.loads(pickle.dumps(prepared))
    for array in (shipped.cache.train, shipped.cache.eval):
        array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batches = image_cache.CachedBatches(shipped.cache, torch.device("cpu"))
        assert len(list(batches.train(image.epoch_generator(0, 0), 4))) == 2


def test_a_budget_of_zero_streams_the_files_and_says_so(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(image_cache, "BUDGET_BYTES", 0)
    with caplog.at_level(logging.INFO, logger="trainables.image.trainable"):
        config, prepared, _ = prepared_and_hp(tmp_path)
    assert prepared.cache is None and len(prepared.train) == 8
    notes = [r.getMessage() for r in caplog.records if r.name == "trainables.image.trainable"]
    assert notes == ["images: not cached (decoded, the images would take 1 MiB, over the "
                     "0 MiB budget); the trials stream the image files (DataLoader workers "
                     "per trial: 1 on CUDA, none on CPU)"]
    reporter = ListReporter()
    final = image.fit(config, prepared, {"num_epochs": 1, "batch_size": 4}, reporter)
    assert [m["epoch"] for m in reporter.reports] == [0] and 0 <= final["eval_accuracy"] <= 1


def test_the_cached_path_trains_and_its_model_reloads(tmp_path):
    config, prepared, _ = prepared_and_hp(tmp_path)
    assert prepared.cache is not None
    reporter = ListReporter()
    final = image.fit(config, prepared, {"num_epochs": 2, "batch_size": 4, "frz_blocks": 1},
                      reporter)
    assert [m["epoch"] for m in reporter.reports] == [0, 1]
    assert math.isfinite(final["train_loss"]) and 0 <= final["eval_accuracy"] <= 1
    image.save_model(prepared, reporter.states[-1]["model"], tmp_path)
    model, saved = image.load_saved_model(tmp_path)
    assert saved.classes == ["ants", "bees"]
    assert model(torch.zeros(1, 3, 160, 160)).shape == (1, 2)


def test_both_paths_train_the_same_steps_and_resume_alike(tmp_path):
    """The task's epochs are deterministic: a second build gives the same first batch."""
    _, prepared, hp = prepared_and_hp(tmp_path)
    for data in (prepared, dataclasses.replace(prepared, cache=None)):
        tasks = [image.make_job(data, hp)(CPU) for _ in range(2)]
        first = [next(iter(task.train_batches(1))) for task in tasks]
        assert torch.equal(first[0][0]["pixel_values"], first[1][0]["pixel_values"])
        assert torch.equal(first[0][1], first[1][1])
        assert tasks[0].steps_per_epoch == 3


def test_corrupt_images_stay_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "train")
    (root / "ants" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "bees" / "empty.png").write_bytes(b"")
    config = config_from_mapping(
        {"name": "c", "trainable": "image", "model": MODEL, "pretrained": False,
         "data": {"train": str(root), "eval": str(make_folder(tmp_path / "val", 2))}}, tmp_path)
    with pytest.warns(UserWarning, match=r"data.train: skipped 2 of 10 image files") as caught:
        prepared = image.prepare(config)
    assert len([w for w in caught if "skipped" in str(w.message)]) == 1
    assert prepared.cache.train.shape[0] == len(prepared.train) == 8
    # a file that vanished (or fails a full decode) after the scan: skipped, counted, once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scan's warning, tested above
        items = items_of(root) + [(str(root / "ants" / "gone.jpg"), 0)]
    with pytest.warns(UserWarning, match=r"data.train: skipped 1 of 9 image files that cannot "
                                         r"be decoded in full \(first: gone.jpg\)"):
        built = image_cache.build(data_config(), items, items[:2])
    assert built.train == items[:-1] and built.cache.train.shape[0] == 8
    assert built.cache.train_labels.tolist() == [label for _, label in items[:-1]]
    with pytest.warns(UserWarning, match="data.eval: skipped 1 of 1"), pytest.raises(
            InputError, match=r"data.eval: none of the 1 image files can be decoded in full"):
        image_cache.build(data_config(), items[:2], items[-1:])


def _by_worker(batches, workers: int, batch_size: int = 3) -> list[list]:
    """Each worker's rows of each training batch of one epoch (None: a worker without rows)."""
    return [list(batches.train(image.epoch_generator(7, 0), batch_size, Workers(rank, workers)))
            for rank in range(workers)]


@pytest.mark.parametrize("kind", ["cached", "streaming"])
def test_data_parallel_workers_get_the_single_workers_images_between_them(tmp_path, kind):
    """Each of 2 workers gets every other row of each batch, augmented exactly as one worker
    would (the crops of a batch are drawn whole); with 3 workers and 8 images the last batch
    of 2 leaves the third worker without rows."""
    _, prepared, _ = prepared_and_hp(tmp_path)
    if kind == "cached":
        batches = image_cache.CachedBatches(prepared.cache, torch.device("cpu"))
    else:
        config = data_config()
        batches = image.Streaming(prepared, create_transform(**config, is_training=True),
                                  create_transform(**config), workers=0, pin_memory=False)
    (single,) = _by_worker(batches, 1)
    for count in (2, 3):
        shares = _by_worker(batches, count)
        for step, whole in enumerate(single):
            for rank in range(count):
                part = shares[rank][step]
                rows = list(range(rank, len(whole[1]), count))
                if not rows:
                    assert part is None
                    continue
                assert torch.equal(part[0]["pixel_values"], whole[0]["pixel_values"][rows])
                assert torch.equal(part[1], whole[1][rows])
    assert shares[2][-1] is None
    evaluated = [[labels for _, labels in batches.eval(3, Workers(rank, 2))] for rank in (0, 1)]
    whole = -(-len(prepared.eval) // 3)
    assert whole >= 2 and [len(share) for share in evaluated] == [-(-whole // 2), whole // 2]
