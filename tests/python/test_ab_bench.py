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


def test_the_kernel_label_names_the_build_where_there_are_two():
    row = bench_row("cuda")
    assert ab_bench.kernel_label(row) == "k"  # a tree from before smla-bench's build column
    assert ab_bench.kernel_label(dict(row, build="-")) == "k"
    assert ab_bench.kernel_label(dict(row, kernel="mma99-h32", build="registers")) == "mma99-h32/registers"


def test_backend_defaults_to_cuda():
    assert ab_bench.bench_arguments(["--model", "dsv4-flash", "--batch", "1"]) == [
        "--model", "dsv4-flash", "--batch", "1", "--backend", "cuda"]


def test_a_named_backend_is_kept():
    for args in (["--shape", "flash-c4", "--backend", "cuda,cuda-ref"], ["--backend=cpu"]):
        assert ab_bench.bench_arguments(args) == args


def test_each_tree_runs_in_each_place_equally_often():
    names = ["base", "v98", "control"]
    orders = [ab_bench.round_order(names, r) for r in range(6)]
    assert orders[:3] == [["base", "v98", "control"], ["v98", "control", "base"], ["control", "base", "v98"]]
    assert orders[3:] == orders[:3]
    for name in names:
        assert sorted(order.index(name) for order in orders[:3]) == [0, 1, 2]
    assert ab_bench.round_order(["base", "v98"], 1) == ["v98", "base"]
    assert ab_bench.round_order(["work"], 5) == ["work"]
    assert ab_bench.round_order([], 2) == []


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


FAKE_DUMP = """
\tcode for sm_90a
\t\tFunction : _ZN4smla6detail6decode_kernel_a
        /*0000*/                   MOV R1, R2 ;                                 /* 0x0000000200017202 */
        /*0010*/                   HMMA.16816.F32.BF16 R4, R8, R12, RZ ;        /* 0x0000000c0804723c */
        /*0020*/              @P0  IMAD.MOV.U32 R5, RZ, RZ, R6 ;                /* 0x000000ffff050224 */
        /*0030*/                   HMMA.16816.F32.BF16 R4, R8, R12, R4 ;        /* 0x0000000c0804723c */
\t\tFunction : _ZN4smla6detail9relayout_kernel
        /*0000*/                   EXIT ;                                       /* 0x000000000000794d */
"""


def test_sass_option_writes_each_trees_dump_and_its_decode_kernels_census(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    dump_file = tmp_path / "dump.txt"
    dump_file.write_text(FAKE_DUMP)
    cuobjdump = fake_bin / "cuobjdump"
    cuobjdump.write_text(f"#!/bin/sh\ncat {dump_file}\n")
    cuobjdump.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    lines = ab_bench.sass_census_lines("v1", str(tmp_path / "tree" / "build-ab" / "smla-bench"),
                                       str(tmp_path / "sass"))
    assert (tmp_path / "sass" / "v1.sass").read_text() == FAKE_DUMP
    assert len(lines) == 1  # the relayout kernel is not a decode kernel
    assert lines[0].startswith("# sass v1 _ZN4smla6detail6decode_kernel_a@sm_90a: 4 instructions, 2 HMMA;")
    assert "first to last HMMA: 3 instructions, 1 moves" in lines[0]


def test_sass_option_reports_a_failed_dump(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    cuobjdump = fake_bin / "cuobjdump"
    cuobjdump.write_text("#!/bin/sh\necho 'no such file' >&2\nexit 1\n")
    cuobjdump.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    lines = ab_bench.sass_census_lines("v1", str(tmp_path / "tree" / "build-ab" / "smla-bench"),
                                       str(tmp_path / "sass"))
    assert lines == [f"# sass v1: cuobjdump -sass {tmp_path / 'tree' / 'build-ab' / 'smla-bench'} failed: "
                     "no such file"]
