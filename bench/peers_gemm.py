"""The GEMM contestants: megq's own kernels and the int8 GEMMs a user would
otherwise call (ONNX Runtime / MLAS, PyTorch FBGEMM / oneDNN).

Every contestant gets the same problem: A uint8 (M, K) activations with zero
point 128, B int8 (K, N) narrow-range weights (constant, packed once where the
API allows), per-output-channel requantization. Each factory returns a
zero-argument callable that runs one GEMM the way a user would (Python call
overhead included), or raises :class:`Skip` with the reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import numpy as np


class Skip(Exception):
    """A contestant that cannot run here (not installed, unsupported shape ...)."""


A_ZP = 128        # activation zero point (uint8)
Y_ZP_U8 = 128     # output zero point of the uint8-output peers
A_SCALE = 0.05
Y_SCALE = 0.1


@dataclass
class Problem:
    M: int
    N: int
    K: int
    a: np.ndarray         # (M, K) uint8
    w: np.ndarray         # (K, N) int8, in [-127, 127]
    bias: np.ndarray      # (N,) int32, on the accumulator scale A_SCALE * w_scale[n]
    mult: np.ndarray      # (N,) float32 requantization multipliers
    w_scale: np.ndarray   # (N,) float64: mult = A_SCALE * w_scale / Y_SCALE
    _acc: Optional[np.ndarray] = None

    @property
    def ops(self) -> float:
        return 2.0 * self.M * self.N * self.K

    @property
    def acc(self) -> np.ndarray:
        """Exact sum_k (a - 128) * w as int32 (float64 BLAS is exact here)."""
        if self._acc is None:
            a = self.a.astype(np.float64) - A_ZP
            self._acc = (a @ self.w.astype(np.float64)).astype(np.int32)
        return self._acc


def make_problem(M: int, N: int, K: int, seed: int = 0, a_max: int = 255) -> Problem:
    """Uniform random data; ``a_max`` < 255 limits the activations (e.g. 127: no
    int16 saturation in vpmaddubsw-based kernels)."""
    rng = np.random.default_rng(seed + 1000003 * M + 1009 * N + K)
    a = rng.integers(0, a_max + 1, size=(M, K), dtype=np.uint8)
    w = rng.integers(-127, 128, size=(K, N), dtype=np.int8)
    # Multipliers that spread the outputs over the int8 range: the accumulator's
    # std is about sqrt(K) * 74 * 73 for uniform data.
    base = 40.0 / (np.sqrt(K) * 74.0 * 73.0)
    mult = (base * (1.0 + (np.arange(N) % 7) / 7.0)).astype(np.float32)
    w_scale = mult.astype(np.float64) * Y_SCALE / A_SCALE
    bias = rng.integers(-20000, 20000, size=N, dtype=np.int32)
    return Problem(M, N, K, a, w, bias, mult, w_scale)


def requant_reference(acc: np.ndarray, mult: np.ndarray, zp: int, lo: int, hi: int,
                      float32: bool = False) -> np.ndarray:
    """clamp(round_half_away(acc * mult) + zp); ``float32``: the product is
    rounded to float32 first (megq's contract), else computed in float64."""
    if float32:
        v = (acc.astype(np.float32) * mult.astype(np.float32)).astype(np.float64)
    else:
        v = acc.astype(np.float64) * mult.astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r + zp, lo, hi)


@dataclass
class Contestant:
    name: str
    output: str                      # "i8" (requantized) or "i32"
    fn: Callable[[], object]
    check: Callable[[], str]         # returns "exact", "max|d|=1" ... or raises
    prepare: Callable[[], None] = lambda: None   # run before each timing block
    note: str = ""


def _check_i32(out, acc) -> str:
    out = np.asarray(out)
    if out.shape != acc.shape or not np.array_equal(out, acc):
        d = np.abs(out.astype(np.int64) - acc.astype(np.int64)).max() if out.shape == acc.shape else "shape"
        return f"MISMATCH({d})"
    return "exact"


def _check_requant(out, ref) -> str:
    d = int(np.abs(np.asarray(out).astype(np.int64) - ref.astype(np.int64)).max())
    return "exact" if d == 0 else f"max|d|={d}"


# ---------------------------------------------------------------- megq

def megq_contestants(p: Problem) -> List[Contestant]:
    try:
        import megq.kernels as mk
    except Exception as e:  # noqa: BLE001
        raise Skip(f"megq not importable: {e}") from e
    out: List[Contestant] = []
    a = p.a
    packed8 = mk.pack_gemm_weights(p.w, p.bias, p.mult, input_dtype="uint8", input_zero_point=A_ZP)
    packed32 = mk.pack_gemm_weights(p.w, None, None, input_dtype="uint8", input_zero_point=A_ZP)

    def check8(packed=packed8):
        ref = requant_reference(p.acc.astype(np.int64) + p.bias, p.mult, 0, -128, 127, float32=True)
        return _check_requant(mk.gemm(a, packed, out_dtype="int8"), ref)

    isa = mk.active_isa()
    out.append(Contestant("megq_i8", "i8", lambda: mk.gemm(a, packed8, out_dtype="int8"), check8,
                          note=f"megq {isa}, int8 out, per-channel requant + bias"))
    out.append(Contestant("megq_i32", "i32", lambda: mk.gemm(a, packed32, out_dtype="int32"),
                          lambda: _check_i32(mk.gemm(a, packed32, out_dtype="int32"), p.acc),
                          note=f"megq {isa}, int32 out"))
    if "avx2" in mk.cpu_info()["usable"]:
        with mk.use_isa("avx2"):
            packed_avx2 = mk.pack_gemm_weights(p.w, p.bias, p.mult, input_dtype="uint8", input_zero_point=A_ZP)
        out.append(Contestant("megq_avx2_i8", "i8", lambda: mk.gemm(a, packed_avx2, out_dtype="int8"),
                              lambda: check8(packed_avx2), note="megq forced avx2, int8 out"))
    return out


# ---------------------------------------------------------------- ONNX Runtime

def _ort_session(model, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _onnx_model(nodes, inputs, outputs, inits):
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def ort_contestants(p: Problem, threads: int) -> List[Contestant]:
    try:
        import onnxruntime  # noqa: F401
        from onnx import TensorProto, helper, numpy_helper
    except Exception as e:  # noqa: BLE001
        raise Skip(f"onnxruntime/onnx not installed: {e}") from e
    M, N, K = p.M, p.N, p.K
    out: List[Contestant] = []
    feed = {"A": p.a}

    # MatMulInteger u8 x s8 -> s32, B constant.
    model = _onnx_model(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])],
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [M, K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [M, N])],
        [numpy_helper.from_array(p.w, "B"), numpy_helper.from_array(np.array(A_ZP, np.uint8), "a_zp")])
    sess = _ort_session(model, threads)
    out.append(Contestant("ort_mmi", "i32", lambda: sess.run(None, feed),
                          lambda: _check_i32(sess.run(None, feed)[0], p.acc),
                          note="ORT MatMulInteger u8xs8->s32"))

    # QLinearMatMul u8 x s8 -> u8, per-column weight scales (per-tensor if refused).
    def qlmm(per_column: bool):
        b_scale = p.w_scale.astype(np.float32) if per_column else np.array(p.w_scale[0], np.float32)
        b_zp = np.zeros(N, np.int8) if per_column else np.array(0, np.int8)
        inits = [numpy_helper.from_array(x, n) for x, n in [
            (np.array(A_SCALE, np.float32), "a_s"), (np.array(A_ZP, np.uint8), "a_zp"), (p.w, "B"),
            (b_scale, "b_s"), (b_zp, "b_zp"), (np.array(Y_SCALE, np.float32), "y_s"),
            (np.array(Y_ZP_U8, np.uint8), "y_zp")]]
        m = _onnx_model(
            [helper.make_node("QLinearMatMul", ["A", "a_s", "a_zp", "B", "b_s", "b_zp", "y_s", "y_zp"], ["Y"])],
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [M, K])],
            [helper.make_tensor_value_info("Y", TensorProto.UINT8, [M, N])], inits)
        s = _ort_session(m, threads)
        s.run(None, feed)
        mult = (np.float32(A_SCALE) * b_scale.astype(np.float32) / np.float32(Y_SCALE)) * np.ones(N, np.float32)
        return s, mult

    try:
        qsess, qmult = qlmm(True)
        qnote = "ORT QLinearMatMul u8xs8->u8, per-column scales"
    except Exception:  # noqa: BLE001
        qsess, qmult = qlmm(False)
        qnote = "ORT QLinearMatMul u8xs8->u8, per-tensor scale (per-column refused)"
    out.append(Contestant(
        "ort_qlmm", "i8", lambda: qsess.run(None, feed),
        lambda: _check_requant(qsess.run(None, feed)[0], requant_reference(p.acc, qmult, Y_ZP_U8, 0, 255)),
        note=qnote))
    return out


# ---------------------------------------------------------------- PyTorch

TORCH_ENGINES = ("x86", "fbgemm", "onednn")


def torch_contestants(p: Problem, threads: int) -> Dict[str, object]:
    """Returns {name: Contestant or Skip}."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001
        raise Skip(f"torch not installed: {e}") from e
    torch.set_num_threads(threads)
    res: Dict[str, object] = {}
    a_t = torch.from_numpy(p.a)
    x_q = torch._make_per_tensor_quantized_tensor(a_t, A_SCALE, A_ZP)
    w_t = torch.from_numpy(np.ascontiguousarray(p.w.T))  # (N, K) as nn.Linear stores it
    scales = torch.from_numpy(p.w_scale.astype(np.float64))
    w_q = torch._make_per_channel_quantized_tensor(w_t, scales, torch.zeros(p.N, dtype=torch.int64), 0)
    bias_f = torch.from_numpy((p.bias.astype(np.float64) * A_SCALE * p.w_scale).astype(np.float32))
    # torch requantizes with scale A_SCALE * w_scale[n] / Y_SCALE
    t_mult = (A_SCALE * p.w_scale / Y_SCALE)
    supported = set(torch.backends.quantized.supported_engines)
    for eng in TORCH_ENGINES:
        name = f"torch_{eng}"
        if eng not in supported:
            res[name] = Skip(f"engine {eng} not in {sorted(supported)}")
            continue
        try:
            torch.backends.quantized.engine = eng
            packed = torch.ops.quantized.linear_prepack(w_q, bias_f)
            op = torch.ops.quantized.linear

            def fn(packed=packed, op=op):
                return op(x_q, packed, Y_SCALE, Y_ZP_U8)

            def prep(eng=eng):
                torch.backends.quantized.engine = eng

            def chk(fn=fn, prep=prep):
                prep()
                y = fn().int_repr().numpy()
                ref = requant_reference(p.acc.astype(np.int64) + p.bias, t_mult, Y_ZP_U8, 0, 255)
                return _check_requant(y, ref)

            fn()
            res[name] = Contestant(name, "i8", fn, chk, prepare=prep,
                                   note=f"torch quantized.linear, engine {eng}, per-channel qint8 W, fp32 bias, "
                                        "quint8 out")
        except Exception as e:  # noqa: BLE001
            res[name] = Skip(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")

    # torch._int_mm: s8 x s8 -> s32. A - 128 as int8 is A with its sign bit flipped.
    try:
        a_s8 = torch.from_numpy((p.a ^ np.uint8(0x80)).view(np.int8))
        b_s8 = torch.from_numpy(p.w)
        torch._int_mm(a_s8, b_s8)
        res["torch_intmm"] = Contestant(
            "torch_intmm", "i32", lambda: torch._int_mm(a_s8, b_s8),
            lambda: _check_i32(torch._int_mm(a_s8, b_s8).numpy(), p.acc), note="torch._int_mm s8xs8->s32")
    except Exception as e:  # noqa: BLE001
        res["torch_intmm"] = Skip(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")
    return res


ALL_NAMES = ["megq_i8", "megq_i32", "megq_avx2_i8", "ort_mmi", "ort_qlmm",
             "torch_x86", "torch_fbgemm", "torch_onednn", "torch_intmm"]
MEGQ_NAMES = ALL_NAMES[:3]
PEER_NAMES = ALL_NAMES[3:]


def build_all(p: Problem, threads: int) -> Dict[str, object]:
    """{name: Contestant or Skip} for every contestant, in ALL_NAMES order."""
    res: Dict[str, object] = {}
    for group, names in [("megq", MEGQ_NAMES), ("ort", ["ort_mmi", "ort_qlmm"]),
                         ("torch", ["torch_x86", "torch_fbgemm", "torch_onednn", "torch_intmm"])]:
        try:
            if group == "megq":
                got = {c.name: c for c in megq_contestants(p)}
            elif group == "ort":
                got = {c.name: c for c in ort_contestants(p, threads)}
            else:
                got = torch_contestants(p, threads)
        except Skip as s:
            got = {n: s for n in names}
        except Exception as e:  # noqa: BLE001
            got = {n: Skip(f"{type(e).__name__}: {str(e).splitlines()[0][:120]}") for n in names}
        for n in names:
            res[n] = got.get(n, Skip("not built"))
    return res
