#!/usr/bin/env python3
"""PyTorch's side of benches/ddp_scaling.py: one measurement, printed as seconds.

    python3 benches/ddp_torch.py vae|dcgan RANKS THREADS

vae: one epoch of pytorch/examples' VAE (784-400-20, BCE(sum) + KL, Adam
1e-3) over 9000 images, global batch 128; dcgan: the median iteration of
pytorch/examples' DCGAN loop (the 28x28 nets of benches/gan_compare.py,
Adam 2e-4 (0.5, 0.999)), global batch 64. With RANKS > 1 the model is
wrapped in DistributedDataParallel over the Gloo backend (processes on this
machine, TCP on loopback), each rank takes its share of every batch
(DistributedSampler), and the time is rank 0's, between barriers. Written
as pytorch/examples writes these models: in-place activations, its loop.
"""

import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gan_compare import iteration, make_nets  # noqa: E402
from vae_compare import VAE, loss_parts  # noqa: E402


def vae_loss(recon, x, mu, logvar):
    bce, kld = loss_parts(recon, x, mu, logvar)
    return bce + kld


def vae_epoch(rank, ranks):
    torch.manual_seed(0)
    data = torch.rand(9000, 784)
    model = VAE()
    if ranks > 1:
        model = DDP(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sampler = torch.utils.data.distributed.DistributedSampler(
        torch.utils.data.TensorDataset(data), num_replicas=ranks, rank=rank, seed=0)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(data), batch_size=128 // ranks, sampler=sampler)
    seconds = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        barrier(ranks)
        start = time.perf_counter()
        for (x,) in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            loss = vae_loss(recon, x, mu, logvar)
            loss.backward()
            opt.step()
        barrier(ranks)
        seconds.append(time.perf_counter() - start)
    return seconds[-1]


def dcgan_iteration(rank, ranks, iters=20):
    g, d = make_nets()
    if ranks > 1:
        g, d = DDP(g), DDP(d)
    opt_g = torch.optim.Adam(g.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real = torch.rand(64 // ranks, 1, 28, 28) * 2 - 1
    times = []
    for i in range(iters + 5):
        barrier(ranks)
        t = time.perf_counter()
        iteration(g, d, opt_g, opt_d, real)
        if i >= 5:
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def barrier(ranks):
    if ranks > 1:
        dist.barrier()


def worker(rank, ranks, threads, workload, port):
    torch.set_num_threads(threads)
    if ranks > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=ranks)
    secs = vae_epoch(rank, ranks) if workload == "vae" else dcgan_iteration(rank, ranks)
    if rank == 0:
        print(f"{secs:.6f}", flush=True)
    if ranks > 1:
        dist.destroy_process_group()


def main():
    workload, ranks, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if ranks == 1:
        worker(0, 1, threads, workload, 0)
        return
    port = 29500 + os.getpid() % 1000
    torch.multiprocessing.spawn(worker, args=(ranks, threads, workload, port), nprocs=ranks)


if __name__ == "__main__":
    main()
