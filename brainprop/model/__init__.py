"""The learning rules: BrainProp (`brainprop.model.attention_gated`, Section 2 of the paper),
error backpropagation (`brainprop.model.backprop`), every rule the project trains, declared
once (`brainprop.model.rules`), any Keras classifier as a BrainProp model
(`brainprop.model.convert`), and what the weight layers send the learning signal down
through: every kind of feedback, declared once (`brainprop.model.feedback`), applied to
any weight layer (`brainprop.model.pathway`).
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BrainProp": "attention_gated",
    "select_action": "attention_gated",
    "reward_for": "attention_gated",
    "brainprop_loss": "attention_gated",
    "to_brainprop": "convert",
    "DenseLogits": "convert",
    "EPSILON": "rules",
    "Rule": "rules",
    "RULES": "rules",
    "register": "rules",
    "get_rule": "rules",
    "FEEDBACK": "feedback",
    "FeedbackKind": "feedback",
    "get_feedback": "feedback",
    "with_feedback": "pathway",
    "Pathway": "pathway",
})
