"""README's Run block runs as written in a fresh checkout: its first line sets the data root, and the
quick commands of the block (no checkpoint placeholders, no long training) succeed."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICK = ('--show_options', 'viewer.py', '--mode raw')


def run_block():
    text = (ROOT / 'README.md').read_text()
    block = text.split('## Run', 1)[1].split('```bash', 1)[1].split('```', 1)[0]
    return [line.split('#', 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_run_block_runs_as_written(data_root, tmp_path):
    lines = run_block()
    assert lines[0].startswith('export ASCAL_DATA_ROOT=')  # the data first, as a fresh checkout needs
    quick = [line for line in lines[1:] if any(q in line for q in QUICK) and '<' not in line]
    assert len(quick) == 3, quick
    clone = tmp_path / 'clone'
    shutil.copytree(ROOT, clone, ignore=shutil.ignore_patterns('.git', '.venv', 'runs', 'results', '__pycache__'))
    env = dict(os.environ, ASCAL_DATA_ROOT=str(data_root))
    for line in quick:
        assert line.startswith('python ')
        done = subprocess.run([sys.executable, *line.split()[1:]], cwd=clone, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and 'Traceback' not in done.stderr, f"{line}: {done.stderr[-500:]}"
    assert (clone / 'runs' / 'views.png').is_file() and list((clone / 'runs').glob('ucla-raw-*/results.json'))


def test_readme_claims_come_from_the_generated_tables():
    """Every decimal number of README's "What stands out" stands in a table that reproduce.py or ablation.py writes."""
    import re
    text = (ROOT / 'README.md').read_text()
    tables = text.split('<!-- reproduce.py --summary writes this table -->', 1)[1].split('<!-- end of the table -->')[0]
    tables += (ROOT / 'results' / 'README.md').read_text() + (ROOT / 'results' / 'ablation' / 'README.md').read_text()
    claims = text.split('What stands out:', 1)[1].split('\n## ', 1)[0]
    numbers = re.findall(r'\d+\.\d+', claims)
    assert len(numbers) >= 8, numbers
    assert [n for n in numbers if n not in tables] == []
