"""Readers for the published skeleton formats (SBU text, N-UCLA json, NTU .skeleton).

Each reader turns raw files into float32 arrays of shape (C, T, V, M) and raises
`DataError`, naming the file and the problem, on anything malformed.
"""
import pickle
from pathlib import Path


class DataError(ValueError):
    """A data file or folder is missing or malformed; the message names which and why."""

    def __init__(self, message):
        # A DataLoader worker's error comes back as DataError("Caught DataError in DataLoader worker
        # process 0. Original Traceback ... data.DataError: <message>"): keep just the message.
        if 'Original Traceback' in str(message):
            message = str(message).strip().splitlines()[-1].split('DataError: ', 1)[-1]
        super().__init__(message)


def check_finite(array, source):
    """Raise DataError if `array` holds NaN or inf; `source` names where it came from."""
    import numpy as np

    if not np.isfinite(array).all():
        raise DataError(f"{source}: contains NaN or inf coordinates")


def read_text(path):
    """The UTF-8 text of a data file; unreadable files (missing, a folder, no permission, not UTF-8,
    a symlink loop) raise DataError naming the file."""
    try:
        return Path(path).read_text(encoding='utf-8')
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None


class _LabelUnpickler(pickle.Unpickler):
    """Unpickles plain containers, strings and numbers, and numpy arrays/scalars; any other class
    or function (what a crafted pickle needs to run code) is refused before it is loaded."""

    ALLOWED = {('numpy', 'ndarray'), ('numpy', 'dtype'), ('numpy.core.multiarray', '_reconstruct'),
               ('numpy._core.multiarray', '_reconstruct'), ('numpy.core.multiarray', 'scalar'),
               ('numpy._core.multiarray', 'scalar'), ('numpy', 'int64'), ('numpy', 'int32'),
               ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
               ('builtins', 'list'), ('builtins', 'tuple'), ('builtins', 'dict'), ('builtins', 'str'),
               ('builtins', 'int'), ('builtins', 'float'), ('_codecs', 'encode')}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: label files hold only names and labels")
        return super().find_class(module, name)


def load_label_pickle(path):
    """A (names, labels) label pickle (ST-GCN / AS-CAL format) read without running any code from it."""
    try:
        with open(path, 'rb') as f:
            return _LabelUnpickler(f, encoding='latin1').load()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from None
    except Exception as err:
        raise DataError(f"{path}: not a (names, labels) pickle ({err})") from None
