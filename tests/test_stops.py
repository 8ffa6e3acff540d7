"""Stops and failed writes end in one line: Ctrl-C (SIGINT to the process group, as a terminal sends
it) to a runner or to pretraining, and a checkpoint write beyond the file-size limit (EFBIG)."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start(argv, tmp_path):
    """A script as its own process group (a terminal's foreground job), output to files."""
    out, err = open(tmp_path / 'stdout', 'w'), open(tmp_path / 'stderr', 'w')
    return subprocess.Popen([sys.executable, *argv], cwd=ROOT, stdout=out, stderr=err, start_new_session=True)


def wait_for(check, seconds):
    end = time.time() + seconds
    while time.time() < end and not check():
        time.sleep(0.2)
    return check()


def group_gone(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def test_ctrl_c_stops_a_reproduction_and_the_same_command_continues(data_root, tmp_path):
    argv = ['reproduce.py', '--quick', '--configs', 'faithful', 'corrected', '--evaluations', 'linear', 'raw',
            '--jobs', '2', '--data_root', str(data_root), '--out', str(tmp_path / 'out'), '--runs', str(tmp_path / 'runs')]
    child = start(argv, tmp_path)
    assert wait_for(lambda: len(list((tmp_path / 'runs').glob('sbu/*/*/log.txt'))) >= 2, 120)
    os.killpg(child.pid, signal.SIGINT)
    assert wait_for(lambda: child.poll() is not None and group_gone(child.pid), 10), \
        'a process of the reproduction outlived Ctrl-C by 10 s'
    err = (tmp_path / 'stderr').read_text()
    assert child.wait() == 130 and 'Traceback' not in err and 'the same command continues' in err
    assert not list((tmp_path / 'out').rglob('*.partial'))
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]
    assert len(list((tmp_path / 'out' / 'sbu').glob('*/*.json'))) == 4


def test_ctrl_c_during_pretraining_says_what_was_saved_and_how_to_resume(data_root, tmp_path):
    out = tmp_path / 'run'
    child = start(['pretrain_and_linEval.py', '--data_root', str(data_root), '--epochs', '200', '--out_dir', str(out),
                   '--quiet', '--no_plots', '--threads', '1'], tmp_path)
    assert wait_for(lambda: (out / 'last.pth').is_file(), 120)
    os.killpg(child.pid, signal.SIGINT)
    assert child.wait(timeout=10) == 130
    err = (tmp_path / 'stderr').read_text()
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    assert 'is saved in' in err and f'--out_dir {os.path.relpath(out, ROOT)} --resume auto' in err


def test_a_checkpoint_write_beyond_the_file_size_limit_names_the_path(tmp_path):
    code = ("import resource, torch; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from runs import cli, save_checkpoint; "
            f"cli(lambda _: save_checkpoint(dict(x=torch.zeros(100000)), {str(tmp_path / 'ckpt.pth')!r}), lambda: None)")
    (tmp_path / 'ckpt.pth').write_bytes(b'previous')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and 'Traceback' not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path / 'ckpt.pth'}: ") and 'previous file is kept' in done.stderr
    assert (tmp_path / 'ckpt.pth').read_bytes() == b'previous' and not (tmp_path / 'ckpt.pth.partial').exists()
