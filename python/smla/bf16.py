"""bf16 <-> float conversion in NumPy (NumPy has no bf16 dtype; smla takes uint16 arrays of bf16 bits)."""

import numpy as np


def float_to_bf16(values):
    """Rounds float values to bf16 (round to nearest even) and returns their bits as uint16.

    NaN stays NaN (a quiet NaN of the same sign); +-inf and overflow to inf behave as in IEEE rounding.
    """
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    is_nan = (bits & 0x7FFFFFFF) > 0x7F800000
    # RNE on the 16 dropped bits: add 0x7FFF plus the lowest kept bit, then truncate.
    rounded = (bits + (np.uint32(0x7FFF) + ((bits >> 16) & 1))) >> 16
    quiet_nan = (bits >> 16) | 0x0040
    return np.where(is_nan, quiet_nan, rounded).astype(np.uint16)


def bf16_to_float(bits):
    """float32 values of uint16 arrays holding bf16 bits (exact)."""
    bits = np.asarray(bits)
    if bits.dtype != np.uint16:
        raise ValueError(f"bf16_to_float: expected a uint16 array of bf16 bits, got dtype {bits.dtype}")
    return (bits.astype(np.uint32) << 16).view(np.float32)
