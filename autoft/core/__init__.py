"""autoft's bottom layer: the input error, the config and the search-space schema.

Pure Python and pydantic: no torch, Ray or MLflow, so every other layer (and a GPU machine that
has only torch) can import it.
"""
