"""A restricted unpickler for SMPL-family model files (Python-2 pickles holding chumpy objects).

The official SMPL / SMAL / MANO `.pkl` files store some arrays as `chumpy.Ch` objects (or a chumpy
`Select` view of one) and the joint regressor as a `scipy.sparse.csc_matrix` under a module path that
depends on the scipy version that wrote it. Unpickling them normally needs chumpy (unmaintained) and
executes whatever callables the file names. `load_chumpy_safe` instead:

  * resolves only an allow-list of globals: numpy's array/dtype/scalar reconstructors, a few inert
    builtins, `copyreg` helpers and `_codecs.encode` (how protocol-2 pickles spell `bytes`);
  * maps every `chumpy.*` class to a plain stub that keeps the pickled state (`Ch` keeps its value
    array in `x`; `Select` keeps `a`, `idxs`, `preferred_shape`), and every scipy.sparse matrix
    class (old `scipy.sparse.csc` or new `scipy.sparse._csc` paths, csr/coo alike) to a stub keeping
    its component arrays;
  * refuses anything else with `UnsafePickleError` naming the `module.name` it asked for;
  * then converts the stubs back into plain NumPy / scipy.sparse objects (`resolve_pickled`).

Python-2 pickles are read with `encoding="latin1"` (how NumPy's byte buffers survive the str/bytes
split).
"""

from __future__ import annotations

import builtins
import codecs
import copyreg
import io
import os
import pathlib
import pickle
from typing import Any

import numpy as np
import scipy.sparse
from numpy._core import multiarray, numeric


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle asked for a global outside the allow-list (it could execute arbitrary code)."""


class ChumpyArrayStub:
    """Stand-in for `chumpy.Ch` and any other chumpy class: keeps the pickled state dictionary."""

    chumpy_class = "chumpy.ch.Ch"

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], dict):
            state = {**state[0], **(state[1] or {})}  # (dict, slots) form
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.chumpy_class}: unexpected pickled state of type {type(state).__name__}")
        self.state = state

    def to_array(self) -> np.ndarray:
        if "x" not in self.state:
            raise ValueError(
                f"cannot turn a pickled {self.chumpy_class} into an array: it holds no value array 'x' "
                f"(state keys: {sorted(self.state)}); only plain Ch and Select objects are supported"
            )
        return np.asarray(resolve_pickled(self.state["x"]))


class ChumpySelectStub(ChumpyArrayStub):
    """Stand-in for `chumpy.reordering.Select`: `a.ravel()[idxs]` reshaped to `preferred_shape`."""

    chumpy_class = "chumpy.reordering.Select"

    def to_array(self) -> np.ndarray:
        missing = [k for k in ("a", "idxs") if k not in self.state]
        if missing:
            raise ValueError(f"pickled chumpy Select lacks {missing} (state keys: {sorted(self.state)})")
        source = np.asarray(resolve_pickled(self.state["a"]))
        idxs = np.asarray(resolve_pickled(self.state["idxs"])).reshape(-1)
        selected = source.ravel()[idxs]
        shape = self.state.get("preferred_shape")
        return selected if shape is None else selected.reshape(tuple(int(s) for s in shape))


class SparseMatrixStub:
    """Stand-in for a pickled scipy.sparse matrix (csc, csr or coo); rebuilt by `to_scipy`."""

    sparse_format = "csc"

    def __init__(self, *args, **kwargs):
        self.state: dict = {}

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"sparse {self.sparse_format} matrix: unexpected pickled state {type(state).__name__}")
        self.state = state

    def to_scipy(self):
        st = self.state
        shape = st.get("_shape", st.get("shape"))
        if shape is None:
            raise ValueError(f"pickled sparse {self.sparse_format} matrix has no shape (state keys: {sorted(st)})")
        shape = tuple(int(s) for s in shape)
        try:
            if self.sparse_format == "coo":
                coords = st.get("coords")
                row, col = (coords if coords is not None else (st["row"], st["col"]))
                return scipy.sparse.coo_matrix((st["data"], (row, col)), shape=shape)
            cls = scipy.sparse.csc_matrix if self.sparse_format == "csc" else scipy.sparse.csr_matrix
            return cls((st["data"], st["indices"], st["indptr"]), shape=shape)
        except KeyError as exc:
            raise ValueError(f"pickled sparse {self.sparse_format} matrix lacks component {exc}") from None


def _sparse_stub(fmt: str) -> type:
    return type(f"Sparse{fmt.capitalize()}Stub", (SparseMatrixStub,), {"sparse_format": fmt})


_SPARSE_STUBS = {f"{fmt}_matrix": _sparse_stub(fmt) for fmt in ("csc", "csr", "coo")}
_SPARSE_MODULES = {"scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr",
                   "scipy.sparse._csr", "scipy.sparse.coo", "scipy.sparse._coo", "scipy.sparse.compressed",
                   "scipy.sparse._compressed", "scipy.sparse.base", "scipy.sparse._base"}


def _numpy_core(name: str):
    return getattr(multiarray, name)


def _numpy_frombuffer():
    return numeric._frombuffer


_SAFE_BUILTINS = ("object", "set", "frozenset", "slice", "complex", "list", "dict", "tuple", "bytearray",
                  "bytes", "int", "float", "str", "bool", "range")

# (module, name) -> zero-argument factory of the object to hand to the unpickler.
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(mod, "_reconstruct"): (lambda: _numpy_core("_reconstruct")) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "scalar"): (lambda: _numpy_core("scalar")) for mod in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(mod, "_frombuffer"): _numpy_frombuffer for mod in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy", "bool_"): lambda: np.bool_,
    ("copyreg", "_reconstructor"): lambda: copyreg._reconstructor,
    ("copy_reg", "_reconstructor"): lambda: copyreg._reconstructor,
    ("copyreg", "__newobj__"): lambda: copyreg.__newobj__,
    ("_codecs", "encode"): lambda: codecs.encode,
    **{(mod, name): (lambda name=name: getattr(builtins, name)) for mod in ("builtins", "__builtin__") for name in _SAFE_BUILTINS},
}


class ChumpySafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only resolves allow-listed globals (see module docstring)."""

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpySelectStub if name == "Select" else type(
                f"Chumpy{name}Stub", (ChumpyArrayStub,), {"chumpy_class": f"{module}.{name}"}
            )
        if module in _SPARSE_MODULES and name in _SPARSE_STUBS:
            return _SPARSE_STUBS[name]
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]()
        if module.startswith("numpy.dtypes") and name.endswith("DType"):
            return getattr(np.dtypes, name)
        raise UnsafePickleError(
            f"refusing to unpickle global {module}.{name}: not on the allow-list of this loader "
            "(numpy arrays/dtypes, scipy.sparse matrices, chumpy arrays and inert builtins only)"
        )


def resolve_pickled(obj):
    """Replace chumpy stubs by NumPy arrays and sparse stubs by scipy.sparse matrices, recursively."""
    if isinstance(obj, ChumpyArrayStub):
        return obj.to_array()
    if isinstance(obj, SparseMatrixStub):
        return obj.to_scipy()
    if isinstance(obj, dict):
        return {key: resolve_pickled(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [resolve_pickled(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(resolve_pickled(value) for value in obj)
    return obj


def loads_chumpy_safe(data: bytes):
    """Unpickle `data` with the allow-list, then resolve stubs (see `resolve_pickled`)."""
    return resolve_pickled(ChumpySafeUnpickler(io.BytesIO(data), encoding="latin1").load())


def load_chumpy_safe(path: str | os.PathLike):
    """Read a (Python-2 or -3) pickle file safely. Errors name the file.

    Raises FileNotFoundError if it does not exist, UnsafePickleError (a ValueError) for a global
    outside the allow-list, ValueError for a truncated or corrupt pickle.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    data = path.read_bytes()
    try:
        return loads_chumpy_safe(data)
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{path}: {exc}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable model pickle ({type(exc).__name__}: {exc})") from exc
