"""BrainProp: reward-based error backpropagation (Pozzi, Bohte & Roelfsema, NeurIPS 2020).

Importing it, before Keras, settles Keras' backend as the command line does: with
`KERAS_BACKEND` unset and TensorFlow not installed, JAX, else PyTorch; and under PyTorch
its threads wait passively (`OMP_WAIT_POLICY=PASSIVE`) unless a policy is set
(`brainprop.utils.backend.settle_before_keras`; docs/python-api.md).  It imports no Keras.
"""

from brainprop.utils.backend import settle_before_keras

__version__ = "1.0.0"

settle_before_keras()
