"""The image trainable (:mod:`trainables.image.trainable`) and its data: ImageFolder files
(:mod:`~trainables.image.files`), the decoded-image cache (:mod:`~trainables.image.cache`) and
local pretrained weights (:mod:`~trainables.image.weights`)."""
