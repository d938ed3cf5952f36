"""A stand-in smla-bench for the tests of the scripts that run it on the GPU machine (batch-sweep,
split-sweep, page-size-check): a Python script written as `smla-bench` into a build directory, which the
scripts find through $BUILD_DIR."""

import stat


def stand_in_build(tmp_path, source):
    """tmp_path/build holding an executable `smla-bench` with `source`; returns the build directory."""
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    bench = build / "smla-bench"
    bench.write_text(source)
    bench.chmod(bench.stat().st_mode | stat.S_IXUSR)
    return build
