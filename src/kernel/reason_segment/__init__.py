"""Reason Segment in Jupyter: the ``%%segment`` cell magic (``%load_ext reason_segment``).

Runs LISA-style reasoning segmentation through the Reason Segment inference host (a Node.js child process of the
kernel) and shows the answer and masks in the cell. Python stdlib + IPython only; numpy is used when present.
"""

from .result import RESULT_MIME, SegmentResult

__version__ = "0.1.0"
__all__ = ["load_ipython_extension", "unload_ipython_extension", "SegmentResult", "RESULT_MIME", "__version__"]


def load_ipython_extension(ipython) -> None:
    from .magic import SegmentMagics, register_comm_target

    ipython.register_magics(SegmentMagics)
    register_comm_target(ipython)


def unload_ipython_extension(ipython) -> None:
    from .magic import session

    session().stop()
