"""megq benchmarks. Run from the repository root: ``python -m bench gemm --help``."""
