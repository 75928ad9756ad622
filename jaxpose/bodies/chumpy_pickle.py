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
  * charges every allocation an allow-listed constructor is asked for (bytes, bytearray, str,
    containers, numpy arrays and scalars, `_codecs.encode`, which only accepts latin-1/ascii/utf-8)
    to a budget of 256 MiB + 8 bytes per pickle byte (`allocation_budget`) and refuses, before
    allocating, what goes beyond it (`bytearray(10**11)` in a 100-byte file);
  * turns every other failure while unpickling (truncation, unknown codecs, MemoryError, ...) into
    `MalformedPickleError` (a ValueError) naming the file;
  * then converts the stubs back into plain NumPy / scipy.sparse objects (`resolve_pickled`).

Python-2 pickles are read with `encoding="latin1"` (how NumPy's byte buffers survive the str/bytes
split).
"""

from __future__ import annotations

import builtins
import codecs
import copyreg
import io
import math
import os
import pathlib
import pickle
from typing import Any

import numpy as np
import scipy.sparse
from numpy._core import multiarray, numeric


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """The pickle asked for a global outside the allow-list (it could execute arbitrary code)."""


class MalformedPickleError(pickle.UnpicklingError, ValueError):
    """The pickle is truncated, corrupt, or asks to build something out of proportion to its size."""


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
        st = {key: resolve_pickled(value) for key, value in self.state.items()}
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


# ---------------------------------------------------------------------------------------------
# Allocation budget: every allow-listed constructor that can allocate memory out of proportion to
# the pickle's own size (bytearray(10**11), _reconstruct(ndarray, (10**11,), ...), list(range(...)),
# an object array's __setstate__, ...) is wrapped so that it first charges the bytes it is about to
# allocate to a per-load budget of ALLOCATION_FLOOR_BYTES + ALLOCATION_BYTES_PER_PICKLE_BYTE x the
# pickle's length, and refuses (MalformedPickleError) before allocating once that is exceeded.

ALLOCATION_FLOOR_BYTES = 256 * 2**20
ALLOCATION_BYTES_PER_PICKLE_BYTE = 8
_CONTAINER_ITEM_BYTES = 64  # what one item of a list/tuple/set/dict is charged (pointer + hash slot + object)
_TEXT_CODECS = {"iso8859-1": 1, "ascii": 1, "utf-8": 4}  # codec -> most bytes per character


def allocation_budget(pickle_bytes: int) -> int:
    """Bytes one load may allocate through allow-listed constructors for a pickle of `pickle_bytes` bytes."""
    return ALLOCATION_FLOOR_BYTES + ALLOCATION_BYTES_PER_PICKLE_BYTE * int(pickle_bytes)


class _AllocationBudget:
    """Running total of the bytes one load has asked allow-listed constructors to allocate."""

    def __init__(self, limit: int):
        self.limit, self.used = int(limit), 0

    def charge(self, nbytes: int, what: str) -> None:
        """Count `nbytes` (>= 0) for `what`; MalformedPickleError, before any allocation, past the limit."""
        nbytes = max(int(nbytes), 0)
        if nbytes > self.limit - self.used:
            raise MalformedPickleError(
                f"refusing to build {what} of {nbytes} bytes: a pickle of this size may allocate at most "
                f"{self.limit} bytes in all ({ALLOCATION_FLOOR_BYTES} + {ALLOCATION_BYTES_PER_PICKLE_BYTE} per "
                f"pickle byte), {self.used} already used"
            )
        self.used += nbytes


def _array_nbytes(shape, dtype) -> int:
    """Bytes of an array of `shape` (int or sequence of ints) and `dtype` (anything np.dtype accepts)."""
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    return math.prod(max(int(d), 0) for d in dims) * np.dtype(dtype).itemsize


def _array_state_nbytes(state) -> int:
    """Bytes of the array an ndarray `__setstate__` state ([version,] shape, dtype, fortran, data) describes."""
    if isinstance(state, tuple) and len(state) in (4, 5):
        shape, dtype = state[-4], state[-3]
        return _array_nbytes(shape, dtype)
    return 0  # not an array state: numpy's __setstate__ refuses it


class _GuardedArray(np.ndarray):
    """`numpy.ndarray` as the unpickler sees it: `__new__` and `__setstate__` charge the budget first.

    Each load uses its own subclass carrying `budget`; `resolve_pickled` turns the results back into
    plain `np.ndarray` views.
    """

    budget: _AllocationBudget

    def __new__(cls, shape, dtype=float, buffer=None, offset=0, strides=None, order=None):
        if not (isinstance(cls, type) and issubclass(cls, _GuardedArray) and hasattr(cls, "budget")):
            raise MalformedPickleError(f"numpy.ndarray.__new__ called for {cls!r}")
        if buffer is None:
            cls.budget.charge(_array_nbytes(shape, dtype), "numpy.ndarray")
        return super().__new__(cls, shape, dtype, buffer, offset, strides, order)

    def __setstate__(self, state):
        type(self).budget.charge(_array_state_nbytes(state), "a numpy array (__setstate__)")
        super().__setstate__(state)


def _builtin_cost(name: str, args: tuple) -> int:
    """Bytes `builtins.<name>(*args)` may allocate (bytes, bytearray, str and the container types)."""
    if not args:
        return 0
    first = args[0]
    if name in ("bytes", "bytearray"):
        if isinstance(first, int):
            return first
        return 4 * len(first) if isinstance(first, str) else len(first)
    if name == "str":
        if isinstance(first, (str, bytes, bytearray)):
            return 4 * len(first)
        if first is None or isinstance(first, (int, float, complex)):
            return 0
        raise MalformedPickleError(f"refusing builtins.str of a {type(first).__name__} (its text has no size bound)")
    return _CONTAINER_ITEM_BYTES * len(first)


def _checked_builtin(name: str, budget: _AllocationBudget):
    """`builtins.<name>` that charges `_builtin_cost` to `budget` before constructing."""
    real = getattr(builtins, name)

    def construct(*args, **kwargs):
        budget.charge(_builtin_cost(name, args), f"builtins.{name}")
        return real(*args, **kwargs)

    construct.__name__ = construct.__qualname__ = name
    return construct


def _checked_encode(budget: _AllocationBudget):
    """`_codecs.encode` for text codecs only (how protocol-2 pickles spell `bytes`), charged to `budget`."""

    def encode(obj, encoding="utf-8", errors="strict"):
        try:
            codec = codecs.lookup(encoding).name
        except LookupError:
            raise MalformedPickleError(f"_codecs.encode with unknown encoding {encoding!r}") from None
        if codec not in _TEXT_CODECS:
            raise MalformedPickleError(f"_codecs.encode with encoding {encoding!r}: only latin-1, ascii and utf-8 are allowed")
        if not isinstance(obj, str):
            raise MalformedPickleError(f"_codecs.encode of a {type(obj).__name__}, expected str")
        budget.charge(_TEXT_CODECS[codec] * len(obj), "_codecs.encode")
        return codecs.encode(obj, encoding, errors)

    return encode


def _checked_numpy(budget: _AllocationBudget) -> dict[str, Any]:
    """numpy's `_reconstruct`, `scalar` and `bool_` with their allocations charged to `budget`."""

    def _reconstruct(subtype, shape, dtype):
        budget.charge(_array_nbytes(shape, dtype), "numpy _reconstruct")
        return multiarray._reconstruct(subtype, shape, dtype)

    def scalar(dtype, *args):
        budget.charge(np.dtype(dtype).itemsize, "numpy scalar")
        return multiarray.scalar(dtype, *args)

    def bool_(*args):
        budget.charge(sum(len(a) * 8 for a in args if hasattr(a, "__len__")), "numpy.bool_")
        return np.bool_(*args)

    return {"_reconstruct": _reconstruct, "scalar": scalar, "bool_": bool_}


_INERT_BUILTINS = ("object", "slice", "complex", "int", "float", "bool", "range")
_SIZED_BUILTINS = ("set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "str")


def _allowed_globals(budget: _AllocationBudget) -> dict[tuple[str, str], Any]:
    """(module, name) -> the object handed to one load's unpickler; sized constructors are budget-checked."""
    guarded_array = type("ndarray", (_GuardedArray,), {"budget": budget, "__module__": __name__})
    checked = _checked_numpy(budget)
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): guarded_array,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "bool_"): checked["bool_"],
        ("copyreg", "_reconstructor"): copyreg._reconstructor,
        ("copy_reg", "_reconstructor"): copyreg._reconstructor,
        ("copyreg", "__newobj__"): copyreg.__newobj__,
        ("_codecs", "encode"): _checked_encode(budget),
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = checked["_reconstruct"]
        allowed[(f"{core}.multiarray", "scalar")] = checked["scalar"]
        allowed[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # a view of an existing buffer
    for module in ("builtins", "__builtin__"):
        allowed.update({(module, name): getattr(builtins, name) for name in _INERT_BUILTINS})
        allowed.update({(module, name): _checked_builtin(name, budget) for name in _SIZED_BUILTINS})
    return allowed


class ChumpySafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only resolves allow-listed globals (see module docstring).

    `budget_bytes`: what allow-listed constructors may allocate in all (`allocation_budget`).
    """

    def __init__(self, file, *, budget_bytes: int = ALLOCATION_FLOOR_BYTES, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _allowed_globals(_AllocationBudget(budget_bytes))

    def find_class(self, module: str, name: str):
        if module == "chumpy" or module.startswith("chumpy."):
            return ChumpySelectStub if name == "Select" else type(
                f"Chumpy{name}Stub", (ChumpyArrayStub,), {"chumpy_class": f"{module}.{name}"}
            )
        if module in _SPARSE_MODULES and name in _SPARSE_STUBS:
            return _SPARSE_STUBS[name]
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        if module.startswith("numpy.dtypes") and name.endswith("DType"):
            return getattr(np.dtypes, name)
        raise UnsafePickleError(
            f"refusing to unpickle global {module}.{name}: not on the allow-list of this loader "
            "(numpy arrays/dtypes, scipy.sparse matrices, chumpy arrays and inert builtins only)"
        )


def resolve_pickled(obj):
    """Replace chumpy stubs by NumPy arrays and sparse stubs by scipy.sparse matrices, recursively.

    Arrays built by the unpickler (a budget-checked ndarray subclass) become plain `np.ndarray` views.
    """
    if isinstance(obj, ChumpyArrayStub):
        return obj.to_array()
    if isinstance(obj, SparseMatrixStub):
        return obj.to_scipy()
    if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:
        return obj.view(np.ndarray)
    if isinstance(obj, dict):
        return {key: resolve_pickled(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [resolve_pickled(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(resolve_pickled(value) for value in obj)
    return obj


def _unpickle(data: bytes, source: str):
    """Unpickle and resolve `data`; any failure becomes UnsafePickleError / MalformedPickleError naming `source`."""
    unpickler = ChumpySafeUnpickler(io.BytesIO(data), encoding="latin1", budget_bytes=allocation_budget(len(data)))
    try:
        return resolve_pickled(unpickler.load())
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{source}: {exc}") from None
    except MalformedPickleError as exc:
        raise MalformedPickleError(f"{source}: not a readable model pickle ({exc})") from None
    except Exception as exc:  # untrusted bytes: LookupError, MemoryError, RecursionError, ... all mean "malformed"
        raise MalformedPickleError(f"{source}: not a readable model pickle ({type(exc).__name__}: {exc})") from None


def loads_chumpy_safe(data: bytes, source: str = "pickle data"):
    """Unpickle `data` with the allow-list and allocation budget, then resolve stubs (`resolve_pickled`).

    Errors as `load_chumpy_safe`, naming `source`.
    """
    return _unpickle(data, source)


def load_chumpy_safe(path: str | os.PathLike):
    """Read a (Python-2 or -3) pickle file safely. Errors name the file.

    Raises FileNotFoundError if it does not exist, UnsafePickleError (a ValueError) for a global
    outside the allow-list, and MalformedPickleError (a ValueError) for anything else that goes
    wrong while unpickling: truncated or corrupt data, unknown codecs, objects larger than the
    allocation budget (`allocation_budget`), ...
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    return _unpickle(path.read_bytes(), str(path))
