"""Compatibility with other tools' files and commands (PaddleHub's ``hub autofinetune``)."""
