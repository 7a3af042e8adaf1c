"""What ``autoft suggest`` measures: where a dataset's splits and columns are
(:mod:`~trainables.profile.locate`) and what the dataset is like for a model
(:mod:`~trainables.profile.probe`)."""
