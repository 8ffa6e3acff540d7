"""One runner for many runs (reproduce.py, ablation.py): jobs -> runs -> recorded JSON -> tables.

A job is a list of Commands run in order by one worker; a Command is one command line of a script, run
as a subprocess exactly as a user would type it. Its results.json (resolved options and
provenance included: the command as run, commit, machine, versions) is recorded as
<out>/<name>.json. Recorded runs are skipped (`force` reruns them); a pretraining run is redone
when a later run of its job needs its checkpoint ('{model_path}' in its arguments) and the
checkpoint is gone, and continues from its newest checkpoint when a stop left it unfinished. Jobs
run side by side, longest first by the recorded durations of runs of the same kind, with an
estimate and a progress bar.
"""
import json
import os
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from runs import RunError, Stopped, write_json

ROOT = Path(__file__).resolve().parent
PRETRAIN = 'pretrain_and_linEval.py'


@dataclass(frozen=True)
class Command:
    name: str    # record path below the output folder, without .json
    script: str  # pretrain_and_linEval.py or linEval.py
    argv: tuple  # '{model_path}' stands for the checkpoint of the job's pretraining run
    kind: str    # runs of one kind take about as long


def load(path):
    return json.loads(Path(path).read_text())


class Jobs:
    """The child processes of a run_all, so that a stop ends them all and starts nothing more."""

    def __init__(self):
        self.stopping, self.children, self.lock = threading.Event(), set(), threading.Lock()

    def run(self, command, env):
        """Run command to its end (CompletedProcess); Stopped if the runner is stopping."""
        with self.lock:
            if self.stopping.is_set():
                raise Stopped()
            child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
            self.children.add(child)
        try:
            stdout, stderr = child.communicate()
        finally:
            with self.lock:
                self.children.discard(child)
        if self.stopping.is_set():
            raise Stopped()
        return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)

    def stop(self):
        """Start nothing more; ask every running child to stop (SIGTERM) and wait for it."""
        with self.lock:
            self.stopping.set()
            children = list(self.children)
        for child in children:
            child.terminate()
        for child in children:
            child.wait()


def execute(run, out, runs_dir, threads, model_path, keep_history, jobs, record=True):
    """Run one command as a subprocess (in the repository, `threads` CPU threads) and return its
    results; with `record`, also write them as <out>/<name>.json. A pretraining run that a stop or a
    failure left unfinished in its folder continues from its newest complete checkpoint."""
    run_dir = Path(os.path.relpath(Path(runs_dir).resolve() / run.name, ROOT))
    unfinished = run.script == PRETRAIN and not (ROOT / run_dir / 'results.json').exists()
    command = [sys.executable, run.script, *(a.replace('{model_path}', str(model_path)) for a in run.argv),
               '--out_dir', str(run_dir), '--quiet', '--no_plots', '--threads', str(threads),
               *(['--resume', 'auto'] if unfinished else [])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = jobs.run(command, env)
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip() or 'no output').splitlines()[-1]
        raise RunError(f"python {' '.join(command[1:])} failed: {said}")
    result = load(ROOT / run_dir / 'results.json')
    if not keep_history:
        result = {k: v for k, v in result.items() if k not in ('history', 'finetune_history', 'probe_predictions')}
    if record:
        (Path(out) / run.name).parent.mkdir(parents=True, exist_ok=True)
        write_json(result, Path(out) / f'{run.name}.json')
    return result


def run_job(job, out, runs_dir, threads, todo, keep_history, jobs):
    """The runs of one job in order; those not in `todo` are read from their records, except a
    pretraining run whose checkpoint a later run needs and that is gone: that one is run again for
    its checkpoint, and its record is left as it was."""
    needs_checkpoint = any('{model_path}' in ' '.join(run.argv) for run in todo)
    model_path = None
    for run in job:
        record = Path(out) / f'{run.name}.json'
        if run in todo:
            result = execute(run, out, runs_dir, threads, model_path, keep_history, jobs)
        elif run.script == PRETRAIN and needs_checkpoint and not (ROOT / load(record).get('model_path', '-')).is_file():
            result = execute(run, out, runs_dir, threads, model_path, keep_history, jobs, record=False)
        else:
            result = load(record)
        model_path = result.get('model_path', model_path)
    return job


def recorded_seconds(out, jobs):
    """Mean recorded seconds of each kind of run in the plan (from `out`, else from results/)."""
    seconds = {}
    for run in (run for job in jobs for run in job):
        for folder in (Path(out), ROOT / 'results'):
            if (folder / f'{run.name}.json').is_file():
                seconds.setdefault(run.kind, []).append(load(folder / f'{run.name}.json')['seconds'])
                break
    return {kind: statistics.mean(values) for kind, values in seconds.items()}


def run_all(jobs, out, runs_dir, workers=1, threads=1, force=False, keep_history=True):
    """Do every job's unrecorded runs, `workers` jobs side by side with `threads` threads each. A
    failing run is named in one line and the other jobs go on; Ctrl-C / SIGTERM stops every run and
    starts nothing more (the records written so far stay; the same call continues)."""
    todo = {run for job in jobs for run in job if force or not (Path(out) / f'{run.name}.json').exists()}
    total = sum(len(job) for job in jobs)
    if len(todo) < total:
        print(f"{total - len(todo)} of {total} runs are already recorded in {out}/ and are skipped "
              "(--force reruns them, --out DIR writes elsewhere)", flush=True)
    known = recorded_seconds(out, jobs)  # from every run of the plan, recorded or not
    jobs = [job for job in jobs if todo & set(job)]
    cost = {id(job): sum(known.get(r.kind, 0) for r in job if r in todo) for job in jobs}
    jobs.sort(key=lambda job: -cost[id(job)])  # longest first, so that side-by-side workers finish together
    untimed = sum(r.kind not in known for r in todo)
    print(f"{len(todo)} runs in {len(jobs)} jobs, {workers} side by side x {threads} threads; estimated "
          f"{sum(cost.values()) / 60 / workers:.0f} min from recorded run times"
          + (f", plus {untimed} runs of kinds never timed here" if untimed else ''), flush=True)
    children, failed = Jobs(), []
    pool = ThreadPoolExecutor(workers)
    try:
        with tqdm(total=len(jobs), unit='job') as bar:
            futures = [pool.submit(run_job, job, out, runs_dir, threads, todo & set(job), keep_history, children)
                       for job in jobs]
            for future in as_completed(futures):
                bar.update()
                try:
                    bar.write(f"done: {future.result()[-1].name}")
                except RunError as err:
                    failed.append(str(err))
                    bar.write(f"failed: {err}")
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        children.stop()
        recorded = sum((Path(out) / f'{run.name}.json').exists() for run in todo)
        raise Stopped(f"{recorded} of the {len(todo)} runs to do are recorded in {out}/; the same command "
                      "continues with the rest") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if failed:
        raise RunError(f"{len(failed)} of {len(jobs)} jobs failed (the others' records are kept); the first: {failed[0]}")


def markdown(rows):
    """A markdown table: the header row, its rule, then the rows."""
    return '\n'.join('| ' + ' | '.join(row) + ' |' for row in [rows[0], ['---'] * len(rows[0]), *rows[1:]])


def mean_std(values, digits=2):
    """'mean ± std' of the values that are not None ('–' if none)."""
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    return (f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1
            else f"{values[0]:.{digits}f}")


def provenance_note(records):
    """Which commits (clean or dirty: what differed where a record's `dirty_changes` says so), machines
    and torch versions produced these records, each group saying how many of its runs predate the
    instruction-set fields of provenance."""
    seen = {}
    for info in {r.get('provenance', {}).get('out_dir', id(r)): r.get('provenance', {}) for r in records}.values():
        dirty = f" with uncommitted changes: {info.get('dirty_changes', 'not recorded which')}" if info.get('git_dirty') else ''
        key = (str(info.get('git_commit'))[:7] + dirty, info.get('device_name'), info.get('torch'))
        runs, without_isa = seen.get(key, (0, 0))
        seen[key] = runs + 1, without_isa + ('cpu_isa' not in info)
    return '; '.join(f"{n} runs at commit {c} on {d}, torch {t}" + (
        f" ({w} of them recorded before runs recorded their CPU's instruction set)" if w else '')
        for (c, d, t), (n, w) in sorted(seen.items()))
