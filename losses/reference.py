"""Loop reference of the TCLR objective with the release's cost structure (for benchmarks).

One NT-Xent call per ordered pair of dense clips (56 at K = 4), one per video for the local-local
term, one global-local call per view combination, each call building its own masks and labels,
as the authors' release does. It computes the same numbers as ``losses.tclr_loss`` (all weights
1) and exists only to measure what batching buys (scripts/bench_losses.py) and as a second
cross-check in the tests. Do not train with it.
"""

import torch
import torch.nn.functional as F



def reference_nt_xent(z_a, z_b, temperature):
    """NT-Xent of two [N, D] sets, one call, logits as (positive, negatives) columns.

    Returns:
        0-dim tensor.
    """
    num = z_a.shape[0]
    z = torch.cat([z_a, z_b], dim=0)  # [2N, D]
    sim = z @ z.t()  # [2N, 2N]
    partner = torch.eye(2 * num, dtype=torch.bool, device=z.device).roll(num, dims=1)
    keep = ~(partner | torch.eye(2 * num, dtype=torch.bool, device=z.device))
    positives = sim[partner].view(2 * num, 1)  # [2N, 1]
    negatives = sim[keep].view(2 * num, 2 * num - 2)  # [2N, 2N - 2]
    logits = torch.cat([positives, negatives], dim=1) / temperature  # [2N, 2N - 1]
    labels = torch.zeros(2 * num, dtype=torch.long, device=z.device)
    return F.cross_entropy(logits, labels, reduction="sum") / (2 * num)


def reference_global_local(local_sparse, global_dense, temperature):
    """Global-local term for one view combination: [B, K, D] each -> 0-dim tensor."""
    num_videos, num_clips, _ = local_sparse.shape
    sim = torch.bmm(local_sparse, global_dense.transpose(1, 2))  # [B, K, K]
    sim = torch.cat([sim, sim.transpose(1, 2)], dim=0).reshape(-1, num_clips)  # [2BK, K]
    labels = torch.tensor(list(range(num_clips)) * 2 * num_videos, device=sim.device)
    return F.cross_entropy(sim / temperature, labels, reduction="sum") / (2 * num_videos)


def reference_tclr_loss(sparse_global, sparse_local, dense_global, temperature=0.1):
    """All four terms with Python loops; same layouts and keys as ``losses.tclr_loss``.

    Returns:
        dict of 0-dim tensors "ic_global", "ic_local", "local_local", "global_local", "total".
    """
    views, num_videos, num_clips, _ = dense_global.shape
    ic_global = reference_nt_xent(sparse_global[0], sparse_global[1], temperature)
    ic_local = 0.0
    for view_a in range(views):
        for view_b in range(views):
            for clip_a in range(num_clips):
                for clip_b in range(num_clips):
                    if view_a == view_b and clip_a == clip_b:
                        continue
                    ic_local = ic_local + reference_nt_xent(
                        dense_global[view_a][:, clip_a], dense_global[view_b][:, clip_b],
                        temperature,
                    )
    ic_local = ic_local / (views * views)  # the release's "/= 4", V = 2
    local_local = 0.0
    for video in range(num_videos):
        local_local = local_local + reference_nt_xent(
            dense_global[0][video], dense_global[1][video], temperature
        )
    global_local = 0.0
    for view_a in range(views):
        for view_b in range(views):
            global_local = global_local + reference_global_local(
                sparse_local[view_a], dense_global[view_b], temperature
            )
    terms = {
        "ic_global": ic_global,
        "ic_local": ic_local,
        "local_local": local_local,
        "global_local": global_local,
    }
    terms["total"] = ic_global + ic_local + local_local + global_local
    return terms
