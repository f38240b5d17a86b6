"""The learning rules: BrainProp (`brainprop.model.brainprop`, Section 2 of the paper),
every rule the project trains, declared once (`brainprop.model.rules`), and any Keras
classifier as a BrainProp model (`brainprop.model.convert`).
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BrainProp": "brainprop",
    "select_action": "brainprop",
    "reward_for": "brainprop",
    "brainprop_loss": "brainprop",
    "to_brainprop": "convert",
    "DenseLogits": "convert",
    "EPSILON": "rules",
    "Rule": "rules",
    "RULES": "rules",
    "register": "rules",
    "get_rule": "rules",
})
