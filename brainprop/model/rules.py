"""Every learning rule the project trains, declared once: `Rule` and `RULES`.

The command line's choices, the model class and the loss a network is compiled
with, the exploration rate a run records, what its plots call the training
accuracy and the report's colours are all read from here; no other module names
a rule.  A new rule is its module (a `keras.Model` subclass, as
`brainprop.model.attention_gated`, or the loss of a plain model, as
`brainprop.model.backprop`) and one `register(Rule(...))`.

No Keras here: the command line lists and checks the rules before a backend starts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable

from brainprop.model.feedback import DEFAULT_FEEDBACK, FeedbackKind
from brainprop.utils.errors import BrainPropError

if TYPE_CHECKING:
    import keras

# BrainProp's probability of exploring instead of choosing the greedy class: the
# epsilon of its Max-Boltzmann controller (Section 2 of the paper; 0.02 in the release).
EPSILON = 0.02


@dataclasses.dataclass(frozen=True)
class Rule:
    """A learning rule, as the rest of the project sees it.

    `model` makes the uncompiled model of a network whose linear outputs are `outputs`:
    `model(inputs, outputs, name=, seed=, batch_size=, epsilon=)` (`seed` seeds the
    rule's own draws, `batch_size` is the configured batch size, `epsilon` this rule's).
    `loss` and `accuracy` make what `compile` gets: None where the model computes its
    own loss and logs its own "accuracy" (as `BrainProp` does).  Each is a function or
    the `"module:name"` of one (`brainprop.utils.exports.resolve`), imported only when a
    network is built: declaring a rule starts no backend.
    """

    name: str  # the command line's word, and part of every file name of a run
    model: Callable[..., keras.Model] | str
    loss: Callable[[], Any] | str | None = None
    accuracy: Callable[[], Any] | str | None = None  # the metric logged as "accuracy"
    training_accuracy: str = "training"  # what the logged training accuracy measures
    epsilon: float | None = None  # the probability of exploring; None: never explores
    # Learns the classes one at a time from a plateau at chance (Section 3 of the
    # paper): training explains that plateau, and the report's class-discovery figure
    # shows such a rule's run.
    discovers_classes: bool = False
    color: str | None = None  # in the report's figures; None: matplotlib's next colour
    # What the weight layers send the learning signal down through: a kind of
    # `brainprop.model.feedback` (`--feedback`); the paper's, "symmetric", is W itself.
    feedback: str | FeedbackKind = DEFAULT_FEEDBACK


RULES: dict[str, Rule] = {}


def register(rule: Rule) -> Rule:
    """Add `rule` to `RULES` (after those already there: the report's order)."""
    if rule.name in RULES:
        raise ValueError(f"a rule named {rule.name!r} is already registered")
    RULES[rule.name] = rule
    return rule


def get_rule(name: str) -> Rule:
    """The rule called `name`; BrainPropError naming the rules there are otherwise."""
    try:
        return RULES[name]
    except KeyError:
        raise BrainPropError(
            f"unknown algorithm {name!r}: choose {' or '.join(RULES)}"
        ) from None


register(Rule(
    "BrainProp", "brainprop.model.attention_gated:BrainProp",
    training_accuracy="training (reward rate)", epsilon=EPSILON, discovers_classes=True,
    color="tab:red",
))
register(Rule(
    "EBP", "brainprop.model.backprop:logits_model", loss="brainprop.model.backprop:loss",
    accuracy="brainprop.model.backprop:accuracy", color="tab:blue",
))
