"""Mixture-of-experts feed-forward layer: top-k routing, capacity or dropless dispatch.

Routing (Shazeer et al. 2017; Mixtral, Jiang et al. 2024): a float32 linear router gives
logits (T, E); each token picks its top-k experts and weights them by the softmax over the
k selected logits (equal to the renormalised top-k of the full softmax). Optionally an
auxiliary-loss-free bias (DeepSeek-V3, arXiv 2412.19437) shifts the *selection* scores only:
after each training forward pass, ``bias_e += rate * sign(mean load - load_e)``; it is an
``nnx.Variable`` (:class:`RouterBias`), not a parameter, so the optimiser never sees it.

Dispatch (``dispatch``):

* ``dropless``: the T·k (token, expert) pairs are sorted by expert and the experts applied as
  one grouped matmul, ``jax.lax.ragged_dot`` (MaxText's sparse path); nothing is dropped.
* ``capacity``: each expert takes at most C = ceil(capacity_factor · T · k / E) tokens;
  all first choices are served before any second choice, tokens in order within a rank
  (flaxformer's priority). Dispatch/combine tensors (T, E, C) feed dense einsums, the
  classic GShard/Switch layout that shards well over an ``expert`` mesh axis.
* ``dense``: every expert on every token, weighted by the (mostly zero) gates. The oracle
  for the other two, and cheap for tiny E.

Losses (recorded with :func:`jaxfm.nn.aux.record_aux_loss`, already weighted):
Switch load balance ``lb = E · sum_e f_e P_e`` (Fedus et al. 2021) with f_e the fraction of
tokens whose top-k includes e (sum f = k, from the routing mask, never the capacity mask)
and P_e the mean router probability; it equals k at perfect balance. Router z-loss
``z = mean_t logsumexp(logits_t)^2`` (ST-MoE, Zoph et al. 2022). Metrics
(:func:`jaxfm.nn.aux.record_metric`): ``max_load`` and ``min_load``, the largest and smallest
expert load relative to a balanced one (1.0 when balanced; max E/k when collapsed), and
``dropped_frac``, the fraction of (token, expert) choices dropped by the capacity limit.

Expert parallelism: expert weights carry the logical axis ``expert`` (mapped to the mesh
axis ``expert`` by the ``fsdp_ep`` rule table); when a mesh with an ``expert`` axis is set
(``jax.set_mesh``), the capacity path pins the (E, C, d) buffers to it, so XLA moves tokens
with all-to-alls and each device runs only its experts.

Shapes: x (..., d) -> (..., d); tokens are all leading positions flattened (one routing
group per call).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import PartitionSpec
from jaxtyping import Array, Float

from jaxfm.nn.aux import record_aux_loss, record_metric
from jaxfm.nn.params import param, partitioned

Dispatch = Literal["dropless", "capacity", "dense"]
DISPATCHES: tuple[str, ...] = ("dropless", "capacity", "dense")


class RouterBias(nnx.Variable):
    """Selection bias of aux-loss-free balancing: updated by the layer, not the optimiser."""


def capacity(tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert: ceil(capacity_factor · tokens · top_k / n_experts), at least 1."""
    return max(1, math.ceil(capacity_factor * tokens * top_k / n_experts))


def _expert_axis_size() -> int:
    mesh = jax.sharding.get_abstract_mesh()
    names = getattr(mesh, "axis_names", ()) or ()
    return dict(zip(names, mesh.axis_sizes)).get("expert", 1) if names else 1


def _expert_init(axes):
    # lecun-normal per expert: fan-in is the middle axis, the leading axis is a batch of experts
    init = nnx.initializers.variance_scaling(
        1.0, "fan_in", "truncated_normal", in_axis=-2, out_axis=-1, batch_axis=(0,)
    )
    return partitioned(init, axes)


class MoE(nnx.Module):
    """Top-k mixture of ``n_experts`` MLPs, (..., dim) -> (..., dim).

    Args:
      dim: model width.
      hidden: hidden width of each expert (for ``swiglu`` the gate has the same width).
      n_experts: number of experts E.
      top_k: experts per token k.
      activation: ``gelu`` or ``swiglu``.
      dispatch: ``dropless``, ``capacity`` or ``dense`` (see module docstring).
      capacity_factor: slots per expert relative to a perfectly balanced load (capacity).
      lb_weight: weight of the Switch load-balancing loss (0.01 in Switch).
      z_weight: weight of the router z-loss (1e-4 in flaxformer's ST-MoE configs).
      bias_rate: step of the aux-loss-free bias update (0: off; 1e-3 in DeepSeek-V3).
      rngs: parameter initialisation.
    """

    def __init__(
        self,
        dim: int,
        hidden: int,
        n_experts: int,
        top_k: int = 2,
        *,
        activation: Literal["gelu", "swiglu"] = "gelu",
        dispatch: Dispatch = "dropless",
        capacity_factor: float = 1.25,
        lb_weight: float = 0.01,
        z_weight: float = 1e-4,
        bias_rate: float = 0.0,
        rngs: nnx.Rngs,
    ):
        if dispatch not in DISPATCHES:
            raise ValueError(f"unknown MoE dispatch {dispatch!r}; choose one of {DISPATCHES}")
        if activation not in ("gelu", "swiglu"):
            raise ValueError(f"unknown MoE activation {activation!r}; choose gelu or swiglu")
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"MoE: need 1 <= top_k <= n_experts, got {top_k}, {n_experts}")
        self.n_experts, self.top_k, self.activation = n_experts, top_k, activation
        self.dispatch, self.capacity_factor = dispatch, capacity_factor
        self.lb_weight, self.z_weight, self.bias_rate = lb_weight, z_weight, bias_rate
        self.router = param(
            nnx.initializers.lecun_normal()(rngs.params(), (dim, n_experts), jnp.float32),
            ("embed", None),
        )
        self.router_bias = RouterBias(jnp.zeros((n_experts,), jnp.float32))
        w = lambda shape, axes: param(_expert_init(axes)(rngs.params(), shape, jnp.float32), axes)
        self.w_up = w((n_experts, dim, hidden), ("expert", "embed", "mlp"))
        self.w_gate = (
            w((n_experts, dim, hidden), ("expert", "embed", "mlp"))
            if activation == "swiglu"
            else None
        )
        self.w_down = w((n_experts, hidden, dim), ("expert", "mlp", "embed"))

    # ------------------------------------------------------------------ routing

    def route(self, x: Float[Array, "t d"]):
        """(logits (T, E) fp32, expert ids (T, k), gates (T, k) fp32) for flat tokens."""
        logits = x.astype(jnp.float32) @ self.router[...].astype(jnp.float32)
        scores = logits + jax.lax.stop_gradient(self.router_bias[...])[None]
        _, idx = jax.lax.top_k(scores, self.top_k)
        gates = jax.nn.softmax(jnp.take_along_axis(logits, idx, axis=-1), axis=-1)
        return logits, idx, gates

    # ------------------------------------------------------------------ experts

    def _act(self, x, up, gate):
        if self.activation == "swiglu":
            return jax.nn.silu(gate(x)) * up(x)
        return jax.nn.gelu(up(x), approximate=False)

    def _experts_batched(self, xe):  # (E, C, d) -> (E, C, d)
        dt = xe.dtype
        mm = lambda w: lambda v: jnp.einsum("ecd,edh->ech", v, w[...].astype(dt))
        h = self._act(xe, mm(self.w_up), mm(self.w_gate) if self.w_gate is not None else None)
        return jnp.einsum("ech,ehd->ecd", h, self.w_down[...].astype(dt))

    def _experts_ragged(self, xs, group_sizes):  # (M, d) sorted by expert -> (M, d)
        dt = xs.dtype
        mm = lambda w: lambda v: jax.lax.ragged_dot(v, w[...].astype(dt), group_sizes)
        h = self._act(xs, mm(self.w_up), mm(self.w_gate) if self.w_gate is not None else None)
        return jax.lax.ragged_dot(h, self.w_down[...].astype(dt), group_sizes)

    # ------------------------------------------------------------------ dispatch

    def _dense(self, x, idx, gates):
        combine = jnp.sum(
            jax.nn.one_hot(idx, self.n_experts, dtype=jnp.float32) * gates[..., None], axis=1
        )  # (T, E)
        out = self._experts_batched(jnp.broadcast_to(x[None], (self.n_experts,) + x.shape))
        return jnp.einsum("te,etd->td", combine.astype(x.dtype), out), jnp.zeros((), jnp.float32)

    def _dropless(self, x, idx, gates):
        t, k = idx.shape
        flat = idx.reshape(-1)  # token-major (token, rank) pairs
        order = jnp.argsort(flat, stable=True)
        token = order // k
        group_sizes = jnp.bincount(flat, length=self.n_experts).astype(jnp.int32)
        out = self._experts_ragged(x[token], group_sizes)
        w = gates.reshape(-1)[order].astype(x.dtype)
        y = jnp.zeros_like(x).at[token].add(out * w[:, None])
        return y, jnp.zeros((), jnp.float32)

    def _capacity(self, x, idx, gates):
        t, k = idx.shape
        e = self.n_experts
        c = capacity(t, e, k, self.capacity_factor)
        onehot = jax.nn.one_hot(idx, e, dtype=jnp.int32)  # (T, k, E)
        # priority: rank-major (all first choices, then all second...), token order inside
        prio = jnp.swapaxes(onehot, 0, 1).reshape(k * t, e)
        pos = jnp.sum((jnp.cumsum(prio, axis=0) - 1) * prio, axis=-1)  # slot of each choice
        pos = jnp.swapaxes(pos.reshape(k, t), 0, 1)  # (T, k)
        keep = pos < c
        slot = jax.nn.one_hot(jnp.where(keep, pos, c), c, dtype=jnp.float32)  # c -> all zero
        dispatch = jnp.einsum("tke,tkc->tec", onehot.astype(jnp.float32), slot)
        combine = jnp.einsum("tke,tkc,tk->tec", onehot.astype(jnp.float32), slot, gates)
        xe = jnp.einsum("tec,td->ecd", dispatch.astype(x.dtype), x)
        if _expert_axis_size() > 1:
            xe = jax.lax.with_sharding_constraint(xe, PartitionSpec("expert", None, None))
        out = self._experts_batched(xe)
        if _expert_axis_size() > 1:
            out = jax.lax.with_sharding_constraint(out, PartitionSpec("expert", None, None))
        y = jnp.einsum("tec,ecd->td", combine.astype(x.dtype), out)
        return y, jnp.mean((~keep).astype(jnp.float32))

    # ------------------------------------------------------------------ call

    def __call__(
        self, x: Float[Array, "... d"], *, deterministic: bool = True, rngs: nnx.Rngs | None = None
    ) -> Float[Array, "... d"]:
        """Routes every token to its top-k experts; records losses and load metrics."""
        del rngs
        shape = x.shape
        xf = x.reshape(-1, shape[-1])
        logits, idx, gates = self.route(xf)
        e, k = self.n_experts, self.top_k
        y, dropped = {"dense": self._dense, "dropless": self._dropless, "capacity": self._capacity}[
            self.dispatch
        ](xf, idx, gates)

        if self.lb_weight:
            record_aux_loss(self, "load_balance", self.lb_weight * balance_loss(logits, idx))
        if self.z_weight:
            record_aux_loss(self, "router_z", self.z_weight * router_z_loss(logits))
        load = routed_fraction(idx, e) * (e / k)  # 1.0 per expert when balanced
        record_metric(self, "max_load", jnp.max(load))
        record_metric(self, "min_load", jnp.min(load))
        record_metric(self, "dropped_frac", dropped)
        if self.bias_rate and not deterministic:
            self.router_bias[...] = self.router_bias[...] + self.bias_rate * jnp.sign(
                jnp.mean(load) - load
            )
        return y.reshape(shape).astype(x.dtype)


def _as_top_k(idx: jax.Array, caller: str) -> jax.Array:
    """Expert ids as (T, k): a 1-D (T,) array is top-1 routing.

    Without this, a (T,) array one-hot encodes to (T, E) and the sum over the "k" axis runs
    over experts instead, so every token counts once for every expert.
    """
    if idx.ndim == 1:
        return idx[:, None]
    if idx.ndim != 2:
        raise ValueError(f"{caller}: expert ids must be (T,) or (T, k), got shape {idx.shape}")
    return idx


def routed_fraction(idx: jax.Array, n_experts: int) -> jax.Array:
    """f_e: fraction of tokens whose top-k (idx, (T, k), or (T,) for top-1) includes expert e;
    sums to k."""
    idx = _as_top_k(idx, "routed_fraction")
    return jnp.mean(jnp.sum(jax.nn.one_hot(idx, n_experts, dtype=jnp.float32), axis=1), axis=0)


def balance_loss(logits: Float[Array, "t e"], idx: jax.Array) -> jax.Array:
    """Unweighted Switch load-balancing loss E · sum_e f_e P_e; k at perfect balance.

    f comes from the routing decisions (no gradient); the gradient flows through P, the
    mean router probability. ``idx`` is (T, k), or (T,) for top-1 routing (Switch).

    Raises:
      ValueError: logits not (T, E), or expert ids not (T,) / (T, k) for the same T.
    """
    if logits.ndim != 2:
        raise ValueError(f"balance_loss: logits must be (T, E), got shape {logits.shape}")
    idx = _as_top_k(idx, "balance_loss")
    if idx.shape[0] != logits.shape[0]:
        raise ValueError(
            f"balance_loss: expert ids of shape {idx.shape} do not match logits of shape "
            f"{logits.shape} (need the same number of tokens T)"
        )
    e = logits.shape[-1]
    p = jnp.mean(jax.nn.softmax(logits.astype(jnp.float32), axis=-1), axis=0)
    return e * jnp.sum(routed_fraction(idx, e) * p)


def router_z_loss(logits: Float[Array, "t e"]) -> jax.Array:
    """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2."""
    return jnp.mean(jnp.square(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)))
