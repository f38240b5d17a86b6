"""How a weight layer sends the learning signal down: every kind of feedback, declared once.

The paper's networks send the signal that arrives at a layer's output down through the
transpose of the layer's own weights W (weight transport).  Each kind below says instead
what the feedback weights B are: how B starts, and how it changes at each training step.
Whatever the kind, the forward pass and each layer's own update (the signal arriving at
its output times its input) are those of W; only what the layer passes down changes.
One mechanism applies any kind to any weight layer: `brainprop.model.pathway`.

No Keras here: the command line checks a kind before a backend starts.
"""

from __future__ import annotations

import dataclasses

from brainprop.utils.errors import BrainPropError

# Kolen-Pollack's weight decay: each step W and B both lose the learning rate times this
# of themselves (1e-4 of themselves a step at the networks' learning rate of 0.1), so that
# their difference shrinks by that factor every step (Akrout et al. 2019).
KOLEN_POLLACK_DECAY = 1e-3

# How B starts:
#   "tied"    B is W itself; nothing is stored, nothing changes (the paper's).
#   "random"  drawn once (seeded), normal with the spread of W's initial values.
#   "scale"   only a magnitude is stored: the mean |W| of W's initial values.
STARTS = ("tied", "random", "scale")
# How B changes at each step:
#   "tied"    B is W.
#   "fixed"   never.
#   "sign"    B is sign(W) times the stored magnitude, following W's signs every step.
#   "learned" with W's update: the same signal times the same input, W's regularizer,
#             and the weight decay `decay` on both W and B.
STEPS = ("tied", "fixed", "sign", "learned")


@dataclasses.dataclass(frozen=True)
class FeedbackKind:
    """One kind of feedback: what a weight layer sends the learning signal down through.

    `direct`: the signal arriving at the network's output reaches every weight layer's
    input through a matrix of that layer's own, shape (input units, classes), instead of
    coming down layer by layer; each layer then passes nothing down itself.
    `dataclasses.replace(FEEDBACK["kolen-pollack"], decay=1e-2)` is another decay.
    """

    name: str  # the command line's word
    start: str
    step: str
    direct: bool = False
    decay: float = 0.0
    reference: str = ""

    def __post_init__(self) -> None:
        if self.start not in STARTS or self.step not in STEPS:
            raise ValueError(f"feedback {self.name!r}: start must be one of {STARTS} and "
                             f"step one of {STEPS}; got {self.start!r}, {self.step!r}")

    @property
    def tied(self) -> bool:
        """Whether B is W: the network is built exactly as without feedback weights."""
        return self.start == "tied"

    @property
    def learned(self) -> bool:
        """Whether B learns (W's update, its own gradient): a trainable weight."""
        return self.step == "learned"


FEEDBACK: dict[str, FeedbackKind] = {kind.name: kind for kind in (
    FeedbackKind("symmetric", start="tied", step="tied",
                 reference="Pozzi, Bohte & Roelfsema 2020 (the paper)"),
    FeedbackKind("random", start="random", step="fixed",
                 reference="Lillicrap et al. 2016, feedback alignment"),
    FeedbackKind("sign", start="scale", step="sign",
                 reference="Liao, Leibo & Poggio 2016; Xiao et al. 2018, sign symmetry"),
    FeedbackKind("kolen-pollack", start="random", step="learned", decay=KOLEN_POLLACK_DECAY,
                 reference="Akrout et al. 2019, Kolen-Pollack"),
    FeedbackKind("direct", start="random", step="fixed", direct=True,
                 reference="Nøkland 2016, direct feedback alignment"),
)}

DEFAULT_FEEDBACK = "symmetric"

# What a network with feedback weights logs every epoch, per weight layer, in degrees
# (`brainprop.model.alignment`): `weight_angle/<layer>`, between W and B, and
# `update_angle/<layer>`, between the update made and exact backpropagation's.
WEIGHT_ANGLE = "weight_angle"
UPDATE_ANGLE = "update_angle"
ANGLES = (WEIGHT_ANGLE, UPDATE_ANGLE)


def get_feedback(kind: str | FeedbackKind) -> FeedbackKind:
    """The kind called `kind` (a `FeedbackKind` is returned as it is); BrainPropError
    naming the kinds there are otherwise."""
    if isinstance(kind, FeedbackKind):
        return kind
    try:
        return FEEDBACK[kind]
    except (KeyError, TypeError):
        raise BrainPropError(
            f"unknown feedback {kind!r}: choose {', '.join(FEEDBACK)}"
        ) from None
