"""Speed of the reference paths against the fast paths, measured on the scripts themselves.

    python bench/speed.py [--quick] [--out FILE] [--device auto] [--data_root DIR]

Pretraining: `--aug_backend sample` (per-sample augmentation in the DataLoader, as the official
code) against `--aug_backend batch` (whole batches on the device), and the fast path under
`--amp bf16` (not the default: it changes the arithmetic): sequences per second over the same
update epochs, checkpointing included (metrics.csv `seconds`). Linear evaluation (90 epochs):
recomputing the frozen features every epoch (official) against extracting them once (the linear
stage's own seconds, results.json history). Also: how much anonymous memory (RAM not backed by the
file) iterating an NTU-shaped memory-mapped array takes. Every run is a subprocess of
pretrain_and_linEval.py / linEval.py as a user would start it. Writes
bench/results/speed-<device>.json (or --out). --quick: SBU only, fewer epochs.

    python bench/speed.py --synthetic ntu60 [--samples 2048]

NTU-60 x-sub speed without the NTU data: a memory-mapped (samples, 3, 300, 25, 2) float32 array of
random-walk skeletons with NTU-like lengths (30-300 frames, mean about 80), the official NTU
settings (150 frames, hidden 256, queue 16,384, batch 32): pretraining sequences/s of both paths,
feature extraction and linear-classifier speed, and the projected time of a full 61-epoch
pretraining and 90-epoch linear evaluation of the real 40,091 + 16,487 sequences.
Writes bench/results/ntu60-synthetic-<device>.json (or --out).

    python bench/speed.py --recipes strong strong2 [--dataset ucla]

What a recipe's pretraining costs: per recipe, 5 of its update epochs on the whole training split
(N-UCLA test view 3 by default; after its warm-up epoch), seconds per update epoch (metrics.csv)
and the projection to the recipe's own number of epochs. Writes
bench/results/recipes-<dataset>-<device>.json (or --out).

    python bench/speed.py --sizes [ID ...] [--amp off bf16] [--threads 1 2] [--jobs 2]

What the scale study's encoders cost (recipes.SCALE, default every id): seconds per update epoch of
strong2 with that encoder on an N-UCLA validation run (training view 2, as ablation.py runs it),
per precision and thread count; --jobs runs that many side by side (recorded: timings taken side
by side share the machine). Writes bench/results/sizes-<device>.json (or --out), merged into what
is there; ablation.py --stage scale sets each row's epochs from it.
"""
import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dataset import DATA_ROOT, SkeletonDataset, load_array, loader  # noqa: E402
from options import to_argv  # noqa: E402
from recipes import RECIPES, SCALE  # noqa: E402
from runs import device_name, provenance, read_metrics, resolve_device  # noqa: E402

NTU60_XSUB = dict(train=40091, test=16487, classes=60)


def run(script, tmp, *argv):
    """One script run in a fresh folder under tmp: (results dict, run folder)."""
    out = Path(tempfile.mkdtemp(dir=tmp))
    done = subprocess.run([sys.executable, str(ROOT / script), *map(str, argv), '--out_dir', str(out), '--quiet',
                           '--no_plots'], capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(map(str, argv))} failed: {done.stderr[-2000:]}")
    return json.loads((out / 'results.json').read_text()), out


def pretraining(tmp, dataset, backend, epochs, device, data_root, amp='off'):
    """Pretraining sequences/s (the epochs' own seconds) and the run folder, whose checkpoint the linear timing reuses."""
    result, out = run('pretrain_and_linEval.py', tmp, '--dataset', dataset, '--data_root', data_root, '--aug_backend',
                      backend, '--epochs', epochs, '--warmup_epochs', 0, '--lin_epochs', 1, '--amp', amp,
                      '--device', device, '--save_freq', 1000, '--no_probes')
    return result['samples']['train'] * epochs / float(read_metrics(out)[-1]['seconds']), result


def update_epoch_seconds(tmp, epochs, *argv):
    """(seconds per update epoch, seconds of the warm-up epoch) of one pretraining run of `epochs`
    update epochs (metrics.csv; its row 0 is the warm-up epoch, which only fills the queue)."""
    _, out = run('pretrain_and_linEval.py', tmp, *argv, '--epochs', epochs, '--lin_epochs', 1, '--no_probes')
    rows = read_metrics(out)
    return (float(rows[-1]['seconds']) - float(rows[0]['seconds'])) / epochs, float(rows[0]['seconds'])


def recipe_cost(device, recipes, dataset, data_root, epochs=5):
    """Seconds per update epoch of each recipe's pretraining on `dataset` (N-UCLA: test view 3), and
    the projected seconds of its whole schedule."""
    report = dict(device=bench_device(device), torch=torch.__version__, dataset=dataset, timed_epochs=epochs, recipes={})
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in recipes:
            per_epoch, _ = update_epoch_seconds(tmp, epochs, '--dataset', dataset, '--recipe', recipe, '--data_root',
                                                data_root, '--device', device.type, '--threads', torch.get_num_threads(),
                                                *(['--test_view', 3] if dataset == 'ucla' else []))
            full = RECIPES[recipe].get('epochs', 60)  # the official 60 unless the recipe sets it
            report['recipes'][recipe] = dict(seconds_per_update_epoch=round(per_epoch, 2), recipe_epochs=full,
                                             projected_pretrain_seconds=round(per_epoch * full))
            print(recipe, report['recipes'][recipe], flush=True)
    return report


def size_cost(device, ids, amps, threads, jobs, data_root):
    """Seconds per update epoch of strong2 with each scale-study encoder on an N-UCLA validation run,
    for every (id, amp, threads): {'<id> <amp> <threads>': {...}}."""
    def one(config):
        row, amp, count = config
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as tmp:
            per_epoch, warmup = update_epoch_seconds(tmp, 1, '--dataset', 'ucla', '--test_view', 3, '--eval_split',
                                                     'validation', '--val_group', 0, '--recipe', 'strong2',
                                                     *to_argv(SCALE[row][1]), '--amp', amp, '--data_root', data_root,
                                                     '--device', device.type, '--threads', count)
        timing = dict(seconds_per_update_epoch=round(per_epoch, 2), warmup_seconds=round(warmup, 2), side_by_side=jobs,
                      load_before=load_before)
        print(row, amp, count, timing, flush=True)
        return f'{row} {amp} {count}', timing
    configs = [(row, amp, count) for count in threads for row in ids for amp in amps]
    with ThreadPoolExecutor(jobs) as pool:
        return dict(pool.map(one, configs))


def linear(tmp, checkpoint, features, device, epochs=90):
    """Seconds of the linear stage alone (its history) and its last-epoch top-1."""
    result, _ = run('linEval.py', tmp, '--model_path', checkpoint, '--lin_features', features, '--lin_epochs', epochs,
                    '--device', device, '--no_probes')
    return result['history'][-1]['seconds'], result['top1_last'], result


def ntu_memmap_memory(samples, tmp, device):
    """Iterate once over an NTU-60-shaped (N, 3, 300, 25, 2) memory map as pretraining does."""
    data_path, label_path = Path(tmp) / 'ntu_data.npy', Path(tmp) / 'ntu_label.pkl'
    array = np.lib.format.open_memmap(data_path, mode='w+', dtype=np.float32, shape=(samples, 3, 300, 25, 2))
    array[:] = np.random.default_rng(0).normal(size=(1, 3, 300, 25, 2))
    array.flush()
    del array
    label_path.write_bytes(pickle.dumps(([str(i) for i in range(samples)], [i % 60 for i in range(samples)])))
    before = anonymous_mb()
    data, labels, _ = load_array(data_path, label_path, 25, 2, 60)
    peak = before
    for x, _, _ in loader(SkeletonDataset(data, labels, 150), 32, True, 0, 0, device):
        x.to(device)
        peak = max(peak, anonymous_mb())
    return dict(samples=samples, array_mb=round(data_path.stat().st_size / 2 ** 20, 1),
                anon_memory_growth_mb=round(peak - before, 1))


def anonymous_mb():
    """Resident anonymous memory of this process in MiB (Linux), i.e. not file-backed pages."""
    return int(re.search(r'RssAnon:\s+(\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024


def write_synthetic_ntu(root, samples, seed=0):
    """Memory-mapped NTU-shaped training (samples) and test (256) splits of random-walk skeletons (one
    body, lengths 30-300, mean about 80 frames) with label pickles; returns the training array's MB."""
    folder = Path(root) / 'ntu' / 'ntu60_xsub'
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, n in (('train', samples), ('val', 256)):
        lengths = np.clip(rng.gamma(4.0, 20.0, n).astype(int), 30, 300)
        array = np.lib.format.open_memmap(folder / f'{split}_data.npy', mode='w+', dtype=np.float32,
                                          shape=(n, 3, 300, 25, 2))
        for start in range(0, n, 1024):
            count = min(1024, n - start)
            walk = np.cumsum(rng.normal(0, 0.01, (count, 3, 300, 1)), axis=2)
            body = rng.normal(0, 0.3, (count, 3, 1, 25)) + walk  # (count, 3, 300, 25)
            body *= (np.arange(300)[None] < lengths[start:start + count, None])[:, None, :, None]
            array[start:start + count, ..., 0] = body
        array.flush()
        del array
        names = [f'S001C001P{1 + i % 20:03d}R001A{1 + i % 60:03d}' for i in range(n)]
        (folder / f'{split}_label.pkl').write_bytes(pickle.dumps((names, [i % 60 for i in range(n)])))
    return round((folder / 'train_data.npy').stat().st_size / 2 ** 20, 1)


def synthetic_ntu(device, samples, repeats=2):
    """The NTU-scale benchmark (module docstring) as a report dict; each path timed `repeats` times
    (alternating), the best kept."""
    report = dict(device=bench_device(device), torch=torch.__version__, dataset='synthetic ntu60_xsub',
                  samples=samples)
    with tempfile.TemporaryDirectory() as tmp:
        report['array_mb'] = write_synthetic_ntu(tmp, samples)
        rates = {}
        for backend in ('sample', 'batch') * repeats:
            rate, result = pretraining(tmp, 'ntu60_xsub', backend, 1, device.type, tmp)
            rates[backend] = max(rates.get(backend, 0), rate)
        seconds, _, evaluation = linear(tmp, result['model_path'], 'cache', device.type, epochs=2)
    extract = (samples + 256) / evaluation['feature_seconds']
    linear_epoch = seconds / 2 * NTU60_XSUB['train'] / samples
    sequences = NTU60_XSUB['train'] * 61
    report.update(
        pretrain_seq_per_s_reference=round(rates['sample'], 1), pretrain_seq_per_s_fast=round(rates['batch'], 1),
        projected_pretrain_hours_reference=round(sequences / rates['sample'] / 3600, 2),
        projected_pretrain_hours_fast=round(sequences / rates['batch'] / 3600, 2),
        feature_extraction_seq_per_s=round(extract, 1),
        projected_linear_eval_minutes=round(((NTU60_XSUB['train'] + NTU60_XSUB['test']) / extract
                                             + 90 * linear_epoch) / 60, 1))
    return report


def bench_device(device):
    """The device's name, with the thread count on CPU."""
    return device_name(device) + ('' if device.type == 'cuda' else f" ({torch.get_num_threads()} threads)")


def speed(device, datasets, epochs, data_root):
    report = dict(device=bench_device(device), torch=torch.__version__, pretrain_epochs=epochs, lin_epochs=90,
                  datasets={})
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            rate = {}
            for backend in ('sample', 'batch', 'sample', 'batch'):  # alternate; keep each one's best
                seq_per_s, result = pretraining(tmp, name, backend, epochs, device.type, data_root)
                rate[backend] = max(seq_per_s, rate.get(backend, 0))
            bf16 = pretraining(tmp, name, 'batch', epochs, device.type, data_root, 'bf16')[0]
            lin_ref, acc_ref, _ = linear(tmp, result['model_path'], 'recompute', device.type)
            lin_fast, acc_fast, _ = linear(tmp, result['model_path'], 'cache', device.type)
            report['datasets'][name] = dict(
                pretrain_seq_per_s_reference=round(rate['sample'], 1), pretrain_seq_per_s_fast=round(rate['batch'], 1),
                pretrain_speedup=round(rate['batch'] / rate['sample'], 2), pretrain_seq_per_s_fast_bf16=round(bf16, 1),
                lineval_seconds_reference=round(lin_ref, 2), lineval_seconds_fast=round(lin_fast, 2),
                lineval_speedup=round(lin_ref / lin_fast, 1), lineval_top1_last_reference=round(acc_ref, 2),
                lineval_top1_last_fast=round(acc_fast, 2))
            print(name, report['datasets'][name], flush=True)
        report['ntu_memmap'] = ntu_memmap_memory(500 if len(datasets) == 1 else 4000, tmp, device)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='SBU only, 3 pretraining epochs')
    parser.add_argument('--out', default=None, help='JSON path (default bench/results/speed-<device>.json; '
                        'with --quick runs/speed-<device>-quick.json, so the committed file stays)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--data_root', default=DATA_ROOT, help='$ASCAL_DATA_ROOT if set, else ./data')
    parser.add_argument('--synthetic', choices=['ntu60'], default=None, help='the NTU-scale benchmark instead')
    parser.add_argument('--samples', type=int, default=2048, help='--synthetic: training sequences in the memory map')
    parser.add_argument('--recipes', nargs='+', default=None, help="each recipe's whole pretraining instead")
    parser.add_argument('--dataset', default='ucla', help='--recipes: the dataset')
    parser.add_argument('--sizes', nargs='*', default=None, help="the scale study's encoders (default: every id)")
    parser.add_argument('--amp', nargs='+', default=['off', 'bf16'], help='--sizes: precisions')
    parser.add_argument('--threads', nargs='+', type=int, default=[1], help='--sizes: thread counts')
    parser.add_argument('--jobs', type=int, default=1, help='--sizes: timings side by side')
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.sizes is not None:
        default = ROOT / 'bench' / 'results' / f'sizes-{device.type}.json'
        out = Path(args.out or default)
        report = json.loads(out.read_text()) if out.is_file() else dict(device=bench_device(device), timings={})
        report['timings'].update(size_cost(device, args.sizes or list(SCALE), args.amp, args.threads, args.jobs,
                                           args.data_root))
        report.setdefault('provenance', []).append(provenance(device, out.parent))
    elif args.recipes:
        report = recipe_cost(device, args.recipes, args.dataset, args.data_root)
        default = ROOT / 'bench' / 'results' / f'recipes-{args.dataset}-{device.type}.json'
    elif args.synthetic:
        report = synthetic_ntu(device, args.samples)
        default = ROOT / 'bench' / 'results' / f'ntu60-synthetic-{device.type}.json'
    else:
        report = speed(device, ['sbu'] if args.quick else ['sbu', 'ucla'], 3 if args.quick else 10, args.data_root)
        default = (ROOT / 'runs' / f'speed-{device.type}-quick.json' if args.quick else
                   ROOT / 'bench' / 'results' / f'speed-{device.type}.json')
    out = Path(args.out or default)
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.sizes is None:
        report['provenance'] = provenance(device, out.parent)
    out.write_text(json.dumps(report, indent=2) + '\n')
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
