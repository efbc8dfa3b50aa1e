"""megq.save replaces files atomically: permissions follow the umask like open(), temporaries are removed on every
failure path (exceptions, KeyboardInterrupt, SIGTERM), symlinks are followed (the target is replaced, the link kept),
and kill -9 in mid-save leaves the previous file intact."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numpy.lib import format as npy_format

import megq


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask,want", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664), (0o000, 0o666)])
def test_new_file_mode_follows_the_umask(tmp_path, umask, want):
    old = os.umask(umask)
    try:
        megq.save({"a": 1}, tmp_path / "m.megq")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "m.megq") == want


def test_existing_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.megq"
    megq.save({"a": 1}, path)
    os.chmod(path, 0o640)
    megq.save({"a": 2}, path)
    assert _mode(path) == 0o640 and megq.load(path) == {"a": 2}


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt(), MemoryError()])
def test_failure_mid_write_removes_the_temporary_and_keeps_the_old_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "m.megq"
    megq.save({"w": np.ones(3)}, path)
    before = path.read_bytes()
    calls = []

    def failing_write_array(*args, **kwargs):
        calls.append(1)
        raise exc

    monkeypatch.setattr(npy_format, "write_array", failing_write_array)
    with pytest.raises(type(exc)):
        megq.save({"w": np.zeros(3)}, path)
    assert calls and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.megq"]


_SIGTERM_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from numpy.lib import format as npy_format
    import megq
    real = npy_format.write_array
    def write_then_term(*a, **k):
        real(*a, **k)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the temporary file exists
    npy_format.write_array = write_then_term
    megq.save({"w": np.zeros(3)}, sys.argv[1])
    print("survived SIGTERM")
""")


def test_sigterm_mid_save_removes_the_temporary_and_still_terminates(tmp_path):
    path = tmp_path / "m.megq"
    megq.save({"w": np.ones(3)}, path)
    before = path.read_bytes()
    out = subprocess.run([sys.executable, "-c", _SIGTERM_CHILD, str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == -signal.SIGTERM, (out.returncode, out.stderr)
    assert "survived" not in out.stdout
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.megq"]


def test_sigterm_handler_of_the_program_is_left_alone(tmp_path):
    seen = []
    old = signal.signal(signal.SIGTERM, lambda *a: seen.append(1))
    try:
        megq.save({"a": 1}, tmp_path / "m.megq")
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
        os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [1]
    finally:
        signal.signal(signal.SIGTERM, old)
    assert signal.getsignal(signal.SIGTERM) is old


def test_symlink_target_is_replaced_and_the_link_kept(tmp_path):
    target = tmp_path / "real" / "ckpt-3.megq"
    target.parent.mkdir()
    megq.save({"epoch": 2}, target)
    link = tmp_path / "latest.megq"
    link.symlink_to(target)
    megq.save({"epoch": 3}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert megq.load(target) == {"epoch": 3}
    assert sorted(p.name for p in target.parent.iterdir()) == ["ckpt-3.megq"]  # temporary was beside the target


def test_dangling_symlink_creates_its_target(tmp_path):
    link = tmp_path / "latest.megq"
    link.symlink_to(tmp_path / "new.megq")
    megq.save({"epoch": 1}, link)
    assert link.is_symlink() and megq.load(tmp_path / "new.megq") == {"epoch": 1}


_SAVER_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import megq
    big = {"w": np.full((4 * 1024 * 1024,), 2.0, np.float32)}  # 16 MiB: saving takes a while
    print("ready", flush=True)
    while True:
        megq.save(big, sys.argv[1])
""")


def test_kill_9_mid_save_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "m.megq"
    old = {"w": np.full((16,), 1.0, np.float32)}
    megq.save(old, path)
    child = subprocess.Popen([sys.executable, "-c", _SAVER_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    back = megq.load(path)  # either the old file or a complete new one, never a mix
    assert back["w"].shape in ((16,), (4 * 1024 * 1024,))
    assert np.all(back["w"] == (1.0 if back["w"].shape == (16,) else 2.0))
    for p in tmp_path.iterdir():  # kill -9 cannot be cleaned up after: only whole temporaries may remain
        assert p.name == "m.megq" or p.name.startswith(".megq-save-")
