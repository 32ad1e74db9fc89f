"""Running a stack of same-shaped blocks: one scanned loop or unrolled, optionally rematerialised.

Why a scan: XLA compiles an unrolled stack of 12 blocks as 12 copies of the block, so compile
time grows with depth (tens of seconds for an AViT-Ti train step on 2 CPU cores). Under
``jax.lax.scan`` the block is traced and compiled once, whatever the depth (MaxText's
``scan_layers``).

Why the parameters are stacked at call time: every block keeps its own module and parameters
(``blocks/0``, ``blocks/1``, ...), and :func:`run_stack` stacks their states into one
(depth, ...) tree for the scan inside the traced step. So the checkpoint layout does not depend
on how the stack runs: a checkpoint written by an unrolled model restores into a scanned one
and back with no conversion, and ``scan_layers`` can be switched when a run resumes. The price
is one copy of the blocks' parameters per step, small next to the activations.

What the blocks may differ in: parameters (values only; shapes, dtypes and static settings
must match, checked through their graph definitions) and what the caller passes per block
in ``per_block`` (the stochastic-depth rate and a dropout key in jaxfm's models). State a block
changes or records while it runs (a router's load-balancing bias, sown auxiliary losses) is
returned from the loop and written back to that block, so training sees the same state either
way.

Rematerialisation (``remat``) wraps each block in ``jax.checkpoint`` so the backward pass
recomputes what it does not keep:

* ``none``: keep everything (fastest, most memory);
* ``full``: keep only each block's input (least memory, about one extra forward);
* ``dots``: keep the results of matrix multiplications, recompute the rest
  (``jax.checkpoint_policies.checkpoint_dots``);
* ``dots_no_batch``: keep only matmuls without batch dimensions (the projections and MLPs, not
  attention's score and value products: ``dots_with_no_batch_dims_saveable``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp
from flax import nnx

RematName = Literal["none", "full", "dots", "dots_no_batch"]

REMAT_POLICIES: dict[str, Callable | None] = {
    "none": None,
    "full": None,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}

#: step(block, carry, per_block_slice) -> carry
Step = Callable[[nnx.Module, Any, Any], Any]


def check_remat(remat: str) -> None:
    """Raises ValueError naming the choices when ``remat`` is not a policy name."""
    if remat not in REMAT_POLICIES:
        raise ValueError(f"unknown remat {remat!r}; choose one of {sorted(REMAT_POLICIES)}")


def _at(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda a: a[i], tree)


def _functional(graphdef: nnx.GraphDef, step: Step) -> Callable:
    """(state, carry, extra) -> (carry, the block's non-parameter state after the step)."""

    def fn(state, carry, extra):
        block = nnx.merge(graphdef, state)
        carry = step(block, carry, extra)
        return carry, nnx.state(block, nnx.Not(nnx.Param))

    return fn


def _rematted(fn: Callable, remat: str) -> Callable:
    if remat == "none":
        return fn
    return jax.checkpoint(fn, policy=REMAT_POLICIES[remat])


def run_stack(
    blocks: Sequence[nnx.Module],
    carry: Any,
    step: Step,
    per_block: Any = None,
    *,
    scan: bool = True,
    remat: str = "none",
) -> Any:
    """Applies ``step(block, carry, per_block[i])`` for each block in order; returns the carry.

    Args:
      blocks: modules with identical structure (checked when ``scan``).
      carry: the activations (any pytree whose shapes the step keeps).
      step: calls one block; it gets the block, the carry and block i's slice of
        ``per_block``.
      per_block: a pytree of arrays with leading axis ``len(blocks)`` (or None).
      scan: one ``lax.scan`` over the stacked block states (compiled once) instead of an
        unrolled Python loop. A single block is never scanned.
      remat: rematerialisation policy of each block (module docstring).
    """
    check_remat(remat)
    blocks = list(blocks)
    if not blocks:
        return carry
    if per_block is None:
        per_block = jnp.zeros((len(blocks),), jnp.float32)
    if not scan or len(blocks) == 1:
        for i, block in enumerate(blocks):
            extra = _at(per_block, i)
            if remat == "none":
                carry = step(block, carry, extra)
                continue
            graphdef, state = nnx.split(block)
            carry, rest = _rematted(_functional(graphdef, step), remat)(state, carry, extra)
            nnx.update(block, rest)
        return carry
    graphdef = nnx.graphdef(blocks[0])
    for i, block in enumerate(blocks[1:], start=1):
        if nnx.graphdef(block) != graphdef:
            raise ValueError(
                f"block {i} differs in structure or static settings from block 0, so the "
                "stack cannot be scanned; run it unrolled (scan_layers=False)"
            )
    states = [nnx.state(block) for block in blocks]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *states)
    fn = _rematted(_functional(graphdef, step), remat)

    def body(c, inputs):
        state, extra = inputs
        return fn(state, c, extra)

    carry, rests = jax.lax.scan(body, carry, (stacked, per_block))
    for i, block in enumerate(blocks):
        nnx.update(block, _at(rests, i))
    return carry


def block_inputs(
    blocks: Sequence[nnx.Module],
    rates: Sequence[float],
    *,
    deterministic: bool,
    rngs: nnx.Rngs | None,
) -> dict[str, jax.Array]:
    """``per_block`` for a stack with stochastic depth: each block's drop rate and, when
    training a stack that draws random numbers (a drop rate or a dropout layer above 0), its
    own dropout key split from one draw of ``rngs.dropout``, so the scanned and unrolled
    stacks draw the same random numbers. A stack that draws none takes nothing from
    ``rngs``."""
    out = {"drop_rate": jnp.asarray(rates, jnp.float32)}
    if not deterministic and rngs is not None and is_stochastic(blocks, rates):
        out["key"] = jax.random.split(rngs.dropout(), len(rates))
    return out


def is_stochastic(blocks: Sequence[nnx.Module], rates: Sequence[float]) -> bool:
    """Whether training the stack draws random numbers: a stochastic-depth rate or an
    ``nnx.Dropout`` rate above 0."""
    if any(r > 0 for r in rates):
        return True
    return any(
        isinstance(node, nnx.Dropout) and node.rate > 0
        for block in blocks
        for _, node in nnx.iter_graph(block)
    )


def block_rngs(extra: dict[str, jax.Array]) -> nnx.Rngs | None:
    """The block's own ``nnx.Rngs`` from its :func:`block_inputs` slice (None when not
    training)."""
    return nnx.Rngs(dropout=extra["key"]) if "key" in extra else None
