"""Building blocks shared by the reference operators: weighted least-squares solves, image pyramids, the fast
local Laplacian filter, and luminance helpers. Images are ``(H, W)`` or ``(H, W, C)`` float32 arrays."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import scipy.sparse as sp

LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)  # Rec. 709 / sRGB primaries


def luminance(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` -> ``(H, W)`` weighted sum with Rec. 709 weights."""
    return (image @ LUMA).astype(np.float32)


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey[..., None], 3, axis=2).astype(np.float32)


def weighted_laplacian_system(
    wx: np.ndarray, wy: np.ndarray, lam: float, data: np.ndarray | None = None
) -> sp.csr_matrix:
    """The matrix of ``min_u sum data*(u - f)^2 + lam * sum(wx*(dx u)^2 + wy*(dy u)^2)``.

    Args:
        wx: ``(H, W)`` weight of the difference between pixel (y, x) and (y, x + 1); the last column is ignored.
        wy: ``(H, W)`` weight of the difference between pixel (y, x) and (y + 1, x); the last row is ignored.
        lam: smoothness weight.
        data: ``(H, W)`` data-term weight per pixel (default 1).

    Returns ``A`` with ``A u = data * f`` the normal equations (symmetric positive definite); pixels in raster order.
    """
    height, width = wx.shape
    wx = wx.astype(np.float64).copy()
    wy = wy.astype(np.float64).copy()
    wx[:, -1] = 0.0
    wy[-1, :] = 0.0
    east = (lam * wx).ravel()
    south = (lam * wy).ravel()
    diagonal = (np.ones(height * width) if data is None else data.astype(np.float64).ravel()) + east + south
    diagonal[1:] += east[:-1]  # the west neighbour's link
    diagonal[width:] += south[:-width]  # the north neighbour's link
    off_x, off_y = -east[:-1], -south[:-width]
    matrix = sp.diags([diagonal, off_x, off_x, off_y, off_y], [0, 1, -1, width, -width], format="csr")
    return matrix.astype(np.float32)  # float32 halves multigrid setup and solve time; tolerances stay >= 1e-4


def solve_spd(matrix: sp.csr_matrix, rhs: np.ndarray, tol: float = 1e-3, x0: np.ndarray | None = None) -> np.ndarray:
    """Solve ``matrix @ x = rhs`` for each column of ``rhs`` (``(N,)`` or ``(N, C)``) by conjugate gradients
    preconditioned with classical (Ruge-Stuben) algebraic multigrid from pyamg: its setup is the cheapest of the
    solvers tried on these 5-point systems, and one hierarchy serves every column. ``x0``: initial guess."""
    import pyamg

    solver = pyamg.ruge_stuben_solver(matrix, max_coarse=500)
    columns = rhs.reshape(rhs.shape[0], -1).astype(matrix.dtype)
    guesses = columns if x0 is None else x0.reshape(columns.shape).astype(matrix.dtype)
    out = np.empty_like(columns)
    for c in range(columns.shape[1]):
        out[:, c] = solver.solve(columns[:, c], x0=guesses[:, c].copy(), tol=tol, accel="cg", maxiter=200)
    return out.reshape(rhs.shape)


def wls_smooth(
    image: np.ndarray,
    wx: np.ndarray,
    wy: np.ndarray,
    lam: float,
    data: np.ndarray | None = None,
    tol: float = 1e-3,
    x0: np.ndarray | None = None,
) -> np.ndarray:
    """Weighted least-squares smoothing of ``image`` (``(H, W)`` or ``(H, W, C)``) with edge weights wx, wy.

    ``tol`` is the relative residual; in float32 these systems (edge weights up to 1e4 times the data weight)
    stall near 1e-4, and 1e-3 changes the result by far less than one 8-bit level."""
    height, width = image.shape[:2]
    matrix = weighted_laplacian_system(wx, wy, lam, data)
    rhs = image.reshape(height * width, -1).astype(np.float32)
    if data is not None:
        rhs = rhs * data.reshape(-1, 1)
    guess = None if x0 is None else x0.reshape(rhs.shape)
    return solve_spd(matrix, rhs, tol, guess).reshape(image.shape).astype(np.float32)


def forward_differences(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``dx, dy`` with zero in the last column / row (the MATLAB ``diff`` + ``padarray(..., 'post')`` convention)."""
    dx = np.zeros_like(image)
    dy = np.zeros_like(image)
    dx[:, :-1] = image[:, 1:] - image[:, :-1]
    dy[:-1] = image[1:] - image[:-1]
    return dx, dy


def gaussian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    pyramid = [image]
    for _ in range(levels - 1):
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    return pyramid


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels (finest first) and the low-pass residual last; :func:`collapse` inverts it exactly."""
    gaussian = gaussian_pyramid(image, levels)
    bands = [g - cv2.pyrUp(g_next, dstsize=(g.shape[1], g.shape[0])) for g, g_next in itertools.pairwise(gaussian)]
    return bands + [gaussian[-1]]


def collapse(pyramid: list[np.ndarray]) -> np.ndarray:
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = band + cv2.pyrUp(image, dstsize=(band.shape[1], band.shape[0]))
    return image


def pyramid_levels(height: int, width: int, coarsest: int = 8) -> int:
    """Number of levels until the short side is about ``coarsest`` pixels."""
    return max(1, int(np.floor(np.log2(max(1, min(height, width) / coarsest)))) + 1)


def fast_local_laplacian(
    image: np.ndarray, sigma_r: float, alpha: float, beta: float, references: int = 10, residual_scale: float = 1.0
) -> np.ndarray:
    """Local Laplacian filtering (Paris, Hasinoff and Kautz 2011) in its fast form (Aubry et al. 2014).

    For ``references`` values g of the intensity range, the image is remapped pointwise with

        r_g(i) = g + sign(i - g) * sigma_r * (|i - g| / sigma_r) ** alpha           if |i - g| <= sigma_r  (details)
        r_g(i) = g + sign(i - g) * (beta * (|i - g| - sigma_r) + sigma_r)           otherwise              (edges)

    and each output Laplacian coefficient is interpolated linearly between the two remapped pyramids whose g
    bracket the input's Gaussian-pyramid value there. ``alpha < 1`` enhances detail, ``beta < 1`` compresses
    the range. ``image``: ``(H, W)`` float32 (any range, e.g. intensity in [0, 1] or log luminance).
    ``residual_scale`` scales the low-pass residual around its mean: the range at scales coarser than the
    pyramid's top (tone mapping compresses it too; detail manipulation keeps it).
    """
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    levels = pyramid_levels(*image.shape)
    gaussian = gaussian_pyramid(image, levels)
    output = [np.zeros_like(g) for g in gaussian]
    output[-1] = gaussian[-1].mean() + residual_scale * (gaussian[-1] - gaussian[-1].mean())
    if high - low < 1e-6:
        return image.copy()
    grid = np.linspace(low, high, references, dtype=np.float32)
    step = grid[1] - grid[0]
    noise = 0.01  # below this difference, blend to identity so alpha < 1 does not amplify noise (Paris et al.)
    for g in grid:
        difference = image - g
        magnitude = np.abs(difference)
        normalized = np.minimum(magnitude / sigma_r, 1.0)
        detail = np.power(normalized, alpha)
        if alpha < 1.0:
            tau = np.clip((magnitude - noise) / noise, 0.0, 1.0)
            tau = tau * tau * (3.0 - 2.0 * tau)  # smoothstep from noise to 2 * noise
            detail = tau * detail + (1.0 - tau) * normalized
        detail = sigma_r * detail
        edge = beta * (magnitude - sigma_r) + sigma_r
        remapped = g + np.sign(difference) * np.where(magnitude <= sigma_r, detail, edge)
        bands = laplacian_pyramid(remapped.astype(np.float32), levels)
        for level in range(levels - 1):
            weight = np.clip(1.0 - np.abs(gaussian[level] - g) / step, 0.0, 1.0)
            output[level] += weight * bands[level]
    return collapse(output)
