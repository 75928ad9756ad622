"""Tests of jaxpose.render: cameras, z-buffer rasteriser, interpolation, buffers and PNG figures."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp
from jax.test_util import check_grads

from jaxpose.bodies import default_body
from jaxpose.render import (
    barycentrics_from_face_ids,
    frame_vertices,
    interpolate,
    look_at,
    make_camera,
    nearest_vertex_ids,
    project,
    rasterize,
    render_buffers,
    render_mesh_image,
    save_mesh_grid_png,
    screen_vertices,
    soft_silhouette,
)

SIZE = 32


def pixel_centres(height, width):
    """(H, W) float64 u and v of pixel centres."""
    v, u = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return u, v


def screen_barycentrics_np(corners, u, v):
    """float64 screen-space barycentrics (H, W, 3) of pixel centres w.r.t. a 2-D triangle (3, 2)."""
    (ax, ay), (bx, by), (cx, cy) = corners[:, :2]
    det = (bx - ax) * (cy - ay) - (cx - ax) * (by - ay)
    l1 = ((u - ax) * (cy - ay) - (cx - ax) * (v - ay)) / det
    l2 = ((bx - ax) * (v - ay) - (u - ax) * (by - ay)) / det
    return np.stack([1.0 - l1 - l2, l1, l2], axis=-1)


def zbuffer_np(screen, faces, height, width, perspective=True):
    """Independent float64 brute-force reference: nearest face per pixel centre, and its depth.

    Perspective: 1/z is affine in screen space; orthographic: z is."""
    u, v = pixel_centres(height, width)
    best_inverse_depth = np.full((height, width), -np.inf)
    face_id = np.full((height, width), -1)
    for index, face in enumerate(faces):
        corners = screen[face].astype(np.float64)
        lam = screen_barycentrics_np(corners, u, v)
        inside = np.all(lam >= 0, axis=-1)
        inverse_depth = lam @ (1.0 / corners[:, 2]) if perspective else -(lam @ corners[:, 2])
        better = inside & (inverse_depth > best_inverse_depth)
        best_inverse_depth = np.where(better, inverse_depth, best_inverse_depth)
        face_id = np.where(better, index, face_id)
    depth = 1.0 / best_inverse_depth if perspective else -best_inverse_depth
    return face_id, np.where(face_id >= 0, depth, 0.0)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))[None, :]
    return q if np.linalg.det(q) > 0 else -q


def random_triangle_soup(rng, num_faces, size):
    screen = np.concatenate(
        [rng.uniform(-0.2 * size, 1.2 * size, size=(3 * num_faces, 2)), rng.uniform(1.0, 5.0, size=(3 * num_faces, 1))], axis=1
    ).astype(np.float32)
    return screen, np.arange(3 * num_faces, dtype=np.int32).reshape(num_faces, 3)


CUBE_VERTICES = np.array(
    [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], dtype=np.float32
)
# Counter-clockwise seen from outside (right-handed outward normals).
CUBE_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # x = -0.5
        [4, 6, 7], [4, 7, 5],  # x = +0.5
        [0, 4, 5], [0, 5, 1],  # y = -0.5
        [2, 3, 7], [2, 7, 6],  # y = +0.5
        [0, 2, 6], [0, 6, 4],  # z = -0.5
        [1, 5, 7], [1, 7, 3],  # z = +0.5
    ],
    dtype=np.int32,
)


@pytest.fixture(scope="module")
def body():
    model = default_body("low")
    return np.asarray(model.v_template, dtype=np.float32), np.asarray(model.faces, dtype=np.int32)


# ----------------------------------------------------------------------------------------- cameras


def test_project_matches_numpy_perspective_and_orthographic(rng):
    rotation = random_rotation(rng)
    translation = np.array([0.1, -0.2, 4.0])
    points = rng.normal(size=(5, 7, 3))
    fx, fy, cx, cy = 300.0, 280.0, 17.0, 23.0
    camera_points = points @ rotation.T + translation
    for orthographic in (False, True):
        camera = make_camera(rotation, translation, fx=fx, fy=fy, cx=cx, cy=cy, height=48, width=40, orthographic=orthographic)
        pixels, depth = project(points, camera)
        x, y, z = np.moveaxis(camera_points, -1, 0)
        scale = (1.0, 1.0) if orthographic else (z, z)
        expected = np.stack([fx * x / scale[0] + cx, fy * y / scale[1] + cy], axis=-1)
        assert pixels.shape == (5, 7, 2) and depth.shape == (5, 7)
        np.testing.assert_allclose(pixels, expected, rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(depth, z, rtol=1e-5, atol=1e-5)


def test_look_at_is_opencv_convention():
    eye, target = np.array([0.3, 1.0, 3.0]), np.array([0.0, 0.5, 0.0])
    rotation, translation = look_at(eye, target, up=(0.0, 1.0, 0.0))
    rotation, translation = np.asarray(rotation, np.float64), np.asarray(translation, np.float64)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(rotation @ eye + translation, 0.0, atol=1e-6)  # eye at the origin
    in_camera = rotation @ target + translation
    np.testing.assert_allclose(in_camera[:2], 0.0, atol=1e-6)  # target on the optical axis...
    assert in_camera[2] > 0  # ...in front (z forward)
    assert (rotation @ np.array([0.0, 1.0, 0.0]))[1] < 0  # world up is image up (y down)
    # A camera in front of a +z-facing body sees the body's +x side on the image right.
    rotation, translation = look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0))
    np.testing.assert_allclose(rotation, np.diag([1.0, -1.0, -1.0]), atol=1e-6)


def test_frame_vertices_fits_bbox_with_margin(body):
    vertices, _ = body
    for view in ("front", "side", "back", "three-quarter"):
        for orthographic in (False, True):
            camera = frame_vertices(vertices, view, height=64, width=48, margin=0.1, orthographic=orthographic)
            pixels, depth = project(vertices, camera)
            pixels = np.asarray(pixels)
            assert np.all(np.asarray(depth) > 0)
            low, high = pixels.min(axis=0), pixels.max(axis=0)
            assert low[0] >= 4.8 - 1e-3 and high[0] <= 43.2 + 1e-3 and low[1] >= 6.4 - 1e-3 and high[1] <= 57.6 + 1e-3
            # Tight along the limiting axis and centred along both.
            assert max((high[0] - low[0]) / 38.4, (high[1] - low[1]) / 51.2) == pytest.approx(1.0, abs=1e-4)
            np.testing.assert_allclose((low + high) / 2, [24.0, 32.0], atol=1e-3)


def test_camera_rejects_bad_input():
    with pytest.raises(ValueError, match="rotation"):
        make_camera(np.eye(2), np.zeros(3), fx=1.0, height=8, width=8)
    with pytest.raises(ValueError, match="unknown view"):
        frame_vertices(CUBE_VERTICES, "above")
    with pytest.raises(ValueError, match="margin"):
        frame_vertices(CUBE_VERTICES, "front", margin=0.6)


# -------------------------------------------------------------------------------------- rasteriser


def test_single_triangle_coverage_matches_numpy(rng):
    for _ in range(3):
        corners = np.concatenate([rng.uniform(-4, SIZE + 4, size=(3, 2)), rng.uniform(1, 3, size=(3, 1))], axis=1)
        fragments = rasterize(corners.astype(np.float32), np.array([[0, 1, 2]]), SIZE, SIZE)
        u, v = pixel_centres(SIZE, SIZE)
        expected = np.all(screen_barycentrics_np(corners, u, v) >= 0, axis=-1)
        assert expected.sum() > 0
        np.testing.assert_array_equal(np.asarray(fragments.mask), expected)
        np.testing.assert_array_equal(np.asarray(fragments.face_id), np.where(expected, 0, -1))


def test_background_is_empty():
    corners = np.array([[4.0, 4.0, 2.0], [12.0, 5.0, 2.0], [6.0, 14.0, 2.0]], dtype=np.float32)
    fragments = rasterize(corners, np.array([[0, 2, 1]]), SIZE, SIZE)
    background = ~np.asarray(fragments.mask)
    assert background.sum() > 0.8 * SIZE * SIZE
    assert np.all(np.asarray(fragments.face_id)[background] == -1)
    assert np.all(np.asarray(fragments.barycentric)[background] == 0)
    assert np.all(np.asarray(fragments.depth)[background] == 0)
    empty = rasterize(corners + np.float32([100.0, 0.0, 0.0]), np.array([[0, 1, 2]]), SIZE, SIZE)
    assert not np.any(np.asarray(empty.mask))


def test_top_left_rule_covers_shared_edge_pixels_exactly_once():
    # A square with corners on pixel centres, split along its diagonal (which also passes through
    # pixel centres): the top-left rule gives exactly 8 × 8 pixels, each covered by one face only.
    square = np.array([[2.5, 2.5, 1.0], [10.5, 2.5, 1.0], [10.5, 10.5, 1.0], [2.5, 10.5, 1.0]], dtype=np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int32)
    first = np.asarray(rasterize(square, faces[:1], 16, 16).mask)
    second = np.asarray(rasterize(square, faces[1:], 16, 16).mask)
    assert not np.any(first & second)
    union = np.zeros((16, 16), bool)
    union[2:10, 2:10] = True
    np.testing.assert_array_equal(first | second, union)
    np.testing.assert_array_equal(np.asarray(rasterize(square, faces, 16, 16).mask), union)


@pytest.mark.parametrize("perspective_correct", [True, False])
def test_nearer_triangle_wins_regardless_of_face_order(perspective_correct):
    screen = np.array(
        [[2.1, 2.2, 5.0], [30.3, 4.1, 5.0], [8.2, 30.4, 5.0],  # far (no pixel centre on an edge)
         [4.1, 28.3, 2.0], [28.2, 30.1, 2.0], [20.3, 1.2, 2.0]],  # near
        dtype=np.float32,
    )
    for faces, near_index in ((np.array([[0, 1, 2], [3, 4, 5]]), 1), (np.array([[3, 4, 5], [0, 1, 2]]), 0)):
        fragments = rasterize(screen, faces, SIZE, SIZE, perspective_correct=perspective_correct)
        face_id, depth = np.asarray(fragments.face_id), np.asarray(fragments.depth)
        u, v = pixel_centres(SIZE, SIZE)
        near_inside = np.all(screen_barycentrics_np(screen[3:].astype(np.float64), u, v) >= 0, axis=-1)
        far_inside = np.all(screen_barycentrics_np(screen[:3].astype(np.float64), u, v) >= 0, axis=-1)
        assert np.sum(near_inside & far_inside) > 50
        assert np.all(face_id[near_inside] == near_index)
        assert np.all(face_id[far_inside & ~near_inside] == 1 - near_index)
        np.testing.assert_allclose(depth[near_inside], 2.0, rtol=1e-5)
        np.testing.assert_allclose(depth[far_inside & ~near_inside], 5.0, rtol=1e-5)


def test_zbuffer_matches_numpy_brute_force_and_ignores_chunking(rng):
    screen, faces = random_triangle_soup(rng, 40, SIZE)
    expected_face, expected_depth = zbuffer_np(screen, faces, SIZE, SIZE)
    reference = None
    for chunk_size, tile_size in ((128, 16), (7, 5)):
        fragments = rasterize(screen, faces, SIZE, SIZE, chunk_size=chunk_size, tile_size=tile_size)
        face_id = np.asarray(fragments.face_id)
        if reference is None:
            reference = face_id
            np.testing.assert_array_equal(face_id, expected_face)
            np.testing.assert_allclose(np.asarray(fragments.depth), expected_depth, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(face_id, reference)


def test_barycentrics_sum_to_one_and_interpolate_affine_functions_exactly(rng):
    # Orthographic: screen-space barycentrics reproduce any affine function of (u, v) exactly.
    screen, faces = random_triangle_soup(rng, 12, SIZE)
    fragments = rasterize(screen, faces, SIZE, SIZE, perspective_correct=False)
    mask = np.asarray(fragments.mask)
    assert mask.sum() > 100
    np.testing.assert_allclose(np.asarray(fragments.barycentric).sum(-1)[mask], 1.0, atol=1e-5)
    assert np.all(np.asarray(fragments.barycentric)[mask] > -1e-5)
    attribute = np.stack([0.3 * screen[:, 0] - 0.7 * screen[:, 1] + 2.0, 1.5 * screen[:, 1]], axis=-1)
    u, v = pixel_centres(SIZE, SIZE)
    values = np.asarray(interpolate(fragments, attribute, faces))
    assert values.shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(values[..., 0][mask], (0.3 * u - 0.7 * v + 2.0)[mask], atol=1e-4)
    np.testing.assert_allclose(values[..., 1][mask], (1.5 * v)[mask], atol=1e-4)
    assert np.all(values[~mask] == 0)


def test_perspective_correct_barycentrics_match_ray_casting(rng):
    # A tilted triangle in camera space, seen by a pinhole camera: the barycentrics must be those of
    # the 3-D point where each pixel's ray meets the triangle, and depth its z.
    triangle = np.array([[-0.6, -0.5, 2.0], [0.7, -0.3, 5.0], [0.0, 0.6, 3.0]])
    camera = make_camera(np.eye(3), np.zeros(3), fx=60.0, fy=56.0, cx=15.0, cy=17.0, height=SIZE, width=SIZE)
    fragments = rasterize(screen_vertices(triangle.astype(np.float32), camera), np.array([[0, 1, 2]]), SIZE, SIZE)
    mask = np.asarray(fragments.mask)
    assert mask.sum() > 150
    u, v = pixel_centres(SIZE, SIZE)
    rays = np.stack([(u - 15.0) / 60.0, (v - 17.0) / 56.0, np.ones_like(u)], axis=-1)
    normal = np.cross(triangle[1] - triangle[0], triangle[2] - triangle[0])
    t = (triangle[0] @ normal) / (rays @ normal)
    hits = rays * t[..., None]
    # Barycentrics of the 3-D hit points by least squares on the triangle's edge basis.
    basis = np.stack([triangle[1] - triangle[0], triangle[2] - triangle[0]], axis=-1)  # (3, 2)
    coefficients = np.linalg.lstsq(basis, (hits - triangle[0]).reshape(-1, 3).T, rcond=None)[0].T.reshape(SIZE, SIZE, 2)
    expected = np.concatenate([1.0 - coefficients.sum(-1, keepdims=True), coefficients], axis=-1)
    np.testing.assert_allclose(np.asarray(fragments.barycentric)[mask], expected[mask], atol=2e-5)
    np.testing.assert_allclose(np.asarray(fragments.depth)[mask], hits[..., 2][mask], rtol=2e-5)
    # Screen-space (affine) weights would be visibly wrong here: perspective correction matters.
    affine = screen_barycentrics_np(np.asarray(screen_vertices(triangle, camera), np.float64), u, v)
    assert np.abs(affine[mask] - expected[mask]).max() > 0.05


@pytest.mark.parametrize("direction", [(0.0, 0.0, 1.0), (0.3, 0.5, 0.8)])
def test_cube_silhouette_area_matches_orthographic_projection(direction):
    # The orthographic shadow of a unit cube along unit d has area |d_x| + |d_y| + |d_z|.
    direction = np.asarray(direction) / np.linalg.norm(direction)
    rotation, translation = look_at(3.0 * direction, np.zeros(3), up=(0.0, 1.0, 0.0))
    scale = 14.0  # pixels per metre
    camera = make_camera(rotation, translation, fx=scale, height=48, width=48, orthographic=True)
    expected = scale**2 * np.abs(direction).sum()
    for cull in (False, True):
        fragments = rasterize(screen_vertices(CUBE_VERTICES, camera), CUBE_FACES, 48, 48, perspective_correct=False, cull_backfaces=cull)
        area = float(np.asarray(fragments.mask).sum())
        assert area == pytest.approx(expected, rel=0.05)
        face_normals = np.cross(CUBE_VERTICES[CUBE_FACES[:, 1]] - CUBE_VERTICES[CUBE_FACES[:, 0]], CUBE_VERTICES[CUBE_FACES[:, 2]] - CUBE_VERTICES[CUBE_FACES[:, 0]])
        visible = np.unique(np.asarray(fragments.face_id)[np.asarray(fragments.mask)])
        assert np.all(face_normals[visible] @ direction > 0)  # only faces turned towards the camera


def test_faces_behind_the_near_plane_are_dropped():
    screen = np.array([[2.0, 2.0, 1.0], [30.0, 2.0, -1.0], [2.0, 30.0, 1.0]], dtype=np.float32)
    assert not np.any(np.asarray(rasterize(screen, np.array([[0, 1, 2]]), SIZE, SIZE).mask))


def test_rasterize_rejects_bad_input():
    screen = np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        rasterize(np.zeros((3, 2)), np.array([[0, 1, 2]]), 8, 8)
    with pytest.raises(ValueError, match="only 3 vertices"):
        rasterize(screen, np.array([[0, 1, 3]]), 8, 8)
    with pytest.raises(ValueError, match="integer"):
        rasterize(screen, np.array([[0.0, 1.0, 2.0]]), 8, 8)
    with pytest.raises(ValueError, match="height"):
        rasterize(screen, np.array([[0, 1, 2]]), 0, 8)


# --------------------------------------------------------------------------- interpolation gradients


def test_gradient_wrt_vertex_colours_is_exact(rng):
    screen, faces = random_triangle_soup(rng, 6, 16)
    fragments = rasterize(screen, faces, 16, 16)
    bary = np.asarray(fragments.barycentric, np.float64)
    face_id = np.asarray(fragments.face_id)
    mask = np.asarray(fragments.mask)
    weights = rng.normal(size=(16, 16, 3))
    colours = rng.uniform(size=(screen.shape[0], 3))
    with jax.enable_x64(True):
        fr64 = fragments._replace(barycentric=jnp.asarray(bary))
        loss = lambda c: jnp.sum(interpolate(fr64, c, faces) * jnp.asarray(weights))  # noqa: E731
        colours64 = jnp.asarray(colours)
        check_grads(loss, (colours64,), order=1, modes=("rev",), eps=1e-4)
        gradient = np.asarray(jax.grad(loss)(colours64))
    expected = np.zeros_like(colours)
    for row, col in zip(*np.nonzero(mask)):
        for corner in range(3):
            expected[faces[face_id[row, col], corner]] += bary[row, col, corner] * weights[row, col]
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient, expected, atol=1e-10)


def test_barycentrics_are_differentiable_inside_triangles(rng):
    triangle = np.array([[3.2, 2.1, 2.0], [14.6, 5.3, 3.0], [6.1, 13.7, 2.5]], dtype=np.float32)
    faces = np.array([[0, 1, 2]], dtype=np.int32)
    face_id = rasterize(triangle, faces, 16, 16).face_id
    with jax.enable_x64(True):
        weights = jnp.asarray(rng.normal(size=(16, 16, 3)))

        def loss(screen):
            fragments = barycentrics_from_face_ids(screen, jnp.asarray(faces), face_id)
            return jnp.sum(fragments.barycentric * weights) + jnp.sum(fragments.depth)

        check_grads(loss, (jnp.asarray(triangle, jnp.float64),), order=1, modes=("rev",), eps=1e-5)


# -------------------------------------------------------------------------------- buffers, figures


def test_default_body_buffers_are_plausible(body):
    vertices, faces = body
    side = render_buffers(vertices, faces, frame_vertices(vertices, "side", height=64, width=64, orthographic=True))
    rows, cols = np.nonzero(np.asarray(side["mask"]))
    assert rows.size > 200
    assert (rows.max() - rows.min()) > 2.5 * (cols.max() - cols.min())  # much taller than deep
    camera = frame_vertices(vertices, "front", height=64, width=64, margin=0.1, orthographic=True)
    buffers = render_buffers(vertices, faces, camera)
    mask = np.asarray(buffers["mask"])
    rows, cols = np.nonzero(mask)
    pixels = np.asarray(project(vertices, camera)[0])
    # The silhouette spans the projected extent of the body (T-pose: as wide as tall), up to the
    # thin hands and feet that fall between pixel centres.
    assert rows.min() == pytest.approx(pixels[:, 1].min(), abs=2.0) and rows.max() == pytest.approx(pixels[:, 1].max(), abs=2.0)
    assert cols.min() == pytest.approx(pixels[:, 0].min(), abs=2.0) and cols.max() == pytest.approx(pixels[:, 0].max(), abs=2.0)
    # Exactly the independent brute-force z-buffer (a pixel centre exactly on an edge is a tie that
    # the top-left rule may resolve differently; allow a handful).
    expected_face, expected_depth = zbuffer_np(np.asarray(buffers["screen_vertices"]), faces, 64, 64, perspective=False)
    same = np.asarray(buffers["face_id"]) == expected_face
    assert np.sum(~same) <= 2
    np.testing.assert_allclose(np.asarray(buffers["depth"])[same], expected_depth[same], atol=1e-4)
    # The centre column is covered from the neck to the crotch and empty between the legs.
    assert mask[18:35, 32].all() and not mask[37:57, 32].any()
    normals, depth = np.asarray(buffers["normals"]), np.asarray(buffers["depth"])
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1.0, atol=1e-4)
    assert np.mean(normals[mask][:, 2] < 0) > 0.95  # facing the camera (OpenCV z forward)
    camera_z = np.asarray(project(vertices, camera)[1])
    assert depth[mask].min() >= camera_z.min() - 1e-4 and depth[mask].max() <= camera_z.max() + 1e-4
    vertex_id = np.asarray(buffers["vertex_id"])
    assert np.all(vertex_id[~mask] == -1) and np.all(vertex_id[mask] >= 0)
    rows, cols = np.nonzero(mask)
    distance = np.linalg.norm(pixels[vertex_id[rows, cols]] - np.stack([cols + 0.5, rows + 0.5], axis=-1), axis=-1)
    assert np.median(distance) < 1.5
    rgb = np.asarray(buffers["rgb"])
    np.testing.assert_allclose(rgb[~mask], 1.0)
    assert rgb[mask].max() <= 1.0 and rgb[mask].min() >= 0.0 and rgb[mask].std() > 0.01


def test_vertex_id_is_argmax_barycentric_vertex():
    screen = np.array([[2.0, 2.0, 1.0], [14.0, 2.0, 1.0], [2.0, 14.0, 1.0]], dtype=np.float32)
    faces = np.array([[0, 1, 2]])
    fragments = rasterize(screen, faces, 16, 16)
    ids = np.asarray(nearest_vertex_ids(fragments, faces))
    assert ids[2, 2] == 0 and ids[2, 12] == 1 and ids[12, 2] == 2 and ids[15, 15] == -1


def test_render_mesh_image_and_grid_png(tmp_path, body):
    vertices, faces = body
    red = np.tile(np.float32([1.0, 0.0, 0.0]), (vertices.shape[0], 1))
    image = render_mesh_image(vertices, faces, view="front", size=48, color=red)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    covered = np.any(image < 250, axis=-1)
    assert covered.sum() > 100
    assert np.all(image[covered][:, 1] <= image[covered][:, 0]) and image[covered][:, 0].mean() > 3 * image[covered][:, 1].mean()
    path = tmp_path / "grid" / "meshes.png"
    save_mesh_grid_png(path, [(vertices, faces, "a", None), (vertices, faces, "b", red)], views=("front", "side"), size=48)
    import matplotlib.image

    picture = matplotlib.image.imread(path)
    assert picture.ndim == 3 and picture.shape[0] > 2 * 48 and picture.shape[1] >= 2 * 48
    assert [p.name for p in path.parent.iterdir()] == ["meshes.png"]  # no temporary file left
    with pytest.raises(ValueError, match="per-vertex"):
        render_mesh_image(vertices, faces, size=48, color=np.ones((3, 3)))
    with pytest.raises(ValueError, match="NaN"):
        render_mesh_image(np.full_like(vertices, np.nan), faces, size=48)
    with pytest.raises(ValueError, match="title"):
        save_mesh_grid_png(tmp_path / "bad.png", [(vertices, faces)], size=48)


# --------------------------------------------------------------------------------- soft silhouette


SOFT_TRIANGLE = np.array([[3.3, 2.4, 2.0], [13.7, 5.2, 2.5], [5.6, 13.9, 3.0]], dtype=np.float32)


def edge_distance_np(corners, u, v):
    """float64 signed Euclidean distance (pixels, > 0 inside) from pixel centres to a triangle's outline."""
    inside = np.all(screen_barycentrics_np(corners, u, v) >= 0, axis=-1)
    points = np.stack([u, v], axis=-1)
    distances = []
    for k in range(3):
        p, q = corners[(k + 1) % 3, :2], corners[(k + 2) % 3, :2]
        t = np.clip((points - p) @ (q - p) / np.dot(q - p, q - p), 0.0, 1.0)
        distances.append(np.linalg.norm(points - p - t[..., None] * (q - p), axis=-1))
    distance = np.min(distances, axis=0)
    return np.where(inside, distance, -distance)


def test_soft_silhouette_matches_its_formula_and_tends_to_the_hard_mask():
    faces = np.array([[0, 1, 2]])
    u, v = pixel_centres(16, 16)
    distance = edge_distance_np(SOFT_TRIANGLE.astype(np.float64), u, v)
    soft = np.asarray(soft_silhouette(SOFT_TRIANGLE, faces, 16, 16, sigma=0.7))
    np.testing.assert_allclose(soft, 1.0 / (1.0 + np.exp(-distance / 0.7)), atol=1e-5)
    sharp = np.asarray(soft_silhouette(SOFT_TRIANGLE, faces, 16, 16, sigma=0.02))
    hard = np.asarray(rasterize(SOFT_TRIANGLE, faces, 16, 16).mask)
    clear = np.abs(distance) > 0.2
    np.testing.assert_array_equal(sharp[clear] > 0.5, hard[clear])
    # Two copies of a face act as independent occluders: 1 − (1 − s)².
    double = np.asarray(soft_silhouette(np.concatenate([SOFT_TRIANGLE, SOFT_TRIANGLE]), np.array([[0, 1, 2], [3, 4, 5]]), 16, 16, sigma=0.7))
    np.testing.assert_allclose(double, 1.0 - (1.0 - soft) ** 2, atol=1e-5)


def test_soft_silhouette_ignores_blocking(rng):
    screen, faces = random_triangle_soup(rng, 20, SIZE)
    reference = np.asarray(soft_silhouette(screen, faces, SIZE, SIZE, sigma=0.5))
    assert 0.0 <= reference.min() and reference.max() <= 1.0
    for chunk_size, tile_size in ((7, 5),):
        blocked = soft_silhouette(screen, faces, SIZE, SIZE, sigma=0.5, chunk_size=chunk_size, tile_size=tile_size)
        np.testing.assert_allclose(np.asarray(blocked), reference, atol=1e-5)


def test_soft_silhouette_gradients_are_correct_and_useful(rng):
    faces = np.array([[0, 1, 2]])
    with jax.enable_x64(True):
        weights = jnp.asarray(rng.normal(size=(16, 16)))
        loss = lambda screen: jnp.sum(soft_silhouette(screen, faces, 16, 16, sigma=1.0) * weights)  # noqa: E731
        check_grads(loss, (jnp.asarray(SOFT_TRIANGLE, jnp.float64),), order=1, modes=("rev",), eps=1e-5)
        # Matching a target shifted 2 px to the right pulls the triangle to the right.
        shift = jnp.asarray([1.0, 0.0, 0.0])[None, :]
        start = jnp.asarray(SOFT_TRIANGLE, jnp.float64)
        target = soft_silhouette(start + 2.0 * shift, faces, 16, 16, sigma=1.0)
        mismatch = lambda t: jnp.sum((soft_silhouette(start + t * shift, faces, 16, 16, sigma=1.0) - target) ** 2)  # noqa: E731
        assert float(jax.grad(mismatch)(0.0)) < 0


def test_rasterize_under_vmap_matches_single_images(rng):
    screen, faces = random_triangle_soup(rng, 10, 16)
    batch = np.stack([screen, screen[::-1].copy()])
    batched = jax.vmap(lambda s: rasterize(s, faces, 16, 16))(batch)
    for index in range(2):
        single = rasterize(batch[index], faces, 16, 16)
        np.testing.assert_array_equal(np.asarray(batched.face_id[index]), np.asarray(single.face_id))
        np.testing.assert_allclose(np.asarray(batched.barycentric[index]), np.asarray(single.barycentric), atol=1e-6)
