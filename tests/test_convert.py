"""to_brainprop: any Keras classifier, softmax head or logits, as a BrainProp model in one call."""

import re

import keras
import numpy as np
import pytest
from keras import ops

from brainprop.model import BrainProp, to_brainprop
from brainprop.utils.errors import BrainPropError

N_CLASSES = 5
BATCH = 8


def softmax_classifier(seed=3, head="dense"):
    """An ordinary Keras classifier, its softmax in the last Dense layer (of its own or of a
    nested model) or after it."""
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(0.0, 0.3)
    layers = [
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu", kernel_initializer=init),
        keras.layers.BatchNormalization(),
        keras.layers.Flatten(),
        keras.layers.Dense(6, activation="tanh", kernel_initializer=init),
    ]
    if head == "dense":
        layers.append(keras.layers.Dense(N_CLASSES, "softmax", kernel_initializer=init))
    elif head == "nested Sequential":
        layers.append(keras.Sequential([
            keras.Input((6,)), keras.layers.Dense(N_CLASSES, "softmax", kernel_initializer=init)
        ]))
    elif head == "nested functional":
        features = keras.Input((6,))
        layers.append(keras.Model(features, keras.layers.Softmax()(
            keras.layers.Dense(N_CLASSES, kernel_initializer=init)(features))))
    else:
        layers.append(keras.layers.Dense(N_CLASSES, kernel_initializer=init))
        layers.append({"softmax": keras.layers.Softmax(),
                       "activation": keras.layers.Activation("softmax"),
                       "logits": keras.layers.Identity()}[head])
    return keras.Sequential(layers)


def converted_classifier(seed=3):
    return to_brainprop(softmax_classifier(seed), seed=seed)


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 6, 6, 2)).astype("float32")
    return x, rng.integers(0, N_CLASSES, BATCH).astype("int32")


HEADS = ["dense", "softmax", "activation", "nested Sequential", "nested functional", "logits"]


@pytest.mark.parametrize("head", HEADS)
def test_converted_classifier_outputs_the_logits_with_the_classifiers_own_weights(head, batch):
    x, _ = batch
    classifier = softmax_classifier(head=head)
    model = to_brainprop(classifier, batch_size=16)
    assert isinstance(model, BrainProp) and model.batch_size == 16
    assert model.output_shape == (None, N_CLASSES)
    assert len(model.weights) == len(classifier.weights)
    assert all(ours is theirs for ours, theirs in zip(model.weights, classifier.weights, strict=True))
    q = ops.convert_to_numpy(model(x))
    probabilities = ops.convert_to_numpy(classifier(x))
    if head == "logits":
        np.testing.assert_allclose(q, probabilities, rtol=1e-6)
    else:
        softmax = np.exp(q) / np.exp(q).sum(axis=-1, keepdims=True)
        np.testing.assert_allclose(softmax, probabilities, rtol=1e-5, atol=1e-7)
        assert np.abs(q.sum(axis=-1) - 1).max() > 1e-2  # not probabilities


def test_training_the_converted_model_trains_the_classifier(batch):
    x, labels = batch
    classifier = softmax_classifier()
    model = to_brainprop(classifier, batch_size=BATCH, seed=1)
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    before = [ops.convert_to_numpy(w) for w in classifier.trainable_weights]
    model.fit(x, labels, batch_size=BATCH, epochs=3, verbose=0)
    after = [ops.convert_to_numpy(w) for w in classifier.trainable_weights]
    assert all(np.abs(a - b).max() > 0 for a, b in zip(after, before, strict=True))
    np.testing.assert_array_equal(np.argmax(model.predict(x, verbose=0), axis=-1),
                                  np.argmax(classifier.predict(x, verbose=0), axis=-1))


def test_converted_model_weights_round_trip_through_a_weights_file(batch, tmp_path):
    x, _ = batch
    model = converted_classifier()
    expected = ops.convert_to_numpy(model(x))
    model.save_weights(tmp_path / "converted.weights.h5")
    other = converted_classifier(seed=4)
    assert np.abs(ops.convert_to_numpy(other(x)) - expected).max() > 1e-3
    other.load_weights(tmp_path / "converted.weights.h5")
    np.testing.assert_array_equal(ops.convert_to_numpy(other(x)), expected)


class Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(N_CLASSES, activation="softmax")

    def call(self, x):
        return self.dense(x)


def two_outputs():
    inputs = keras.Input((4,))
    return keras.Model(inputs, [keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)])


NOT_CLASSIFIERS = {
    "subclassed": (Subclassed, "no graph of layers"),
    "unbuilt": (lambda: keras.Sequential([keras.layers.Dense(3)]), "no graph of layers"),
    "two outputs": (two_outputs, "has 2 outputs"),
    "sequence output": (lambda: keras.Sequential([keras.Input((7, 4)), keras.layers.Dense(3)]),
                        "shape (None, 7, 3), not (batch, classes)"),
    "one class": (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)]),
                  "not (batch, classes)"),
    "sigmoid": (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, "sigmoid")]),
                "applies sigmoid"),
    "relu after": (lambda: keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                             keras.layers.Activation("relu")]), "applies relu"),
    "softmax over time": (
        lambda: keras.Sequential([keras.Input((7, 4)), keras.layers.Dense(3),
                                  keras.layers.Softmax(axis=1)]), "normalises axis 1"),
}


@pytest.mark.parametrize("kind", NOT_CLASSIFIERS)
def test_a_model_that_is_not_a_classifier_is_refused_in_one_line(kind):
    build, message = NOT_CLASSIFIERS[kind]
    with pytest.raises(BrainPropError, match=re.escape(message)) as refused:
        to_brainprop(build())
    assert "\n" not in str(refused.value)
