"""megq.interop.from_torch: torchvision-layout models (plain torch.nn, tests/interop/tv_models.py) with random
weights and BN statistics load into the zoo and give torch's logits; every way of passing a state_dict; errors."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import megq  # noqa: E402
from megq import models  # noqa: E402
from megq.autodiff import no_grad  # noqa: E402
from megq.interop import from_torch, read_state_dict, torchvision_mapping  # noqa: E402

from .tv_models import mobilenet_v2, randomize, resnet18, resnet50  # noqa: E402


def logits(model, x):
    with no_grad():
        return model(megq.Tensor(x)).numpy()


def torch_logits(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def assert_close(ours, ref, rel=1e-4):
    err = np.abs(ours - ref).max() / np.abs(ref).max()
    assert err <= rel, f"max |megq - torch| / max |torch| = {err:.3g}"


@pytest.mark.parametrize("torch_factory,megq_factory,size", [
    (resnet18, models.resnet18, 64), (resnet50, models.resnet50, 64), (mobilenet_v2, models.mobilenet_v2, 96)])
def test_random_weights_give_torchs_logits(torch_factory, megq_factory, size):
    ref = randomize(torch_factory(num_classes=37), seed=size)
    x = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    ours = from_torch(megq_factory(num_classes=37).eval(), ref.state_dict())
    assert_close(logits(ours, x), torch_logits(ref, x))


def test_every_parameter_and_buffer_is_loaded():
    ref = randomize(mobilenet_v2(num_classes=10), seed=3)
    ours = from_torch(models.mobilenet_v2(num_classes=10), ref.state_dict())
    mapping = torchvision_mapping(ours)
    sd = {k: v.numpy() for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    ours_sd = ours.state_dict()
    assert len(ours_sd) == len(sd) == 262  # 52 conv weights, 52 BNs x 4, the classifier's weight and bias
    assert mapping["features.2.conv.2.bn"] == "features.2.conv.3" and mapping["features.1.conv.1.conv"] == \
        "features.1.conv.1"
    for key, value in ours_sd.items():
        parts = key.split(".")
        prefix = ".".join(parts[:-1])
        tkey = f"{mapping.get(prefix, prefix)}.{parts[-1]}"
        np.testing.assert_array_equal(value, sd[tkey])


def test_sources_pth_safetensors_numpy_and_wrapped(tmp_path):
    ref = randomize(resnet18(num_classes=5), seed=4)
    x = np.random.default_rng(2).standard_normal((1, 3, 48, 48)).astype(np.float32)
    expected = torch_logits(ref, x)
    pth = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), pth)
    st = pytest.importorskip("safetensors.torch")
    sft = tmp_path / "r18.safetensors"
    st.save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(sft))
    numpy_sd = {k: v.numpy() for k, v in ref.state_dict().items()}
    wrapped = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}}, wrapped)
    for source in (pth, str(sft), numpy_sd, wrapped):
        assert_close(logits(from_torch(models.resnet18(num_classes=5).eval(), source), x), expected)


def test_user_model_with_mapping():
    tnet = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3))
    randomize(tnet, seed=5)
    M = megq.module
    net = M.Sequential(M.ConvBnRelu2d(3, 4, 3, padding=1), M.Flatten(), M.Linear(256, 3)).eval()
    from_torch(net, tnet.state_dict(), mapping={"0.conv": "0", "0.bn": "1", "2": "4"})
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    assert_close(logits(net, x), torch_logits(tnet, x))
    # the callable form gets the megq key and returns the torch key
    net2 = M.Sequential(M.ConvBnRelu2d(3, 4, 3, padding=1), M.Flatten(), M.Linear(256, 3)).eval()
    table = {"0.conv": "0", "0.bn": "1", "2": "4"}
    from_torch(net2, tnet.state_dict(), mapping=lambda k: f"{table[k.rsplit('.', 1)[0]]}.{k.rsplit('.', 1)[1]}")
    assert_close(logits(net2, x), torch_logits(tnet, x))


def test_wrong_architecture_names_every_key():
    sd = randomize(resnet18(), seed=6).state_dict()
    with pytest.raises(ValueError) as e:
        from_torch(models.resnet34(), sd)
    msg = str(e.value)
    assert "missing" in msg and "layer1.2.conv_bn_relu1.conv.weight (torch key 'layer1.2.conv1.weight')" in msg
    assert "layer4.2.conv_bn2.bn.running_var" in msg and "unexpected" not in msg
    with pytest.raises(ValueError, match=r"shape mismatch: fc.weight \(torch key 'fc.weight'\): megq \(10, 512\), "
                                         r"torch \(1000, 512\)"):
        from_torch(models.resnet18(num_classes=10), sd)
    with pytest.raises(ValueError, match="unexpected: .*features.0.0.weight"):
        from_torch(models.resnet18(), {**{k: v for k, v in sd.items()}, "features.0.0.weight": torch.zeros(1)})
    before = models.resnet18().state_dict()["fc.bias"].copy()
    m = models.resnet18()
    with pytest.raises(ValueError):
        from_torch(m, {k: v for k, v in sd.items() if k != "fc.bias"})
    np.testing.assert_array_equal(m.state_dict()["fc.bias"].shape, before.shape)
    # strict=False: loads what matches, ignores the rest (still refuses a shape mismatch)
    m = from_torch(models.resnet18(), {k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=False)
    np.testing.assert_array_equal(m.state_dict()["conv_bn_relu1.conv.weight"], sd["conv1.weight"].numpy())


def test_nothing_is_loaded_when_strict_fails():
    sd = randomize(resnet18(), seed=7).state_dict()
    m = models.resnet18()
    w0 = m.state_dict()["conv_bn_relu1.conv.weight"]
    with pytest.raises(ValueError):
        from_torch(m, {k: v for k, v in sd.items() if k != "fc.bias"})
    np.testing.assert_array_equal(m.state_dict()["conv_bn_relu1.conv.weight"], w0)


def test_truncated_and_bad_files(tmp_path):
    sd = randomize(resnet18(num_classes=3), seed=8).state_dict()
    pth = tmp_path / "full.pth"
    torch.save(sd, pth)
    data = pth.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.pth.*not a readable PyTorch checkpoint"):
        from_torch(models.resnet18(num_classes=3), cut)
    st = pytest.importorskip("safetensors.torch")
    sft = tmp_path / "full.safetensors"
    st.save_file({k: v.contiguous() for k, v in sd.items()}, str(sft))
    cut_st = tmp_path / "cut.safetensors"
    cut_st.write_bytes(sft.read_bytes()[:1000])
    with pytest.raises(ValueError, match="cut.safetensors.*not a readable safetensors file"):
        from_torch(models.resnet18(num_classes=3), cut_st)
    with pytest.raises(ValueError, match="no such file"):
        from_torch(models.resnet18(), tmp_path / "absent.pth")
    with pytest.raises(TypeError, match="state_dict: expected a dict or a file path"):
        from_torch(models.resnet18(), 42)
    with pytest.raises(TypeError, match="model: expected a megq Module"):
        from_torch(object(), sd)
    with pytest.raises(TypeError, match="value of 'w' must be"):
        read_state_dict({"w": "not a tensor"})
