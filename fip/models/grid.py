"""A bilateral-grid approximator in the spirit of HDRNet (Gharbi et al., "Deep Bilateral Learning for Real-Time
Image Enhancement", SIGGRAPH 2017), written with portable torch ops.

A small network looks at the photo downscaled to a fixed ``lowres x lowres`` copy and predicts a bilateral grid of
affine colour transforms, ``grid_size x grid_size`` cells of space by ``depth`` cells of a learned guide value,
twelve numbers (a 3x3 matrix and a 3-vector) per cell. A global branch (strided convolutions and fully connected
layers over the whole low-resolution copy, optionally fed the photo's histograms) adds whole-photo information
to every cell, which per-image means and variances cannot carry. At full resolution each pixel costs the same
small, constant work: a pointwise guide (``3 -> guide_hidden -> 1``), a trilinear lookup of the grid at (row,
column, guide) and the affine transform of its own colour. So the full-resolution cost does not depend on the
operator, and the network's cost does not depend on the photo's size.

The full-resolution step runs in bands of rows (``band``), so a 12 MP or 4K photo never holds a full-size
per-pixel temporary but the output. The trilinear lookup is :func:`torch.nn.functional.embedding_bag` with
per-sample weights (one fused gather-and-sum of four 12-vectors per pixel, after the grid is interpolated between
rows once per band): measured ~4x faster on a CPU than ``grid_sample`` on a 5-D grid, differentiable in the grid
and in the guide, and available on CPU and CUDA. While exporting to ONNX the same lookup is written as plain
indexing and a weighted sum (:func:`slice_rows`'s ``portable``): the same numbers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fip.errors import InputError
from fip.models.can import check_input

COEFFICIENTS = 12  # a 3x3 colour matrix and a 3-vector per grid cell


class GridGuide(nn.Module):
    """The pointwise guide: ``sigmoid(w2 . LeakyReLU(W1 @ rgb + b1) + b2)``, one value in (0, 1) per pixel that
    places the pixel along the grid's depth axis. It starts as a luminance-like ramp.

    Input ``(B, 3, H, W)``; output ``(B, H, W)``.
    """

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.hidden = hidden
        self.first = nn.Linear(3, hidden)
        self.last = nn.Linear(hidden, 1)
        with torch.no_grad():  # start near 4 * (mean(rgb) - 0.5) before the sigmoid: a spread-out luminance
            self.first.weight.normal_(0.0, 0.1).add_(1.0 / 3.0)
            self.first.bias.zero_()
            self.last.weight.fill_(4.0 / hidden)
            self.last.bias.fill_(-2.0)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = rgb.shape
        flat = rgb.reshape(batch, 3, -1)
        # Two matrix products over the flattened pixels (as fip.models.guided.GuideMap: faster than 1x1 convolutions).
        hidden = torch.baddbmm(self.first.bias.view(1, -1, 1), self.first.weight.expand(batch, -1, -1), flat)
        hidden = F.leaky_relu(hidden, 0.2)
        value = torch.baddbmm(self.last.bias.view(1, 1, 1), self.last.weight.expand(batch, -1, -1), hidden)
        return torch.sigmoid(value).view(batch, height, width)


class BilateralGridNet(nn.Module):
    """HDRNet-style bilateral-grid approximator; see the module docstring.

    Args:
        in_channels: input channels (RGB first; extra conditioning maps go to the low-resolution network only).
        lowres: side of the square low-resolution copy the network sees (a power of two times ``grid_size``).
        grid_size: spatial cells of the grid per side.
        depth: cells of the grid along the guide.
        width: channels of the network's deepest features.
        guide_hidden: hidden units of the pointwise guide.
        histogram_bins: if positive, the global branch also reads the low-resolution copy's per-channel histograms
            over this many bins and its means and deviations (:func:`photo_statistics`): what tone operators map.

    Input ``(B, in_channels, H, W)`` sRGB in [0, 1], any size of at least 2x2; output ``(B, 3, H, W)``, not clipped.
    Untrained, it is the identity (every cell holds the identity transform).
    """

    def __init__(
        self,
        in_channels: int = 3,
        lowres: int = 256,
        grid_size: int = 16,
        depth: int = 8,
        width: int = 64,
        guide_hidden: int = 8,
        histogram_bins: int = 0,
    ):
        super().__init__()
        steps = (lowres // grid_size).bit_length() - 1
        if lowres % grid_size or 2**steps != lowres // grid_size or steps < 2:
            raise InputError(f"lowres {lowres} must be grid_size {grid_size} times a power of two of at least 4")
        if depth < 2 or grid_size < 2:
            raise InputError(f"the grid needs at least 2 cells per axis; got grid_size {grid_size}, depth {depth}")
        self.in_channels, self.lowres, self.grid_size, self.depth = in_channels, lowres, grid_size, depth
        self.width, self.guide_hidden, self.histogram_bins = width, guide_hidden, histogram_bins
        channels = [in_channels] + [max(8, width >> (steps - 1 - i)) for i in range(steps)]
        self.splat = nn.Sequential(
            *[
                layer
                for i in range(steps)
                for layer in (nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1), nn.ReLU())
            ]
        )
        self.local = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1, bias=False)
        )
        # The global branch: two more halvings, then fully connected layers over the whole (grid_size / 4)^2 map.
        self.global_conv = nn.Sequential(
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        cells = max(1, grid_size // 4) ** 2
        statistics = 3 * histogram_bins + 6 if histogram_bins else 0
        self.global_fc = nn.Sequential(
            nn.Linear(width * cells + statistics, 4 * width),
            nn.ReLU(),
            nn.Linear(4 * width, 2 * width),
            nn.ReLU(),
            nn.Linear(2 * width, width),
        )
        self.fuse = nn.Conv2d(width, COEFFICIENTS * depth, 1)
        nn.init.zeros_(self.fuse.weight)
        with torch.no_grad():  # every cell starts as the identity: A = I, b = 0
            identity = torch.zeros(COEFFICIENTS)
            identity[[0, 4, 8]] = 1.0
            self.fuse.bias.copy_(identity.repeat_interleave(depth))
        self.guide = GridGuide(guide_hidden)

    def grid(self, x: torch.Tensor) -> torch.Tensor:
        """The bilateral grid predicted from ``x``: ``(B, 12, depth, grid_size, grid_size)`` (row-major 3x3 matrix,
        then the 3-vector), from the photo resized to ``lowres x lowres``."""
        # Antialiased bilinear: a box-like average when shrinking, plain bilinear when enlarging, one path that
        # torch.export and ONNX (Resize with antialias) keep for any size (area resizing exports for one size only).
        small = F.interpolate(x, size=(self.lowres, self.lowres), mode="bilinear", antialias=True, align_corners=False)
        features = self.splat(small)
        local = self.local(features)
        pooled = F.adaptive_avg_pool2d(self.global_conv(features), max(1, self.grid_size // 4))
        summary = pooled.flatten(1)
        if self.histogram_bins:
            summary = torch.cat([summary, photo_statistics(small[:, :3], self.histogram_bins)], dim=1)
        global_features = self.global_fc(summary)
        fused = F.relu(local + global_features[:, :, None, None])
        coefficients = self.fuse(fused)
        return coefficients.view(x.shape[0], COEFFICIENTS, self.depth, self.grid_size, self.grid_size)

    def forward(self, x: torch.Tensor, band: int | None = None) -> torch.Tensor:
        check_input(x, self.in_channels)
        return self.render(self.grid(x), x[:, :3], band)

    def multiply_adds(self, height: int, width: int) -> int:
        """Multiply-adds of one photo of ``height x width``: the low-resolution network's (the same for every photo,
        counted on one pass) plus the full-resolution step's (the guide, the four-cell lookup of 12 numbers and
        the 3x4 transform per pixel)."""
        counted = []

        def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            per_output = module.weight[0].numel()  # in_channels x kernel for a convolution, in_features for a layer
            counted.append(output.numel() * per_output)

        layers = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and m not in self.guide.modules()]
        hooks = [layer.register_forward_hook(count) for layer in layers]
        try:
            with torch.no_grad():
                self.grid(torch.zeros(1, self.in_channels, self.lowres, self.lowres))
        finally:
            for hook in hooks:
                hook.remove()
        per_pixel = 4 * self.guide_hidden + 4 * COEFFICIENTS + 12
        return sum(counted) + per_pixel * height * width

    def forward_rows(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The output's rows ``rows`` (a 1-D index tensor) only, ``(B, 3, len(rows), W)``: the grid still comes from
        the whole photo and each pixel's work is its own, so this equals ``forward(x)[:, :, rows]`` at a fraction of
        the full-resolution cost. Training takes a random subset of rows per step
        (:meth:`sample_rows`): an unbiased estimate of the whole photo's loss."""
        check_input(x, self.in_channels)
        table = self.grid(x).permute(0, 3, 4, 2, 1)
        rgb = x[:, :3, rows]
        columns = _axis(x.shape[3], self.grid_size, x.device)
        return slice_rows(table, self.guide(rgb), rgb, x.shape[2], rows, columns)

    @staticmethod
    def sample_rows(height: int, fraction: float = 0.25, device: torch.device | None = None) -> torch.Tensor:
        """Every ``1 / fraction``-th row from a random first one: rows spread over the whole photo."""
        step = max(1, round(1 / fraction))
        first = int(torch.randint(step, ()).item()) if step > 1 else 0
        return torch.arange(min(first, height - 1), height, step, device=device)

    def render(self, grid: torch.Tensor, rgb: torch.Tensor, band: int | None = None) -> torch.Tensor:
        """Each pixel of ``rgb`` (``(B, 3, H, W)``) transformed by the ``grid`` cell it looks up; ``band``: that many
        rows at a time (the same result)."""
        batch, _, height, width = rgb.shape
        columns = _axis(width, self.grid_size, rgb.device)
        table = grid.permute(0, 3, 4, 2, 1)  # (B, gy, gx, depth, 12): one 12-vector per cell, cells row-major
        if band is None or band >= height:  # no loop over the rows: torch.export keeps the height symbolic
            rows = torch.arange(height, device=rgb.device)
            return slice_rows(table, self.guide(rgb), rgb, height, rows, columns)
        out = rgb.new_empty(batch, 3, height, width)
        for top in range(0, height, band):
            bottom = min(height, top + band)
            rows = torch.arange(top, bottom, device=rgb.device)
            out[:, :, top:bottom] = slice_rows(
                table, self.guide(rgb[:, :, top:bottom]), rgb[:, :, top:bottom], height, rows, columns
            )
        return out


def photo_statistics(rgb: torch.Tensor, bins: int) -> torch.Tensor:
    """``(B, 3 * bins + 6)``: each channel's histogram over ``bins`` cells of [0, 1] (linear-interpolated counts,
    summing to 1), then its mean and standard deviation: the whole photo's tones, which tone operators map."""
    batch = rgb.shape[0]
    values = rgb.clamp(0, 1).reshape(batch, 3, -1, 1) * (bins - 1)
    centres = torch.arange(bins, device=rgb.device, dtype=rgb.dtype)
    histogram = (1 - (values - centres).abs()).clamp(min=0).mean(dim=2)  # (B, 3, bins)
    std, mean = torch.std_mean(rgb.reshape(batch, 3, -1), dim=2)
    return torch.cat([histogram.flatten(1), mean, std], dim=1)


def _axis(size: int, cells: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel along an axis of ``size`` pixels: the lower grid cell index (``0 .. cells - 2``) and the weight of
    the upper one, for linear interpolation between cell centres (pixel and cell centres aligned, borders clamped)."""
    centres = torch.arange(size, device=device, dtype=torch.float32) + 0.5
    position = (centres * (cells / size) - 0.5).clamp(0, cells - 1)
    lower = position.floor().clamp(max=cells - 2)
    return lower.long(), position - lower


def slice_rows(
    table: torch.Tensor,
    guide: torch.Tensor,
    rgb: torch.Tensor,
    height: int,
    rows: torch.Tensor,
    columns: tuple[torch.Tensor, torch.Tensor],
    portable: bool | None = None,
) -> torch.Tensor:
    """Rows ``rows`` of a photo of ``height`` rows through the grid.

    Args:
        table: ``(B, gy, gx, depth, 12)`` the grid, cell-major.
        guide: ``(B, R, W)`` the guide value in [0, 1] of each pixel of the rows.
        rgb: ``(B, 3, R, W)`` the rows' colours.
        height: the photo's rows (where these rows sit in the grid).
        rows: ``(R,)`` the rows' indices in the photo.
        columns: :func:`_axis` of the photo's width.
        portable: plain indexing instead of ``embedding_bag`` (the same numbers; default: while exporting to ONNX).

    Returns:
        ``(B, 3, R, W)``: ``A @ rgb + b`` per pixel, ``(A, b)`` trilinearly interpolated from the grid.
    """
    batch, cells_y, cells_x, depth, _ = table.shape
    row, row_weight = _axis(height, cells_y, guide.device)
    row, row_weight = row[rows], row_weight[rows].to(table.dtype)
    rows, width = guide.shape[1:]
    # The grid interpolated between cell rows once per pixel row: (B, R, gx, depth, 12), then one lookup table.
    lerp = torch.lerp(table[:, row], table[:, row + 1], row_weight.view(1, -1, 1, 1, 1))
    flat = lerp.reshape(-1, COEFFICIENTS)
    column, column_weight = columns
    position = (guide * depth - 0.5).clamp(0, depth - 1)
    level = position.detach().floor().clamp(max=depth - 2)
    level_weight = (position - level).unsqueeze(-1)  # (B, R, W, 1)
    base = (
        torch.arange(batch * rows, device=guide.device).view(batch, rows, 1) * (cells_x * depth)
        + (column * depth).view(1, 1, width)
        + level.long()
    )
    index = base.unsqueeze(-1) + torch.tensor([0, 1, depth, depth + 1], device=guide.device)
    right = column_weight.to(table.dtype).view(1, 1, width, 1)
    weights = torch.cat(
        [
            (1 - right) * (1 - level_weight),
            (1 - right) * level_weight,
            right * (1 - level_weight),
            right * level_weight,
        ],
        dim=-1,
    )
    if portable is None:
        portable = torch.onnx.is_in_onnx_export()
    if portable:
        coefficients = (flat[index.view(-1, 4)] * weights.view(-1, 4, 1)).sum(dim=1)
    else:
        coefficients = F.embedding_bag(index.view(-1, 4), flat, per_sample_weights=weights.view(-1, 4), mode="sum")
    coefficients = coefficients.view(batch, rows * width, COEFFICIENTS)
    pixels = rgb.reshape(batch, 3, rows * width).transpose(1, 2)  # (B, N, 3)
    matrix = coefficients[:, :, :9].reshape(batch, rows * width, 3, 3)
    out = (matrix * pixels.unsqueeze(2)).sum(dim=-1) + coefficients[:, :, 9:]
    return out.transpose(1, 2).reshape(batch, 3, rows, width)


__all__ = ["BilateralGridNet", "GridGuide", "slice_rows"]
