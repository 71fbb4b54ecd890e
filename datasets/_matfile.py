"""MAT-files with a fixed header, for the synthetic writers.

`scipy.io.savemat` writes its creation time into the file's 116-byte text header, so the
same data gave other bytes on every run: DVC saw a changed dataset, and a synthetic
dataset could not be compared with an earlier one byte for byte."""

from __future__ import annotations

import io

import scipy.io

HEADER_BYTES = 116


def mat_bytes(mdict: dict, writer: str, **options) -> bytes:
    """`scipy.io.savemat(mdict, **options)`'s bytes, the header naming `writer`, no time."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, mdict, **options)
    data = bytearray(buf.getvalue())
    header = f"MATLAB 5.0 MAT-file, Platform: posix, Created by: {writer}".encode()
    data[:HEADER_BYTES] = header.ljust(HEADER_BYTES, b" ")
    return bytes(data)
