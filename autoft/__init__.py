"""autoft: hyperparameter search for fine-tuning pretrained PyTorch models.

A Ray Tune driver asks Optuna for trials, runs each trial (a PyTorch fine-tune of a transformers
or timm model with the ULMFiT strategies of :mod:`autoft.finetune`) and logs every trial to MLflow.
"""

__version__ = "0.1.0"
