"""Per-class accuracy, logged every epoch so the class "discovery" of BrainProp shows.

The paper (Section 3, Fig. 5) sees BrainProp find the classes one at a time.  The
overall validation accuracy only hints at that; the accuracy of each class shows it.

`ClassAccuracy` is registered with Keras' serialization (as `brainprop>ClassAccuracy`):
a model compiled with it saves and, once this module is imported, loads back with
`keras.models.load_model`.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="brainprop")
class ClassAccuracy(keras.metrics.Metric):
    """Accuracy of each class separately: argmax of the output against the label.

    Keeps two counters of shape (n_classes,), the examples of each class seen and
    those classified correctly, so it costs one one-hot sum per batch.  The result
    is a (n_classes,) vector; a class with no example yet reads 0.

    Example:
        >>> metric = ClassAccuracy(3)
        >>> metric.update_state([0, 1, 1], [[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.1, 0.7, 0.2]])
        >>> metric.result()  # [1.0, 0.5, 0.0]
    """

    def __init__(self, n_classes: int, name: str = "class_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.n_classes = int(n_classes)
        self.seen = self.add_variable(shape=(self.n_classes,), initializer="zeros", name="seen")
        self.correct = self.add_variable(
            shape=(self.n_classes,), initializer="zeros", name="correct"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        one_hot = ops.one_hot(labels, self.n_classes, dtype=self.dtype)
        hit = ops.cast(ops.equal(predicted, labels), self.dtype)
        self.seen.assign_add(ops.sum(one_hot, axis=0))
        self.correct.assign_add(ops.sum(one_hot * hit[:, None], axis=0))

    def result(self):
        return ops.divide_no_nan(self.correct.value, self.seen.value)

    def reset_state(self):
        for counter in (self.seen, self.correct):
            counter.assign(ops.zeros((self.n_classes,), dtype=self.dtype))

    def get_config(self) -> dict:
        return {**super().get_config(), "n_classes": self.n_classes}
