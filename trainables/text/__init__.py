"""The text trainable (:mod:`trainables.text.trainable`) and its data: labelled tables
(:mod:`~trainables.text.tables`), tagged sentences (:mod:`~trainables.text.sequences`) and
tokenised examples in flat arrays (:mod:`~trainables.text.tokens`)."""
