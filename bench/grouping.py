"""How the masked temporal mean's length grouping (model.length_groups) pays on real N-UCLA batches.

    python bench/grouping.py [--data_root DIR] [--threads N] [--out FILE]

Times the LSTM encoder (hidden 256, the N-UCLA setting) with `masked_mean` over the first 24
training batches of N-UCLA view 3 (batch 32): supervised batches (`subtract1`, 150 frames) and
pretraining-like batches (60 frames, each sequence reversed with p 0.5 as the official `randomFlip`,
which puts its padding first). Forward + backward and forward only, median of 5 passes, for one RNN
call over all frames (the cost of the padded computation) and for several (step_cost, call_cost)
settings of the grouping's cost model, interleaved so that machine noise hits every setting alike.
Writes bench/results/grouping-cpu.json (or --out).
"""
import argparse
import functools
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import augment  # noqa: E402
import model  # noqa: E402
from dataset import DATA_ROOT, IndexBatches, load_split  # noqa: E402
from runs import device_name, provenance, set_threads, write_json  # noqa: E402

GROUPS = model.length_groups  # the cost model's defaults; each setting is timed by rebinding it
SETTINGS = [(2.0, 8.0), (1.0, 60.0), (2.0, 60.0), (3.0, 60.0), (2.0, 120.0), (0.0, 300.0)]


def batches(data_root, frames, reverse):
    """The first 24 shuffled batches of 32 N-UCLA view-3 training sequences, centred, first `frames` frames."""
    data, _ = load_split('ucla', data_root, 'train', test_view=3, cache_dir=os.environ.get('ASCAL_CACHE_DIR', 'runs/cache'))
    centre, g = augment.build_transform('subtract', frames), torch.Generator().manual_seed(0)
    xs = [centre(torch.tensor(data[idx.numpy()]), None)
          for idx in itertools.islice(IndexBatches(len(data), 32, True, 1).tensors(), 24)]
    return [augment.reverse(x, g) for x in xs] if reverse else xs


def seconds_per_batch(encoder, xs, backward, setting):
    model.length_groups = functools.partial(GROUPS, step_cost=setting[0], call_cost=setting[1])
    start = time.perf_counter()
    for x in xs:
        if backward:
            encoder(x).sum().backward()
        else:
            with torch.no_grad():
                encoder(x)
    return (time.perf_counter() - start) / len(xs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_root', default=DATA_ROOT)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--out', default='bench/results/grouping-cpu.json')
    args = parser.parse_args(argv)
    set_threads(args.threads)
    torch.manual_seed(0)
    encoder = model.LSTMEncoder(60, 256, 1, 'masked_mean')
    settings = {'one call': (float('inf'), 0.0), **{f'step {s:g}, call {c:g}': (s, c) for s, c in SETTINGS}}
    result = dict(device=device_name(torch.device('cpu')), threads=torch.get_num_threads(),
                  default=f'step {model.STEP_COST:g}, call {model.CALL_COST:g}', ms_per_batch={})
    for name, frames, reverse in (('supervised, 150 frames', 150, False),
                                  ('pretraining, 60 frames, half reversed', 60, True)):
        xs = batches(args.data_root, frames, reverse)
        real = torch.cat([x.ne(0).any(4).any(3).any(1) for x in xs]).float().mean().item()
        for backward in (True, False):
            seconds_per_batch(encoder, xs[:3], backward, settings['one call'])  # warm-up
            times = {s: [] for s in settings}
            for _ in range(5):
                for s, setting in settings.items():
                    times[s].append(seconds_per_batch(encoder, xs, backward, setting))
            key = f"{name}, {'forward + backward' if backward else 'forward'}"
            result['ms_per_batch'][key] = {s: round(1e3 * statistics.median(t), 2) for s, t in times.items()}
            result['ms_per_batch'][key]['real frame share'] = round(real, 3)
            print(key, result['ms_per_batch'][key], flush=True)
    result['provenance'] = provenance(torch.device('cpu'), Path(args.out).parent)
    write_json(result, Path(args.out))


if __name__ == '__main__':
    main()
