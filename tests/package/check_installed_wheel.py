"""Run by .ci/run (wheel phase) with the Python of a fresh virtual environment into which only the
wheel from scripts/wheel was installed, from a directory outside the source tree and without
SMLA_LIBRARY or PYTHONPATH: the smla package and its libsmla.so must both come from the installed wheel.
Then one CPU decode of a single attended token, whose result the spec fixes exactly (sink -inf: out is
the dequantized token and lse = softmax_scale * dot(q, K)).

usage: python check_installed_wheel.py SOURCE_TREE
"""

import os
import sys

import numpy as np


def main():
    source_tree = os.path.realpath(sys.argv[1])
    for variable in ("SMLA_LIBRARY", "PYTHONPATH"):
        if os.environ.get(variable):
            sys.exit(f"{variable} is set: the check must use the wheel's own package and library")
    import smla

    package_dir = os.path.dirname(os.path.realpath(smla.__file__))
    library = os.path.realpath(smla.library_path())
    if package_dir.startswith(source_tree + os.sep):
        sys.exit(f"smla was imported from the source tree ({package_dir}), not from the installed wheel")
    if os.path.dirname(library) != package_dir:
        sys.exit(f"libsmla.so came from {library}, not from the installed package {package_dir}")
    if smla.version() != smla.__version__:
        sys.exit(f"library version {smla.version()} != package version {smla.__version__}")
    from smla import _torch_ext

    if not os.path.isfile(_torch_ext.SOURCE) or not _torch_ext.SOURCE.startswith(package_dir + os.sep):
        sys.exit(f"the torch extension's source {_torch_ext.SOURCE} is not in the installed package")

    rng = np.random.default_rng(7)
    page_block_size = 4
    cache = smla.allocate_cache(num_pages=1, page_block_size=page_block_size)
    tokens = smla.float_to_bf16(np.clip(rng.standard_normal((3, 512)) / 10, -1, 1))
    smla.append(cache, tokens, np.arange(3, dtype=np.int32), page_block_size=page_block_size)
    key = smla.dequantize(cache, np.array([2], np.int32), page_block_size=page_block_size)[0]

    heads = 2
    plan = smla.plan(batch=1, seq_q=1, num_heads=heads, topk=4, backend="cpu")
    q = smla.float_to_bf16(np.clip(rng.standard_normal((1, 1, heads, 512)) / 10, -1, 1))
    indices = np.array([[[-1, 2, -1, -1]]], np.int32)
    sink = np.full(heads, -np.inf, np.float32)
    out, lse = plan.run(q, smla.CacheLayout.from_tensor(cache, page_block_size), indices, attn_sink=sink)

    out = smla.bf16_to_float(out)[0, 0]
    expected_lse = (smla.bf16_to_float(q)[0, 0].astype(np.float64) @ key.astype(np.float64)) * 512 ** -0.5
    if not np.array_equal(out, np.broadcast_to(key, out.shape)):
        sys.exit("out differs from the single attended token")
    if not np.allclose(lse[0, 0], expected_lse, rtol=1e-6, atol=1e-6):
        sys.exit(f"lse {lse[0, 0]} != softmax_scale * dot(q, K) = {expected_lse}")
    print(f"installed wheel OK: smla {smla.__version__} from {package_dir}, library {library}, "
          f"CPU decode matches (lse {lse[0, 0].tolist()})")


if __name__ == "__main__":
    main()
