"""End to end: a small CNN with fused ConvBnRelu2d learns the embedded digits."""
import pytest

import megq
import megq.functional as F
import megq.module as M
from megq import data as D
from megq import optimizer as optim
from megq.autodiff import GradManager, no_grad


@pytest.mark.slow
def test_digits_cnn_learns():
    megq.random.seed(0)
    norm = D.transforms.Normalize(4.88, 6.02)
    train = D.DataLoader(D.digits(True), 32, shuffle=True, seed=0, transform=norm)
    test = D.DataLoader(D.digits(False), 360, transform=norm)
    net = M.Sequential(
        M.QuantStub(),
        M.ConvBnRelu2d(1, 16, 3, padding=1, bias=False),
        M.MaxPool2d(2),
        M.ConvBnRelu2d(16, 32, 3, padding=1, bias=False),
        M.AdaptiveAvgPool2d(1),
        M.Flatten(),
        M.DequantStub(),
        M.Linear(32, 10),
    )
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    sched = optim.CosineAnnealingLR(opt, 6 * len(train))
    gm = GradManager().attach(net.parameters())
    for _ in range(6):
        net.train()
        for x, y in train:
            with gm:
                loss = F.cross_entropy(net(megq.Tensor(x)), megq.Tensor(y), label_smoothing=0.05)
                gm.backward(loss)
            opt.step()
            opt.clear_grad()
            sched.step()
    net.eval()
    with no_grad():
        x, y = next(iter(test))
        logits = net(megq.Tensor(x))
    acc = float((logits.numpy().argmax(1) == y).mean())
    assert abs(acc - F.topk_accuracy(logits, megq.Tensor(y)).item()) < 1e-6
    assert acc >= 0.95, acc
