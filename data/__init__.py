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


# The largest plausible absolute coordinate of each format: SBU's normalised image coordinates and
# depth lie in about [-0.2, 2.5] (checked: -0.12 to 2.46 in the release); N-UCLA and NTU camera
# coordinates are metres from a Kinect (checked: below 5.1). Far beyond is a corrupt file.
PLAUSIBLE = {'sbu': 100.0, 'metres': 100.0}


def check_values(array, source, limit, axes=('frame',), offset=0):
    """Raise DataError naming `source` and where `array` first holds NaN, inf or a value beyond
    +-limit: `axes` name the leading axes (e.g. ('sample', None, 'frame')); `offset` is added to the first."""
    import numpy as np

    bad = ~(np.abs(array) <= limit)  # NaN compares False
    if bad.any():
        where = np.argwhere(bad)[0]
        value = np.asarray(array)[tuple(where)]
        what = 'NaN or inf coordinates' if not np.isfinite(value) else f'coordinate {value:g} beyond +-{limit:g}'
        at = ', '.join(f'{name} {i + (offset if k == 0 else 0)}' for k, (name, i) in enumerate(zip(axes, where)) if name)
        raise DataError(f"{source}: {at} contains {what}")


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
