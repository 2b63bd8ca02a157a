"""The numba kernels behind :mod:`fip.runtime.kernels` (imported by it on first use; see there). Top-level
functions, so that numba caches their machine code: defined inside a function, those calling other jitted
functions were compiled anew in every process (5 s here)."""

import numpy as np
from numba import njit, prange

OPTIONS = {"parallel": True, "cache": True, "nogil": True}


@njit(inline="always")
def reflect(i, n):
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


@njit(inline="always")
def horizontal_box(row, out, radius, scale):
    """``out[x]``: ``scale`` times the sum of ``row`` over ``x - radius .. x + radius``, reflected at the ends
    (the interior without the reflection's branches, so it vectorizes)."""
    width = row.shape[0]
    for x in range(min(radius, width)):
        total = row[x] * 0
        for dx in range(-radius, radius + 1):
            total += row[reflect(x + dx, width)]
        out[x] = total * scale
    for x in range(radius, width - radius):
        total = row[x] * 0
        for dx in range(2 * radius + 1):
            total += row[x - radius + dx]
        out[x] = total * scale
    for x in range(max(radius, width - radius), width):
        total = row[x] * 0
        for dx in range(-radius, radius + 1):
            total += row[reflect(x + dx, width)]
        out[x] = total * scale


@njit(**OPTIONS)
def fit(planes, first_plane, second_plane, radius, eps):
    """The regularized least-squares fit of the target (planes 3-5) from the guide (planes 0-2) in every box,
    before the box mean of the coefficients: per row, the 21 box sums (``_FIRST``, ``_SECOND``) in float64,
    then the 3x3 solve by the adjugate."""
    height, width = planes.shape[1], planes.shape[2]
    out = np.empty((12, height, width), np.float32)
    area = (2 * radius + 1) ** 2
    for y in prange(height):
        column = np.zeros((21, width), np.float64)  # vertical box sums of this row
        for dy in range(-radius, radius + 1):
            yy = reflect(y + dy, height)
            for k in range(21):  # one simple loop per statistic, so each vectorizes
                first, second = first_plane[k], second_plane[k]
                sums = column[k]
                a = planes[first, yy]
                if second < 0:
                    for x in range(width):
                        sums[x] += a[x]
                else:
                    b = planes[second, yy]
                    for x in range(width):
                        sums[x] += np.float64(a[x]) * b[x]
        mean = np.empty((21, width), np.float64)
        for k in range(21):
            horizontal_box(column[k], mean[k], radius, 1.0 / area)
        for x in range(width):
            i0, i1, i2 = mean[0, x], mean[1, x], mean[2, x]
            s00 = mean[6, x] - i0 * i0 + eps
            s01 = mean[7, x] - i0 * i1
            s02 = mean[8, x] - i0 * i2
            s11 = mean[9, x] - i1 * i1 + eps
            s12 = mean[10, x] - i1 * i2
            s22 = mean[11, x] - i2 * i2 + eps
            c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
            c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
            inverse = 1.0 / (s00 * c00 + s01 * c01 + s02 * c02)  # of the determinant
            for c in range(3):
                p = mean[3 + c, x]
                v0 = mean[12 + 3 * c, x] - i0 * p
                v1 = mean[13 + 3 * c, x] - i1 * p
                v2 = mean[14 + 3 * c, x] - i2 * p
                a0 = (c00 * v0 + c01 * v1 + c02 * v2) * inverse
                a1 = (c01 * v0 + c11 * v1 + c12 * v2) * inverse
                a2 = (c02 * v0 + c12 * v1 + c22 * v2) * inverse
                out[3 * c, y, x] = a0
                out[3 * c + 1, y, x] = a1
                out[3 * c + 2, y, x] = a2
                out[9 + c, y, x] = p - a0 * i0 - a1 * i1 - a2 * i2
    return out


@njit(**OPTIONS)
def box(maps, radius):
    """Box means over ``(2 * radius + 1)``-pixel squares, borders reflected (``fip.models.guided.box_mean``)."""
    channels, height, width = maps.shape
    out = np.empty_like(maps)
    area = np.float32((2 * radius + 1) ** 2)
    for y in prange(height):
        column = np.zeros(width, np.float32)
        for k in range(channels):
            column[:] = 0.0
            for dy in range(-radius, radius + 1):
                yy = reflect(y + dy, height)
                for x in range(width):
                    column[x] += maps[k, yy, x]
            horizontal_box(column, out[k, y], radius, np.float32(1.0) / area)
    return out


@njit(**OPTIONS)
def apply(maps, guide, row0, row1, row_weight, col0, col1, col_weight, colour):
    """Per output row: the two source rows of every map interpolated once, then per pixel the two columns and
    the linear model."""
    count = maps.shape[0]
    channels, height, width = guide.shape
    out = np.empty((channels, height, width), np.float32)
    for y in prange(height):
        top, bottom, wy = row0[y], row1[y], row_weight[y]
        row = np.empty((count, maps.shape[2]), np.float32)
        for k in range(count):
            for x in range(maps.shape[2]):
                upper = maps[k, top, x]
                row[k, x] = upper + wy * (maps[k, bottom, x] - upper)
        for x in range(width):
            left, right, wx = col0[x], col1[x], col_weight[x]
            if colour:
                for c in range(3):
                    value = row[9 + c, left] + wx * (row[9 + c, right] - row[9 + c, left])
                    for i in range(3):
                        k = 3 * c + i
                        a = row[k, left] + wx * (row[k, right] - row[k, left])
                        value += a * guide[i, y, x]
                    out[c, y, x] = value
            else:
                for c in range(channels):
                    a = row[c, left] + wx * (row[c, right] - row[c, left])
                    b = row[channels + c, left] + wx * (row[channels + c, right] - row[channels + c, left])
                    out[c, y, x] = a * guide[c, y, x] + b
    return out


@njit(**OPTIONS)
def guide_map(planes, first_weight, first_bias, last_weight, last_bias, slope):
    """``rgb + W2 @ leaky_relu(W1 @ rgb + b1) + b2`` per pixel (``planes`` ``(3, H, W)``): the hidden layer of each
    row is made and used in a row buffer, never as a full-size map."""
    channels, height, width = planes.shape
    hidden = first_weight.shape[0]
    out = np.empty((channels, height, width), np.float32)
    for y in prange(height):
        row = np.empty(width, np.float32)
        for c in range(channels):
            for x in range(width):
                out[c, y, x] = planes[c, y, x] + last_bias[c]
        for k in range(hidden):
            w0, w1, w2, b = first_weight[k, 0], first_weight[k, 1], first_weight[k, 2], first_bias[k]
            for x in range(width):
                value = b + w0 * planes[0, y, x] + w1 * planes[1, y, x] + w2 * planes[2, y, x]
                row[x] = value if value > 0 else slope * value
            for c in range(channels):
                weight = last_weight[c, k]
                for x in range(width):
                    out[c, y, x] += weight * row[x]
    return out


@njit(**OPTIONS)
def decode(values, table):
    """``values`` clipped to [0, 1], looked up in ``table`` (samples at ``i / (len - 1)``) with linear
    interpolation."""
    out = np.empty(values.shape[0], np.float32)
    last = table.shape[0] - 1
    for i in prange(values.shape[0]):
        value = np.float64(values[i])
        value = 0.0 if not value > 0.0 else min(value, 1.0)  # NaN reads as 0, never as an index
        position = value * last
        index = min(int(position), last - 1)
        fraction = position - index
        out[i] = table[index] + fraction * (table[index + 1] - table[index])
    return out
