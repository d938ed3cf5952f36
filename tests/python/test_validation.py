"""Every Python-side check names the argument and says what was expected; C-side errors arrive as
smla.SmlaError carrying smla_last_error()."""

import ctypes
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


# ---- gaps an audit of the public entry points found (2026-12-04); each used to crash, write out of place or
# compute garbage.

def _guarded_pool(rows, row_bytes):
    """A [rows, row_bytes] uint8 pool followed by an inaccessible page: an access past its end faults."""
    import mmap

    page = mmap.PAGESIZE
    size = rows * row_bytes
    total = (size + page - 1) // page * page + page
    region = mmap.mmap(-1, total)
    buffer = (ctypes.c_char * total).from_buffer(region)
    base = ctypes.addressof(buffer)
    libc = ctypes.CDLL(None)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    assert libc.mprotect(base + total - page, page, 0) == 0  # PROT_NONE
    array = np.frombuffer(buffer, np.uint8, count=size, offset=total - page - size).reshape(rows, row_bytes)
    return array, (region, buffer)


def test_a_two_dimensional_cache_narrower_than_its_pages_is_refused(plan, good):
    # A [pages, 112] slice of a [pages, 37552] pool, ending at a guard page: its stride(0) suggests pages of
    # P = 64 records, but each row holds 112 bytes. The library would read (and append would write) past it.
    pool, keep = _guarded_pool(4, 37552)
    narrow = pool[:, 37552 - 112:]
    message = r"cache: each page row holds 112 bytes, below P\*584 = 37376 \(P=64\)"
    with pytest.raises(ValueError, match=message):
        plan.run(**{**good, "cache": narrow}, page_block_size=64)
    with pytest.raises(ValueError, match=message):
        smla.dequantize(narrow, [4 * 64 - 1], page_block_size=64)
    with pytest.raises(ValueError, match=message):
        smla.append(narrow, np.zeros((1, 512), np.uint16), np.array([4 * 64 - 1], np.int32), page_block_size=64)
    del keep


def test_a_cache_view_whose_records_are_not_contiguous_is_refused(plan, good):
    transposed = smla.allocate_cache(4, 64)[:, :64 * 584].reshape(4, 584, 64).transpose(0, 2, 1)
    with pytest.raises(ValueError, match="cache: each page must be P\\*584 contiguous bytes"):
        plan.run(**{**good, "cache": transposed})
    every_other = np.zeros((4, 64, 2 * 584), np.uint8)[:, :, ::2]
    with pytest.raises(ValueError, match="cache: each page must be P\\*584 contiguous bytes"):
        smla.dequantize(every_other, [0])


def test_read_only_outputs_and_caches_are_refused(plan, good):
    out = np.zeros((B, S, H, 512), np.uint16)
    lse = np.zeros((B, S, H), np.float32)
    out.setflags(write=False)
    with pytest.raises(ValueError, match="out: the array is read-only"):
        plan.run(**good, out=out, lse=lse)
    out = np.zeros((B, S, H, 512), np.uint16)
    plan.run(**good, out=out, lse=lse)  # remembered signature: the read-only flag is part of it
    lse.setflags(write=False)
    with pytest.raises(ValueError, match="lse: the array is read-only"):
        plan.run(**good, out=out, lse=lse)
    cache = smla.allocate_cache(1, 64)
    cache.setflags(write=False)
    with pytest.raises(ValueError, match="cache: the array is read-only"):
        smla.append(cache, np.zeros((1, 512), np.uint16), np.array([0], np.int32), page_block_size=64)


def test_outputs_that_share_memory_with_an_argument_are_refused_by_the_library(plan, good):
    out = np.zeros((B, S, H, 512), np.uint16)
    with pytest.raises(smla.SmlaError, match=r"args.out \[.*overlaps args.lse \["):
        plan.run(**good, out=out, lse=out.view(np.float32)[..., :1].reshape(B, S, H))
    q = good["q"]
    with pytest.raises(smla.SmlaError, match=r"args.out \[.*overlaps args.q \["):
        plan.run(**good, out=q, lse=np.zeros((B, S, H), np.float32))


def test_big_endian_arrays_are_refused():
    with pytest.raises(ValueError, match="q: expected native byte order, got dtype >u2"):
        smla.plan(B, S, H, TOPK, backend="cpu").run(np.zeros((B, S, H, 512), ">u2"), smla.allocate_cache(1, 64),
                                                    np.zeros((B, S, TOPK), np.int32), page_block_size=64)


@pytest.mark.parametrize("field,value,message", [
    ("batch", 2 ** 32 + 1, "batch: expected a value in the int32 range, got 4294967297"),
    ("num_heads", 2 ** 32 + 64, "num_heads: expected a value in the int32 range"),
    ("topk", 1.5, "topk: expected an integer, got 1.5"),
    ("cpu_threads", -2 ** 32 + 1, "cpu_threads: expected a value in the int32 range"),
    ("num_splits", 2 ** 31, "num_splits: expected a value in the int32 range"),
])
def test_plan_integers_outside_int32_are_refused_not_wrapped(field, value, message):
    arguments = dict(batch=1, seq_q=1, num_heads=8, topk=64, backend="cpu")
    arguments[field] = value
    with pytest.raises(ValueError, match=message):
        smla.plan(**arguments)


def test_slot_ids_are_never_cast_into_other_slots():
    cache = smla.allocate_cache(1, 64)
    with pytest.raises(ValueError, match=r"slots: slot ids must fit int32, got values in \[4294967297"):
        smla.dequantize(cache, np.array([2 ** 32 + 1], np.int64), page_block_size=64)
    with pytest.raises(ValueError, match="slots: expected integer slot ids, got dtype float64"):
        smla.dequantize(cache, [1.9], page_block_size=64)
    with pytest.raises(ValueError, match="slots: slot ids must fit int32"):
        smla.append(cache, np.zeros((1, 512), np.uint16), [2 ** 32 + 3], page_block_size=64)
    assert smla.dequantize(cache, np.array([1], np.int64), page_block_size=64).shape == (1, 512)


def test_relayout_index_sets_take_the_stride_of_their_real_rows():
    from smla.cache import _index_set_struct

    full = np.arange(2 * 4 * 8, dtype=np.int32).reshape(2, 4, 8)
    _, one_query = _index_set_struct(full[:, 1:2, :], 0)  # [2, 1, 8]: rows 32 elements apart
    assert (one_query.num_rows, one_query.width, one_query.row_stride) == (2, 8, 32)
    permuted = np.ascontiguousarray(full[:, 0, :]).reshape(2, 8, 1).transpose(0, 2, 1)  # [2, 1, 8], strides (8, 1, 1)
    _, rows = _index_set_struct(permuted, 0)
    assert (rows.num_rows, rows.row_stride) == (2, 8)
    _, flat = _index_set_struct(full.reshape(8, 8), 0)
    assert (flat.num_rows, flat.row_stride) == (8, 8)
    with pytest.raises(ValueError, match="rows are evenly spaced"):
        _index_set_struct(full[:, ::2, :][:, :, :].transpose(1, 0, 2), 0)
