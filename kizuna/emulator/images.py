"""Tiny PNG images made in code, so the emulator ships no binary files and needs no Pillow."""

from __future__ import annotations

import struct
import zlib


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int = 64, height: int = 64, rgb: tuple[int, int, int] = (6, 199, 85)) -> bytes:
    """A solid-colour RGB PNG with a lighter diagonal stripe (so it is visibly an image)."""
    light = tuple(min(255, c + 90) for c in rgb)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0 for every scanline
        for x in range(width):
            row.extend(light if abs(x - y) < max(2, width // 16) else rgb)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
        + _chunk(b"IEND", b"")
    )


# Placeholder bytes for media kinds the emulator cannot meaningfully generate.
PLACEHOLDER = {
    "video": (b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 16, "video/mp4"),
    "audio": (b"\x00\x00\x00\x18ftypM4A " + b"\x00" * 16, "audio/x-m4a"),
    "file": (b"%PDF-1.4\n%emulator placeholder\n", "application/octet-stream"),
}
