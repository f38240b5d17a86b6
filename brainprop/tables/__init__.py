"""The paper's tables: its results as data, running a table over seeds (locally or
on SLURM), and the report that sets the runs beside the paper.
"""

from brainprop.utils.exports import lazy_exports

__getattr__, __all__ = lazy_exports(__name__, {
    "PAPER_RESULTS": "paper",
    "TABLES": "paper",
    "write_report": "report",
    "load_runs": "report",
    "class_discovery_figure": "report",
})
