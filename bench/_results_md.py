"""Shared helpers of the quantization benchmarks (bench/quant_accuracy.py, bench/latency.py, bench/profile.py):
write one ``## <section>`` of bench/RESULTS-quant.md (other sections are kept), describe the machine and its load."""
from __future__ import annotations

import os
import platform
import re
import shlex
import sys
from typing import List

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS-quant.md")
HEADER = ("# megq quantization results\n\nAccuracy (Float vs PTQ / QAT QFloat and Q, QFloat-vs-Q agreement) and "
          "network latency (megq's Q models vs PyTorch int8 and ONNX Runtime int8). Each section is rewritten by "
          "the script named in it.\n")
ORDER = ["Accuracy", "Network latency"]


def command_line(module: str) -> str:
    """The command that ran ``module`` (``bench.quant_accuracy``) with this process's arguments."""
    return " ".join(["python -m", module] + [shlex.quote(a) for a in sys.argv[1:]])


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import numpy as np

    return (f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, numpy {np.__version__}")


def update_section(title: str, body: str, path: str = RESULTS) -> None:
    """Replace (or add) ``## title`` in ``path`` with ``body``; keep the other sections in ORDER."""
    text = open(path).read() if os.path.exists(path) else HEADER
    parts = re.split(r"(?m)^## ", text)
    head, sections = parts[0], {}
    for p in parts[1:]:
        name, _, rest = p.partition("\n")
        sections[name.strip()] = rest.rstrip("\n") + "\n\n"  # a blank line before the next section
    sections[title] = "\n" + body.strip("\n") + "\n\n"
    names: List[str] = [n for n in ORDER if n in sections] + [n for n in sections if n not in ORDER]
    out = head.rstrip("\n") + "\n\n" + "".join(f"## {n}\n{sections[n]}" for n in names)
    with open(path, "w") as f:
        f.write(out.rstrip("\n") + "\n")


def update_subsections(title: str, preamble: str, subsections: "dict[str, str]", path: str = RESULTS) -> None:
    """Within ``## title``: replace the preamble and the given ``### name`` subsections, keep the other ones
    (so a run of one model does not erase another model's results)."""
    text = open(path).read() if os.path.exists(path) else ""
    m = re.search(r"(?ms)^## " + re.escape(title) + r"\n(.*?)(?=^## |\Z)", text)
    old = m.group(1) if m else ""
    parts = re.split(r"(?m)^### ", old)
    subs = {}
    for p in parts[1:]:
        name, _, rest = p.partition("\n")
        subs[name.strip()] = rest.strip("\n")
    subs.update({k: v.strip("\n") for k, v in subsections.items()})
    body = preamble.strip("\n") + "\n\n" + "\n\n".join(f"### {k}\n\n{v}" for k, v in subs.items())
    update_section(title, body, path)
