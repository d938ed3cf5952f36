"""bench/plot reads smla-bench's results with their metadata and titles the picture with the device and
commit. The loading and titling need no matplotlib; the picture itself is not drawn here."""

import glob
import importlib.machinery
import importlib.util
import json
import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_plot_module():
    loader = importlib.machinery.SourceFileLoader("smla_bench_plot", os.path.join(REPO, "bench", "plot"))
    spec = importlib.util.spec_from_loader("smla_bench_plot", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


plot = load_plot_module()

ROW = {"shape": "flash-c4", "backend": "cuda", "b": 8, "time_us": 19.5, "p10_us": 19.0, "p90_us": 20.0,
       "floor_us": 10.8}
METADATA = {"smla_version": "0.1.0", "git_commit": "abc1234", "date_utc": "2026-12-02T04:00:00Z",
            "device": "NVIDIA H200", "compute_capability": "9.0", "host_cpu": "AMD EPYC"}


def test_json_with_metadata(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"metadata": METADATA, "rows": [ROW]}))
    rows, metadata = plot.load_results(str(path))
    assert rows == [ROW] and metadata == METADATA
    assert plot.title_of(metadata) == "NVIDIA H200 (cc 9.0) - smla 0.1.0 @ abc1234 - 2026-12-02T04:00:00Z"


def test_csv_metadata_columns(tmp_path):
    path = tmp_path / "results.csv"
    columns = list(ROW) + list(METADATA)
    values = [str(v) for v in ROW.values()] + ["0.1.0", "abc1234", "2026-12-02T04:00:00Z", "none", "none",
                                               "AMD EPYC"]
    path.write_text(",".join(columns) + "\n" + ",".join(values) + "\n")
    rows, metadata = plot.load_results(str(path))
    assert rows[0]["shape"] == "flash-c4"
    assert plot.title_of(metadata) == "host AMD EPYC - smla 0.1.0 @ abc1234 - 2026-12-02T04:00:00Z"


def test_results_without_metadata_still_load(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps([ROW]))
    rows, metadata = plot.load_results(str(path))
    assert rows == [ROW] and metadata == {}
    assert plot.title_of(metadata) == "unknown device - smla unknown @ unknown - unknown date"


def find_bench():
    library = os.environ.get("SMLA_LIBRARY")
    candidates = [os.path.join(os.path.dirname(library), "smla-bench")] if library else []
    candidates += sorted(glob.glob(os.path.join(REPO, "build*", "smla-bench")), key=os.path.getmtime, reverse=True)
    return next((path for path in candidates if os.access(path, os.X_OK)), None)


@pytest.mark.parametrize("output_format", ["json", "csv"])
def test_real_bench_output_titles_the_plot(tmp_path, output_format):
    bench = find_bench()
    if bench is None:
        pytest.skip("no built smla-bench (build it: cmake --build build --target smla-bench)")
    path = tmp_path / f"results.{output_format}"
    subprocess.run([bench, "--backend=cpu", "--shape=flash-swa", "--batch=1", "--iters=1", "--warmup=0",
                    "--pool-gb=0.01", "--copy-gb=0.01", f"--format={output_format}", f"--output={path}"],
                   check=True, capture_output=True)
    rows, metadata = plot.load_results(str(path))
    assert len(rows) == 1 and rows[0]["backend"] == "cpu"
    title = plot.title_of(metadata)
    assert title.startswith("host ") and metadata["git_commit"] in title and metadata["smla_version"] in title
