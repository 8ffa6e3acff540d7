"""Data-parallel pretraining under torchrun (the official code has none; MoCo's recipe): process group setup,
gathering every rank's keys for the queue, and a check that the ranks' weights agree.

With N processes of batch B, each global batch of N*B indices (one seeded permutation per epoch,
the same on every rank) is split into N contiguous chunks, one per rank; gradients are averaged by
DistributedDataParallel and the keys of all ranks are enqueued in rank order, so the run follows
one process with batch N*B.
"""
import inspect
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def setup(device_name):
    """Join the torchrun process group if there is one: returns (rank, world_size, device)."""
    world = int(os.environ.get('WORLD_SIZE', 1))
    if world == 1:
        return 0, 1, None
    cuda = device_name == 'cuda' or (device_name == 'auto' and torch.cuda.is_available())
    device = torch.device('cpu')
    if cuda:
        device = torch.device('cuda', int(os.environ.get('LOCAL_RANK', 0)))
        torch.cuda.set_device(device)
    dist.init_process_group('nccl' if cuda else 'gloo')
    return dist.get_rank(), world, device


def wrap(model):
    """DDP over the contrast model: gradients of the query encoder are averaged; the queue buffer
    is not re-broadcast on each forward (every rank enqueues the same gathered keys)."""
    no_sync = ({'forward_sync_buffers': False} if 'forward_sync_buffers' in inspect.signature(DistributedDataParallel).parameters
               else {'broadcast_buffers': False})
    return DistributedDataParallel(model, **no_sync)


def all_gather_keys(keys):
    """(B_rank, D) keys of this rank -> (sum of B, D) keys of all ranks in rank order (no gradient)."""
    world = dist.get_world_size()
    size = torch.tensor([len(keys)], device=keys.device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size)
    sizes = [int(s) for s in sizes]
    padded = keys.new_zeros((max(sizes), keys.shape[1]))
    padded[:len(keys)] = keys
    gathered = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:s] for g, s in zip(gathered, sizes)])


def global_count(n, device):
    """Sum of n over ranks."""
    total = torch.tensor([n], device=device)
    dist.all_reduce(total)
    return int(total)


def check_replicas_agree(module, where):
    """Raise if the parameters differ between ranks (they must be replicas after every step)."""
    flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
    reference = flat.clone()
    dist.broadcast(reference, 0)
    if not torch.equal(flat, reference):
        raise RuntimeError(f"rank {dist.get_rank()}: query weights differ from rank 0 {where}")
