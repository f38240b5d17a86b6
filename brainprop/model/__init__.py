"""The learning rules: BrainProp (`brainprop.model.brainprop`, Section 2 of the paper)
and every rule the project trains, declared once (`brainprop.model.rules`).
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BrainProp": "brainprop",
    "select_action": "brainprop",
    "reward_for": "brainprop",
    "brainprop_loss": "brainprop",
    "EPSILON": "rules",
    "Rule": "rules",
    "RULES": "rules",
    "register": "rules",
    "get_rule": "rules",
})
