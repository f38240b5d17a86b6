"""An existing Keras classifier, softmax head and all, trained with BrainProp after one call.

    python examples/convert_classifier.py

`to_brainprop` takes the classifier's logits (the inputs of its softmax) as the Q values
and shares every layer with it, so training the BrainProp model trains the classifier.
The data are made here, no download: points around one of five centres in 20 dimensions.
"""

# Before Keras: its backend and PyTorch's threads set as the command line sets them.
import brainprop  # noqa: F401

# isort: split
import keras
import numpy as np

from brainprop.model import to_brainprop
from brainprop.nets.metrics import ClassAccuracy

N_CLASSES = 5
CENTRES = np.random.default_rng(0).normal(0, 1, (N_CLASSES, 20))


def clusters(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered around the centre of their class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    return (CENTRES[labels] + rng.normal(0, 1, (n, 20))).astype("float32"), labels


def main(epochs: int = 5) -> tuple[keras.callbacks.History, float]:
    keras.utils.set_random_seed(1)
    classifier = keras.Sequential([  # the classifier you have
        keras.Input((20,)),
        keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(N_CLASSES, activation="softmax"),
    ])
    model = to_brainprop(classifier, batch_size=32)
    model.compile(optimizer=keras.optimizers.SGD(0.05), metrics=[ClassAccuracy(N_CLASSES)])
    x_test, y_test = clusters(1000, seed=1)
    history = model.fit(*clusters(4000, seed=0), batch_size=32, epochs=epochs,
                        validation_data=(x_test, y_test), verbose=2)
    # The classifier learned too: its softmax is that of the trained Q values.
    probabilities = classifier.predict(x_test, verbose=0)
    accuracy = float(np.mean(np.argmax(probabilities, axis=-1) == y_test))
    print(f"the classifier's own test accuracy: {accuracy:.3f}")
    return history, accuracy


if __name__ == "__main__":
    main()
