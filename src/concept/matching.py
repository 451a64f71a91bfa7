"""Which images match which texts, as zero-shot names, seed lists and text search ask.

A model trained with a sigmoid loss (SigLIP, SigLIP 2: an embedder whose `is_sigmoid` is true)
scores every image-text pair as a probability on its own: `text_image_probability(cos)` =
sigmoid(scale * cos + bias) of the raw cosine of the unit vectors, with the model's trained
scale and bias. Those probabilities are used as they are: a text matches an image when it is
the image's most probable text and its probability is at least SIGMOID_MATCH. Every other
model (CLIP, the offline model, a user's object) only ranks texts for an image, so its
matches are calibrated on the collection instead (`concept.editing.calibrated_matches`:
both modalities centred, each text's threshold set by the images that prefer other texts).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from concept.embedding.base import l2_normalize

__all__ = ["SIGMOID_MATCH", "model_probability", "text_image_matches"]

#: A sigmoid-trained model's probability at which a text matches an image: 0.5, where the
#: model's own pair logit is 0 (it was trained to put matching pairs above, the others below).
SIGMOID_MATCH = 0.5


def model_probability(embedder: Any) -> Callable[[np.ndarray], np.ndarray] | None:
    """The embedder's own image-text probability of a raw cosine (`text_image_probability`)
    when it was trained with a sigmoid loss (`is_sigmoid`: SigLIP), else None."""
    return embedder.text_image_probability if getattr(embedder, "is_sigmoid", False) else None


def text_image_matches(images: np.ndarray, texts: np.ndarray, z: float, embedder: Any = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """For each image, the text it matches (-1: none) and its score. With a sigmoid-trained
    `embedder` the score is the model's probability of the image's most probable text (from
    the cosine of the unit vectors, nothing centred), a match at least SIGMOID_MATCH, and `z`
    is not used; otherwise `calibrated_matches(images, texts, z)` (z in robust SDs)."""
    probability = model_probability(embedder)
    if probability is None:
        from concept.editing import calibrated_matches

        return calibrated_matches(images, texts, z)
    probs = np.asarray(probability(l2_normalize(images) @ l2_normalize(texts).T), np.float64)
    best = np.argmax(probs, axis=1)
    score = probs[np.arange(len(probs)), best]
    return np.where(score >= SIGMOID_MATCH, best, -1), score
