"""Bad input to the GEMM API raises TypeError/ValueError naming the argument (never a crash)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import megq.kernels as K


@pytest.fixture
def packed():
    return K.pack_gemm_weights(np.ones((8, 4), np.int8), np.zeros(4, np.int32), np.float32(0.1))


@pytest.mark.parametrize("weight,exc,match", [
    (np.ones((3, 4), np.float32), TypeError, "weight: expected dtype int8"),
    (np.ones((3, 4), np.uint8), TypeError, "weight: expected dtype int8"),
    (np.ones(12, np.int8), ValueError, "weight: expected a 2-D"),
    (np.ones((2, 3, 4), np.int8), ValueError, "weight: expected a 2-D"),
    (np.ones((0, 4), np.int8), ValueError, "weight: expected a K x N matrix"),
    (np.ones((4, 0), np.int8), ValueError, "weight: expected a K x N matrix"),
    (np.ones((4, 6), np.int8)[:, ::2], ValueError, "weight: rows must be contiguous"),
    ([[1, 2]], TypeError, "weight: expected a numpy int8 array"),
])
def test_bad_weight(weight, exc, match):
    with pytest.raises(exc, match=match):
        K.pack_gemm_weights(weight)


def test_narrow_range_rejects_minus_128():
    w = np.ones((3, 4), np.int8)
    w[1, 2] = -128
    with pytest.raises(ValueError, match=r"weight: value -128 at \(k=1, n=2\)"):
        K.pack_gemm_weights(w)
    K.pack_gemm_weights(w, narrow_range=False)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(bias=np.zeros(4, np.int64)), TypeError, "bias: expected dtype int32"),
    (dict(bias=np.zeros(5, np.int32)), ValueError, "bias: expected N=4 values"),
    (dict(bias=np.zeros((4, 1), np.int32)), ValueError, "bias: expected a 1-D"),
    (dict(bias=[1, 2, 3, 4]), TypeError, "bias: expected a numpy int32 array"),
    (dict(multiplier=np.zeros(3, np.float32)), ValueError, "multiplier: expected 1 or N=4"),
    (dict(multiplier=0.0), ValueError, "multiplier: every value must be finite and > 0"),
    (dict(multiplier=-0.5), ValueError, "multiplier: every value must be finite and > 0"),
    (dict(multiplier=float("nan")), ValueError, "multiplier: every value must be finite and > 0"),
    (dict(multiplier=float("inf")), ValueError, "multiplier: every value must be finite and > 0"),
    (dict(multiplier="x"), TypeError, "multiplier: expected float32"),
    (dict(input_dtype="int16"), ValueError, "input_dtype: expected one of"),
    (dict(input_dtype="nonsense"), TypeError, "input_dtype: expected one of"),
    (dict(input_zero_point=128), ValueError, "input_zero_point: 128 is outside"),
    (dict(input_dtype="uint8", input_zero_point=-1), ValueError, "input_zero_point: -1 is outside"),
    (dict(input_zero_point=1.5), TypeError, "input_zero_point: expected an int"),
    (dict(isa="sse9"), ValueError, "isa: unknown ISA name"),
])
def test_bad_pack_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        K.pack_gemm_weights(np.ones((3, 4), np.int8), **kwargs)


@pytest.mark.parametrize("a,exc,match", [
    (np.ones((2, 8), np.float32), TypeError, "a: expected dtype int8"),
    (np.ones((2, 8), np.uint8), TypeError, "a: expected dtype int8"),
    (np.ones(8, np.int8), ValueError, "a: expected a 2-D"),
    (np.ones((2, 7), np.int8), ValueError, "a: has K=7 columns but the packed weights expect K=8"),
    (np.ones((2, 16), np.int8)[:, ::2], ValueError, "a: rows must be contiguous"),
    ([[1] * 8], TypeError, "a: expected a numpy array"),
])
def test_bad_activations(packed, a, exc, match):
    with pytest.raises(exc, match=match):
        K.gemm(a, packed)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(out_dtype="float32"), ValueError, "out_dtype: expected one of"),
    (dict(out_zero_point=128), ValueError, "out_zero_point: 128 is outside"),
    (dict(out_dtype="uint8", out_zero_point=-3), ValueError, "out_zero_point: -3 is outside"),
    (dict(out_min=10, out_max=5), ValueError, "out_min/out_max"),
    (dict(out_min=-129), ValueError, "out_min/out_max"),
    (dict(out_dtype="uint8", out_max=256), ValueError, "out_min/out_max"),
    (dict(out_dtype="int32", out_zero_point=1), ValueError, "out_zero_point: int32 output"),
    (dict(out_zero_point="0"), TypeError, "out_zero_point: expected an int"),
])
def test_bad_output_arguments(packed, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        K.gemm(np.ones((2, 8), np.int8), packed, **kwargs)


def test_int8_output_needs_a_multiplier():
    p = K.pack_gemm_weights(np.ones((8, 4), np.int8))
    with pytest.raises(ValueError, match="packed: these weights were packed without a multiplier"):
        K.gemm(np.ones((2, 8), np.int8), p)
    assert K.gemm(np.ones((2, 8), np.int8), p, out_dtype="int32").tolist() == [[8] * 4] * 2


def test_packed_must_be_packed_weights():
    with pytest.raises(TypeError, match="packed: expected PackedGemmWeights"):
        K.gemm(np.ones((2, 8), np.int8), np.ones((8, 4), np.int8))


def test_empty_batch_gives_empty_result(packed):
    out = K.gemm(np.ones((0, 8), np.int8), packed)
    assert out.shape == (0, 4) and out.dtype == np.int8


def test_threads_and_isa_arguments():
    with pytest.raises(ValueError, match="n: expected a thread count >= 1"):
        K.set_num_threads(0)
    with pytest.raises(TypeError, match="n: expected an int"):
        K.set_num_threads(2.0)
    with pytest.raises(ValueError, match="isa: unknown ISA name"):
        K.set_isa("mmx")
    unusable = [i for i in ("avx2", "avx512vnni", "neon", "neondot") if i not in K.cpu_info()["usable"]]
    for name in unusable:
        with pytest.raises(ValueError, match="is not usable"):
            K.set_isa(name)


def _isa_in_subprocess(value, check=True):
    env = dict(os.environ, MEGQ_ISA=value)
    out = subprocess.run([sys.executable, "-c", "import megq.kernels as K; print(K.active_isa())"],
                         env=env, capture_output=True, text=True, check=check)
    return out.stdout.strip(), out.stderr


def test_environment_override_forces_a_lower_path():
    info = K.cpu_info()
    for name in info["usable"]:
        assert _isa_in_subprocess(name)[0] == name
    # An unknown name fails the import (tests/kernels/test_hostile_args.py checks the message).
    active, err = _isa_in_subprocess("bogus", check=False)
    assert active == "" and "ImportError: MEGQ_ISA: expected one of" in err
    for name in ("avx2", "avx512vnni", "neon", "neondot"):
        if name not in info["usable"]:
            active, err = _isa_in_subprocess(name)
            assert active == info["best"] and "not usable" in err
