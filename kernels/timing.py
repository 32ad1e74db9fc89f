"""Timing helpers shared by the benchmark (``kernels.bench``) and the autotuner.

The lowest layer of the measuring code: it imports the kernels lazily (inside
``attention_fn``) and nothing that imports it back, so ``kernels.bench`` and
``kernels.flash_attention.autotune`` both build on it without importing each other.

* :func:`attention_fn`: a jittable ``f(q, k, v)`` per implementation name, and
  :func:`execution_mode`: whether that function runs compiled or under the Pallas interpreter;
* :func:`random_inputs`, :func:`fwd_bwd`: the inputs and the forward+backward closure timed;
* :func:`time_ms`: median/p20/p80 milliseconds (CUPTI device timer where
  ``jax.experimental.mosaic.gpu.profiler`` works, else wall clock around
  ``block_until_ready``; compile and warm-up calls excluded);
* :func:`time_attention`: the median of one configuration, what the autotuner ranks by.
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import jax.numpy as jnp

IMPLS = ("xla", "cudnn", "pallas", "mosaic", "triton", "reference")


def quantiles(times: list[float]) -> tuple[float, float, float]:
    """(median, p20, p80) of sorted ``times``."""

    def q(f):
        return times[min(len(times) - 1, int(f * len(times)))]

    return statistics.median(times), q(0.2), q(0.8)


def time_ms(fn, args, repeats: int, warmup: int) -> tuple[float, float, float, str]:
    """(median, p20, p80) milliseconds of ``fn(*args)`` and the timer used."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    if jax.default_backend() == "gpu":
        try:
            from jax.experimental.mosaic.gpu import profiler

            _, times = profiler.measure(fn, iterations=repeats)(*args)
            if times:
                times = sorted(float(t) for t in times)
                return quantiles(times) + ("cupti",)
        except Exception:  # profiler API differs across jax versions: fall back to wall clock
            pass
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - t0) * 1e3)
    return quantiles(sorted(times)) + ("wall",)


def execution_mode(impl: str) -> str:
    """``"interpret"`` for the Pallas and Mosaic GPU kernels off a GPU (``attention_fn`` builds
    them with ``interpret=True`` there), else ``"compiled"``. Interpret-mode timings measure
    the interpreter, not the kernel."""
    off_gpu = jax.default_backend() != "gpu"
    return "interpret" if impl in ("pallas", "mosaic") and off_gpu else "compiled"


def attention_fn(impl: str, causal: bool, block_sizes=None):
    """A jittable ``f(q, k, v) -> out`` for ``impl`` (raises RuntimeError if unavailable)."""
    if impl in ("xla", "cudnn"):
        if impl == "cudnn" and jax.default_backend() != "gpu":
            raise RuntimeError("cudnn needs a GPU")
        return functools.partial(
            jax.nn.dot_product_attention, is_causal=causal, implementation=impl
        )
    if impl == "reference":
        from kernels.flash_attention.reference import attention_reference

        return functools.partial(attention_reference, causal=causal)
    if impl == "pallas":
        from kernels.flash_attention.pallas import flash_attention_pallas

        return functools.partial(
            flash_attention_pallas,
            causal=causal,
            block_sizes=block_sizes,
            interpret=execution_mode(impl) == "interpret",
        )
    if impl == "mosaic":
        from kernels.flash_attention.mosaic import flash_attention_mosaic

        return functools.partial(
            flash_attention_mosaic, causal=causal, interpret=execution_mode(impl) == "interpret"
        )
    if impl == "triton":
        from kernels.flash_attention.ops import fallback_reason
        from kernels.flash_attention.triton import flash_attention_triton

        x = jnp.zeros((1, 16, 1, 64), jnp.bfloat16)
        if (reason := fallback_reason("triton", x, x, x)) is not None:
            raise RuntimeError(reason)
        return functools.partial(flash_attention_triton, causal=causal, block_sizes=block_sizes)
    raise ValueError(f"unknown attention impl {impl!r}; choose from {IMPLS}")


def random_inputs(batch, seq, heads, d, dtype, seed=0):
    """``q, k, v, do`` of shape (batch, seq, heads, d), standard normal from ``seed``."""
    ks = jax.random.split(jax.random.PRNGKey(seed), 4)
    shape = (batch, seq, heads, d)
    # Random normal data, not zeros: multiplying zeros flatters the tensor cores' timings.
    return tuple(jax.random.normal(k, shape, jnp.dtype(dtype)) for k in ks)


def fwd_bwd(f):
    """``(q, k, v, do) -> (out, (dq, dk, dv))``: one forward and one backward pass of ``f``."""

    def loss(q, k, v, do):
        out, vjp = jax.vjp(f, q, k, v)
        return out, vjp(do)

    return loss


def time_attention(
    impl, batch, seq, heads, d, *, causal, backward, dtype, block_sizes=None, repeats=10, warmup=2
) -> float:
    """Median ms of one forward (or forward+backward) pass; used by the autotuner."""
    f = attention_fn(impl, causal, block_sizes)
    q, k, v, do = random_inputs(batch, seq, heads, d, dtype)
    if backward:
        fn, args = jax.jit(fwd_bwd(f)), (q, k, v, do)
    else:
        fn, args = jax.jit(f), (q, k, v)
    return time_ms(fn, args, repeats, warmup)[0]
