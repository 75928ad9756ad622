"""Neural-network building blocks on channels-last point sets ``(..., N, C)``.

Every module here accepts any number of leading batch axes; statistics (instance norm, ElaIN) are
taken over the vertex axis ``-2`` per sample and channel.
"""

from jaxpose.nn.mlp import MLP
from jaxpose.nn.init import normal, torch_default_bias, xavier_normal, zeros
from jaxpose.nn.norms import (
    ElaIN,
    InstanceNorm,
    SPAdaIN,
    instance_norm,
    l2_normalize,
    mean_and_unbiased_std,
)
from jaxpose.nn.pointwise import PointwiseLinear, VertexConv, pointwise_linear, vertex_conv
from jaxpose.nn.siren import SineLayer, Siren
from jaxpose.nn.spectral import (
    SpectralNormConv,
    SpectralState,
    kernel_as_matrix,
    power_iteration,
    spectral_sigma,
)

__all__ = [
    "MLP",
    "SineLayer",
    "Siren",
    "ElaIN",
    "InstanceNorm",
    "PointwiseLinear",
    "SPAdaIN",
    "SpectralNormConv",
    "SpectralState",
    "VertexConv",
    "instance_norm",
    "kernel_as_matrix",
    "l2_normalize",
    "mean_and_unbiased_std",
    "normal",
    "pointwise_linear",
    "power_iteration",
    "spectral_sigma",
    "torch_default_bias",
    "vertex_conv",
    "xavier_normal",
    "zeros",
]
