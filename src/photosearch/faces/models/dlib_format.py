"""Reader for dlib's binary serialization format (dlib/serialize.h).

Only the primitives live here; each model module knows its own record layout.
The format facts are in ../shared/docs/dlib-models.md, section 1.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DlibFormatError", "DlibReader"]


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format where we expected them to."""


class DlibReader:
    """Sequential reader over the bytes of a dlib ``.dat`` file."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int) -> memoryview:
        if n < 0:
            raise DlibFormatError(f"negative length {n} at byte {self.pos}")
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} bytes)")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self) -> int:
        """An integer of any width: control byte (sign bit 7, byte count in bits 0-3), LE bytes."""
        control = self._take(1)[0]
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def float(self) -> float:
        """float/double: the int64 mantissa first, then the int16 exponent; value = m * 2**e."""
        mantissa = self.int()
        exponent = self.int()
        if exponent == 32000:
            return float("inf")
        if exponent == 32001:
            return float("-inf")
        if exponent == 32002:
            return float("nan")
        return float(np.ldexp(np.float64(mantissa), exponent))

    def bool(self) -> bool:
        byte = bytes(self._take(1))
        if byte not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool byte {byte!r} at byte {self.pos - 1}")
        return byte == b"1"

    def string(self) -> str:
        return bytes(self._take(self.int())).decode("utf-8")

    def expect_int(self, expected: int, what: str) -> None:
        at = self.pos
        got = self.int()
        if got != expected:
            raise DlibFormatError(f"{what}: expected {expected}, got {got} at byte {at}")

    def expect_string(self, expected: str) -> None:
        at = self.pos
        got = self.string()
        if got != expected:
            raise DlibFormatError(f"expected record {expected!r}, got {got!r} at byte {at}")

    def tensor(self) -> np.ndarray:
        """A resizable_tensor: version 2, then n, k, nr, nc, then float32 LE values."""
        self.expect_int(2, "tensor version")
        at = self.pos
        shape = tuple(self.int() for _ in range(4))
        if min(shape) < 0:
            raise DlibFormatError(f"negative tensor shape {shape} at byte {at}")
        count = int(np.prod(shape))
        values = np.frombuffer(self._take(4 * count), dtype="<f4").astype(np.float32)
        return values.reshape(shape)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """An alias_tensor: version 1 and a shape, no data."""
        self.expect_int(1, "alias_tensor version")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]

    def matrix(self, dtype: type = np.float64) -> np.ndarray:
        """A dlib::matrix: -rows, -cols, then row-major elements (each a serialized float)."""
        rows, cols = -self.int(), -self.int()
        if rows < 0 or cols < 0:
            raise DlibFormatError(f"bad matrix shape at byte {self.pos}")
        values = [self.float() for _ in range(rows * cols)]
        return np.asarray(values, dtype=dtype).reshape(rows, cols)
