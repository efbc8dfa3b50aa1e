"""megq train / calibrate / finetune / test / infer on a tiny generated PNG image folder."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image")

import megq  # noqa: E402
from megq import cli, workflow  # noqa: E402

CLASSES = ["blue", "green", "red"]


def _folder(root, n_train=8, n_val=4, size=12):
    """Class c: noisy images whose channel c is bright (easy to learn, so accuracy is meaningful)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, name in enumerate(CLASSES):
            os.makedirs(os.path.join(root, split, name))
            for i in range(n):
                img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
                img[..., 2 - c] = rng.integers(170, 255, (size, size), dtype=np.uint8)  # RGB order: red=0
                PIL.fromarray(img).save(os.path.join(root, split, name, f"{i}.png"))
    return str(root)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def float_ckpt(data, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ckpt") / "float.megq")
    assert cli.main(["train", "--data", data, "--epochs", "3", "--image-size", "12", "--batch-size", "8", "--out",
                     out, "--quiet", "--threads", "1"]) == 0
    return out


def _json(capsys, argv):
    capsys.readouterr()
    assert cli.main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_then_test_json(float_ckpt, data, capsys):
    ckpt = megq.load(float_ckpt)
    assert ckpt["kind"] == "float" and ckpt["epoch"] == 3 and ckpt["meta"]["classes"] == CLASSES
    res = _json(capsys, ["test", "--data", data, "--checkpoint", float_ckpt, "--json", "--no-progress"])
    # independent check of top-1: run the saved float model on the normalized val images here
    ds = workflow.load_data(data, 12)
    x = (ds.val.images.astype(np.float32) - np.array(ckpt["meta"]["mean"], np.float32).reshape(1, -1, 1, 1)) / \
        np.array(ckpt["meta"]["std"], np.float32).reshape(1, -1, 1, 1)
    with megq.autodiff.no_grad():
        pred = ckpt["model"].eval()(megq.Tensor(x)).numpy().argmax(1)
    assert res["top1"] == pytest.approx(float((pred == ds.val.labels).mean()))
    assert res["top5"] == 1.0  # 3 classes
    assert res["top1"] >= 0.75  # the default recipe learns the colour classes


@pytest.mark.parametrize("command", ["calibrate", "finetune"])
def test_quantized_checkpoint_q_equals_qfloat(command, float_ckpt, data, tmp_path, capsys):
    out = str(tmp_path / "q.megq")
    extra = ["--num-batches", "2"] if command == "calibrate" else ["--epochs", "1"]
    assert cli.main([command, "--data", data, "--checkpoint", float_ckpt, "--out", out, "--batch-size", "8",
                     "--quiet"] + extra) == 0
    ckpt = megq.load(out)
    assert ckpt["kind"] == "quantized" and set(ckpt) >= {"qfloat", "q", "meta"}
    res = _json(capsys, ["test", "--data", data, "--checkpoint", out, "--json", "--no-progress"])
    assert res["logits_identical"] is True and res["agreement"] == 1.0
    assert res["top1"] == res["q"]["top1"] == res["qfloat"]["top1"]
    assert 0.0 <= res["top1"] <= 1.0 and res["top5"] == 1.0

    capsys.readouterr()
    image = os.path.join(data, "val", "red", "0.png")
    assert cli.main(["infer", "--checkpoint", out, image, "--top", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(image) and line.count("%") == 2
    assert any(name in line for name in CLASSES)


def test_infer_probabilities_are_softmax_of_q_logits(float_ckpt, data, capsys):
    image = os.path.join(data, "val", "green", "1.png")
    res = workflow.infer(float_ckpt, [image], top=3, quiet=True)[0]
    probs = [p for _, p in res["top"]]
    assert sorted(probs, reverse=True) == probs and sum(probs) == pytest.approx(1.0, abs=1e-5)
    assert sorted(n for n, _ in res["top"]) == CLASSES


def test_resume_after_interruption_is_bit_identical(data, tmp_path, monkeypatch):
    straight = str(tmp_path / "straight.megq")
    workflow.train(data, straight, epochs=2, batch_size=8, image_size=12, progress=False, quiet=True)

    interrupted = str(tmp_path / "interrupted.megq")
    real_save = workflow._save
    calls = []

    def save_then_die(obj, path):
        real_save(obj, path)
        calls.append(path)
        raise KeyboardInterrupt  # killed right after the first epoch's checkpoint

    monkeypatch.setattr(workflow, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        workflow.train(data, interrupted, epochs=2, batch_size=8, image_size=12, progress=False, quiet=True)
    monkeypatch.setattr(workflow, "_save", real_save)
    assert megq.load(interrupted)["epoch"] == 1
    assert cli.main(["train", "--data", data, "--epochs", "2", "--out", interrupted, "--resume", interrupted,
                     "--quiet"]) == 0
    a, b = megq.load(straight), megq.load(interrupted)
    assert b["epoch"] == 2
    sa, sb = a["model"].state_dict(), b["model"].state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert np.array_equal(sa[k], sb[k]), k


def _error(capsys, argv):
    capsys.readouterr()
    assert cli.main(argv) == 2
    return capsys.readouterr().err


def test_clear_errors(data, float_ckpt, tmp_path, capsys):
    os.makedirs(tmp_path / "bad" / "train" / "a")
    err = _error(capsys, ["train", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "x.megq")])
    assert "val/" in err and "DIR/train/<class>" in err
    err = _error(capsys, ["test", "--data", data, "--checkpoint", str(tmp_path / "missing.megq")])
    assert "does not exist" in err
    err = _error(capsys, ["test", "--data", "digits", "--checkpoint", float_ckpt])
    assert "does not match" in err
    junk = tmp_path / "junk.megq"
    junk.write_bytes(b"not a checkpoint")
    err = _error(capsys, ["test", "--data", data, "--checkpoint", str(junk)])
    assert "cannot be read" in err
    q = str(tmp_path / "q.megq")
    assert cli.main(["calibrate", "--data", data, "--checkpoint", float_ckpt, "--out", q, "--num-batches", "1",
                     "--quiet"]) == 0
    err = _error(capsys, ["calibrate", "--data", data, "--checkpoint", q, "--out", str(tmp_path / "q2.megq")])
    assert "needs a float model" in err
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG garbage")
    err = _error(capsys, ["infer", "--checkpoint", float_ckpt, str(broken)])
    assert "cannot read image" in err and "broken.png" in err
    err = _error(capsys, ["train", "--data", data, "--arch", "nonexistent", "--out", str(tmp_path / "y.megq"),
                          "--quiet"])
    assert "not a megq.models architecture" in err
    err = _error(capsys, ["calibrate", "--data", data, "--checkpoint", float_ckpt, "--out", q, "--qconfig", "nope"])
    assert "unknown preset" in err


def test_calibrate_options_reach_the_algorithms(float_ckpt, data, tmp_path, capsys, monkeypatch):
    import megq.quantization as Q

    seen = []
    monkeypatch.setitem(Q.PTQ_OPTIONS, "probe", ("after", lambda model, batches, value: seen.append(
        (len(batches), batches[0].shape, value))))
    out = str(tmp_path / "q.megq")
    assert cli.main(["calibrate", "--data", data, "--checkpoint", float_ckpt, "--out", out, "--num-batches", "2",
                     "--batch-size", "4", "--option", "probe={\"k\": 3}", "--quiet"]) == 0
    assert seen == [(2, (4, 3, 12, 12), {"k": 3})]
    err = _error(capsys, ["calibrate", "--data", data, "--checkpoint", float_ckpt, "--out", out, "--option",
                          "no_such_algorithm"])
    assert "unknown option" in err and "probe" in err


def test_infer_on_a_digits_model_rescales_image_files(tmp_path):
    ckpt_path = str(tmp_path / "digits.megq")
    workflow.train("digits", ckpt_path, epochs=1, progress=False, quiet=True)
    ckpt = megq.load(ckpt_path)
    digit = megq.data.digits(False).images[0, 0]  # 8x8, values 0..16
    stored = np.round(digit.astype(np.float64) * 255 / 16).astype(np.uint8)
    PIL.fromarray(stored).save(str(tmp_path / "digit.png"))
    res = workflow.infer(ckpt_path, [str(tmp_path / "digit.png")], top=10, quiet=True)[0]
    # oracle: the file's values brought back to 0..16, normalized with the checkpoint's statistics
    x = stored.astype(np.float32)[None, None] * np.float32(16 / 255)
    x = (x - np.float32(ckpt["meta"]["mean"][0])) / np.float32(ckpt["meta"]["std"][0])
    with megq.autodiff.no_grad():
        z = ckpt["model"].eval()(megq.Tensor(x.astype(np.float32))).numpy()[0].astype(np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    got = dict(res["top"])
    for i, name in enumerate(ckpt["meta"]["classes"]):
        assert got[name] == pytest.approx(p[i], abs=1e-5)
