"""One runner for many runs (reproduce.py, ablation.py): jobs -> runs -> recorded JSON -> tables.

A job is a list of runs done in order by one worker; a run is one command line of a script, run
as a subprocess exactly as a user would type it. Its results.json (resolved options and
provenance included: the command as run, commit, machine, versions) is recorded as
<out>/<name>.json. Recorded runs are skipped (`force` reruns them); a pretraining run is redone
when a later run of its job needs its checkpoint ('{model_path}' in its arguments) and the
checkpoint is gone. Jobs run side by side, longest first by the recorded durations of runs of the
same kind, with an estimate and a progress bar.
"""
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from runs import write_json

ROOT = Path(__file__).resolve().parent
PRETRAIN = 'pretrain_and_linEval.py'


@dataclass(frozen=True)
class Run:
    name: str    # record path below the output folder, without .json
    script: str  # pretrain_and_linEval.py or linEval.py
    argv: tuple  # '{model_path}' stands for the checkpoint of the job's pretraining run
    kind: str    # runs of one kind take about as long


def load(path):
    return json.loads(Path(path).read_text())


def execute(run, out, runs_dir, threads, model_path, keep_history):
    """Run one command as a subprocess (in the repository, `threads` CPU threads); record and return its results."""
    run_dir = Path(os.path.relpath(Path(runs_dir).resolve() / run.name, ROOT))
    command = [sys.executable, run.script, *(a.replace('{model_path}', str(model_path)) for a in run.argv),
               '--out_dir', str(run_dir), '--quiet', '--no_plots', '--threads', str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = load(ROOT / run_dir / 'results.json')
    if not keep_history:
        result = {k: v for k, v in result.items() if k not in ('history', 'finetune_history', 'probe_predictions')}
    (Path(out) / run.name).parent.mkdir(parents=True, exist_ok=True)
    write_json(result, Path(out) / f'{run.name}.json')
    return result


def run_job(job, out, runs_dir, threads, todo, keep_history):
    """The runs of one job in order; those not in `todo` are read from their records, except a
    pretraining run whose checkpoint a later run needs and that is gone."""
    needs_checkpoint = any('{model_path}' in ' '.join(run.argv) for run in todo)
    model_path = None
    for run in job:
        record = Path(out) / f'{run.name}.json'
        redo = run in todo or (run.script == PRETRAIN and needs_checkpoint
                               and not (ROOT / load(record).get('model_path', '-')).is_file())
        result = execute(run, out, runs_dir, threads, model_path, keep_history) if redo else load(record)
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
    """Do every job's unrecorded runs, `workers` jobs side by side with `threads` threads each."""
    todo = {run for job in jobs for run in job if force or not (Path(out) / f'{run.name}.json').exists()}
    total = sum(len(job) for job in jobs)
    if len(todo) < total:
        print(f"{total - len(todo)} of {total} runs are already recorded in {out}/ and are skipped "
              "(--force reruns them, --out DIR writes elsewhere)", flush=True)
    jobs = [job for job in jobs if todo & set(job)]
    known = recorded_seconds(out, jobs)
    cost = {id(job): sum(known.get(r.kind, 0) for r in job if r in todo) for job in jobs}
    jobs.sort(key=lambda job: -cost[id(job)])  # longest first, so that side-by-side workers finish together
    unknown = any(r.kind not in known for r in todo)
    print(f"{len(todo)} runs in {len(jobs)} jobs, {workers} side by side x {threads} threads; estimated "
          f"{'over ' if unknown else ''}{sum(cost.values()) / 60 / workers:.0f} min (recorded run times)", flush=True)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=len(jobs), unit='job') as bar:
        futures = [pool.submit(run_job, job, out, runs_dir, threads, todo & set(job), keep_history) for job in jobs]
        for future in as_completed(futures):
            bar.update()
            bar.write(f"done: {future.result()[-1].name}")


def mean_std(values, digits=2):
    """'mean ± std' of the values that are not None ('–' if none)."""
    values = [v for v in values if v is not None]
    if not values:
        return '–'
    return (f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1
            else f"{values[0]:.{digits}f}")


def provenance_note(records):
    """Which commits (clean or dirty), machines and torch versions produced these records."""
    seen = {}
    for info in {r.get('provenance', {}).get('out_dir', id(r)): r.get('provenance', {}) for r in records}.values():
        key = (str(info.get('git_commit'))[:7] + (' (uncommitted changes)' if info.get('git_dirty') else ''),
               info.get('device_name'), info.get('torch'))
        seen[key] = seen.get(key, 0) + 1
    return '; '.join(f"{n} runs at commit {c} on {d}, torch {t}" for (c, d, t), n in sorted(seen.items()))
