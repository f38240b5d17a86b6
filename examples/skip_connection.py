"""BrainProp on a network that none of the paper's builders makes: a residual block.

    python examples/skip_connection.py

The data are made here, no download: 16x16 noise images with a bright bar in one of
six bands, the band being the class.  Each epoch prints the reward rate (the logged
"accuracy" of training), the validation accuracy and the accuracy of each class; at the
end the class-discovery plot goes to class_discovery.png.
"""

# Before Keras: its backend and PyTorch's threads set as the command line sets them.
import brainprop  # noqa: F401

# isort: split
import keras
import numpy as np

from brainprop.model import BrainProp
from brainprop.nets.metrics import ClassAccuracy
from brainprop.tables.report import class_discovery_figure

N_CLASSES = 6


def bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise images, each with a bright two-row bar in the band of its class (rows 1-2: 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, N_CLASSES, n)
    images = rng.uniform(0, 0.6, (n, 16, 16, 1)).astype("float32")
    images[np.arange(n)[:, None], 1 + 2 * labels[:, None] + np.arange(2)] += 0.4
    return images, labels


def main(epochs: int = 10, plot: str = "class_discovery.png") -> keras.callbacks.History:
    keras.utils.set_random_seed(1)
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    y = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = keras.layers.Conv2D(8, 3, padding="same")(y)
    x = keras.layers.ReLU()(keras.layers.Add()([x, y]))  # the skip connection
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(4)(x))
    q_values = keras.layers.Dense(N_CLASSES)(x)  # linear: one Q value per class
    model = BrainProp(inputs, q_values, batch_size=32)
    model.compile(optimizer=keras.optimizers.SGD(0.1), metrics=[ClassAccuracy(N_CLASSES)])
    history = model.fit(*bars(1024, seed=0), batch_size=32, epochs=epochs,
                        validation_data=bars(256, seed=1), verbose=2)
    class_discovery_figure(history).savefig(plot)
    return history


if __name__ == "__main__":
    main()
