"""Readers for the published skeleton formats (SBU text, N-UCLA json, NTU .skeleton).

Each reader turns raw files into float32 arrays of shape (C, T, V, M) and raises
`DataError`, naming the file and the problem, on anything malformed.
"""


class DataError(ValueError):
    """A data file or folder is missing or malformed; the message names which and why."""


def check_finite(array, source):
    """Raise DataError if `array` holds NaN or inf; `source` names where it came from."""
    import numpy as np

    if not np.isfinite(array).all():
        raise DataError(f"{source}: contains NaN or inf coordinates")
