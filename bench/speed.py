"""Speed of the reference path against the fast path, in one process, same data and settings.

    python bench/speed.py [--quick] [--out FILE] [--device auto] [--data_root DIR]

Pretraining: `--aug_backend numpy` (per-sample augmentation in the DataLoader, as the official
code) against `--aug_backend torch` (whole batches on the device); sequences per second over the
same update epochs, checkpointing included; also the fast path under `--amp bf16` (not the
default: it changes the arithmetic). Linear evaluation (90 epochs): recomputing the frozen
features every epoch (official) against extracting them once. Also: how much anonymous memory
(RAM not backed by the file) iterating an NTU-shaped memory-mapped array takes.
Writes bench/results/speed-<device>.json (or --out). --quick: SBU only, fewer epochs.

    python bench/speed.py --synthetic ntu60 [--measure 2048]

NTU-60 x-sub at scale without the NTU data: a memory-mapped (40,091, 3, 300, 25, 2) float32 array
(7.2 GB, in a temp folder) of random-walk skeletons with NTU-like lengths (30-300 frames, mean about
80), the official NTU settings (150 frames, hidden 256, queue 16,384, batch 32). Pretraining
sequences/s of the reference and fast paths over `--measure` sequences, feature extraction and
linear-classifier speed, peak memory, and the projected time of a full 61-epoch pretraining and a
90-epoch linear evaluation. Writes bench/results/ntu60-synthetic-<device>.json (or --out).
"""
import argparse
import json
import pickle
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pretrain_and_linEval as pretrain  # noqa: E402
from dataset import SkeletonDataset, load_array  # noqa: E402
from evaluation import FeatureBatches, extract_features, fit, linear_evaluation, load_splits, loader  # noqa: E402
from model import LinearClassifier, LSTMEncoder  # noqa: E402
from runs import RunLog, device_name, resolve_device, set_threads  # noqa: E402


def rss_anon_mb():
    """Resident anonymous memory of this process in MiB (Linux), i.e. not file-backed pages."""
    status = Path('/proc/self/status').read_text()
    return int(re.search(r'RssAnon:\s+(\d+)', status).group(1)) / 1024


def bench_device(device):
    """The device's name, with the thread count on CPU."""
    return device_name(device) + ('' if device.type == 'cuda' else f" ({torch.get_num_threads()} threads)")


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def time_pretraining(dataset, backend, epochs, device, data_root, tmp, amp='off'):
    args = pretrain.parse_option(['--dataset', dataset, '--data_root', data_root, '--aug_backend', backend,
                                  '--epochs', str(epochs), '--warmup_epochs', '0', '--quiet', '--amp', amp,
                                  '--device', device.type, '--save_freq', '1000'])
    ((train_x, train_y), _), _ = load_splits(vars(args))
    out = Path(tempfile.mkdtemp(dir=tmp))
    torch.manual_seed(0)
    sync(device)
    start = time.perf_counter()
    pretrain.pretrain(args, train_x, train_y, device, out, RunLog(out, quiet=True))
    sync(device)
    return len(train_y) * epochs / (time.perf_counter() - start)


def time_linear_eval(dataset, features, epochs, device, data_root, tmp):
    args = pretrain.parse_option(['--dataset', dataset, '--data_root', data_root, '--lin_epochs', str(epochs),
                                  '--lin_features', features, '--quiet', '--device', device.type])
    opts = vars(args)
    splits, _ = load_splits(opts)
    torch.manual_seed(0)
    encoder = LSTMEncoder(3 * splits[0][0].shape[3] * splits[0][0].shape[4], args.hidden_units,
                          args.lstm_layer).to(device)
    sync(device)
    start = time.perf_counter()
    result = linear_evaluation(encoder, splits, opts, device, RunLog(tmp, quiet=True))
    sync(device)
    return time.perf_counter() - start, result['top1_last']


def ntu_memmap_memory(samples, tmp, device):
    """Iterate once over an NTU-60-shaped (N, 3, 300, 25, 2) memory map as pretraining does."""
    data_path, label_path = Path(tmp) / 'ntu_data.npy', Path(tmp) / 'ntu_label.pkl'
    array = np.lib.format.open_memmap(data_path, mode='w+', dtype=np.float32, shape=(samples, 3, 300, 25, 2))
    array[:] = np.random.default_rng(0).normal(size=(1, 3, 300, 25, 2))
    array.flush()
    del array
    pickle.dump(([str(i) for i in range(samples)], [i % 60 for i in range(samples)]), open(label_path, 'wb'))
    before = rss_anon_mb()
    data, labels, _ = load_array(data_path, label_path, 25, 2, 60)
    peak = before
    for x, _, _ in loader(SkeletonDataset(data, labels, 150), 32, True, 0, 0, device):
        x.to(device)
        peak = max(peak, rss_anon_mb())
    return dict(samples=samples, array_mb=round(data_path.stat().st_size / 2 ** 20, 1),
                anon_memory_growth_mb=round(peak - before, 1))


NTU60_XSUB = dict(train=40091, test=16487, classes=60)


def write_synthetic_ntu(root, samples, seed=0):
    """A (samples, 3, 300, 25, 2) memory-mapped NTU-shaped training split with random-walk skeletons
    (one body, lengths 30-300, mean about 80 frames) and its label pickle; returns the array's size in MB."""
    folder = Path(root) / 'ntu' / 'ntu60_xsub'
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for split, n in (('train', samples), ('val', 256)):
        lengths = np.clip(rng.gamma(4.0, 20.0, n).astype(int), 30, 300)
        array = np.lib.format.open_memmap(folder / f'{split}_data.npy', mode='w+', dtype=np.float32,
                                          shape=(n, 3, 300, 25, 2))
        for start in range(0, n, 1024):
            count = min(1024, n - start)
            chunk = np.zeros((count, 3, 300, 25, 2), np.float32)
            walk = np.cumsum(rng.normal(0, 0.01, (count, 3, 300, 1)), axis=2)
            body = rng.normal(0, 0.3, (count, 3, 1, 25)) + walk  # (count, 3, 300, 25)
            body *= (np.arange(300)[None] < lengths[start:start + count, None])[:, None, :, None]
            chunk[..., 0] = body
            array[start:start + count] = chunk
        array.flush()
        del array
        labels = (np.arange(n) % NTU60_XSUB['classes']).tolist()
        names = [f'S001C001P{1 + i % 20:03d}R001A{1 + i % 60:03d}' for i in range(n)]
        with open(folder / f'{split}_label.pkl', 'wb') as f:
            pickle.dump((names, labels), f)
    return round((folder / 'train_data.npy').stat().st_size / 2 ** 20, 1)


def synthetic_ntu(device, measure, samples=NTU60_XSUB['train']):
    """The NTU-scale benchmark (module docstring) as a report dict."""
    report = dict(device=bench_device(device), device_type=device.type, torch=torch.__version__,
                  dataset='synthetic ntu60_xsub', array_samples=samples, measured_sequences=measure)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        report['array_mb'] = write_synthetic_ntu(tmp, samples)
        report['array_write_seconds'] = round(time.perf_counter() - start, 1)
        rates = {}
        for backend in ('numpy', 'torch', 'numpy', 'torch'):  # alternate; keep each one's best
            args = pretrain.parse_option(['--dataset', 'ntu60_xsub', '--data_root', tmp, '--aug_backend', backend,
                                          '--epochs', '1', '--warmup_epochs', '0', '--quiet', '--device', device.type,
                                          '--save_freq', '1000'])
            ((train_x, train_y), _), _ = load_splits(vars(args))
            run = Path(tempfile.mkdtemp(dir=tmp))
            sync(device)
            begin = time.perf_counter()
            pretrain.pretrain(args, train_x[:measure], train_y[:measure], device, run, RunLog(run, quiet=True))
            sync(device)
            rates[backend] = max(rates.get(backend, 0), measure / (time.perf_counter() - begin))
        encoder = pretrain.build_encoder(vars(args)).to(device)
        sync(device)
        begin = time.perf_counter()
        extract_features(encoder, SkeletonDataset(train_x[:measure], train_y[:measure], 150), device, quiet=True)
        sync(device)
        extract_rate = measure / (time.perf_counter() - begin)
    features = torch.randn(NTU60_XSUB['train'], 256)
    labels = torch.arange(NTU60_XSUB['train']) % NTU60_XSUB['classes']
    classifier = LinearClassifier(256, NTU60_XSUB['classes']).to(device)
    begin = time.perf_counter()
    fit(classifier, classifier.parameters(), FeatureBatches(features.to(device), labels.to(device), 32, True), None,
        (1.0, 2, ''), device, lambda message: None, 'linear', quiet=True)
    sync(device)
    linear_epoch = (time.perf_counter() - begin) / 2
    seqs = NTU60_XSUB['train'] * 61
    report.update(
        pretrain_seq_per_s_reference=round(rates['numpy'], 1), pretrain_seq_per_s_fast=round(rates['torch'], 1),
        projected_pretrain_hours_reference=round(seqs / rates['numpy'] / 3600, 2),
        projected_pretrain_hours_fast=round(seqs / rates['torch'] / 3600, 2),
        feature_extraction_seq_per_s=round(extract_rate, 1),
        projected_linear_eval_minutes=round(((NTU60_XSUB['train'] + NTU60_XSUB['test']) / extract_rate
                                             + 90 * linear_epoch) / 60, 1),
        peak_rss_mb=round(resource.getrusage(0).ru_maxrss / 1024, 1))
    if device.type == 'cuda':
        report['peak_cuda_memory_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='SBU only, 3 pretraining epochs (< 60 s on 2 CPU cores)')
    parser.add_argument('--out', default=None, help='JSON path (default bench/results/speed-<device>.json; '
                        'with --quick runs/speed-<device>-quick.json, so the committed file stays)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--data_root', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    parser.add_argument('--synthetic', choices=['ntu60'], default=None, help='the NTU-scale benchmark instead')
    parser.add_argument('--measure', type=int, default=2048, help='--synthetic: sequences timed per path')
    parser.add_argument('--samples', type=int, default=NTU60_XSUB['train'],
                        help='--synthetic: training samples in the memory map (a smaller one is a smoke test)')
    args = parser.parse_args()
    set_threads(None)  # as every script: all usable CPUs, denormals flushed
    device = resolve_device(args.device)
    if args.synthetic:
        report = synthetic_ntu(device, args.measure, args.samples)
        out = Path(args.out or Path(__file__).parent / 'results' / f'ntu60-synthetic-{device.type}.json')
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + '\n')
        print(json.dumps(report, indent=2))
        print(f"wrote {out}")
        return
    datasets = ['sbu'] if args.quick else ['sbu', 'ucla']
    epochs = 3 if args.quick else 10
    report = dict(device=bench_device(device), device_type=device.type, torch=torch.__version__, quick=args.quick,
                  pretrain_epochs=epochs, lin_epochs=90, datasets={})
    with tempfile.TemporaryDirectory() as tmp:
        for name in datasets:
            for backend in ('numpy', 'torch'):  # warm-up: first-call costs (kernels, caches) fall on neither path
                time_pretraining(name, backend, 1, device, args.data_root, tmp)
            time_linear_eval(name, 'cache', 2, device, args.data_root, tmp)
            # alternate the two paths and keep each one's best of two runs
            ref = max(time_pretraining(name, 'numpy', epochs, device, args.data_root, tmp) for _ in range(2))
            fast = max(time_pretraining(name, 'torch', epochs, device, args.data_root, tmp) for _ in range(2))
            bf16_ok = pretrain.autocast_dtype('bf16', device, lambda message, always=False: print(message)) is not None
            bf16 = max(time_pretraining(name, 'torch', epochs, device, args.data_root, tmp, 'bf16')
                       for _ in range(2)) if bf16_ok else None
            lin_ref, acc_ref = time_linear_eval(name, 'recompute', 90, device, args.data_root, tmp)
            lin_fast, acc_fast = time_linear_eval(name, 'cache', 90, device, args.data_root, tmp)
            report['datasets'][name] = dict(
                pretrain_seq_per_s_reference=round(ref, 1), pretrain_seq_per_s_fast=round(fast, 1),
                pretrain_speedup=round(fast / ref, 2),
                pretrain_seq_per_s_fast_bf16=round(bf16, 1) if bf16 else 'unsupported on this device',
                pretrain_speedup_bf16=round(bf16 / ref, 2) if bf16 else None, lineval_seconds_reference=round(lin_ref, 2),
                lineval_seconds_fast=round(lin_fast, 2), lineval_speedup=round(lin_ref / lin_fast, 1),
                lineval_top1_last_reference=round(acc_ref, 2), lineval_top1_last_fast=round(acc_fast, 2))
            print(name, report['datasets'][name], flush=True)
        report['ntu_memmap'] = ntu_memmap_memory(500 if args.quick else 4000, tmp, device)
    report['peak_rss_mb'] = round(resource.getrusage(0).ru_maxrss / 1024, 1)
    if device.type == 'cuda':
        report['peak_cuda_memory_mb'] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
    out = Path(args.out or (Path('runs') / f'speed-{device.type}-quick.json' if args.quick else
                            Path(__file__).parent / 'results' / f'speed-{device.type}.json'))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    print(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == '__main__':
    main()
