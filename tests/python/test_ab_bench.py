"""scripts/ab-bench's row keys, default bench arguments and tree preparation (no GPU needed)."""

import importlib.machinery
import importlib.util
import os
import subprocess

import pytest

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


def test_tree_spec_names_a_revision_and_its_patches():
    assert ab_bench.parse_tree_spec("base=HEAD") == ("base", "HEAD", [])
    assert ab_bench.parse_tree_spec("v52=HEAD~1+a.patch+dir/b.patch") == (
        "v52", "HEAD~1", ["a.patch", "dir/b.patch"])


def test_malformed_tree_specs_exit_with_the_reason():
    for spec in ("base", "work=HEAD", "a/b=HEAD", "x=", "x=HEAD+", "x=HEAD++p.patch"):
        with pytest.raises(SystemExit) as exit_info:
            ab_bench.parse_tree_spec(spec)
        assert "NAME=REV[+PATCH...]" in str(exit_info.value)


def skip_unless_checkout_top():
    top = subprocess.run(["git", "-C", REPO, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(REPO):
        pytest.skip("not the top of a git checkout (e.g. an installed wheel's tests, or an .ab tree)")


def test_prepare_refuses_a_root_that_is_not_a_checkout_top(tmp_path, monkeypatch, capsys):
    skip_unless_checkout_top()
    monkeypatch.setattr(ab_bench, "AB_DIR", str(tmp_path / "ab"))
    for root, reason in ((os.path.join(REPO, "scripts"), "not a git checkout's top"),
                         (str(tmp_path), "not in a git checkout")):
        monkeypatch.setattr(ab_bench, "ROOT", root)
        assert ab_bench.prepare(["base=HEAD"]) == 1
        assert reason in capsys.readouterr().err
        assert not (tmp_path / "ab").exists()


def test_prepare_applies_patches_and_refuses_one_that_does_not_apply(tmp_path, monkeypatch, capsys):
    skip_unless_checkout_top()
    monkeypatch.setattr(ab_bench, "AB_DIR", str(tmp_path / "ab"))
    adds = tmp_path / "adds.patch"
    adds.write_text("--- /dev/null\n+++ b/AB_PATCHED.txt\n@@ -0,0 +1 @@\n+patched\n")
    conflicting = tmp_path / "conflicting.patch"
    conflicting.write_text("--- a/AB_PATCHED.txt\n+++ b/AB_PATCHED.txt\n@@ -1 +1 @@\n-not this line\n+x\n")
    assert ab_bench.prepare([f"p=HEAD+{adds}"]) == 0
    tree = tmp_path / "ab" / "p"
    assert (tree / "AB_PATCHED.txt").read_text() == "patched\n"
    assert (tree / "AB_REVISION").read_text().strip().endswith("+adds.patch")
    assert (tree / "scripts" / "ab-bench").is_file()  # the revision's files are there too
    assert ab_bench.prepare([f"q=HEAD+{adds}+{conflicting}"]) == 1
    assert not (tmp_path / "ab" / "q").exists()
    assert "does not apply" in capsys.readouterr().err
    assert ab_bench.prepare(["r=HEAD+no/such.patch"]) == 1
    assert not (tmp_path / "ab" / "r").exists()
