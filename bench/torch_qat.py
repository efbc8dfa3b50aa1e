"""QAT at scale: megq's fake quantization in PyTorch (megq.interop.torch_qat) against megq's own numpy QAT.

1. Equality: a torchvision-layout CIFAR ResNet (plain torch.nn, ResNet-8 or -20) trained a few QAT steps in torch
   with ``prepare_qat``, brought back with ``to_megq`` and quantized with ``quantize``: the torch integer eval against
   the megq Q model at every quantized layer (number of layers bit-identical, logits identical), and the torch float
   fake-quant eval against megq's float fake-quant eval (largest difference in quantization steps, share of
   elements that differ). The same check on a torchvision-layout MobileNetV2 (``--mobilenet-width``, batch at most 8;
   0 skips it).
2. Step time (forward + backward + SGD) of one QAT step on the same architecture and batch: megq numpy QAT, torch
   QAT in 1 process, torch QAT under DistributedDataParallel with 2 processes (gloo, CPU, each rank the full batch:
   the global batch doubles). Median of ``--steps`` steps after one warm-up step. Random inputs: timing and the
   equality check do not depend on the data.

Usage: python -m bench torch_qat [--depth 8|20] [--batch 32] [--size 32] [--steps 5] [--threads 1]
                                 [--mobilenet-width 0.5] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from typing import List, Sequence

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PRESET = "ema_fakequant_qconfig_per_channel_quint8"


def _nets():
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    from interop_qat import qat_nets

    return qat_nets


def _torch_steps(model, data, lr=0.05) -> List[float]:
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    times = []
    for x, y in data:
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return times


def _megq_steps(depth: int, in_ch: int, data) -> List[float]:
    import megq
    import megq.functional as F
    import megq.quantization as Q
    from megq import models
    from megq import optimizer as optim
    from megq.autodiff import GradManager

    net = Q.quantize_qat(models.CifarResNet((depth - 2) // 6, 10, in_ch), getattr(Q, PRESET))
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    gm = GradManager().attach(net.parameters())
    net.train()
    times = []
    for x, y in data:
        t0 = time.perf_counter()
        with gm:
            loss = F.cross_entropy(net(megq.Tensor(x.numpy())), megq.Tensor(y.numpy().astype(np.int32)))
            gm.backward(loss)
        opt.step()
        opt.clear_grad()
        times.append(time.perf_counter() - t0)
    return times


def _ddp_worker(rank, world, port, args, out):
    import torch
    import torch.distributed as dist

    from megq.interop.torch_qat import prepare_qat

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        nets = _nets()
        torch.manual_seed(0)
        qat = prepare_qat(nets.ResNet((args.depth - 2) // 6, in_channels=3), PRESET)
        ddp = torch.nn.parallel.DistributedDataParallel(qat)
        data = nets.batches(args.steps + 1, (args.batch, 3, args.size, args.size), 10 + rank)
        times = _torch_steps(ddp, data)[1:]
        if rank == 0:
            with open(out, "w") as f:
                json.dump(times, f)
        # Both ranks leave the group together: a rank that tears gloo down while its peer is still finishing its
        # last collective can abort the process ("terminate called without an active exception").
        dist.barrier()
    finally:
        dist.destroy_process_group()


def equality(args, mobilenet_width: float = 0.0) -> dict:
    import torch

    import megq.quantization as Q
    from megq.interop.torch_qat import prepare_qat, set_integer_eval, to_megq
    from megq.interop.torch_qat.convert import layer_names
    from megq.quantization.integer_eval import integer_eval

    nets = _nets()
    torch.manual_seed(0)
    batch = args.batch
    if mobilenet_width:
        batch = min(batch, 8)
        qat = prepare_qat(nets.MobileNetV2(10, mobilenet_width, 3), PRESET)
        _torch_steps(qat, nets.batches(args.steps, (batch, 3, args.size, args.size), 1), lr=0.01)
    else:
        qat = prepare_qat(nets.ResNet((args.depth - 2) // 6, in_channels=3), PRESET)
        _torch_steps(qat, nets.batches(args.steps, (batch, 3, args.size, args.size), 1))
    qat.eval()
    x = nets.batches(1, (batch, 3, args.size, args.size), 2)[0][0]
    names = list(layer_names(qat))
    t_f, t_out_f = nets.torch_layer_outputs(qat, names, x)
    mq = to_megq(qat)
    with integer_eval(False):
        m_f, m_out_f = nets.megq_layer_outputs(mq, names, x)
    set_integer_eval(qat, True)
    t_i, t_out_i = nets.torch_layer_outputs(qat, names, x)
    q = Q.quantize(mq, inplace=False)
    q.eval()
    q_i, q_out_i = nets.megq_layer_outputs(q, names, x)
    same = sum(np.array_equal(t_i[n][0], q_i[n][0]) for n in names)
    worst, share = 0.0, 0.0
    for n in names:
        s = np.float32(qat.get_submodule(n).get_activation_qparams()[0].item())
        d = np.abs(t_f[n][0] - m_f[n][0]) / s
        worst, share = max(worst, float(d.max())), max(share, float((d > 0.5).mean()))
    return dict(batch=batch, layers=len(names), identical=int(same),
                logits_identical=bool(np.array_equal(t_out_i, q_out_i)),
                float_worst_steps=round(worst, 3), float_worst_share=share,
                float_logits_maxdiff=float(np.abs(t_out_f - m_out_f).max()))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench torch_qat", description=__doc__.split("\n\n")[0])
    p.add_argument("--depth", type=int, default=20, choices=[8, 20])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--mobilenet-width", type=float, default=0.5,
                   help="width of the MobileNetV2 equality check (0: skip)")
    p.add_argument("--quick", action="store_true", help="ResNet-8, batch 8, 16x16, 2 steps")
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.batch, args.size, args.steps = 8, 8, 16, 2
    try:
        import torch
        import torch.multiprocessing as mp
    except ImportError:
        print("bench torch_qat needs PyTorch: pip install megq[interop]")
        return 1
    torch.set_num_threads(args.threads)
    nets = _nets()
    eq = equality(args)
    print(f"## torch QAT equality (ResNet-{args.depth}, {PRESET}, batch {args.batch}, {args.size}x{args.size})")
    print(f"integer eval: {eq['identical']}/{eq['layers']} quantized layers bit-identical to the megq Q model, "
          f"logits identical: {eq['logits_identical']}")
    print(f"float fake-quant eval vs megq's: largest difference {eq['float_worst_steps']} steps, at most "
          f"{100 * eq['float_worst_share']:.4f} % of a layer's elements, logits max |diff| "
          f"{eq['float_logits_maxdiff']:.3g}")
    ok = eq["identical"] == eq["layers"] and eq["logits_identical"]
    if args.mobilenet_width:
        mb = equality(args, args.mobilenet_width)
        print(f"\n## torch QAT equality (MobileNetV2 width {args.mobilenet_width}, {PRESET}, batch {mb['batch']}, "
              f"{args.size}x{args.size})")
        print(f"integer eval: {mb['identical']}/{mb['layers']} quantized layers bit-identical to the megq Q model, "
              f"logits identical: {mb['logits_identical']}")
        print(f"float fake-quant eval vs megq's: largest difference {mb['float_worst_steps']} steps, at most "
              f"{100 * mb['float_worst_share']:.4f} % of a layer's elements, logits max |diff| "
              f"{mb['float_logits_maxdiff']:.3g}")
        ok = ok and mb["identical"] == mb["layers"] and mb["logits_identical"]
    shape = (args.batch, 3, args.size, args.size)
    data = nets.batches(args.steps + 1, shape, 3)
    megq_t = statistics.median(_megq_steps(args.depth, 3, data)[1:])
    torch.manual_seed(0)
    from megq.interop.torch_qat import prepare_qat

    torch_t = statistics.median(_torch_steps(prepare_qat(nets.ResNet((args.depth - 2) // 6, in_channels=3),
                                                         PRESET), data)[1:])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "times")
        mp.spawn(_ddp_worker, args=(2, port, args, out), nprocs=2, join=True)
        with open(out) as f:
            ddp_t = statistics.median(json.load(f))
    print(f"\n## QAT step time, ResNet-{args.depth}, batch {args.batch} per process, {args.threads} thread(s) "
          "per process (median)")
    print("| trainer | processes | images / step | s / step | images / s |")
    print("|---|---|---|---|---|")
    for name, procs, t in (("megq numpy QAT", 1, megq_t), ("torch QAT (megq numerics)", 1, torch_t),
                           ("torch QAT, DDP gloo", 2, ddp_t)):
        n = args.batch * procs
        print(f"| {name} | {procs} | {n} | {t:.3f} | {n / t:.0f} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
