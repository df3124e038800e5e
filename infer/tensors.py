"""Ring frames (uint8) to ComfyUI image batches (``[B, H, W, 3]`` float32 on a device) and back.

Pixel formats, as the frame ring stores them:

- ``rgb24``: ``(H, W, 3)`` uint8, packed.
- ``yuv420p``: the three planes back to back (Y ``H*W``, then U and V of ``ceil(H/2)*ceil(W/2)``
  each), given as any uint8 array with that many elements (PyAV's ``to_ndarray()`` gives
  ``(H*3/2, W)``, the ring's frame has a 1-D ``data``) or as a sequence of plane arrays.
- ``nv12``: Y, then one interleaved UV plane; same rules.

YUV samples are read and written with the frame's colour description (``ipc.colour.Colour``:
BT.601, BT.709 or BT.2020 matrix, limited or full range). An unspecified description is
resolved per picture size (BT.709 for HD, BT.601 below), separately for the input and the
output size, as egress tags the output.

The uint8 data crosses to the device once and is converted there (colour conversion included);
results come back as uint8 once. With CUDA, host staging buffers are pinned and reused, so the
copies are asynchronous DMA. Float to uint8 rounds to nearest, so a passthrough is exact.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ipc import pixfmt
from ipc.colour import MATRIX_BT709, MATRIX_SMPTE170M, RANGE_FULL, RANGE_LIMITED, Colour

PIXEL_FORMATS = ("rgb24", "yuv420p", "nv12")

# Ring frames are read-only views; the tensors made over them are only ever read.
warnings.filterwarnings(
    "ignore", message="The given NumPy array is not writable", category=UserWarning, module=__name__
)

_COLORSPACES = {"bt601": MATRIX_SMPTE170M, "bt709": MATRIX_BT709}
# (luma offset, luma scale, chroma scale) of 8-bit samples.
_LIMITED = (16.0, 219.0, 224.0)
_FULL = (0.0, 255.0, 255.0)

Pixels = Any
"""A frame's pixels as the ring hands them over: a uint8 ``np.ndarray`` (or, for yuv420p, three planes)."""


def _yuv_matrices(colour: Colour) -> tuple[torch.Tensor, torch.Tensor]:
    """(rgb_from_yuv, yuv_from_rgb) 3x3 for normalised Y' in [0,1] and Pb/Pr in [-0.5, 0.5]."""
    kr, kb = colour.luma_weights
    kg = 1.0 - kr - kb
    rgb_from_yuv = torch.tensor(
        [
            [1.0, 0.0, 2 * (1 - kr)],
            [1.0, -2 * kb * (1 - kb) / kg, -2 * kr * (1 - kr) / kg],
            [1.0, 2 * (1 - kb), 0.0],
        ],
        dtype=torch.float64,
    )
    return rgb_from_yuv.float(), torch.linalg.inv(rgb_from_yuv).float()


class PixelConverter:
    """Converts frames of one pixel format to image batches on ``device`` and back.

    One converter per stream (it owns reusable staging buffers); not thread-safe.
    """

    def __init__(
        self,
        width: int,
        height: int,
        pixel_format: str = "rgb24",
        device: torch.device | str = "cpu",
        *,
        colorspace: str = "bt601",
        colour: Colour | None = None,
    ) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        if colour is None:
            try:
                colour = Colour(matrix=_COLORSPACES[colorspace], range=RANGE_LIMITED)
            except KeyError:
                raise ValueError(f"unsupported colorspace {colorspace!r}") from None
        self.nbytes = pixfmt.frame_nbytes(pixfmt.parse_pixel_format(pixel_format), width, height)
        self.width = width
        self.height = height
        self.pixel_format = pixel_format
        self.device = torch.device(device)
        self.colour = colour
        """The frames' colour description as they carry it (possibly unspecified)."""
        self._matrices: dict[Colour, tuple[torch.Tensor, torch.Tensor]] = {}
        self._cuda = self.device.type == "cuda"
        self._upload_staging: torch.Tensor | None = None
        self._upload_done: torch.cuda.Event | None = None
        self._download_staging: torch.Tensor | None = None

    @property
    def colorspace(self) -> Colour:
        """What picks the conversion (a grouping key for batches)."""
        return self.colour

    def resolved(self, height: int) -> Colour:
        """The colour description used for pictures ``height`` rows tall."""
        return self.colour.resolved(height)

    def _matrix_pair(self, colour: Colour) -> tuple[torch.Tensor, torch.Tensor]:
        key = Colour(matrix=colour.matrix, range=colour.range)
        found = self._matrices.get(key)
        if found is None:
            rgb_from_yuv, yuv_from_rgb = _yuv_matrices(key)
            found = (rgb_from_yuv.to(self.device), yuv_from_rgb.to(self.device))
            self._matrices[key] = found
        return found

    # -- frames to images ---------------------------------------------------------------------

    def flatten(self, frame: Pixels) -> np.ndarray:
        """A frame as a 1-D uint8 view (or copy, for separate planes); checks its size."""
        if isinstance(frame, (list, tuple)):
            frame = np.concatenate([np.asarray(p, dtype=np.uint8).reshape(-1) for p in frame])
        arr = np.asarray(frame)
        if arr.dtype != np.uint8:
            raise ValueError(f"frames must be uint8, got {arr.dtype}")
        if arr.size != self.nbytes:
            raise ValueError(
                f"{self.pixel_format} frame of {self.width}x{self.height} has {self.nbytes} "
                f"bytes, got {arr.size}"
            )
        return np.ascontiguousarray(arr).reshape(-1)

    def to_images(self, frames: Sequence[Pixels]) -> torch.Tensor:
        """Upload a batch of frames and convert it: ``[B, H, W, 3]`` float32 on the device."""
        raw = self._upload([self.flatten(f) for f in frames])
        if self.pixel_format == "rgb24":
            return torch.div(raw.view(len(frames), self.height, self.width, 3), 255.0)
        return self._yuv_to_rgb(raw)

    def _upload(self, flat: list[np.ndarray]) -> torch.Tensor:
        count = len(flat)
        if count == 0:
            raise ValueError("empty batch")
        if not self._cuda:
            if count == 1:
                return torch.from_numpy(flat[0]).unsqueeze(0)  # zero-copy view of the frame
            return torch.from_numpy(np.stack(flat))
        staging = self._upload_staging
        if staging is None or staging.shape[0] < count:
            staging = torch.empty((count, self.nbytes), dtype=torch.uint8, pin_memory=True)
            self._upload_staging = staging
            self._upload_done = None
        if self._upload_done is not None:
            self._upload_done.synchronize()  # the previous copy out of the buffer has finished
        host = staging.numpy()
        for i, frame in enumerate(flat):
            host[i] = frame
        on_device = staging[:count].to(self.device, non_blocking=True)
        self._upload_done = torch.cuda.Event()
        self._upload_done.record()
        return on_device

    def _yuv_to_rgb(self, raw: torch.Tensor) -> torch.Tensor:
        b, h, w = raw.shape[0], self.height, self.width
        ch, cw = (h + 1) // 2, (w + 1) // 2
        ys = h * w
        colour = self.resolved(h)
        offset, luma_scale, chroma_scale = _FULL if colour.range == RANGE_FULL else _LIMITED
        y = raw[:, :ys].view(b, 1, h, w).float().sub_(offset).div_(luma_scale)
        chroma = raw[:, ys:]
        if self.pixel_format == "nv12":
            uv8 = chroma.view(b, ch, cw, 2).permute(0, 3, 1, 2)
        else:
            uv8 = chroma.view(b, 2, ch, cw)
        uv = uv8.float().sub_(128.0).div_(chroma_scale)
        uv = F.interpolate(uv, scale_factor=2, mode="nearest")[:, :, :h, :w]
        yuv = torch.cat([y, uv], dim=1)  # [B, 3, H, W]
        rgb = torch.einsum("ij,bjhw->bhwi", self._matrix_pair(colour)[0], yuv)
        return rgb.clamp_(0.0, 1.0).contiguous()

    # -- images to frames ---------------------------------------------------------------------

    def to_frames(
        self, images: torch.Tensor, out: Sequence[np.ndarray] | None = None
    ) -> list[np.ndarray]:
        """Convert ``[B, H, W, C]`` floats to frames of their own size (rgb24: ``(H, W, 3)``;
        4:2:0: ``(H*3/2, W)`` for even sides, 1-D otherwise).

        With ``out`` (e.g. ring slot views, one per image), frames are written there and those
        arrays are returned; otherwise new arrays are returned.
        """
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4:
            raise ValueError(f"expected [B, H, W, C] images, got shape {tuple(images.shape)}")
        images = _three_channels(images)
        b, h, w = images.shape[0], images.shape[1], images.shape[2]
        if self.pixel_format == "rgb24":
            packed = _to_uint8(images).reshape(b, -1)
            shape: tuple[int, ...] = (h, w, 3)
        else:
            packed = self._rgb_to_yuv(images)
            shape = (h * 3 // 2, w) if h % 2 == 0 and w % 2 == 0 else (packed.shape[1],)
        host = self._download(packed)
        frames: list[np.ndarray] = []
        for i in range(b):
            if out is not None:
                target = out[i]
                if target.size != host[i].size or target.dtype != np.uint8:
                    raise ValueError(f"output buffer {i} does not fit a {w}x{h} frame")
                np.copyto(target, host[i].reshape(target.shape))
                frames.append(target)
            elif self._cuda:
                frames.append(host[i].reshape(shape).copy())  # staging is reused next call
            else:
                frames.append(host[i].reshape(shape))
        return frames

    def _rgb_to_yuv(self, images: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        rgb = images.to(self.device, torch.float32).clamp(0.0, 1.0)
        colour = self.resolved(images.shape[1])
        offset, luma_scale, chroma_scale = _FULL if colour.range == RANGE_FULL else _LIMITED
        yuv = torch.einsum("ij,bhwj->bihw", self._matrix_pair(colour)[1], rgb)  # [B, 3, H, W]
        y = yuv[:, 0].mul(luma_scale).add_(offset + 0.5).clamp_(0, 255).to(torch.uint8)
        chroma = yuv[:, 1:]
        if chroma.shape[2] % 2 or chroma.shape[3] % 2:  # odd sides: repeat the last row/column
            chroma = F.pad(chroma, (0, chroma.shape[3] % 2, 0, chroma.shape[2] % 2), "replicate")
        uv = F.avg_pool2d(chroma, 2).mul_(chroma_scale).add_(128.0 + 0.5).clamp_(0, 255)
        uv8 = uv.to(torch.uint8)
        if self.pixel_format == "nv12":
            uv8 = uv8.permute(0, 2, 3, 1)
        return torch.cat([y.reshape(b, -1), uv8.reshape(b, -1)], dim=1)

    def _download(self, packed: torch.Tensor) -> np.ndarray:
        if packed.device.type != "cuda":
            return packed.contiguous().numpy()
        count, size = packed.shape
        staging = self._download_staging
        if staging is None or staging.numel() < count * size:
            staging = torch.empty(count * size, dtype=torch.uint8, pin_memory=True)
            self._download_staging = staging
        view = staging[: count * size].view(count, size)
        view.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(packed.device).synchronize()
        return view.numpy()


def _three_channels(images: torch.Tensor) -> torch.Tensor:
    channels = images.shape[-1]
    if channels == 3:
        return images
    if channels > 3:
        return images[..., :3]
    return images[..., :1].expand(*images.shape[:-1], 3)


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Round to nearest and saturate: ``[0, 1]`` floats to uint8, contiguous."""
    return images.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8).contiguous()
