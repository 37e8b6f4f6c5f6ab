"""The TCLR objective, batched.

Dave, Gupta, Rizve, Shah, "TCLR: Temporal Contrastive Learning for Video Representation",
CVIU 219, 103406, 2022 (arXiv 2101.07974); the method facts are in TCLR_SPEC.md section 5.

Four terms, each with the authors' release's normalisation so that the numbers match it:
- ``ic_global``: instance contrast (SimCLR NT-Xent) between the two augmentations of the global
  (sparse) clip.
- ``ic_local``: NT-Xent over every ordered pair of distinct dense clips (2K clips per video),
  summed and divided by 4 = V * V (see ``ic_local``).
- ``local_local``: per video, NT-Xent over its K dense clips across the two augmentations, summed
  (not averaged) over videos.
- ``global_local``: per video, the K timesteps of the global clip against the K dense clips, both
  directions, summed over the 4 (augmentation, augmentation) combinations.

The release loops in Python over clip pairs and videos; here every term is one batched tensor
computation. All terms rest on two private kernels with leading group dimensions:
``_pairwise_nt_xent`` (every NT-Xent: ic_global, ic_local, local_local) and
``_global_local_batched``.

Inputs are expected to be L2-normalised already (the projection head ends with a normalisation);
they are NOT renormalised here, so the similarity is the plain dot product, as in the release
(its NT-Xent uses ``use_cosine_similarity=False``).

Logits are always computed in float32 (float64 inputs stay float64), with autocast disabled, so
that ``exp(sim / 0.1)`` never runs in float16/bfloat16. This deliberately differs from the
release, which ran its losses inside autocast.
"""

import math

import torch

# Names of the loss terms, in the order they are computed and reported.
TERM_NAMES = ("ic_global", "ic_local", "local_local", "global_local")

# Number of augmentations per clip. ic_global and local_local contrast view 0 with view 1.
NUM_VIEWS = 2


def _logit_dtype(dtype):
    """The dtype logits are computed in: float64 stays, anything else becomes float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _logit_dtype_input(z):
    """Return z cast to ``_logit_dtype`` (a no-op for float32/float64 inputs)."""
    return z.to(_logit_dtype(z.dtype))


def _autocast_off(device):
    """A context manager that disables autocast on ``device``'s type."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_temperature(temperature):
    if not temperature > 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be a finite positive number, got {temperature!r}")


def _pairwise_nt_xent(x, temperature):
    """NT-Xent (SimCLR) between every two of C sets of N instances, for G groups at once.

    NT-Xent(a, b) for two [N, D] sets: stack the 2N vectors; row n's positive is its partner in
    the other set; its negatives are the other 2N - 2 vectors; cross-entropy over (positive,
    negatives) / temperature, summed over the 2N rows and divided by 2N. Every term of TCLR that
    uses NT-Xent is built from this one kernel.

    One similarity matrix per group serves all pairs of sets: the softmax denominator of row
    (c, n) in NT-Xent(x[c], x[c']) is logaddexp(own, cross), where own is the log-sum-exp over its
    own set (without itself) and cross the log-sum-exp over set c'. That split gives the half of
    the loss carried by the rows of set c:

        H[g, c, c'] = sum_n (logaddexp(own[c, n], cross[c, n, c']) - sim(x[c, n], x[c', n])) / 2N

    Args:
        x: [G, C, N, D] G groups of C sets of N representations; x[g, c, n] and x[g, c', n] are
            positives of each other.
        temperature: softmax temperature (> 0).

    Returns:
        [G, C, C] H with NT-Xent(x[g, c], x[g, c']) = H[g, c, c'] + H[g, c', c] for c != c', and
        H[g, c, c] = 0. Logit dtype (float32 or float64).
    """
    groups, sets, num, dim = x.shape
    with _autocast_off(x.device):
        flat = _logit_dtype_input(x).reshape(groups, sets * num, dim)  # [G, CN, D]
        # Scaling the [CN, D] operand is cheaper than dividing the [CN, CN] product.
        sim = torch.bmm(flat / temperature, flat.transpose(1, 2))  # [G, CN, CN]
        # A row is never its own negative. The finite fill (not -inf) keeps the log-sum-exp of a
        # set of N = 1 (nothing but itself) finite, so no NaN appears in backward; exp() of it
        # underflows to exactly 0 next to any real logit.
        self_mask = torch.eye(sets * num, dtype=torch.bool, device=x.device)  # [CN, CN]
        masked = sim.masked_fill(self_mask, torch.finfo(sim.dtype).min)
        lse = torch.logsumexp(masked.view(groups, sets, num, sets, num), dim=4)  # [G, C, N, C']
        own = lse.diagonal(dim1=1, dim2=3).transpose(1, 2)  # [G, C, N]
        positive = sim.view(groups, sets, num, sets, num).diagonal(dim1=2, dim2=4)  # [G, C, C', N]
        rows = torch.logaddexp(own[:, :, None, :], lse.transpose(2, 3)) - positive  # [G, C, C', N]
        same_set = torch.eye(sets, dtype=torch.bool, device=x.device)  # [C, C']
        return rows.sum(dim=3).masked_fill(same_set, 0.0) / (2 * num)  # [G, C, C']


def _nt_xent_pairs(z_a, z_b, temperature):
    """NT-Xent(z_a[g], z_b[g]) for G groups: [G, N, D] each -> [G]."""
    half = _pairwise_nt_xent(torch.stack([z_a, z_b], dim=1), temperature)  # [G, 2, 2]
    return half[:, 0, 1] + half[:, 1, 0]  # [G]


def _global_local_batched(local_sparse, global_dense, temperature):
    """Global-local temporal contrast, with any leading dimensions broadcast.

    Per video: S = L G^T ([K, K]); the rows of S and the rows of S^T are classified with target
    k for row k; cross-entropy of S / temperature summed over the 2K rows of every video and
    divided by 2B.

    Args:
        local_sparse: [..., B, K, D] L, the K timestep representations of a global clip.
        global_dense: [..., B, K, D] G, the pooled representations of the K dense clips.
        temperature: softmax temperature (> 0).

    Returns:
        [...] the loss of each (broadcast) leading index.
    """
    num_videos = local_sparse.shape[-3]
    with _autocast_off(local_sparse.device):
        lsr = _logit_dtype_input(local_sparse)
        gdr = _logit_dtype_input(global_dense)
        sim = torch.matmul(lsr / temperature, gdr.transpose(-1, -2))  # [..., B, K, K]
        target = sim.diagonal(dim1=-2, dim2=-1)  # [..., B, K]
        rows = torch.logsumexp(sim, dim=-1) - target  # [..., B, K], rows of S
        cols = torch.logsumexp(sim, dim=-2) - target  # [..., B, K], rows of S^T
        return (rows + cols).sum(dim=(-2, -1)) / (2 * num_videos)  # [...]


def _check_same_shape(name_a, a, name_b, b, ndim):
    if a.dim() != ndim or a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must both have {ndim} dimensions and the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.numel() == 0:
        raise ValueError(f"{name_a} and {name_b} must not be empty, got shape {tuple(a.shape)}")


def nt_xent(z_a, z_b, temperature=0.1):
    """SimCLR NT-Xent between two sets of N representations.

    With N = 1 there are no negatives and the loss is exactly 0.

    Args:
        z_a: [N, D] L2-normalised representations (not renormalised here).
        z_b: [N, D] their positives, in the same order.
        temperature: softmax temperature (> 0).

    Returns:
        0-dim tensor: the cross-entropy summed over the 2N rows and divided by 2N.
    """
    _check_same_shape("z_a", z_a, "z_b", z_b, ndim=2)
    _check_temperature(temperature)
    return _nt_xent_pairs(z_a[None], z_b[None], temperature)[0]


def local_local(dense_a, dense_b, temperature=0.1):
    """Local-local temporal contrast, summed over videos (the release's normalisation).

    For each video b: NT-Xent(dense_a[b], dense_b[b]) with N = K; the positive of a dense clip is
    the same dense clip in the other augmentation, the negatives the video's other dense clips.

    Args:
        dense_a: [B, K, D] the K dense clips of each video, first augmentation.
        dense_b: [B, K, D] the same clips, second augmentation.
        temperature: softmax temperature (> 0).

    Returns:
        0-dim tensor: the sum over the B videos (no division by B).
    """
    _check_same_shape("dense_a", dense_a, "dense_b", dense_b, ndim=3)
    _check_temperature(temperature)
    return _nt_xent_pairs(dense_a, dense_b, temperature).sum()


def global_local(local_sparse, global_dense, temperature=0.1):
    """Global-local temporal contrast for one (global-clip view, dense-clips view) combination.

    Args:
        local_sparse: [B, K, D] timestep representations of the global clip.
        global_dense: [B, K, D] pooled representations of the K dense clips.
        temperature: softmax temperature (> 0).

    Returns:
        0-dim tensor: cross-entropy over the 2BK rows of S and S^T, summed and divided by 2B.
    """
    _check_same_shape("local_sparse", local_sparse, "global_dense", global_dense, ndim=3)
    _check_temperature(temperature)
    return _global_local_batched(local_sparse, global_dense, temperature)


def ic_local(dense_global, temperature=0.1):
    """Instance contrast over the local (dense) clips.

    Sum of NT-Xent(dense[v][:, k], dense[v'][:, k']) over every ordered pair of distinct clips
    (v, k) != (v', k'), divided by V * V = 4. The release divides by a literal 4 commented
    "scaling over ii and jj", its loops over the two views, so the divisor counts the (view,
    view) combinations and does NOT depend on K (it is not K; both are 4 in the release).

    All V K clips form the C sets of one ``_pairwise_nt_xent`` group, so the V K (V K - 1)
    NT-Xent values (56 at V = 2, K = 4) come from a single [V K B, V K B] similarity matrix.

    Args:
        dense_global: [V, B, K, D] pooled representations of every dense clip (V = 2 in TCLR).
        temperature: softmax temperature (> 0).

    Returns:
        0-dim tensor.
    """
    if dense_global.dim() != 4 or dense_global.numel() == 0:
        raise ValueError(f"dense_global must be a non-empty [V, B, K, D], got "
                         f"{tuple(dense_global.shape)}")
    _check_temperature(temperature)
    views, num_videos, num_clips, dim = dense_global.shape
    # [1, VK, B, D], clip (v, k) is set v * K + k.
    clips = dense_global.permute(0, 2, 1, 3).reshape(1, views * num_clips, num_videos, dim)
    half = _pairwise_nt_xent(clips, temperature)[0]  # [VK, VK], zero diagonal
    # Ordered pairs: sum over (c, c') of H[c, c'] + H[c', c] = 2 * sum of H.
    return 2.0 * half.sum() / (views * views)


def resolve_weights(weights=None):
    """Complete a term-weight mapping with the release's defaults (1.0 for every term).

    Args:
        weights: None or a dict mapping some of ``TERM_NAMES`` to non-negative floats.

    Returns:
        dict mapping every name of ``TERM_NAMES`` to a float.

    Raises:
        ValueError: an unknown term name, a negative or non-finite weight, or all weights 0.
    """
    resolved = dict.fromkeys(TERM_NAMES, 1.0)
    for name, value in (weights or {}).items():
        if name not in resolved:
            raise ValueError(
                f"unknown loss weight {name!r}; valid names are {', '.join(TERM_NAMES)}"
            )
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"loss weight {name!r} must be finite and >= 0, got {value!r}")
        resolved[name] = value
    if not any(resolved.values()):
        raise ValueError(f"all loss weights are 0, nothing to optimise: {resolved}")
    return resolved


def _check_tclr_shapes(sparse_global, sparse_local, dense_global):
    """Check the three model outputs against [V, B, D], [V, B, K, D], [V, B, K, D]."""
    shapes = (
        f"sparse_global {tuple(sparse_global.shape)}, sparse_local {tuple(sparse_local.shape)}, "
        f"dense_global {tuple(dense_global.shape)}"
    )
    if sparse_global.dim() != 3 or sparse_local.dim() != 4 or dense_global.dim() != 4:
        raise ValueError(f"expected [V, B, D], [V, B, K, D], [V, B, K, D]; got {shapes}")
    if sparse_local.shape != dense_global.shape:
        raise ValueError(f"sparse_local and dense_global must have the same shape; got {shapes}")
    views, num_videos, _, dim = dense_global.shape
    if sparse_global.shape != (views, num_videos, dim):
        raise ValueError(f"sparse_global must be [V, B, D] matching the others; got {shapes}")
    if views != NUM_VIEWS:
        raise ValueError(f"TCLR contrasts V = {NUM_VIEWS} augmentations; got {shapes}")
    if dense_global.numel() == 0:
        raise ValueError(f"empty inputs; got {shapes}")


def tclr_loss(sparse_global, sparse_local, dense_global, temperature=0.1, weights=None):
    """The full TCLR objective with the release's normalisation, batched.

    A term whose weight is 0 is not computed; it is reported as a 0 tensor (not its value), so
    the paper's ablations (IC only, IC + LL, IC + GL, all) cost only what they use.

    Args:
        sparse_global: [V=2, B, D] global representation of the global (sparse) clip per view.
        sparse_local: [V, B, K, D] its K timestep (local) representations per view.
        dense_global: [V, B, K, D] global representations of the K dense clips per view.
        temperature: softmax temperature of every term (> 0).
        weights: dict of term name -> weight, missing names = 1.0 (see ``resolve_weights``).

    Returns:
        dict of 0-dim tensors: "ic_global", "ic_local", "local_local", "global_local" (unweighted
        term values) and "total" = sum of weight * term.
    """
    _check_tclr_shapes(sparse_global, sparse_local, dense_global)
    _check_temperature(temperature)
    resolved = resolve_weights(weights)
    compute = {
        "ic_global": lambda: nt_xent(sparse_global[0], sparse_global[1], temperature),
        "ic_local": lambda: ic_local(dense_global, temperature),
        "local_local": lambda: local_local(dense_global[0], dense_global[1], temperature),
        # All V x V (view of the global clip, view of the dense clips) combinations at once.
        "global_local": lambda: _global_local_batched(
            sparse_local[:, None], dense_global[None], temperature
        ).sum(),  # [V, V] -> sum
    }
    zero = torch.zeros((), dtype=_logit_dtype(dense_global.dtype), device=dense_global.device)
    terms = {}
    total = zero
    for name in TERM_NAMES:
        if resolved[name] == 0:
            terms[name] = zero
            continue
        terms[name] = compute[name]()
        total = total + resolved[name] * terms[name]
    terms["total"] = total
    return terms
