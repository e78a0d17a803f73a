"""Reader for the IDX format of the MNIST family (LeCun et al., http://yann.lecun.com/exdb/mnist/).

An IDX file is a 4-byte magic number ``00 00 <dtype> <ndim>``, then ``ndim`` big-endian uint32
dimension sizes, then the values in row-major order, big-endian. Files may be gzip-compressed
(recognised by their first two bytes, whatever their name). Every inconsistency — wrong magic,
unknown dtype, a length that does not match the dimensions, a broken gzip stream — raises a
one-line `DataError` naming the file.
"""
from __future__ import annotations

import array
import gzip
import sys
import zlib
from math import prod
from pathlib import Path

import torch
from torch import Tensor

from memrepro.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> (torch dtype, array typecode for multi-byte values, item size in bytes)
IDX_DTYPES = {
    0x08: (torch.uint8, None, 1),
    0x09: (torch.int8, None, 1),
    0x0B: (torch.int16, "h", 2),
    0x0C: (torch.int32, "i", 4),
    0x0D: (torch.float32, "f", 4),
    0x0E: (torch.float64, "d", 8),
}
TORCH_TO_IDX = {dtype: code for code, (dtype, _, _) in IDX_DTYPES.items()}


def read_idx(path: str | Path) -> Tensor:
    """The array stored in an IDX file (raw or gzip) as a tensor of the file's dtype."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: unreadable or corrupt gzip stream ({err})") from None
    return parse_idx(data, path)


def parse_idx(data: bytes, name: str | Path = "<bytes>") -> Tensor:
    """Decode the bytes of an (uncompressed) IDX file; ``name`` only labels error messages."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{name}: not an IDX file (magic number {data[:4].hex() or 'missing'}, expected 0000XXYY)")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX dtype code 0x{code:02x} (known: {', '.join(f'0x{c:02x}' for c in IDX_DTYPES)})")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header ({len(data)} bytes, the {ndim} dimension sizes need {header})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    dtype, typecode, itemsize = IDX_DTYPES[code]
    expected = header + prod(dims) * itemsize
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{name}: {state}: dimensions {dims} need {expected} bytes, the file has {len(data)}")
    body = data[header:]
    if typecode is None:
        values = torch.frombuffer(bytearray(body), dtype=dtype)
    else:
        values_array = array.array(typecode, body)
        if sys.byteorder == "little":
            values_array.byteswap()  # IDX stores multi-byte values big-endian
        values = torch.tensor(values_array, dtype=dtype)
    return values.reshape(dims)


def write_idx(path: str | Path, values: Tensor) -> None:
    """Write ``values`` as an IDX file, gzip-compressed when the name ends in ``.gz`` (for tests
    and for users who convert their own data)."""
    code = TORCH_TO_IDX.get(values.dtype)
    if code is None:
        raise ValueError(f"IDX cannot store dtype {values.dtype}")
    typecode = IDX_DTYPES[code][1]
    header = bytes([0, 0, code, values.dim()]) + b"".join(int(d).to_bytes(4, "big") for d in values.shape)
    flat = values.contiguous().flatten()
    if typecode is None:
        body = bytes(flat.view(torch.uint8).tolist())
    else:
        body_array = array.array(typecode, flat.tolist())
        if sys.byteorder == "little":
            body_array.byteswap()
        body = body_array.tobytes()
    data = header + body
    Path(path).write_bytes(gzip.compress(data) if str(path).endswith(".gz") else data)
