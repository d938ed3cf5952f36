"""scripts/ab-bench's row keys and default bench arguments (no GPU: the functions are pure)."""

import importlib.machinery
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "ab-bench")

loader = importlib.machinery.SourceFileLoader("ab_bench", SCRIPT)
spec = importlib.util.spec_from_loader("ab_bench", loader)
ab_bench = importlib.util.module_from_spec(spec)
loader.exec_module(ab_bench)


def bench_row(backend, time_us=1.0):
    return {"shape": "flash-c4", "backend": backend, "kernel": "k", "b": 8, "h": 64, "s_q": 1, "P_main": 256,
            "time_us": time_us}


def test_rows_of_two_backends_have_different_keys():
    assert ab_bench.row_key(bench_row("cuda")) != ab_bench.row_key(bench_row("cpu"))
    assert ab_bench.row_key(bench_row("cuda", 1.0)) == ab_bench.row_key(bench_row("cuda", 2.0))


def test_backend_defaults_to_cuda():
    assert ab_bench.bench_arguments(["--model", "dsv4-flash", "--batch", "1"]) == [
        "--model", "dsv4-flash", "--batch", "1", "--backend", "cuda"]


def test_a_named_backend_is_kept():
    for args in (["--shape", "flash-c4", "--backend", "cuda,cuda-ref"], ["--backend=cpu"]):
        assert ab_bench.bench_arguments(args) == args
