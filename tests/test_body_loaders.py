"""User-file loaders without licensed files: synthetic chumpy pickles (SMPL, SMAL), SMPL-X-like npz,
malicious pickles, malformed models."""

import copyreg
import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
from test_body_model import lbs_reference

from jaxpose.bodies import SMPL_JOINT_NAMES, SMPL_PARENTS, UnsafePickleError, forward, load_body, load_smpl_pickle
from jaxpose.bodies.chumpy_pickle import MalformedPickleError, load_chumpy_safe, loads_chumpy_safe
from jaxpose.io.arrays import ArrayFileError

UINT32_MINUS_ONE = 4294967295


def _fake_chumpy_modules():
    """Modules named like chumpy's with `Ch` and `Select` classes that pickle their state dicts the way
    chumpy does (the value array of a `Ch` in 'x'; a `Select` as a, idxs, preferred_shape)."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    reordering = types.ModuleType("chumpy.reordering")

    class Ch:
        def __init__(self, x):
            self.x = np.asarray(x)
            self.label = None

    class Select:
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape

        def __reduce__(self):
            # Python-2 style reduce (copy_reg._reconstructor), as old cPickle files contain.
            return copyreg._reconstructor, (type(self), object, None), dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    ch.Ch, reordering.Select, chumpy.Ch, chumpy.ch, chumpy.reordering = Ch, Select, Ch, ch, reordering
    return {"chumpy": chumpy, "chumpy.ch": ch, "chumpy.reordering": reordering}


def _pickle_with_fake_chumpy(build, sparse_module: str) -> bytes:
    """Pickle `build(Ch, Select)` at protocol 2 with the fake chumpy modules installed, then remove them."""
    fakes = _fake_chumpy_modules()
    assert not any(name in sys.modules for name in fakes), "a real chumpy is imported; this test needs it absent"
    sys.modules.update(fakes)
    try:
        data = pickle.dumps(build(fakes["chumpy.ch"].Ch, fakes["chumpy.reordering"].Select), protocol=2)
    finally:
        for name in fakes:
            del sys.modules[name]
    # Today's scipy pickles csc matrices as scipy.sparse._csc.csc_matrix; old files say scipy.sparse.csc.
    current = b"scipy.sparse._csc\ncsc_matrix\n"
    assert current in data
    return data.replace(current, sparse_module.encode() + b"\ncsc_matrix\n")


def _random_tree(rng, num_joints):
    return (-1,) + tuple(int(rng.integers(0, j)) for j in range(1, num_joints))


def _smpl_like_arrays(rng, num_verts, parents, num_shape):
    num_joints = len(parents)
    weights = rng.random((num_verts, num_joints)) ** 4
    weights /= weights.sum(axis=1, keepdims=True)
    regressor = rng.random((num_joints, num_verts)) * (rng.random((num_joints, num_verts)) < 0.3)
    regressor[:, 0] += 1e-3  # no empty rows
    regressor /= regressor.sum(axis=1, keepdims=True)
    kintree = np.stack([np.asarray(parents, np.int64), np.arange(num_joints)])
    kintree[0, 0] = UINT32_MINUS_ONE
    return {
        "v_template": rng.normal(size=(num_verts, 3)),
        "shapedirs": rng.normal(scale=0.05, size=(num_verts, 3, num_shape)),
        "posedirs": rng.normal(scale=0.01, size=(num_verts, 3, 9 * (num_joints - 1))),
        "weights": weights,
        "J_regressor": scipy.sparse.csc_matrix(regressor),
        "f": rng.integers(0, num_verts, size=(2 * num_verts - 4, 3)).astype(np.uint32),
        "kintree_table": kintree,
    }


def _smpl_pickle_dict(arrays, Ch, Select, rng):
    """The SMPL file layout: chumpy shapedirs, a Select (here v_template), extra keys of every kind."""
    v_template = arrays["v_template"]
    pool = np.concatenate([rng.normal(size=7), v_template.ravel()[::-1]])
    idxs = len(pool) - 1 - np.arange(v_template.size)  # picks v_template back out of the reversed pool
    return {
        "v_template": Select(Ch(pool), idxs, v_template.shape),
        "shapedirs": Ch(arrays["shapedirs"]),
        "posedirs": arrays["posedirs"],
        "weights": arrays["weights"],
        "J_regressor": arrays["J_regressor"],
        "f": arrays["f"],
        "kintree_table": arrays["kintree_table"],
        "J": Ch(arrays["J_regressor"] @ v_template),
        "J_regressor_prior": arrays["J_regressor"],
        "weights_prior": arrays["weights"],
        "vert_sym_idxs": np.arange(len(v_template))[::-1].copy(),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        "pose_training_info": {"num_subjects": 42, "ratio": np.float64(0.5), "set": {1, 2}},
    }


@pytest.fixture(scope="module")
def smpl_case():
    rng = np.random.default_rng(10)
    arrays = _smpl_like_arrays(rng, num_verts=40, parents=SMPL_PARENTS, num_shape=10)
    return arrays, (lambda Ch, Select: _smpl_pickle_dict(arrays, Ch, Select, np.random.default_rng(11)))


def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("sparse_module", ["scipy.sparse.csc", "scipy.sparse._csc"])
def test_synthetic_smpl_pickle_loads_exactly(smpl_case, sparse_module, tmp_path):
    arrays, build = smpl_case
    data = _pickle_with_fake_chumpy(build, sparse_module)
    assert b"chumpy.ch\nCh\n" in data and b"chumpy.reordering\nSelect\n" in data and b"copy_reg\n_reconstructor" in data
    assert "chumpy" not in sys.modules
    path = _write(tmp_path, "basicModel_fake.pkl", data)

    raw = load_chumpy_safe(path)
    np.testing.assert_array_equal(raw["v_template"], arrays["v_template"])  # the Select resolved
    np.testing.assert_array_equal(raw["shapedirs"], arrays["shapedirs"])
    assert scipy.sparse.issparse(raw["J_regressor"])
    np.testing.assert_array_equal(raw["J_regressor"].toarray(), arrays["J_regressor"].toarray())
    assert raw["pose_training_info"]["set"] == {1, 2}

    body = load_smpl_pickle(path, num_betas=6)
    np.testing.assert_array_equal(body.v_template, arrays["v_template"])
    np.testing.assert_array_equal(body.shapedirs, arrays["shapedirs"][..., :6])
    np.testing.assert_array_equal(body.posedirs, arrays["posedirs"])
    np.testing.assert_array_equal(body.weights, arrays["weights"])
    np.testing.assert_array_equal(body.faces, arrays["f"].astype(np.int32))
    assert body.faces.dtype == np.int32 and body.v_template.dtype == np.float64
    regressor = arrays["J_regressor"].toarray()
    np.testing.assert_array_equal(body.j_regressor, regressor)
    np.testing.assert_allclose(body.j_template, regressor @ arrays["v_template"], rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(body.j_shapedirs, np.einsum("jv,vck->jck", regressor, arrays["shapedirs"][..., :6]), rtol=1e-13, atol=1e-15)
    assert body.parents == SMPL_PARENTS and body.joint_names == SMPL_JOINT_NAMES
    np.testing.assert_array_equal(body.extras["vert_sym_idxs"], np.arange(40)[::-1])
    # The generic dispatcher reads .pkl files too.
    np.testing.assert_array_equal(load_body(path, num_betas=6).shapedirs, body.shapedirs)

    rng = np.random.default_rng(12)
    betas, pose, transl = rng.normal(size=6), rng.normal(scale=0.5, size=(24, 3)), rng.normal(size=3)
    with jax.enable_x64(True):
        out = forward(body, jnp.asarray(betas), jnp.asarray(pose), jnp.asarray(transl))
    verts, joints, world = lbs_reference(body, betas, pose, transl)
    np.testing.assert_allclose(out.vertices, verts, atol=1e-12)
    np.testing.assert_allclose(out.joints, joints, atol=1e-12)
    np.testing.assert_allclose(out.transforms, world, atol=1e-12)


def test_synthetic_smal_pickle_33_joints(tmp_path):
    rng = np.random.default_rng(20)
    parents = _random_tree(rng, 33)
    arrays = _smpl_like_arrays(rng, num_verts=36, parents=parents, num_shape=41)
    arrays["v_template"][:, 2] += 1.0  # z-up data is just data

    def build(Ch, Select):
        return {**arrays, "shapedirs": Ch(arrays["shapedirs"]), "posedirs": Ch(arrays["posedirs"])}

    path = _write(tmp_path, "smal_fake.pkl", _pickle_with_fake_chumpy(build, "scipy.sparse._csc"))
    body = load_smpl_pickle(path)
    assert body.num_joints == 33 and body.num_betas == 41 and body.num_pose_correctives == 288
    assert body.parents == parents and body.joint_names[5] == "joint_5"
    np.testing.assert_array_equal(body.shapedirs, arrays["shapedirs"])
    np.testing.assert_array_equal(body.posedirs, arrays["posedirs"])
    betas, pose = rng.normal(size=41), rng.normal(scale=0.3, size=(33, 3))
    with jax.enable_x64(True):
        out = forward(body, jnp.asarray(betas), jnp.asarray(pose))
        rest = forward(body, jnp.zeros(41), jnp.zeros((33, 3)))
    verts, joints, _ = lbs_reference(body, betas, pose, np.zeros(3))
    np.testing.assert_allclose(out.vertices, verts, atol=1e-12)
    np.testing.assert_allclose(out.joints, joints, atol=1e-12)
    np.testing.assert_array_equal(np.asarray(rest.vertices), arrays["v_template"])


class _Evil:
    def __init__(self, func, arg):
        self.func, self.arg = func, arg

    def __reduce__(self):
        return self.func, (self.arg,)


@pytest.mark.parametrize("func, name", [(os.system, r"(posix|os|nt)\.system"), (eval, r"(__builtin__|builtins)\.eval"), (getattr, r"(__builtin__|builtins)\.getattr")])
def test_malicious_pickle_is_refused_naming_the_class(tmp_path, func, name):
    target = tmp_path / "pwned"
    payload = {"v_template": np.zeros((3, 3)), "x": _Evil(func, f"open({str(target)!r}, 'w')" if func is eval else f"touch {target}")}
    if func is getattr:
        payload["x"] = _Evil(func, "whatever")
    data = pickle.dumps(payload, protocol=2)
    path = _write(tmp_path, "evil.pkl", data)
    with pytest.raises(UnsafePickleError, match=rf"evil\.pkl.*{name}") as info:
        load_chumpy_safe(path)
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsafePickleError, match=name):
        load_smpl_pickle(path)
    assert not target.exists()
    # Unknown classes, even harmless-looking ones, are refused too.
    with pytest.raises(UnsafePickleError, match="collections.OrderedDict"):
        loads_chumpy_safe(pickle.dumps(__import__("collections").OrderedDict(a=1), protocol=2))


def _with_parent(kintree, joint, parent):
    kintree = kintree.copy()
    kintree[0, joint] = parent
    return kintree


def _modified(smpl_case, **changes):
    arrays, build = smpl_case

    def changed(Ch, Select):
        data = build(Ch, Select)
        for key, value in changes.items():
            if value is None:
                del data[key]
            else:
                data[key] = value(data, arrays, Ch)
        return data

    return changed


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"J_regressor": None}, r"missing required keys \['J_regressor'\]"),
        ({"f": lambda d, a, Ch: np.full((3, 3), 40, np.uint32)}, "face indices"),
        ({"weights": lambda d, a, Ch: a["weights"] * 0.5}, "sum to 1"),
        ({"shapedirs": lambda d, a, Ch: Ch(np.where(np.arange(10) == 3, np.nan, a["shapedirs"]))}, "shapedirs contains NaN"),
        ({"posedirs": lambda d, a, Ch: a["posedirs"][..., :100]}, "posedirs"),
        ({"weights": lambda d, a, Ch: a["weights"][:, :20]}, "weights must have shape"),
        ({"kintree_table": lambda d, a, Ch: _with_parent(a["kintree_table"], joint=2, parent=5)}, "topologically ordered"),
        ({"kintree_table": lambda d, a, Ch: a["kintree_table"][:, :5]}, r"posedirs must have P = 0 or 9\*\(J-1\) = 36"),
        ({"kintree_table": lambda d, a, Ch: np.stack([np.r_[3, a["kintree_table"][0, 1:]], np.arange(24)])}, "root's parent"),
    ],
)
def test_malformed_smpl_pickles_raise_naming_file_and_problem(smpl_case, tmp_path, changes, message):
    data = _pickle_with_fake_chumpy(_modified(smpl_case, **changes), "scipy.sparse._csc")
    path = _write(tmp_path, "broken_model.pkl", data)
    with pytest.raises(ValueError, match=rf"broken_model\.pkl.*{message}"):
        load_smpl_pickle(path)


def test_truncated_and_non_dict_pickles(smpl_case, tmp_path):
    data = _pickle_with_fake_chumpy(smpl_case[1], "scipy.sparse._csc")
    truncated = _write(tmp_path, "truncated.pkl", data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated.pkl"):
        load_smpl_pickle(truncated)
    not_dict = _write(tmp_path, "list.pkl", pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(ValueError, match=r"list.pkl.*expected a pickled dict"):
        load_smpl_pickle(not_dict)
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_smpl_pickle(tmp_path / "absent.pkl")
    with pytest.raises(ValueError, match=r"ok.pkl.*num_betas=11 but the model has only 10"):
        load_smpl_pickle(_write(tmp_path, "ok.pkl", data), num_betas=11)


def test_python2_latin1_string_pickle():
    """Python 2 str objects (protocol 2 SHORT_BINSTRING) decode with latin1, as the SMPL files need."""
    # A hand-assembled protocol-2 pickle of {'bs_style': 'lbs', 'raw': '\xe9'} as Python 2 writes it.
    data = b"\x80\x02}q\x00(U\x08bs_styleq\x01U\x03lbsq\x02U\x03rawq\x03U\x01\xe9q\x04u."
    assert loads_chumpy_safe(data) == {"bs_style": "lbs", "raw": "\xe9"}


def test_python2_style_array_buffer_as_latin1_str():
    """Python-2 array pickles carry the raw buffer as a str; read with latin1 it must give the same array."""
    import io

    array = np.random.default_rng(40).normal(size=(5, 3))

    def py2_style(a):
        func, args, state = a.__reduce__()
        return func, args, state[:4] + (state[4].decode("latin1"),)

    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)
    pickler.dispatch_table = {np.ndarray: py2_style}
    pickler.dump({"v_template": array})
    np.testing.assert_array_equal(loads_chumpy_safe(buffer.getvalue())["v_template"], array)


def test_smplx_like_npz_with_object_arrays(tmp_path):
    rng = np.random.default_rng(30)
    num_joints, num_verts = 55, 30
    parents = _random_tree(rng, num_joints)
    arrays = _smpl_like_arrays(rng, num_verts=num_verts, parents=parents, num_shape=400)
    arrays["J_regressor"] = arrays["J_regressor"].toarray()  # SMPL-X npz stores it dense
    path = tmp_path / "SMPLX_NEUTRAL.npz"
    np.savez(
        path,
        **arrays,
        hands_componentsl=rng.normal(size=(45, 45)),
        hands_meanl=rng.normal(size=45),
        joint2num=np.array({"pelvis": 0}, dtype=object),  # an object array: needs allow_pickle to read
        part2num=np.array([{"a": 1}, None], dtype=object),
    )
    body = load_body(path, num_betas=10)
    assert body.num_joints == 55 and body.num_betas == 10 and body.num_pose_correctives == 486
    assert body.parents == parents
    np.testing.assert_array_equal(body.shapedirs, arrays["shapedirs"][..., :10])
    np.testing.assert_array_equal(body.posedirs, arrays["posedirs"])
    np.testing.assert_array_equal(body.faces, arrays["f"].astype(np.int32))
    np.testing.assert_allclose(body.j_template, arrays["J_regressor"] @ arrays["v_template"], rtol=1e-14)
    betas, pose = rng.normal(size=10), rng.normal(scale=0.3, size=(55, 3))
    with jax.enable_x64(True):
        out = forward(body, jnp.asarray(betas), jnp.asarray(pose))
    verts, joints, _ = lbs_reference(body, betas, pose, np.zeros(3))
    np.testing.assert_allclose(out.vertices, verts, atol=1e-12)
    np.testing.assert_allclose(out.joints, joints, atol=1e-12)


class _Reduces:
    """Pickles as `func(*args)` (plus `state` for BUILD, if given): how a crafted file calls allow-listed globals."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _reconstruct():
    from numpy._core import multiarray

    return multiarray._reconstruct


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: _Reduces(bytearray, (10**11,)), id="bytearray"),
        pytest.param(lambda: _Reduces(bytes, (10**11,)), id="bytes"),
        pytest.param(lambda: _Reduces(list, (range(10**11),)), id="list-of-range"),
        pytest.param(lambda: _Reduces(_reconstruct(), (np.ndarray, (10**11,), b"b")), id="ndarray-shape"),
        pytest.param(lambda: _Reduces(_reconstruct(), (np.ndarray, (0,), b"b"),
                                      (1, (10**11,), np.dtype("O"), False, [1, 2])), id="object-array-state"),
    ],
)
def test_pickle_allocation_bombs_are_refused_before_allocating(tmp_path, payload):
    # protocol 4: protocol 2 spells range as __builtin__.xrange, which is not allow-listed
    path = _write(tmp_path, "bomb.pkl", pickle.dumps({"v_template": payload()}, protocol=4))
    with pytest.raises(MalformedPickleError, match=r"bomb\.pkl.*refusing to build .* bytes: .* at most") as info:
        load_body(path)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MalformedPickleError, match="at most"):
        loads_chumpy_safe(path.read_bytes())


def test_pickle_with_unknown_or_binary_codec_names_the_file(tmp_path):
    import codecs

    bogus = _write(tmp_path, "codec.pkl", pickle.dumps({"x": _Reduces(codecs.encode, ("x", "no-such-codec"))}, protocol=2))
    with pytest.raises(MalformedPickleError, match=r"codec\.pkl.*unknown encoding 'no-such-codec'"):
        load_body(bogus)
    # Binary codecs (zlib, base64, ...) are not how pickles spell bytes: refused, not run.
    zlib_codec = _write(tmp_path, "zlib.pkl", pickle.dumps({"x": _Reduces(codecs.encode, ("x", "zlib_codec"))}, protocol=2))
    with pytest.raises(MalformedPickleError, match=r"zlib\.pkl.*only latin-1, ascii and utf-8"):
        load_body(zlib_codec)


@pytest.mark.parametrize(
    "data, problem",
    [
        (b"\x80\x02c__builtin__\nint\nX\x03\x00\x00\x00abc\x85R.", "ValueError"),  # int("abc")
        (b"\x80\x02c__builtin__\ncomplex\n]\x85R.", "TypeError"),  # complex([])
        (b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", "UnicodeDecodeError"),  # invalid UTF-8 in BINUNICODE
        (b"\x80\x02}q\x00(", "EOFError|pickle data was truncated|UnpicklingError"),
        (b"\x80\x02h\x09.", "Memo value not found"),  # BINGET of a memo slot that was never set
    ],
)
def test_every_unpickling_failure_becomes_the_named_error(tmp_path, data, problem):
    path = _write(tmp_path, "broken.pkl", data)
    with pytest.raises(MalformedPickleError, match=rf"broken\.pkl: not a readable model pickle .*({problem})"):
        load_chumpy_safe(path)


def test_garbage_npz_says_not_a_body_file_without_pickle_advice(tmp_path):
    garbage = _write(tmp_path, "garbage.npz", np.random.default_rng(0).bytes(512))
    with pytest.raises(ArrayFileError, match=r"garbage\.npz: not a valid \.npz body file") as info:
        load_body(garbage)
    assert "allow_pickle" not in str(info.value)
    # A zip whose required array is a pickled object array: named, without advice to unpickle it.
    pickled = tmp_path / "pickled_member.npz"
    np.savez(pickled, v_template=np.array([{"a": 1}], dtype=object), shapedirs=np.zeros((1, 3, 1)),
             weights=np.ones((1, 1)), f=np.zeros((1, 3), np.int32), parents=np.array([-1]), J_template=np.zeros((1, 3)))
    with pytest.raises(ArrayFileError, match=r"pickled_member\.npz: array 'v_template' .* pickled") as info:
        load_body(pickled)
    assert "allow_pickle" not in str(info.value)
    empty = _write(tmp_path, "empty.npz", b"")
    with pytest.raises(ArrayFileError, match=r"empty\.npz: .*empty"):
        load_body(empty)


def _garbage_readers():
    """(file name, reader) of every jaxpose reader of .npy/.npz files that must not leak NumPy's pickle advice."""
    from jaxpose.io.arrays import load_npy, load_npz
    from jaxpose.pose_transfer.torch_import import read_state_dict
    from jaxpose.skinning.cape import CapeFormatError, read_frame
    from jaxpose.training import tiny

    return [
        ("body.npz", lambda p: load_body(p), ArrayFileError),
        ("arrays.npz", lambda p: load_npz(p, "array file"), ArrayFileError),
        ("array.npy", lambda p: load_npy(p, "array file"), ArrayFileError),
        ("frame.npz", lambda p: read_frame(p), CapeFormatError),
        ("weights.npz", lambda p: read_state_dict(p), ArrayFileError),
        ("tiny_0000.npz", lambda p: tiny.load_dataset(p.parent), ArrayFileError),
    ]


@pytest.mark.parametrize("index", range(6))
@pytest.mark.parametrize("content", [b"\x80\x04garbage that NumPy would try to unpickle", b""])
def test_garbage_array_files_name_the_file_without_pickle_advice(tmp_path, index, content):
    name, read, error = _garbage_readers()[index]
    path = _write(tmp_path, name, content)
    with pytest.raises(error, match=rf"{name}: not a valid \.np[yz]") as info:
        read(path)
    assert "allow_pickle" not in str(info.value)
