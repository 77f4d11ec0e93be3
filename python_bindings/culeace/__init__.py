"""culeace — LEACE concept erasure and linear probes over activations, in
Python over the C library (numpy arrays and torch tensors, zero-copy).

    from culeace import LeaceFitter, LeaceEraser   # concept-erasure's API
    eraser = LeaceEraser.fit(x, z)
    eraser.apply_(hidden)                          # in place, no copy
    with culeace.erase(model, {"encoder.layer.3": eraser}):
        model(**batch)                             # erased at inference time
"""

from ._native import (CuleaceError, backends_compiled, blas_kernel,
                      library_path, version)
from ._context import cuda_available
from .leace import LeaceEraser, LeaceFitter
from .oracle import OracleEraser, OracleFitter
from .quadratic import QuadraticEraser, QuadraticFitter
from .iterative import fit_inlp, fit_rlace
from .files import load_erasers, save_erasers
from .hooks import ErasureHooks, attach, erase
from .probe import probe_layers
from .probe_results import ProbeResults
from .record import record

__version__ = version()

__all__ = ["LeaceEraser", "LeaceFitter", "OracleEraser", "OracleFitter",
           "QuadraticEraser", "QuadraticFitter", "fit_inlp", "fit_rlace",
           "load_erasers", "save_erasers",
           "ErasureHooks", "attach", "erase", "record", "probe_layers",
           "ProbeResults", "CuleaceError", "backends_compiled", "blas_kernel",
           "cuda_available", "library_path", "version"]
