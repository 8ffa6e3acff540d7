"""Speed of the reference path against the fast path, in one process, same data and settings.

    python bench/speed.py [--quick] [--out FILE] [--device auto] [--data_root DIR]

Pretraining: `--aug_backend numpy` (per-sample augmentation in the DataLoader, as the official
code) against `--aug_backend torch` (whole batches on the device); sequences per second over the
same update epochs, checkpointing included; also the fast path under `--amp bf16` (not the
default: it changes the arithmetic). Linear evaluation (90 epochs): recomputing the frozen
features every epoch (official) against extracting them once. Also: how much anonymous memory
(RAM not backed by the file) iterating an NTU-shaped memory-mapped array takes.
Writes bench/results/speed-<device>.json (or --out). --quick: SBU only, fewer epochs.
"""
import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pretrain_and_linEval as pretrain  # noqa: E402
from dataset import SkeletonDataset, load_array  # noqa: E402
from evaluation import linear_evaluation, load_splits, loader  # noqa: E402
from runs import RunLog, resolve_device  # noqa: E402
from model import LSTMEncoder  # noqa: E402


def rss_anon_mb():
    """Resident anonymous memory of this process in MiB (Linux), i.e. not file-backed pages."""
    status = Path('/proc/self/status').read_text()
    return int(re.search(r'RssAnon:\s+(\d+)', status).group(1)) / 1024


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = re.search(r'model name\s+: (.*)', Path('/proc/cpuinfo').read_text())
    return f"{cpu.group(1) if cpu else platform.processor()} ({torch.get_num_threads()} threads)"


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
    import pickle
    pickle.dump(([str(i) for i in range(samples)], [i % 60 for i in range(samples)]), open(label_path, 'wb'))
    before = rss_anon_mb()
    data, labels = load_array(data_path, label_path, 25, 2, 60)
    peak = before
    for x, _, _ in loader(SkeletonDataset(data, labels, 150), 32, True, 0, 0, device):
        x.to(device)
        peak = max(peak, rss_anon_mb())
    return dict(samples=samples, array_mb=round(data_path.stat().st_size / 2 ** 20, 1),
                anon_memory_growth_mb=round(peak - before, 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='SBU only, 3 pretraining epochs (< 60 s on 2 CPU cores)')
    parser.add_argument('--out', default=None, help='JSON path (default bench/results/speed-<device>.json; '
                        'with --quick runs/speed-<device>-quick.json, so the committed file stays)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--data_root', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
    args = parser.parse_args()
    device = resolve_device(args.device)
    datasets = ['sbu'] if args.quick else ['sbu', 'ucla']
    epochs = 3 if args.quick else 10
    report = dict(device=device_name(device), device_type=device.type, torch=torch.__version__, quick=args.quick,
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
    report['peak_rss_mb'] = round(__import__('resource').getrusage(0).ru_maxrss / 1024, 1)
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
