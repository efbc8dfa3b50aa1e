"""Float training benchmark: megq (numpy) vs PyTorch (if installed) on the same model, data order and
hyper-parameters.

  * digits CNN (3 ConvBnRelu + pool + fc) on the embedded digits, 1,437 train / 360 test, 15 epochs.
  * CIFAR-style ResNet-8 (1 basic block per stage, 16/32/64 channels) on Fashion-MNIST, 2 epochs.

Both frameworks get the same initial weights (copied from megq's model), the same batches in the same order
(megq's seeded DataLoader feeds both) and the same schedule (SGD + Nesterov, linear warm-up then cosine, per
iteration). Times are wall-clock seconds for training only; evaluation is timed separately.

Usage: PYTHONPATH=python python bench/bench_float_training.py [--task digits|resnet8|all] [--no-torch]
       [--epochs N] [--train-subset N]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Dict, List, Tuple

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import megq  # noqa: E402
import megq.functional as F  # noqa: E402
import megq.module as M  # noqa: E402
from megq import data as D  # noqa: E402
from megq import models  # noqa: E402
from megq import optimizer as optim
from megq.autodiff import GradManager, no_grad, tune_malloc  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------
# models (megq side)
def digits_cnn() -> M.Module:
    return M.Sequential(
        M.ConvBnRelu2d(1, 32, 3, padding=1, bias=False),
        M.ConvBnRelu2d(32, 64, 3, padding=1, bias=False),
        M.MaxPool2d(2),
        M.ConvBnRelu2d(64, 64, 3, padding=1, bias=False),
        M.AdaptiveAvgPool2d(1),
        M.Flatten(),
        M.Linear(64, 10),
    )


# ----------------------------------------------------------------------------------------------------------------
# models (torch side, same structure and state_dict keys)
def torch_models():
    import torch
    import torch.nn as nn

    class ConvBn(nn.Module):
        def __init__(self, cin, cout, k, stride=1, padding=0, relu=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            self.relu = relu

        def forward(self, x):
            x = self.bn(self.conv(x))
            return torch.relu(x) if self.relu else x

    class Block(nn.Module):
        def __init__(self, cin, c, stride):
            super().__init__()
            self.conv_bn_relu1 = ConvBn(cin, c, 3, stride, 1)
            self.conv_bn2 = ConvBn(c, c, 3, 1, 1, relu=False)
            self.downsample = nn.Identity() if cin == c and stride == 1 else ConvBn(cin, c, 1, stride, 0, relu=False)

        def forward(self, x):
            return torch.relu(self.conv_bn2(self.conv_bn_relu1(x)) + self.downsample(x))

    class ResNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_bn_relu1 = ConvBn(1, 16, 3, 1, 1)
            self.layer1 = nn.Sequential(Block(16, 16, 1))
            self.layer2 = nn.Sequential(Block(16, 32, 2))
            self.layer3 = nn.Sequential(Block(32, 64, 2))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(self.conv_bn_relu1(x))))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    def digits():
        return nn.Sequential(ConvBn(1, 32, 3, 1, 1), ConvBn(32, 64, 3, 1, 1), nn.MaxPool2d(2),
                             ConvBn(64, 64, 3, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    return {"resnet8": ResNet8, "digits": digits}


def copy_to_torch(src: M.Module, dst) -> None:
    import torch

    sd = dst.state_dict()
    ours = src.state_dict()
    for k in sd:
        if k.endswith("num_batches_tracked"):
            continue
        sd[k] = torch.from_numpy(np.ascontiguousarray(ours[k]))
    dst.load_state_dict(sd)


# ----------------------------------------------------------------------------------------------------------------
def schedule(opt, total: int, warmup: int):
    cosine = optim.CosineAnnealingLR(opt, total - warmup)
    return optim.LinearWarmup(opt, warmup, 0.1, after=cosine)


class MegqTrainer:
    """One epoch at a time, so the benchmark can interleave megq and torch epochs (fair under varying load)."""

    def __init__(self, model, loader, epochs, lr, wd, warmup, smoothing) -> None:
        self.model, self.loader, self.smoothing = model, loader, smoothing
        self.opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
        self.sched = schedule(self.opt, epochs * len(loader), warmup)
        tune_malloc()
        self.gm = GradManager().attach(model.parameters())
        self.seconds = 0.0

    def epoch(self, index: int) -> None:
        self.loader.epoch = index  # same shuffle as the torch run's epoch `index`
        self.model.train()
        t0 = time.perf_counter()
        for x, y in D.progress(self.loader, total=len(self.loader), desc=f"megq epoch {index}"):
            with self.gm:
                loss = F.cross_entropy(self.model(megq.Tensor(x)), megq.Tensor(y), label_smoothing=self.smoothing)
                self.gm.backward(loss)
            self.opt.step()
            self.opt.clear_grad()
            self.sched.step()
        self.seconds += time.perf_counter() - t0

    def evaluate(self, loader) -> Tuple[float, float]:
        self.model.eval()
        t0 = time.perf_counter()
        correct = total = 0
        with no_grad():
            for x, y in loader:
                correct += int((self.model(megq.Tensor(x)).numpy().argmax(1) == y).sum())
                total += len(y)
        return correct / total, time.perf_counter() - t0


class TorchTrainer:
    """The same loop in PyTorch (same batches, same schedule)."""

    def __init__(self, model, loader, epochs, lr, wd, warmup, smoothing) -> None:
        import torch

        self.torch, self.model, self.loader, self.smoothing = torch, model, loader, smoothing
        self.opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
        total = epochs * len(loader)

        def factor(step):  # identical to megq's LinearWarmup(0.1) + CosineAnnealingLR
            if step < warmup:
                return 0.1 + 0.9 * step / warmup
            return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total - warmup) / (total - warmup)))

        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, factor)
        self.seconds = 0.0

    def epoch(self, index: int) -> None:
        torch = self.torch
        self.loader.epoch = index
        self.model.train()
        t0 = time.perf_counter()
        for x, y in self.loader:
            loss = torch.nn.functional.cross_entropy(self.model(torch.from_numpy(x)), torch.from_numpy(y).long(),
                                                     label_smoothing=self.smoothing)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            self.sched.step()
        self.seconds += time.perf_counter() - t0

    def evaluate(self, loader) -> Tuple[float, float]:
        torch = self.torch
        self.model.eval()
        t0 = time.perf_counter()
        correct = total = 0
        with torch.no_grad():
            for x, y in loader:
                correct += int((self.model(torch.from_numpy(x)).numpy().argmax(1) == y).sum())
                total += len(y)
        return correct / total, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------------------------
def task_setup(task: str, subset: int):
    if task == "digits":
        norm = D.transforms.Normalize(4.88, 6.02)
        train, test = D.digits(True), D.digits(False)
        return dict(model=digits_cnn, train=D.DataLoader(train, 32, shuffle=True, seed=0, transform=norm),
                    test=D.DataLoader(test, 360, transform=norm), epochs=15, lr=0.05, wd=5e-4, warmup=45,
                    smoothing=0.0)
    norm = D.transforms.Normalize(0.2860 * 255, 0.3530 * 255)
    train, test = D.FashionMNIST(True), D.FashionMNIST(False)
    if subset:
        train = D.ArrayDataset(train.images[:subset], train.labels[:subset])
    return dict(model=lambda: models.resnet8(in_channels=1),
                train=D.DataLoader(train, 64, shuffle=True, seed=0, transform=norm),
                test=D.DataLoader(test, 500, transform=norm), epochs=2, lr=0.05, wd=5e-4, warmup=200, smoothing=0.1)


def run(task: str, use_torch: bool, epochs: int, subset: int, torch_threads: int = 0) -> Dict[str, float]:
    cfg = task_setup(task, subset)
    epochs = epochs or cfg["epochs"]
    megq.random.seed(0)
    model = cfg["model"]()
    # A shortened run (--epochs) keeps at least one step of the cosine phase after the warm-up, in both trainers.
    warmup = min(cfg["warmup"], epochs * len(cfg["train"]) - 1)
    hp = (epochs, cfg["lr"], cfg["wd"], warmup, cfg["smoothing"])
    trainers = {"megq": MegqTrainer(model, cfg["train"], *hp)}
    if use_torch:
        import torch

        torch.set_num_threads(torch_threads or os.cpu_count() or 1)
        tmodel = torch_models()[task]()
        copy_to_torch(model, tmodel)  # same initial weights
        trainers = {"torch": TorchTrainer(tmodel, cfg["train"], *hp), **trainers}
    # Interleave epochs (torch e0, megq e0, torch e1, ...) so that load from other processes hits both alike.
    for e in range(epochs):
        for name, tr in trainers.items():
            tr.epoch(e)
            print(f"[{task}] {name} epoch {e}: {tr.seconds:.1f} s so far", flush=True)
    res: Dict[str, float] = {}
    for name, tr in trainers.items():
        acc, ev = tr.evaluate(cfg["test"])
        res[f"{name}_train_s"], res[f"{name}_acc"], res[f"{name}_eval_s"] = tr.seconds, acc, ev
        print(f"[{task}] {name}: train {tr.seconds:.1f} s, test acc {acc:.4f}, eval {ev:.1f} s", flush=True)
    print(f"[{task}] load average at end {os.getloadavg()}", flush=True)
    if use_torch:
        print(f"[{task}] megq/torch train time: {res['megq_train_s'] / res['torch_train_s']:.2f}x", flush=True)
    return res


def main(argv: List[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", choices=["digits", "resnet8", "all"], default="all")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--epochs", type=int, default=0, help="override the task's epoch count")
    ap.add_argument("--train-subset", type=int, default=0, help="ResNet-8: use only the first N training images")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (default: CPU count)")
    args = ap.parse_args(argv)
    use_torch = not args.no_torch
    if use_torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("torch not installed: running megq only")
            use_torch = False
    print(f"numpy {np.__version__}, cpus {os.cpu_count()}, load average at start {os.getloadavg()}", flush=True)
    for task in (["digits", "resnet8"] if args.task == "all" else [args.task]):
        run(task, use_torch, args.epochs, args.train_subset, args.torch_threads)


if __name__ == "__main__":
    main()
