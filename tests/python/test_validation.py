"""Every Python-side check names the argument and says what was expected; C-side errors arrive as
smla.SmlaError carrying smla_last_error()."""

import os

import numpy as np
import pytest

import smla

B, S, H, TOPK, EXTRA = 2, 1, 4, 64, 64


@pytest.fixture(scope="module")
def plan():
    return smla.plan(B, S, H, TOPK, extra_topk=EXTRA, backend="cpu")


@pytest.fixture
def good():
    main = smla.allocate_cache(2, 64)
    extra = smla.allocate_cache(4, 2)
    return dict(
        q=np.zeros((B, S, H, 512), np.uint16),
        cache=smla.CacheLayout.from_tensor(main, 64),
        indices=np.zeros((B, S, TOPK), np.int32),
        topk_length=np.zeros((B,), np.int32),
        extra_cache=smla.CacheLayout.from_tensor(extra, 2),
        extra_indices=np.zeros((B, S, EXTRA), np.int32),
        extra_topk_length=np.zeros((B, S), np.int32),
        attn_sink=np.zeros((H,), np.float32),
    )


def test_good_arguments_run(plan, good):
    out, lse = plan.run(**good)
    assert np.isposinf(lse).all()  # every row has length 0


BAD_ARGUMENTS = [
    ("q", lambda: np.zeros((B, S, H, 512), np.float32), "q: expected dtype bfloat16 or uint16"),
    ("q", lambda: np.zeros((B, S, H + 1, 512), np.uint16), r"q: expected shape \[b=2, s_q=1, h=4, D=512\], got \[2, 1, 5, 512\]"),
    ("q", lambda: np.zeros((B, S, H, 1024), np.uint16)[..., ::2], "q: the last dimension must be contiguous"),
    ("q", lambda: np.zeros((B, S, H, 512), np.uint16)[::-1], "q: negative strides"),
    ("q", lambda: [[0.0]], "q: expected a torch tensor, NumPy array or DLPack object, got list"),
    ("indices", lambda: np.zeros((B, S, TOPK), np.int64), "indices: expected dtype int32, got int64"),
    ("indices", lambda: np.zeros((B, S, TOPK + 64), np.int32), r"indices: expected shape \[b=2, s_q=1, topk=64\]"),
    ("indices", lambda: np.zeros((B, S, 2 * TOPK), np.int32)[..., ::2], "indices: the last dimension must be contiguous"),
    ("topk_length", lambda: np.zeros((B + 1,), np.int32), r"topk_length: expected shape \[b=2\] or \[b=2, s_q=1\]"),
    ("topk_length", lambda: np.zeros((B,), np.uint32), "topk_length: expected dtype int32, got uint32"),
    ("topk_length", lambda: np.zeros((2 * B,), np.int32)[::2], "topk_length: must be contiguous"),
    ("extra_indices", lambda: np.zeros((B, S, EXTRA + 1), np.int32), r"extra_indices: expected shape \[b=2, s_q=1, extra_topk=64\]"),
    ("extra_topk_length", lambda: np.zeros((B, S), np.float32), "extra_topk_length: expected dtype int32"),
    ("attn_sink", lambda: np.zeros((H,), np.float64), "attn_sink: expected dtype float32, got float64"),
    ("attn_sink", lambda: np.zeros((H + 1,), np.float32), r"attn_sink: expected shape \[h=4\]"),
    ("out", lambda: np.zeros((B, S, H, 512), np.float32), "out: expected dtype bfloat16 or uint16"),
    ("out", lambda: np.zeros((B, S, H, 256), np.uint16), r"out: expected shape \[b=2, s_q=1, h=4, D=512\]"),
    ("lse", lambda: np.zeros((B, S, H), np.float64), "lse: expected dtype float32, got float64"),
    ("lse", lambda: np.zeros((B, H, S), np.float32), r"lse: expected shape \[b=2, s_q=1, h=4\]"),
    ("softmax_scale", lambda: float("nan"), "softmax_scale: expected a finite value > 0"),
    ("softmax_scale", lambda: -1.0, "softmax_scale: expected a finite value > 0"),
    ("cache", lambda: np.zeros((2, 37440), np.float32), "cache: expected a byte tensor"),
    ("cache", lambda: np.zeros((2, 37440), np.uint8), "cache: a \\[num_pages, page_stride\\] cache needs page_block_size"),
    ("cache", lambda: np.zeros((2, 64, 1, 576), np.uint8), r"cache: expected shape \[num_pages, P, 1, 584\]"),
    ("extra_cache", lambda: np.zeros((4, 1728), np.int32), "extra_cache: expected a byte tensor"),
]


@pytest.mark.parametrize("name,make_value,message", BAD_ARGUMENTS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(BAD_ARGUMENTS)])
def test_bad_argument_is_named(plan, good, name, make_value, message):
    plan.run(**good)  # the good call's signature is remembered: the bad one must still be checked in full
    good[name] = make_value()
    with pytest.raises((ValueError, TypeError, smla.SmlaError), match=message):
        plan.run(**good)


def test_remembered_signatures_are_bounded_and_keyed_by_every_fact(good):
    """Plan.run validates a call signature (shapes, strides, dtypes, devices, cache geometry, scale) once;
    new data under it adds nothing, any changed fact adds an entry, and the cache is bounded."""
    from smla import decode

    plan = smla.plan(B, S, H, TOPK, extra_topk=EXTRA, backend="cpu")
    plan.run(**good)
    plan.run(**{**good, "q": np.ones((B, S, H, 512), np.uint16)})
    assert len(plan._signatures) == 1
    plan.run(**good, softmax_scale=0.5)
    plan.run(**{**good, "topk_length": np.zeros((B, S), np.int32)})
    out = np.zeros((B, H, S, 512), np.uint16).transpose(0, 2, 1, 3)  # strided out: a new signature
    plan.run(**good, out=out)
    assert len(plan._signatures) == 4
    for width in range(decode._MAX_SIGNATURES + 1):
        plan.run(**good, out=np.zeros((B, S, H, 512 + 8 * (width + 1)), np.uint16)[..., :512])
    assert 1 <= len(plan._signatures) <= decode._MAX_SIGNATURES


def test_page_stride_below_records_is_rejected(plan, good):
    pool = smla.allocate_cache(3, 64)
    view = np.lib.stride_tricks.as_strided(pool, shape=(3, 64, 1, 584), strides=(64 * 576, 584, 584, 1))
    good["cache"] = view
    with pytest.raises(ValueError, match=r"cache: page stride 36864 bytes is below P\*584 = 37376"):
        plan.run(**good)


def test_missing_extra_cache_is_named(plan, good):
    del good["extra_cache"]
    with pytest.raises(ValueError, match="extra_cache: required, the plan was made with extra_topk=64"):
        plan.run(**good)


def test_extra_cache_without_extra_plan_is_named(good):
    plan = smla.plan(B, S, H, TOPK, backend="cpu")
    with pytest.raises(ValueError, match="extra_cache: the plan was made with extra_topk=0"):
        plan.run(**good)


def test_c_side_errors_raise_smla_error_with_the_message(good):
    with pytest.raises(smla.SmlaError) as caught:
        smla.plan(B, S, 0, TOPK, backend="cpu")
    assert caught.value.status == 1 and caught.value.status_name == "INVALID_ARGUMENT"
    assert "num_heads" in caught.value.message
    # A page stride that is not a multiple of 16 passes the Python shape checks and is refused by the C layer.
    misaligned = smla.CacheLayout(good["cache"].data, 64, 37440 + 8, 1)
    with pytest.raises(smla.SmlaError, match="16"):
        misaligned.validate()


def test_unknown_backend_is_an_smla_error():
    with pytest.raises(smla.SmlaError, match="cuda-ref"):
        smla.plan(1, 1, 1, 64, backend="tpu")


def test_cpu_device_with_cuda_backend_is_refused():
    with pytest.raises(ValueError, match="device: backend 'cuda' runs on CUDA"):
        smla.plan(1, 1, 1, 64, backend="cuda", device="cpu")


def test_append_checks():
    cache = smla.allocate_cache(1, 64)
    tokens = np.zeros((2, 512), np.uint16)
    with pytest.raises(ValueError, match=r"tokens: expected shape \[n, 512\]"):
        smla.append(cache, np.zeros((2, 448), np.uint16), np.zeros(2, np.int32), page_block_size=64)
    with pytest.raises(ValueError, match="tokens: expected dtype bfloat16 or uint16"):
        smla.append(cache, tokens.astype(np.float32), np.zeros(2, np.int32), page_block_size=64)
    with pytest.raises(ValueError, match="slots: expected dtype int32, got int64"):
        smla.append(cache, tokens, np.zeros(2, np.int64), page_block_size=64)
    with pytest.raises(ValueError, match=r"slots: expected shape \[n=2\]"):
        smla.append(cache, tokens, np.zeros(3, np.int32), page_block_size=64)
    with pytest.raises(smla.SmlaError, match="slot"):
        smla.append(cache, tokens, np.array([0, 64], np.int32), page_block_size=64)  # slot 64 is past the pool


def test_allocate_cache_checks():
    with pytest.raises(ValueError, match="num_pages: expected >= 1, got 0"):
        smla.allocate_cache(0, 64)
    with pytest.raises(ValueError, match="page_block_size: expected >= 1, got 0"):
        smla.allocate_cache(1, 0)
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda' or 'cuda:N'"):
        smla.allocate_cache(1, 64, device="tpu")


def test_backend_names_and_cuda_availability():
    assert isinstance(smla.cuda_available(), bool)
    assert smla.backend_name("cpu") == "cpu" and smla.backend_name(1) == "cpu" and smla.backend_name(3) == "cuda"
    assert smla.backend_name(device="cpu") == "cpu"
    assert smla.backend_name(smla.plan(1, 1, 1, 64, backend="cpu")) == "cpu"
    if "SMLA_BACKEND" not in os.environ:
        assert smla.backend_name() in (("cuda", "cuda-ref") if smla.cuda_available() else ("cpu",))
    with pytest.raises(ValueError, match="device: backend 'cuda' runs on CUDA"):
        smla.backend_name("cuda", device="cpu")
    if not smla.cuda_available():
        with pytest.raises(smla.SmlaError) as caught:
            smla.plan(1, 1, 1, 64, backend="cuda")
        assert caught.value.status_name == "NO_DEVICE"


def test_q_stride_that_breaks_vector_loads_is_refused_by_the_library(plan, good):
    good["q"] = np.zeros((B, S, H, 516), np.uint16)[..., :512]  # head stride 516: not a multiple of 8
    with pytest.raises(smla.SmlaError, match="q_stride_head") as caught:
        plan.run(**good)
    assert caught.value.status_name == "INVALID_ARGUMENT"


def test_relayout_of_host_caches_is_refused():
    source = smla.allocate_cache(1, 256)
    destination = smla.allocate_cache(4, 64)
    with pytest.raises(ValueError, match="relayout_pages runs on CUDA memory: source is on cpu"):
        smla.relayout_pages(source, destination)
