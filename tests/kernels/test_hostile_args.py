"""Hostile arguments to megq's kernels: sizes that do not fit the C++ types, empty
batches, absurd thread counts, malformed environment variables, outputs beyond
MAX_OUTPUT_BYTES, and the extension's exported constants and type stubs.

Huge inputs are numpy stride-0 views (``as_strided``): they describe billions of
elements without allocating them, so every check must happen before any copy or
allocation; a missing check shows up as a wrong shape, a MemoryError or a crash.
"""
from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided

import megq
import megq.kernels as K
from megq import _C


def huge(shape, dtype=np.int8):
    """A read-only view of ``shape`` with stride 0 on every axis but a short last one
    (which stays contiguous, as the kernels want their rows / channels)."""
    last = shape[-1]
    if last > 1 << 16:  # a huge last axis: one element backs everything
        return as_strided(np.zeros(1, dtype), shape=shape, strides=(0,) * len(shape), writeable=False)
    itemsize = np.dtype(dtype).itemsize
    return as_strided(np.zeros(last, dtype), shape=shape, strides=(0,) * (len(shape) - 1) + (itemsize,),
                      writeable=False)


@pytest.fixture(scope="module")
def packed():
    rng = np.random.default_rng(3)
    w2 = rng.integers(-127, 128, (16, 5), dtype=np.int8)
    w4 = rng.integers(-127, 128, (5, 3, 3, 3), dtype=np.int8)
    wd = rng.integers(-127, 128, (6, 3, 3), dtype=np.int8)
    return {
        "gemm": K.pack_gemm_weights(w2, multiplier=0.01),
        "gemm_u8": K.pack_gemm_weights(w2, multiplier=0.01, input_dtype="uint8", input_zero_point=128),
        "conv": K.pack_conv2d_weights(w4, multiplier=0.01),
        "conv1x1": K.pack_conv2d_weights(w4[:, :, :1, :1].copy(), multiplier=0.01),
        "dw": K.pack_depthwise_weights(wd, multiplier=0.01, in_channels=3),
    }


# ------------------------------------------------------------------ 1. narrowing
def test_gemm_rows_beyond_int32_are_refused_not_truncated(packed):
    # 2**32 + 3 rows used to come back as 3 rows.
    with pytest.raises(ValueError, match=r"^a: dimension 0 has size 4294967299, more than megq's kernels take"):
        K.gemm(huge((2**32 + 3, 16)), packed["gemm"])


def test_gemm_depth_beyond_int32_is_refused_at_packing():
    # K = 2**32 + 16 used to pack as K = 16.
    w = as_strided(np.zeros(4, np.int8), shape=(2**32 + 16, 4), strides=(0, 1), writeable=False)
    with pytest.raises(ValueError, match=r"^weight: dimension 0 has size 4294967312"):
        K.pack_gemm_weights(w, multiplier=0.01)


def test_conv_height_beyond_int32_is_refused(packed):
    # H = 2**32 + 2 used to give an output height of 2.
    x = as_strided(np.zeros(3, np.int8), shape=(1, 2**32 + 2, 4, 3), strides=(0, 0, 3, 1), writeable=False)
    with pytest.raises(ValueError, match=r"^x: dimension 1 has size 4294967298"):
        K.conv2d(x, packed["conv"])


def test_conv_weight_beyond_int32_is_refused():
    w = huge((2**31, 1, 1, 1))
    with pytest.raises(ValueError, match=r"^weight: dimension 0 has size 2147483648"):
        K.pack_conv2d_weights(w, multiplier=0.01)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_depthwise_and_pooling_dimensions_beyond_int32(packed, axis):
    shape = [1, 4, 4, 3]
    shape[axis] = 2**32 + 1
    x = huge(tuple(shape))
    with pytest.raises(ValueError, match=rf"^x: dimension {axis} has size 4294967297"):
        K.depthwise_conv2d(x, packed["dw"])
    with pytest.raises(ValueError, match=rf"^x: dimension {axis} has size 4294967297"):
        K.max_pool2d(x, 2)
    with pytest.raises(ValueError, match=rf"^x: dimension {axis} has size 4294967297"):
        K.global_avg_pool2d(x)


def test_depthwise_weight_beyond_int32():
    with pytest.raises(ValueError, match=r"^weight: dimension 0 has size 4294967296"):
        K.pack_depthwise_weights(huge((2**32, 3, 3)), multiplier=0.01)


def test_quantize_and_dequantize_dimensions_beyond_int32():
    with pytest.raises(ValueError, match=r"^x: dimension 2 has size 4294967297"):
        K.quantize(huge((1, 2, 2**32 + 1, 1), np.float32), 0.1)
    with pytest.raises(ValueError, match=r"^q: dimension 3 has size 4294967297"):
        K.dequantize(huge((1, 1, 1, 2**32 + 1)), 0.1)


def test_int_parameters_beyond_int32(packed):
    x = np.zeros((1, 5, 5, 3), np.int8)
    with pytest.raises(ValueError, match=r"^stride: 4294967296 is out of range"):
        K.conv2d(x, packed["conv"], stride=2**32)
    with pytest.raises(ValueError, match=r"^groups: 4294967296 is out of range \(megq's kernels take 32-bit ints\)$"):
        K.pack_conv2d_weights(np.zeros((2, 1, 1, 1), np.int8), multiplier=0.1, groups=2**32)
    with pytest.raises(ValueError, match=r"^out_min: -4294967296 is out of range"):
        K.gemm(np.zeros((1, 16), np.int8), packed["gemm"], out_min=-2**32)
    with pytest.raises(ValueError, match=r"^padding: 2147483648 is out of range"):
        K.depthwise_conv2d(x, packed["dw"], padding=2**31)


def test_concat_channels_beyond_int32():
    with pytest.raises(ValueError, match=r"^inputs\[1\]: channels: 2147483648 is more than"):
        K.concat([np.zeros((1, 2), np.int8), huge((1, 2**31))], [0.1, 0.1], out_scale=0.1)


# ------------------------------------------------------------------ 2. empty batches
@pytest.mark.parametrize("out_dtype", ["int8", "uint8", "int32"])
def test_gemm_empty_batch(packed, out_dtype):
    for a in (np.zeros((0, 16), np.int8), np.zeros((0, 32), np.int8)[:, ::2]):
        y = K.gemm(a, packed["gemm"], out_dtype=out_dtype)
        assert y.shape == (0, 5) and y.dtype == np.dtype(out_dtype)
    y = K.gemm(np.zeros((0, 16), np.uint8), packed["gemm_u8"])
    assert y.shape == (0, 5) and y.dtype == np.int8


@pytest.mark.parametrize("out_dtype", ["int8", "uint8", "int32"])
@pytest.mark.parametrize("geometry, out_hw", [
    (dict(), (5, 6)),
    (dict(padding=1), (7, 8)),
    (dict(stride=2, padding=(1, 0)), (4, 3)),
    (dict(dilation=2, padding=2), (7, 8)),
])
def test_conv2d_empty_batch(packed, out_dtype, geometry, out_hw):
    # The zero batch used to fail with "channels must be contiguous" (numpy gives
    # empty arrays zero strides).
    x = np.zeros((0, 7, 8, 3), np.int8)
    y = K.conv2d(x, packed["conv"], out_dtype=out_dtype, **geometry)
    assert y.shape == (0, *out_hw, 5) and y.dtype == np.dtype(out_dtype)


def test_conv2d_1x1_empty_batch(packed):
    for stride in (1, 2):
        y = K.conv2d(np.zeros((0, 7, 8, 3), np.int8), packed["conv1x1"], stride=stride)
        assert y.shape == (0, 7 if stride == 1 else 4, 8 if stride == 1 else 4, 5) and y.dtype == np.int8


def test_empty_batch_still_checks_the_configuration(packed):
    with pytest.raises(ValueError, match=r"^x: the kernel \(3x3, with dilation\) is larger than the padded 2x2 input"):
        K.conv2d(np.zeros((0, 2, 2, 3), np.int8), packed["conv"])
    with pytest.raises(ValueError, match=r"^x: has 4 channels but the weights expect 3"):
        K.conv2d(np.zeros((0, 5, 5, 4), np.int8), packed["conv"])
    with pytest.raises(ValueError, match=r"^x: the conv2d output of shape \(1, 100005, 100006, 5\)"):
        K.conv2d(np.zeros((0, 7, 8, 3), np.int8), packed["conv"], padding=50000)


def test_depthwise_empty_batch(packed):
    for out_dtype in ("int8", "uint8"):
        y = K.depthwise_conv2d(np.zeros((0, 9, 7, 3), np.int8), packed["dw"], stride=2, padding=1,
                               out_dtype=out_dtype)
        assert y.shape == (0, 5, 4, 6) and y.dtype == np.dtype(out_dtype)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
def test_pooling_empty_batch(dtype):
    x = np.zeros((0, 9, 7, 4), dtype)
    for y, shape in [(K.max_pool2d(x, 3, stride=2, padding=1), (0, 5, 4, 4)),
                     (K.avg_pool2d(x, 2), (0, 4, 3, 4)),
                     (K.avg_pool2d(x, 3, stride=1, padding=1, mode="average"), (0, 9, 7, 4)),
                     (K.global_avg_pool2d(x), (0, 1, 1, 4))]:
        assert y.shape == shape and y.dtype == dtype


@pytest.mark.parametrize("op", ["add", "mul", "fuse_add_relu"])
def test_elementwise_empty_batch(op):
    # Two empty operands of one shape used to be reported as mismatching.
    kw = dict(a_scale=0.1, b_scale=0.2, out_scale=0.3)
    a = np.zeros((0, 2, 2, 3), np.int8)
    for b in (np.zeros((0, 2, 2, 3), np.uint8), np.zeros(3, np.uint8), np.zeros((), np.uint8)):
        for x, y in ((a, b), (b, a)):
            out = getattr(K, op)(x, y, **kw)
            assert out.shape == (0, 2, 2, 3) and out.dtype == x.dtype
    out = getattr(K, op)(a, a, out_dtype="uint8", **kw)
    assert out.shape == (0, 2, 2, 3) and out.dtype == np.uint8


def test_quantize_family_empty_batch():
    y = K.quantize(np.zeros((0, 3, 4, 5), np.float32), 0.1, dtype="uint8")
    assert y.shape == (0, 4, 5, 3) and y.dtype == np.uint8
    y = K.quantize(np.zeros((0, 3), np.float32), 0.1)
    assert y.shape == (0, 3) and y.dtype == np.int8
    y = K.dequantize(np.zeros((0, 4, 5, 3), np.int8), 0.1)
    assert y.shape == (0, 3, 4, 5) and y.dtype == np.float32
    y = K.dequantize(np.zeros((0, 3), np.uint8), 0.1, 128)
    assert y.shape == (0, 3) and y.dtype == np.float32
    y = K.requantize(np.zeros((0, 4, 5, 3), np.int8), 0.1, 0, 0.2, 128, out_dtype="uint8")
    assert y.shape == (0, 4, 5, 3) and y.dtype == np.uint8


def test_concat_empty_batch():
    y = K.concat([np.zeros((0, 2, 2, 3), np.int8), np.zeros((0, 2, 2, 5), np.uint8)], [0.1, 0.2],
                 [0, 128], out_scale=0.1)
    assert y.shape == (0, 2, 2, 8) and y.dtype == np.int8


# ------------------------------------------------------------------ 3. threads
def test_thread_count_is_capped():
    before = K.get_num_threads()
    assert K.MAX_NUM_THREADS == _C.MAX_NUM_THREADS == 256
    for n in (10**6, K.MAX_NUM_THREADS + 1, 10**30):
        with pytest.raises(ValueError, match=r"^n: expected a thread count >= 1 and <= 256, got"):
            K.set_num_threads(n)
    # The extension checks on its own too (callers that bypass megq.kernels).
    with pytest.raises(ValueError, match=r"^n: expected a thread count >= 1 and <= 256, got 257$"):
        _C.set_num_threads(257)
    with pytest.raises(ValueError, match=r"^n: expected a thread count >= 1 and <= 256, got 0$"):
        _C.set_num_threads(0)
    assert K.get_num_threads() == before
    K.set_num_threads(K.MAX_NUM_THREADS)
    try:
        assert K.get_num_threads() == K.MAX_NUM_THREADS
    finally:
        K.set_num_threads(before)


# ------------------------------------------------------------------ 4. environment
def _import_with(**env_vars):
    env = dict(os.environ, **env_vars)
    code = "import megq.kernels as K; print(K.get_num_threads(), K.active_isa())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value", ["99999999999999", "-1", "0", "257", "abc", "8x", " 4", "4 ", "+4", "1e3",
                                   "0x10", "3.0"])
def test_bad_num_threads_variable_fails_the_import(value):
    out = _import_with(MEGQ_NUM_THREADS=value)
    assert out.returncode != 0 and out.stdout == ""
    assert (f"ImportError: MEGQ_NUM_THREADS: expected an integer in [1, 256] (or unset for the CPU count), "
            f"got '{value}'") in out.stderr


def test_good_num_threads_variable():
    assert _import_with(MEGQ_NUM_THREADS="3").stdout.split()[0] == "3"
    assert _import_with(MEGQ_NUM_THREADS="256").stdout.split()[0] == "256"
    # Empty means unset: the CPU count, capped.
    expected = min(os.cpu_count() or 1, 256)
    assert _import_with(MEGQ_NUM_THREADS="").stdout.split()[0] == str(expected)


@pytest.mark.parametrize("value", ["bogus", "AVX2", "avx2 ", "scalar,avx2"])
def test_bad_isa_variable_fails_the_import(value):
    out = _import_with(MEGQ_ISA=value)
    assert out.returncode != 0 and out.stdout == ""
    assert ("ImportError: MEGQ_ISA: expected one of scalar, avx2, avx512vnni, neon, neondot (or unset), "
            f"got '{value}'") in out.stderr


def test_empty_isa_variable_means_best():
    out = _import_with(MEGQ_ISA="")
    assert out.returncode == 0 and out.stdout.split()[1] == K.cpu_info()["best"]


# ------------------------------------------------------------------ 5. output size
def test_output_limit_constant():
    assert K.MAX_OUTPUT_BYTES == _C.MAX_OUTPUT_BYTES == 2**30


def test_conv_padding_cannot_allocate_gigabytes(packed):
    # A 1x1 input with padding 50000 asked for 10 GB.
    with pytest.raises(ValueError, match=r"^x: the conv2d output of shape \(1, 100001, 100001, 5\) would take "
                                         r"50001000005 bytes, more than megq's limit of 1073741824 bytes "
                                         r"\(MAX_OUTPUT_BYTES\)$"):
        K.conv2d(np.zeros((1, 1, 1, 3), np.int8), packed["conv1x1"], padding=50000)
    with pytest.raises(ValueError, match=r"^x: the conv2d output of shape \(1, 20001, 20001, 5\) would take "
                                         r"8000800020 bytes"):
        K.conv2d(np.zeros((1, 1, 1, 3), np.int8), packed["conv1x1"], padding=10000, out_dtype="int32")


def test_every_op_applies_the_output_limit(packed):
    msg = r"bytes, more than megq's limit of 1073741824 bytes \(MAX_OUTPUT_BYTES\)$"
    with pytest.raises(ValueError, match=r"^a: the gemm output of shape \(268435457, 5\) would take 1342177285 " + msg):
        K.gemm(huge((2**28 + 1, 16)), packed["gemm"])
    with pytest.raises(ValueError, match=r"^a: the gemm output of shape \(53687092, 5\) would take 1073741840 " + msg):
        K.gemm(huge((53687092, 16)), packed["gemm"], out_dtype="int32")
    with pytest.raises(ValueError, match=r"^x: the depthwise_conv2d output of shape \(1, 29999, 29999, 6\) " + "would"):
        K.depthwise_conv2d(np.zeros((1, 1, 1, 3), np.int8), packed["dw"], padding=15000)
    with pytest.raises(ValueError, match=r"^x: the pool2d output of shape \(1, 40000, 40000, 1\) would take "
                                         r"1600000000 " + msg):
        K.max_pool2d(huge((1, 40000, 40000, 1)), 1)
    with pytest.raises(ValueError, match=r"^x: the global_avg_pool2d output of shape \(1, 1, 1, 1500000000\)"):
        K.global_avg_pool2d(huge((1, 1, 1, 1500000000)))
    big = huge((1, 2**15, 2**15, 2))  # 2**31 elements
    kw = dict(a_scale=0.1, b_scale=0.1, out_scale=0.1)
    for op in ("add", "mul", "fuse_add_relu"):
        with pytest.raises(ValueError, match=rf"^a: the {op} output of shape \(1, 32768, 32768, 2\) " + "would"):
            getattr(K, op)(big, np.zeros(2, np.int8), **kw)
        with pytest.raises(ValueError, match=rf"^b: the {op} output of shape \(1, 32768, 32768, 2\) " + "would"):
            getattr(K, op)(np.zeros(2, np.int8), big, **kw)
    with pytest.raises(ValueError, match=r"^x: the quantize output of shape \(1, 32768, 32768, 2\) would"):
        K.quantize(huge((1, 2, 2**15, 2**15), np.float32), 0.1)
    # dequantize writes 4 bytes per element.
    with pytest.raises(ValueError, match=r"^q: the dequantize output of shape \(1, 1, 16384, 16385\) would take "
                                         r"1073807360 " + msg):
        K.dequantize(huge((1, 16384, 16385, 1)), 0.1)
    with pytest.raises(ValueError, match=r"^q: the requantize output of shape \(1, 32768, 32768, 2\) would"):
        K.requantize(big, 0.1, 0, 0.2, 0)
    with pytest.raises(ValueError, match=r"^inputs: the concat output of shape \(1, 32768, 32768, 3\) would"):
        K.concat([big, huge((1, 2**15, 2**15, 1))], [0.1, 0.1], out_scale=0.1)


# ------------------------------------------------------------------ 6. constants and stubs
def test_max_safe_k_comes_from_the_extension():
    assert K.MAX_SAFE_K == _C.MAX_SAFE_K == (2**31 - 1) // (128 * 127)


def test_type_stubs_cover_every_export():
    stub_path = pathlib.Path(megq.__file__).with_name("_C.pyi")
    assert stub_path.with_name("py.typed").is_file()
    tree = ast.parse(stub_path.read_text())
    names, members = set(), {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            names.add(node.target.id)
        if isinstance(node, ast.ClassDef):
            members[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    exported = {n for n in dir(_C) if not n.startswith("_")}
    assert names == exported
    for cls, stubbed in members.items():
        if cls == "ArgumentError":
            continue
        public = {n for n in vars(getattr(_C, cls)) if not n.startswith("_")}
        assert stubbed == public, cls
    # Every stubbed function's parameters, in order, are those of pybind11's signature line.
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            sig = getattr(_C, node.name).__doc__.splitlines()[0]
            assert sig.startswith(f"{node.name}("), node.name
            assert [a.arg for a in node.args.args] == re.findall(r"[(,] ?(\w+): ", sig), node.name
