"""Import official 3D-CoreNet PyTorch weights (``ChaoyueSong/3d-corenet``) into ``CoreNet``.

The official training saves two state dicts per epoch: ``{epoch}_net_Corr.pth`` (the
``Correspondence`` module: feature extractor, residual blocks, θ, φ) and ``{epoch}_net_G.pth`` (the
``ElaINGenerator``). Key layout (channels-first ``Conv1d`` weights ``(out, in, k)``):

Correspondence                               jaxpose ``CoreNet``
  adaptive_feature.layer{1,2,3}.{weight,bias}    feature_extractor.layer{1,2,3}.{kernel,bias}
  layer.{i}.conv{1,2}.{weight,bias}              feature_extractor.residual_blocks[i].conv{1,2}
  layer.{i}.prelu.weight (1,)                    feature_extractor.residual_blocks[i].prelu_slope ()
  theta.{weight,bias}, phi.{weight,bias}         theta, phi
ElaINGenerator
  fc.{weight,bias} (1024, 3, 3)                  generator.fc.kernel (3, 3, 1024), .bias
  conv{1,2,3,4}.{weight,bias}                    generator.conv{1,2,3,4}
  elain_block{j}.norm_{0,1,s}.mlp_{same,gamma,beta,weight}.{weight,bias}
                                                 generator.blocks[j-1].norm_{0,1,s}.mlp_*
  elain_block{j}.conv_{0,1}.{weight_orig,bias,weight_u,weight_v}, conv_s.{weight_orig,weight_u,weight_v}
                                                 generator.blocks[j-1].conv_*.{kernel,bias,u,v}

Layout changes: ``(out, in, 1)`` → ``(in, out)``; ``(out, in, k)`` → ``(k, in, out)``; PReLU
``(1,)`` → scalar. Spectral norm: ``weight_orig`` is the raw kernel, ``weight_u``/``weight_v`` the
power-iteration vectors (``SpectralState``), so an imported model in ``eval()`` mode reproduces the
official eval forward exactly. torch is optional: state dicts may be given as mappings of NumPy
arrays; ``.pth`` files need torch, ``.npz`` files do not.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxpose.io.arrays import load_npz
from jaxpose.pose_transfer.corenet import CoreNet

_Entry = tuple[nnx.Variable, Callable[[np.ndarray], np.ndarray], tuple[int, ...]]


def _kernel_entry(variable: nnx.Variable) -> _Entry:
    shape = tuple(variable.get_value().shape)
    if len(shape) == 2:  # (in, out) <- (out, in, 1)
        torch_shape = (shape[1], shape[0], 1)
        return variable, lambda w: np.transpose(w[:, :, 0]), torch_shape
    if len(shape) == 3:  # (k, in, out) <- (out, in, k)
        torch_shape = (shape[2], shape[1], shape[0])
        return variable, lambda w: np.transpose(w, (2, 1, 0)), torch_shape
    raise ValueError(f"unexpected kernel shape {shape}")


def _plain_entry(variable: nnx.Variable) -> _Entry:
    return variable, lambda w: w, tuple(variable.get_value().shape)


def _scalar_entry(variable: nnx.Variable) -> _Entry:
    return variable, lambda w: w.reshape(()), (1,)


def _linear(table: dict, prefix: str, module) -> None:
    table[f"{prefix}.weight"] = _kernel_entry(module.kernel)
    if module.bias is not None:
        table[f"{prefix}.bias"] = _plain_entry(module.bias)


def _spectral(table: dict, prefix: str, module) -> None:
    table[f"{prefix}.weight_orig"] = _kernel_entry(module.kernel)
    if module.bias is not None:
        table[f"{prefix}.bias"] = _plain_entry(module.bias)
    table[f"{prefix}.weight_u"] = _plain_entry(module.u)
    table[f"{prefix}.weight_v"] = _plain_entry(module.v)


def _correspondence_table(model: CoreNet) -> dict[str, _Entry]:
    table: dict[str, _Entry] = {}
    features = model.feature_extractor
    for name in ("layer1", "layer2", "layer3"):
        _linear(table, f"adaptive_feature.{name}", getattr(features, name))
    for i, block in enumerate(features.residual_blocks):
        _linear(table, f"layer.{i}.conv1", block.conv1)
        _linear(table, f"layer.{i}.conv2", block.conv2)
        table[f"layer.{i}.prelu.weight"] = _scalar_entry(block.prelu_slope)
    _linear(table, "theta", model.theta)
    _linear(table, "phi", model.phi)
    return table


def _generator_table(model: CoreNet) -> dict[str, _Entry]:
    if not model.use_elain:
        raise ValueError(
            "official 3D-CoreNet weights need use_elain=True (the ablation model has no mlp_weight)"
        )
    table: dict[str, _Entry] = {}
    generator = model.generator
    for name in ("fc", "conv1", "conv2", "conv3", "conv4"):
        _linear(table, name, getattr(generator, name))
    for j, block in enumerate(generator.blocks, start=1):
        for norm_name in ("norm_0", "norm_1", "norm_s"):
            norm = getattr(block, norm_name)
            for mlp in ("mlp_same", "mlp_gamma", "mlp_beta", "mlp_weight"):
                _linear(table, f"elain_block{j}.{norm_name}.{mlp}", getattr(norm, mlp))
        for conv_name in ("conv_0", "conv_1", "conv_s"):
            _spectral(table, f"elain_block{j}.{conv_name}", getattr(block, conv_name))
    return table


def expected_official_shapes(model: CoreNet) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """(Correspondence keys → torch shapes, ElaINGenerator keys → torch shapes) for this model."""
    corr = {key: entry[2] for key, entry in _correspondence_table(model).items()}
    gen = {key: entry[2] for key, entry in _generator_table(model).items()}
    return corr, gen


def _strip_module_prefix(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _check_and_convert(
    name: str, table: Mapping[str, _Entry], state_dict: Mapping[str, object]
) -> list[tuple[nnx.Variable, np.ndarray]]:
    state_dict = {k: _as_numpy(v) for k, v in _strip_module_prefix(state_dict).items()}
    missing = sorted(set(table) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(table))
    wrong_shape = [
        f"{key}: expected {table[key][2]}, got {tuple(state_dict[key].shape)}"
        for key in sorted(set(table) & set(state_dict))
        if tuple(state_dict[key].shape) != table[key][2]
    ]
    non_finite = [
        key
        for key in sorted(set(table) & set(state_dict))
        if np.issubdtype(state_dict[key].dtype, np.number) and not np.all(np.isfinite(state_dict[key]))
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {missing}")
    if unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if wrong_shape:
        problems.append(f"wrong shapes: {wrong_shape}")
    if non_finite:
        problems.append(f"NaN/Inf values in: {non_finite}")
    if problems:
        raise ValueError(
            f"{name} state dict does not match this CoreNet configuration — " + "; ".join(problems)
        )
    return [
        (variable, convert(state_dict[key].astype(np.float64)))
        for key, (variable, convert, _) in table.items()
    ]


def import_official_state_dicts(
    model: CoreNet,
    correspondence_state: Mapping[str, object],
    generator_state: Mapping[str, object],
) -> CoreNet:
    """Load official state dicts (NumPy arrays or torch tensors) into ``model`` in place.

    Everything is checked before anything is written: missing, unexpected, wrongly shaped or
    non-finite entries raise one ValueError that lists them all. A leading ``module.`` prefix
    (DataParallel) is stripped. Values are cast to the model's parameter dtype. Returns ``model``.

    ``model`` may be abstract — ``nnx.eval_shape(lambda: CoreNet(rngs=nnx.Rngs(0)))`` — which
    skips the random initialisation; every variable of a CoreNet is covered by the official keys.
    """
    assignments = _check_and_convert(
        "Correspondence (net_Corr)", _correspondence_table(model), correspondence_state
    )
    assignments += _check_and_convert(
        "ElaINGenerator (net_G)", _generator_table(model), generator_state
    )
    for variable, value in assignments:
        # set_value (not v[...] = ...) so that an abstract model from nnx.eval_shape can be filled
        variable.set_value(jnp.asarray(value, dtype=variable.get_value().dtype))
    return model


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a state dict from ``.npz`` (NumPy only) or ``.pth``/``.pt`` (needs torch)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return load_npz(path, what="state-dict file")
    if suffix in (".pth", ".pt"):
        try:
            import torch  # local: optional (extra `torch`), needed only for .pth/.pt files
        except ImportError as error:
            raise ImportError(
                f"reading {path} needs PyTorch (pip install 'jaxpose[torch]'); alternatively save the "
                "state dict as .npz ({key: tensor.numpy()}) and load that"
            ) from error
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping):
            raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
        return {key: _as_numpy(value) for key, value in state.items()}
    raise ValueError(f"unsupported checkpoint format {path.suffix!r} for {path}; use .pth, .pt or .npz")


def load_official_checkpoint(
    model: CoreNet, correspondence_path: str | os.PathLike, generator_path: str | os.PathLike
) -> CoreNet:
    """Load ``{epoch}_net_Corr`` and ``{epoch}_net_G`` files into ``model`` in place; returns it."""
    return import_official_state_dicts(
        model, read_state_dict(correspondence_path), read_state_dict(generator_path)
    )
