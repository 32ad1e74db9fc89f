"""Non-causal use of a causal mixer: one pass forward in time, one backward, summed.

    y = f_fwd(x) + flip(f_bwd(flip(x)))

as in bidirectional S4/S5 and Vision Mamba (Zhu et al. 2024, arXiv 2401.09417), for tokens
without an arrow of time: space-time patches of a surrogate, the wavelengths of a spectrum.
The two directions have separate parameters. Padding masks are flipped with the tokens; the
state-space mixers skip masked tokens, so padding at the end of the sequence (which becomes
the start of the reversed pass) changes nothing at the real tokens.

The order of tokens is the caller's: flatten space-time patches in the order that puts
related tokens near each other (e.g. time-major for rollouts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float


class Bidirectional(nnx.Module):
    """Wraps two causal mixers (same call shape) into one non-causal mixer.

    Args:
      forward: mixer applied in the given order.
      backward: mixer applied to the reversed sequence (a second instance, own weights).
    """

    def __init__(self, forward: nnx.Module, backward: nnx.Module):
        self.forward, self.backward = forward, backward

    def __call__(
        self,
        x: Float[Array, "b l d"],
        *,
        mask: jax.Array | None = None,
        deterministic: bool = True,
        rngs: nnx.Rngs | None = None,
    ) -> Float[Array, "b l d"]:
        """(B, L, D) -> (B, L, D); ``mask`` (B, L) or (B, 1, 1, L), True = real token."""
        flip_mask = None if mask is None else jnp.flip(mask, axis=-1)
        y = self.forward(x, mask=mask, deterministic=deterministic, rngs=rngs)
        yb = self.backward(
            jnp.flip(x, axis=1), mask=flip_mask, deterministic=deterministic, rngs=rngs
        )
        return y + jnp.flip(yb, axis=1)
