"""Official 3D-CoreNet state-dict import: key/shape map and a float64 NumPy forward of the original.

The official key list and the reference forward below are written from the original PyTorch
architecture (channels-first, Conv1d weights (out, in, k)) independently of the importer's table.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxpose.pose_transfer.corenet import CoreNet
from jaxpose.pose_transfer.torch_import import (
    import_official_state_dicts,
    load_official_checkpoint,
    read_state_dict,
)
from jaxpose.nn.spectral import SpectralState

# Small widths keep the test fast; the same code path handles the official (64, 128, 256) /
# (1024, 512, 256) sizes, whose key set test_official_size_key_set checks.
FEAT, DEC = (8, 16, 32), (24, 16, 8)


def official_shapes(feat=(64, 128, 256), dec=(1024, 512, 256), corr=256, blocks=4):
    c = feat[2]
    corr_sd = {
        "adaptive_feature.layer1.weight": (feat[0], 3, 1), "adaptive_feature.layer1.bias": (feat[0],),
        "adaptive_feature.layer2.weight": (feat[1], feat[0], 1),
        "adaptive_feature.layer2.bias": (feat[1],),
        "adaptive_feature.layer3.weight": (c, feat[1], 1), "adaptive_feature.layer3.bias": (c,),
        "theta.weight": (corr, c, 1), "theta.bias": (corr,),
        "phi.weight": (corr, c, 1), "phi.bias": (corr,),
    }
    for i in range(blocks):
        for conv in ("conv1", "conv2"):
            corr_sd[f"layer.{i}.{conv}.weight"] = (c, c, 1)
            corr_sd[f"layer.{i}.{conv}.bias"] = (c,)
        corr_sd[f"layer.{i}.prelu.weight"] = (1,)
    gen = {"fc.weight": (dec[0], 3, 3), "fc.bias": (dec[0],),
           "conv1.weight": (dec[0], dec[0], 1), "conv1.bias": (dec[0],),
           "conv2.weight": (dec[1], dec[0], 1), "conv2.bias": (dec[1],),
           "conv3.weight": (dec[2], dec[1], 1), "conv3.bias": (dec[2],),
           "conv4.weight": (3, dec[2], 1), "conv4.bias": (3,)}
    for j, w in enumerate(dec, start=1):
        for norm in ("norm_0", "norm_1", "norm_s"):
            for mlp, fan_in in (("mlp_same", c), ("mlp_gamma", w), ("mlp_beta", w),
                                ("mlp_weight", 2 * w)):
                gen[f"elain_block{j}.{norm}.{mlp}.weight"] = (w, fan_in, 1)
                gen[f"elain_block{j}.{norm}.{mlp}.bias"] = (w,)
        for conv in ("conv_0", "conv_1", "conv_s"):
            gen[f"elain_block{j}.{conv}.weight_orig"] = (w, w, 1)
            gen[f"elain_block{j}.{conv}.weight_u"] = (w,)
            gen[f"elain_block{j}.{conv}.weight_v"] = (w,)
            if conv != "conv_s":
                gen[f"elain_block{j}.{conv}.bias"] = (w,)
    return corr_sd, gen


def random_state(shapes, rng):
    state = {}
    for key, shape in shapes.items():
        if key.endswith("prelu.weight"):
            state[key] = rng.uniform(0.1, 0.4, shape)
        elif key.endswith(("weight_u", "weight_v")):
            vec = rng.normal(size=shape)
            state[key] = vec / np.linalg.norm(vec)
        elif len(shape) == 3:
            state[key] = rng.normal(size=shape) / np.sqrt(shape[1] * shape[2])
        else:
            state[key] = rng.normal(size=shape) * 0.1
    # representable in float32 (the model's dtype), so the float64 comparison can be tight
    return {key: value.astype(np.float32).astype(np.float64) for key, value in state.items()}


# ---- float64 NumPy forward of the official architecture, channels-first (B, C, N) ----

def conv1d(x, w, b=None):
    k = w.shape[2]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p)))
    n = x.shape[2]
    out = sum(np.einsum("oc,bcn->bon", w[:, :, t], xp[:, :, t:t + n]) for t in range(k))
    return out if b is None else out + b[None, :, None]


def inorm(x):
    mean = x.mean(2, keepdims=True)
    return (x - mean) / np.sqrt(x.var(2, keepdims=True) + 1e-5)


def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def fnorm(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 2.220446049250313e-16)


def sn_weight(sd, prefix, train, new_uv):
    w = sd[prefix + ".weight_orig"]
    mat = w.reshape(w.shape[0], -1)
    u, v = sd[prefix + ".weight_u"], sd[prefix + ".weight_v"]
    if train:
        v = mat.T @ u
        v = v / max(np.linalg.norm(v), 1e-12)
        u = mat @ v
        u = u / max(np.linalg.norm(u), 1e-12)
        new_uv[prefix] = (u, v)
    return w / (u @ mat @ v)


def elain(x, add, sd, p):
    add = conv1d(add, sd[p + ".mlp_same.weight"], sd[p + ".mlp_same.bias"])
    gamma_id = conv1d(add, sd[p + ".mlp_gamma.weight"], sd[p + ".mlp_gamma.bias"])
    beta_id = conv1d(add, sd[p + ".mlp_beta.weight"], sd[p + ".mlp_beta.bias"])
    cat = np.concatenate([add.mean(2, keepdims=True), x.mean(2, keepdims=True)], axis=1)
    weight = conv1d(cat, sd[p + ".mlp_weight.weight"], sd[p + ".mlp_weight.bias"])
    mean = x.mean(2, keepdims=True)
    std = np.sqrt(x.var(2, ddof=1, keepdims=True) + 1e-5)
    gamma = gamma_id * weight + std * (1 - weight)
    beta = beta_id * weight + mean * (1 - weight)
    return (x - mean) / std * (1 + gamma) + beta


def official_forward(corr, gen, identity, pose, train=False):
    """identity (B, N_id, 3), pose (B, N_pose, 3) -> (output, warp, updated SN vectors)."""
    ident, pos = identity.transpose(0, 2, 1), pose.transpose(0, 2, 1)

    def features(x):
        x = inorm(conv1d(x, corr["adaptive_feature.layer1.weight"], corr["adaptive_feature.layer1.bias"]))
        x = inorm(conv1d(lrelu(x), corr["adaptive_feature.layer2.weight"],
                         corr["adaptive_feature.layer2.bias"]))
        x = inorm(conv1d(lrelu(x), corr["adaptive_feature.layer3.weight"],
                         corr["adaptive_feature.layer3.bias"]))
        x = fnorm(x)
        i = 0
        while f"layer.{i}.conv1.weight" in corr:
            a = corr[f"layer.{i}.prelu.weight"][0]
            out = inorm(conv1d(x, corr[f"layer.{i}.conv1.weight"], corr[f"layer.{i}.conv1.bias"]))
            out = np.where(out >= 0, out, a * out)
            out = inorm(conv1d(out, corr[f"layer.{i}.conv2.weight"], corr[f"layer.{i}.conv2.bias"]))
            out = out + x
            x = np.where(out >= 0, out, a * out)
            i += 1
        return x

    id_f, pose_f = features(ident), features(pos)
    theta = fnorm(conv1d(id_f, corr["theta.weight"], corr["theta.bias"]))
    phi = fnorm(conv1d(pose_f, corr["phi.weight"], corr["phi.bias"]))
    c = np.einsum("bdn,bdm->bnm", theta, phi)
    k = np.exp(-(1.0 - c) / 0.03)
    n_id, n_pose = k.shape[1], k.shape[2]
    a = np.ones((k.shape[0], n_id, 1)) / n_id
    for _ in range(5):
        b = (1.0 / n_pose) / (np.einsum("bnm,bnk->bmk", k, a) + 1e-8)
        a = (1.0 / n_id) / (np.einsum("bnm,bmk->bnk", k, b) + 1e-8)
    t = a * k * b.transpose(0, 2, 1)
    t = t / t.sum(2, keepdims=True)
    warp = np.einsum("bnm,bcm->bcn", t, pos)

    new_uv = {}
    x = conv1d(warp, gen["fc.weight"], gen["fc.bias"])
    for j, conv in ((1, "conv1"), (2, "conv2"), (3, "conv3")):
        x = conv1d(x, gen[conv + ".weight"], gen[conv + ".bias"])
        p = f"elain_block{j}"
        x_s = conv1d(lrelu(elain(x, id_f, gen, p + ".norm_s")),
                     sn_weight(gen, p + ".conv_s", train, new_uv))
        dx = conv1d(lrelu(elain(x, id_f, gen, p + ".norm_0")),
                    sn_weight(gen, p + ".conv_0", train, new_uv), gen[p + ".conv_0.bias"])
        dx = conv1d(lrelu(elain(dx, id_f, gen, p + ".norm_1")),
                    sn_weight(gen, p + ".conv_1", train, new_uv), gen[p + ".conv_1.bias"])
        x = x_s + dx
    out = 2 * np.tanh(conv1d(x, gen["conv4.weight"], gen["conv4.bias"]))
    return out.transpose(0, 2, 1), warp.transpose(0, 2, 1), new_uv


def _small_model():
    return CoreNet(feature_widths=FEAT, correlation_width=16, decoder_widths=DEC,
                   num_residual_blocks=4, rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    corr_shapes, gen_shapes = official_shapes(FEAT, DEC, corr=16)
    corr, gen = random_state(corr_shapes, rng), random_state(gen_shapes, rng)
    identity = rng.uniform(-0.8, 0.8, (2, 30, 3))
    pose = rng.uniform(-0.8, 0.8, (2, 37, 3))
    return corr, gen, identity, pose


def _run_float64(model, identity, pose):
    """Forward in float64 through the functional split/merge boundary; returns output, new SN state."""
    with jax.enable_x64(True):
        graphdef, state = nnx.split(model)
        state = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), state)

        def fn(state, identity, pose):
            m = nnx.merge(graphdef, state, copy=True)
            return m(identity, pose), nnx.state(m, SpectralState)

        out, spectral = jax.jit(fn)(state, jnp.asarray(identity), jnp.asarray(pose))
        return (np.asarray(out.output), np.asarray(out.warped),
                jax.tree.map(np.asarray, spectral))


@pytest.mark.parametrize("train", [False, True])
def test_imported_model_matches_official_numpy_forward(setup, train):
    corr, gen, identity, pose = setup
    model = import_official_state_dicts(_small_model(), corr, gen)
    if train:
        model.train()
    else:
        model.eval()
    output, warped, spectral = _run_float64(model, identity, pose)
    ref_out, ref_warp, ref_uv = official_forward(corr, gen, identity, pose, train=train)
    np.testing.assert_allclose(warped, ref_warp, atol=1e-9)
    np.testing.assert_allclose(output, ref_out, atol=1e-9)
    assert np.max(np.abs(ref_out)) > 1e-2  # a non-trivial output
    if train:
        block = spectral["generator"]["blocks"][1]["conv_1"]
        u_ref, v_ref = ref_uv["elain_block2.conv_1"]
        np.testing.assert_allclose(np.asarray(block["u"][...]), u_ref, atol=1e-9)
        np.testing.assert_allclose(np.asarray(block["v"][...]), v_ref, atol=1e-9)


def test_official_size_key_set():
    """Default CoreNet accepts exactly the official key set and shapes, and they cover every variable.

    The model is abstract (nnx.eval_shape): after the import no variable may be left abstract.
    """
    model = nnx.eval_shape(lambda: CoreNet(rngs=nnx.Rngs(0)))
    corr_shapes, gen_shapes = official_shapes()
    assert len(gen_shapes) == 10 + 3 * (3 * 8 + 3 * 3 + 2)
    rng = np.random.default_rng(1)
    corr, gen = random_state(corr_shapes, rng), random_state(gen_shapes, rng)
    import_official_state_dicts(model, corr, gen)
    leaves = jax.tree.leaves(nnx.state(model))
    assert leaves and all(isinstance(leaf, (np.ndarray, jax.Array)) for leaf in leaves)
    np.testing.assert_allclose(np.asarray(model.generator.fc.kernel[...]),
                               np.transpose(gen["fc.weight"], (2, 1, 0)), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(model.generator.blocks[0].conv_s.v[...]),
                               gen["elain_block1.conv_s.weight_v"], rtol=1e-6)
    assert float(model.feature_extractor.residual_blocks[3].prelu_slope[...]) == pytest.approx(
        corr["layer.3.prelu.weight"][0], rel=1e-6)


def test_bad_state_dicts_are_rejected_with_the_offending_keys(setup):
    corr, gen, _, _ = setup
    model = _small_model()
    before = np.asarray(model.theta.kernel[...]).copy()
    bad_corr = dict(corr)
    del bad_corr["theta.bias"]
    bad_corr["extra.weight"] = np.zeros(3)
    bad_corr["phi.weight"] = np.zeros((16, 31, 1))
    with pytest.raises(ValueError) as info:
        import_official_state_dicts(model, bad_corr, gen)
    message = str(info.value)
    assert "theta.bias" in message and "extra.weight" in message and "phi.weight" in message
    np.testing.assert_array_equal(np.asarray(model.theta.kernel[...]), before)  # nothing written
    bad_gen = dict(gen, **{"conv4.bias": np.full(3, np.nan)})
    with pytest.raises(ValueError, match="conv4.bias"):
        import_official_state_dicts(model, corr, bad_gen)
    with pytest.raises(ValueError, match="use_elain=True"):
        import_official_state_dicts(
            CoreNet(feature_widths=FEAT, correlation_width=16, decoder_widths=DEC,
                    use_elain=False, rngs=nnx.Rngs(0)), corr, gen)
    prefixed = {"module." + k: v for k, v in corr.items()}
    import_official_state_dicts(model, prefixed, gen)  # DataParallel prefix is stripped


def test_checkpoint_files(setup, tmp_path):
    corr, gen, _, _ = setup
    np.savez(tmp_path / "net_Corr.npz", **corr)
    np.savez(tmp_path / "net_G.npz", **gen)
    model = load_official_checkpoint(_small_model(), tmp_path / "net_Corr.npz", tmp_path / "net_G.npz")
    np.testing.assert_allclose(np.asarray(model.phi.bias[...]), corr["phi.bias"], rtol=1e-6)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported checkpoint format"):
        read_state_dict(tmp_path / "weights.bin")
    try:
        import torch  # noqa: F401
    except ImportError:
        (tmp_path / "latest_net_G.pth").write_bytes(b"not a torch file")
        with pytest.raises(ImportError, match="needs PyTorch"):
            read_state_dict(tmp_path / "latest_net_G.pth")
