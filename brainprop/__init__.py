"""BrainProp: reward-based error backpropagation (Pozzi, Bohte & Roelfsema, NeurIPS 2020)."""

__version__ = "1.0.0"
