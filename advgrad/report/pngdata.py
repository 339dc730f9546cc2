"""Small PNG images as ``data:`` URIs, for a page that must not fetch anything.

The encoder is the PNG format itself (W3C PNG, 2003: signature, IHDR, IDAT of zlib-deflated
scanlines with filter type 0, IEND, each chunk with its CRC-32), so no imaging library is needed.
Images larger than :data:`MAX_SIDE` pixels on a side are shrunk by area averaging first: a
gallery shows what an example looks like, not every pixel, and a page stays small.
"""

from __future__ import annotations

import base64
import struct
import zlib

import torch
from torch import Tensor

MAX_SIDE = 64  # pixels on the longer side of an image the page embeds


def shrink(img: Tensor, max_side: int = MAX_SIDE) -> Tensor:
    """C×H×W in [0, 1], shrunk by area averaging so that its longer side is at most ``max_side``."""
    h, w = img.shape[-2:]
    if max(h, w) <= max_side:
        return img
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return torch.nn.functional.interpolate(img[None].float(), size=size, mode="area")[0]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png_bytes(img: Tensor) -> bytes:
    """C×H×W (or H×W) in [0, 1] as an 8-bit PNG: grey for one channel, RGB for three or more
    (the first three), grey (the mean) for two."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.dim() == 2:
        img = img[None]
    if img.shape[0] >= 3:
        img, color_type = img[:3], 2
    else:
        img, color_type = img.mean(0, keepdim=True), 0
    channels, h, w = img.shape
    pixels = (img * 255).round().to(torch.uint8).permute(1, 2, 0).reshape(h, w * channels)
    rows = torch.cat([torch.zeros(h, 1, dtype=torch.uint8), pixels], dim=1)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", w, h, 8, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows.numpy().tobytes(), 9))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(img: Tensor, max_side: int = MAX_SIDE) -> str:
    """``data:image/png;base64,…`` of :func:`shrink` then :func:`png_bytes`."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(shrink(img, max_side))).decode("ascii")
