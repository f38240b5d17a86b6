"""Error backpropagation, the paper's baseline, as Keras trains any classifier.

The network's linear outputs are the logits of a softmax (the release's softmax layer had
no weights, so its files load unchanged, and the argmax is the same), trained with the
cross-entropy of the label, averaged over the batch (the release's
`categorical_crossentropy`).  The rule is declared in `brainprop.model.rules`.
"""

from __future__ import annotations

import keras


def logits_model(inputs, outputs, *, name: str, **unused) -> keras.Model:
    """A plain functional model whose `outputs` are the logits; the rule's other settings
    (`seed`, `batch_size`, `epsilon`) change nothing here."""
    return keras.Model(inputs, outputs, name=name)


def loss() -> keras.losses.Loss:
    """The cross-entropy of the softmax of the logits.

    From the logits: probabilities clipped to [1e-7, 1 - 1e-7] (as Keras does on some
    backends) would give an example whose label is that unlikely no gradient.
    """
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy() -> keras.metrics.Metric:
    """The fraction of images whose largest logit is the label's, logged as "accuracy"."""
    return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
