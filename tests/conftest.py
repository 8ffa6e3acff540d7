"""Shared fixtures: the real data in ../shared/data (or $ASCAL_DATA_ROOT) and a per-session cache."""
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope='session')
def data_root():
    root = Path(os.environ.get('ASCAL_DATA_ROOT', ROOT.parent / 'shared' / 'data')).resolve()
    assert (root / 'sbu').is_dir() and (root / 'nucla').is_dir(), \
        f"real data not found at {root}: set ASCAL_DATA_ROOT to the shared data folder"
    return root


@pytest.fixture(scope='session', autouse=True)
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp('cache')
    os.environ['ASCAL_CACHE_DIR'] = str(path)
    return path
