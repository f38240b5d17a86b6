"""The shared plumbing: errors and exit statuses, atomic writes, locks, signals,
safe pickles, starting a backend, device placement, plotting.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "BrainPropError": "errors",
    "Parser": "errors",
    "run_command": "errors",
    "one_line": "errors",
    "plural": "errors",
    "write_atomically": "atomic",
    "exclusive": "locks",
    "stop_signals": "signals",
    "raise_if_stopped": "signals",
    "mean_std": "stats",
})
