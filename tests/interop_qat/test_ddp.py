"""Two-process DistributedDataParallel QAT (gloo, CPU, localhost): the synchronised observers all-reduce the batch
min/max before the EMA step, so both ranks hold the same statistics, equal to a numpy EMA of the global batch
min/max; without sync the ranks differ. Rank 0's model then goes through to_megq and quantize and equals the torch
integer eval bit for bit."""
import os
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import megq.quantization as Q  # noqa: E402
from megq.interop.torch_qat import prepare_qat, set_integer_eval, to_megq  # noqa: E402
from megq.interop.torch_qat.convert import layer_names  # noqa: E402

from .qat_nets import ResNet, batches, megq_layer_outputs, torch_layer_outputs  # noqa: E402

STEPS = 3
SHAPE = (4, 1, 12, 12)


def _worker(rank, world, port, out_dir):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result = {}
        for sync in (True, False):  # one process group, two runs: spawning costs more than training
            torch.manual_seed(0)  # same initial weights on every rank
            qat = prepare_qat(ResNet(1), "ema_fakequant_qconfig_per_channel_quint8", sync=sync)
            ddp = torch.nn.parallel.DistributedDataParallel(qat)
            opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
            data = batches(STEPS, SHAPE, seed=100 + rank)  # each rank its own data
            for x, y in data:
                loss = torch.nn.functional.cross_entropy(ddp(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            result[sync] = {"state": qat.state_dict(), "inputs": [x for x, _ in data]}
            if sync and rank == 0:  # to_megq takes the DDP wrapper itself
                mq = to_megq(ddp)
                result["megq_max_val"] = torch.tensor(mq.layer2[0].add.act_observer.max_val.numpy())
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()  # leave the group together (a rank tearing gloo down early can abort its peer)
    finally:
        dist.destroy_process_group()


def _bn_stat(key):
    # BN running statistics: DDP broadcasts rank 0's at each forward, then each rank's last step updates its own
    # (SyncBatchNorm, on GPUs, would synchronise them too); they are rank-local after the last step
    return any(key.endswith(s) for s in ("running_mean", "running_var", "num_batches_tracked"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """{sync: [rank 0's result, rank 1's]} of one two-process run."""
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    loaded = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    out = {sync: [loaded[0][sync], loaded[1][sync]] for sync in (True, False)}
    out["megq_max_val"] = loaded[0]["megq_max_val"]
    return out


def _ema(values, momentum=0.9):
    momentum = np.float32(momentum)
    m, rm = np.float32(0), np.float32(0)
    for v in values:
        m = np.float32(m * rm + (np.float32(1) - rm) * np.float32(v))
        rm = momentum
    return m


def test_ddp_two_ranks_sync_observers_then_megq_exact(ranks):
    r0, r1 = ranks[True]
    obs = [k for k in r0["state"] if "observer" in k]
    assert len(obs) > 40
    for k in r0["state"]:
        if not _bn_stat(k):
            assert torch.equal(r0["state"][k], r1["state"][k]), k  # weights (DDP) and observers (sync) identical
    # the QuantStub's EMA is megq's EMA of the *global* batch min/max (all-reduce before the EMA step)
    gmin = [min(a.min().item(), b.min().item()) for a, b in zip(r0["inputs"], r1["inputs"])]
    gmax = [max(a.max().item(), b.max().item()) for a, b in zip(r0["inputs"], r1["inputs"])]
    assert r0["state"]["quant.act_observer.min_val"].item() == _ema(gmin)
    assert r0["state"]["quant.act_observer.max_val"].item() == _ema(gmax)
    assert torch.equal(ranks["megq_max_val"], r0["state"]["layer2.0.add.act_observer.max_val"])
    local = _ema([a.max().item() for a in r0["inputs"]])
    assert local != _ema(gmax)  # the oracle tells global from local statistics

    # rank 0's model back to megq: quantize() and per-layer equality with the torch integer eval
    torch.manual_seed(0)
    qat = prepare_qat(ResNet(1), "ema_fakequant_qconfig_per_channel_quint8")
    qat.load_state_dict(r0["state"])
    qat.eval()
    set_integer_eval(qat, True)
    names = list(layer_names(qat))
    x = batches(1, (8, 1, 12, 12), 5)[0][0]
    t_int, t_out = torch_layer_outputs(qat, names, x)
    q = Q.quantize(to_megq(qat), inplace=False)
    q.eval()
    q_int, q_out = megq_layer_outputs(q, names, x)
    for name in names:
        np.testing.assert_array_equal(t_int[name][0], q_int[name][0], err_msg=name)
    np.testing.assert_array_equal(t_out, q_out)


def test_ddp_without_sync_ranks_diverge(ranks):
    r0, r1 = ranks[False]
    for k in r0["state"]:
        if "observer" not in k and not _bn_stat(k):
            assert torch.equal(r0["state"][k], r1["state"][k]), k  # DDP keeps the weights identical
    # DDP broadcasts rank 0's buffers at each forward, so rank 1 keeps rank 0's statistics plus its own last step
    assert not torch.equal(r0["state"]["quant.act_observer.max_val"], r1["state"]["quant.act_observer.max_val"])
