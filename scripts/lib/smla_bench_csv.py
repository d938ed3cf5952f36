"""What the Python scripts that run smla-bench on the GPU machine share (batch-sweep, page-size-check): the
binary, built on first use, one run of it, and the rows of its csv output."""
import csv
import io
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smla_bench_path():
    """$BUILD_DIR/smla-bench (default build-sweep/), configured and built by scripts/bench when absent."""
    build_dir = os.environ.get("BUILD_DIR", os.path.join(ROOT, "build-sweep"))
    bench = os.path.join(build_dir, "smla-bench")
    if not os.access(bench, os.X_OK):  # scripts/bench configures and builds it, then prints its help
        env = dict(os.environ, BUILD_DIR=build_dir)
        subprocess.run([os.path.join(ROOT, "scripts", "bench"), "--help"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return bench


class BenchFailed(Exception):
    """smla-bench exited non-zero; the message names the command and the end of its output."""


def bench_rows(bench, shapes, batches, bench_args):
    """The csv rows of one `smla-bench --shape SHAPES --batch BATCHES --backend cuda --format csv BENCH_ARGS`
    run; raises BenchFailed when it fails."""
    command = [bench, "--shape", shapes, "--batch", ",".join(map(str, batches)), "--backend", "cuda",
               "--format", "csv", *bench_args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchFailed(f"{' '.join(command)} failed ({result.returncode}): "
                          f"{(result.stderr or result.stdout).strip()[-400:]}")
    return csv_rows(result.stdout)


def csv_rows(stdout):
    """The data rows (dicts by column name) of `smla-bench --format csv` output, past its progress ("[")
    and metadata ("#") lines."""
    lines = [line for line in stdout.splitlines() if line and not line.startswith(("[", "#"))]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))
