"""Known-answer tests for the TCLR losses (spec section 5).

The ground truth is the slow loop implementation below, written straight from the spec's
sentences, one row of one cross-entropy at a time. losses/reference.py (the release-structured
benchmark reference) is checked against it too, but is not the ground truth.
"""

import math

import pytest
import torch
import torch.nn.functional as F

import losses
import losses.tclr
from losses.reference import reference_tclr_loss

TERMS = ("ic_global", "ic_local", "local_local", "global_local")


# ----------------------------------------------------------------------------------------------
# Obviously correct loop references (spec section 5, sentence by sentence).
# ----------------------------------------------------------------------------------------------
def row_cross_entropy(logits, target):
    """-log softmax(logits)[target] for one row of logits [C]."""
    return -torch.log_softmax(logits, dim=0)[target]


def loop_nt_xent(z_a, z_b, tau):
    """Stack the 2N vectors; positive of row n = its partner in the other set; negatives = the
    other 2N - 2; cross-entropy over (positive, negatives) / tau, summed over 2N rows, / 2N."""
    n = z_a.shape[0]
    z = list(z_a) + list(z_b)
    total = 0.0
    for i in range(2 * n):
        partner = i + n if i < n else i - n
        negatives = [j for j in range(2 * n) if j not in (i, partner)]
        logits = torch.stack([z[i] @ z[partner]] + [z[i] @ z[j] for j in negatives]) / tau
        total = total + row_cross_entropy(logits, 0)
    return total / (2 * n)


def loop_ic_local(dense, tau):
    """Every ordered pair ((v,k), (v',k')) of the 2K dense clips, (v,k) != (v',k'); sum / 4."""
    views, _, num_clips, _ = dense.shape
    clips = [(v, k) for v in range(views) for k in range(num_clips)]
    total = 0.0
    for v, k in clips:
        for w, j in clips:
            if (v, k) != (w, j):
                total = total + loop_nt_xent(dense[v][:, k], dense[w][:, j], tau)
    return total / 4


def loop_local_local(dense_a, dense_b, tau):
    """Per video, NT-Xent over its K dense clips; summed over videos."""
    return sum(loop_nt_xent(dense_a[b], dense_b[b], tau) for b in range(dense_a.shape[0]))


def loop_global_local(local_sparse, global_dense, tau):
    """S = L G^T per video; rows of S and rows of S^T, target k; CE / tau summed, / 2B."""
    num_videos, num_clips, _ = local_sparse.shape
    total = 0.0
    for b in range(num_videos):
        sim = [[local_sparse[b, i] @ global_dense[b, j] for j in range(num_clips)]
               for i in range(num_clips)]
        for k in range(num_clips):
            row = torch.stack([sim[k][j] for j in range(num_clips)]) / tau
            col = torch.stack([sim[i][k] for i in range(num_clips)]) / tau
            total = total + row_cross_entropy(row, k) + row_cross_entropy(col, k)
    return total / (2 * num_videos)


def loop_tclr(sparse_global, sparse_local, dense_global, tau):
    terms = {
        "ic_global": loop_nt_xent(sparse_global[0], sparse_global[1], tau),
        "ic_local": loop_ic_local(dense_global, tau),
        "local_local": loop_local_local(dense_global[0], dense_global[1], tau),
        "global_local": sum(
            loop_global_local(sparse_local[v], dense_global[w], tau)
            for v in range(2) for w in range(2)
        ),
    }
    terms["total"] = sum(terms[name] for name in TERMS)
    return terms


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def unit(*shape, seed, dtype=torch.float64):
    """Random L2-normalised leaf tensor that requires grad."""
    gen = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(*shape, generator=gen, dtype=dtype), dim=-1)
    return z.requires_grad_()


def model_outputs(num_videos, num_clips, dim=8, seed=0, dtype=torch.float64):
    """(sparse_global [2,B,D], sparse_local [2,B,K,D], dense_global [2,B,K,D])."""
    return (
        unit(2, num_videos, dim, seed=seed, dtype=dtype),
        unit(2, num_videos, num_clips, dim, seed=seed + 1, dtype=dtype),
        unit(2, num_videos, num_clips, dim, seed=seed + 2, dtype=dtype),
    )


def grads(value, inputs):
    """d value / d inputs, zeros for inputs the value does not depend on."""
    got = torch.autograd.grad(value, inputs, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(got, inputs)]


def assert_close(actual, expected, tol=1e-6):
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------
# Batched == loop, forward and gradients, float64.
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "num_videos,num_clips,tau",
    [(1, 2, 0.1), (2, 4, 0.1), (3, 2, 0.1), (5, 4, 0.1), (3, 3, 0.1), (2, 4, 0.5)],
)
def test_tclr_loss_matches_loop(num_videos, num_clips, tau):
    inputs = model_outputs(num_videos, num_clips, seed=10 * num_videos + num_clips)
    got = losses.tclr_loss(*inputs, temperature=tau)
    want = loop_tclr(*inputs, tau)
    assert set(got) == set(TERMS) | {"total"}
    for name in got:
        assert got[name].dim() == 0
        assert_close(got[name], want[name])
        for g_got, g_want in zip(grads(got[name], inputs), grads(want[name], inputs)):
            assert_close(g_got, g_want)


@pytest.mark.parametrize("num", [1, 2, 3, 7])
@pytest.mark.parametrize("tau", [0.1, 0.3])
def test_nt_xent_matches_loop(num, tau):
    z_a, z_b = unit(num, 16, seed=num), unit(num, 16, seed=num + 100)
    got, want = losses.nt_xent(z_a, z_b, tau), loop_nt_xent(z_a, z_b, tau)
    assert_close(got, want)
    for g_got, g_want in zip(grads(got, [z_a, z_b]), grads(want, [z_a, z_b])):
        assert_close(g_got, g_want)


@pytest.mark.parametrize("num_videos,num_clips", [(1, 4), (3, 2), (5, 4)])
def test_public_terms_match_loop(num_videos, num_clips):
    _, sparse_local, dense = model_outputs(num_videos, num_clips, seed=7)
    pairs = [
        (losses.local_local(dense[0], dense[1]), loop_local_local(dense[0], dense[1], 0.1)),
        (losses.global_local(sparse_local[1], dense[0]),
         loop_global_local(sparse_local[1], dense[0], 0.1)),
        (losses.ic_local(dense), loop_ic_local(dense, 0.1)),
    ]
    for got, want in pairs:
        assert_close(got, want)
        inputs = [sparse_local, dense]
        for g_got, g_want in zip(grads(got, inputs), grads(want, inputs)):
            assert_close(g_got, g_want)


@pytest.mark.parametrize("num_videos,num_clips", [(1, 2), (3, 4)])
def test_release_structured_reference_matches_loop(num_videos, num_clips):
    inputs = model_outputs(num_videos, num_clips, seed=3)
    got, want = reference_tclr_loss(*inputs), loop_tclr(*inputs, 0.1)
    for name in want:
        assert_close(got[name], want[name])


def test_gradcheck_small():
    inputs = model_outputs(2, 2, dim=3, seed=5)
    assert torch.autograd.gradcheck(lambda *x: losses.tclr_loss(*x)["total"], inputs)


# ----------------------------------------------------------------------------------------------
# Hand-computed values.
# ----------------------------------------------------------------------------------------------
E1 = torch.tensor([1.0, 0.0], dtype=torch.float64)
E2 = torch.tensor([0.0, 1.0], dtype=torch.float64)


def test_nt_xent_single_pair_is_zero():
    # N = 1: the softmax has only the positive, so every row's cross-entropy is log(1) = 0.
    z_a, z_b = unit(1, 8, seed=1), unit(1, 8, seed=2)
    loss = losses.nt_xent(z_a, z_b)
    assert loss.item() == 0.0
    assert all(torch.all(g == 0) for g in torch.autograd.grad(loss, [z_a, z_b]))


def test_nt_xent_two_pairs_by_hand():
    tau = 0.1
    same = torch.stack([E1, E2])
    # Positives identical (sim 1), the 2 negatives orthogonal (sim 0): every row
    # -log(e^(1/tau) / (e^(1/tau) + 2)).
    want = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert losses.nt_xent(same, same, tau).item() == pytest.approx(want, abs=1e-12)
    # All four vectors identical: three equal logits per row -> log 3.
    ones = torch.stack([E1, E1])
    assert losses.nt_xent(ones, ones, tau).item() == pytest.approx(math.log(3), abs=1e-12)
    # Positive orthogonal (0), one negative identical (1/tau), one orthogonal (0).
    want = -math.log(1 / (2 + math.exp(1 / tau)))
    assert losses.nt_xent(same, same.flip(0), tau).item() == pytest.approx(want, abs=1e-12)


def test_temperature_is_used():
    same = torch.stack([E1, E2])
    for tau in (0.05, 0.5, 2.0):
        want = math.log(1 + 2 * math.exp(-1 / tau))
        assert losses.nt_xent(same, same, tau).item() == pytest.approx(want, abs=1e-12)
    with pytest.raises(ValueError, match="temperature"):
        losses.nt_xent(same, same, 0.0)


def test_global_local_by_hand():
    # One video, K = 2, L = G = [e1, e2]: S = I, each of the 4 rows
    # -log(e^(1/tau) / (e^(1/tau) + 1)); sum / (2B) with B = 1.
    tau = 0.1
    clips = torch.stack([E1, E2])[None]  # [1, 2, 2]
    want = 4 * math.log(1 + math.exp(-1 / tau)) / 2
    assert losses.global_local(clips, clips, tau).item() == pytest.approx(want, abs=1e-12)
    # K = 1: a single logit per row, loss 0.
    assert losses.global_local(clips[:, :1], clips[:, :1], tau).item() == 0.0


def test_local_local_sums_over_videos():
    # Three identical videos with K = 2 orthogonal clips: the per-video NT-Xent, times 3.
    tau = 0.1
    dense = torch.stack([E1, E2])[None].repeat(3, 1, 1)  # [3, 2, 2]
    want = 3 * math.log(1 + 2 * math.exp(-1 / tau))
    assert losses.local_local(dense, dense, tau).item() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("num_videos,num_clips", [(3, 4), (2, 2), (4, 3)])
def test_ic_local_divisor_is_four_for_any_k(num_videos, num_clips):
    # All vectors identical: each NT-Xent is log(2B - 1) (2B - 1 equal logits). There are
    # 2K (2K - 1) ordered pairs and the sum is divided by 4 (= V x V, the release's "scaling over
    # ii and jj"), whatever K: at K = 4 that is 56 / 4 = 14 NT-Xent values.
    dense = E1.repeat(2, num_videos, num_clips, 1)  # [2, B, K, 2]
    pairs = 2 * num_clips * (2 * num_clips - 1)
    want = pairs / 4 * math.log(2 * num_videos - 1)
    assert losses.ic_local(dense).item() == pytest.approx(want, abs=1e-9)


def test_inputs_are_not_renormalised():
    z_a, z_b = unit(3, 4, seed=1), unit(3, 4, seed=2)
    scaled = losses.nt_xent(2 * z_a, 2 * z_b)
    assert_close(scaled, loop_nt_xent(2 * z_a, 2 * z_b, 0.1))
    assert abs(scaled.item() - losses.nt_xent(z_a, z_b).item()) > 1e-3


# ----------------------------------------------------------------------------------------------
# Weights.
# ----------------------------------------------------------------------------------------------
def test_total_is_weighted_sum():
    inputs = model_outputs(3, 4, seed=11)
    weights = {"ic_global": 0.5, "ic_local": 2.0, "local_local": 1.0, "global_local": 3.0}
    got = losses.tclr_loss(*inputs, weights=weights)
    plain = losses.tclr_loss(*inputs)
    for name in TERMS:
        assert_close(got[name], plain[name])
    assert_close(got["total"], sum(weights[name] * plain[name] for name in TERMS))
    # Missing names default to 1.
    partial = losses.tclr_loss(*inputs, weights={"ic_local": 2.0})
    assert_close(partial["total"], plain["total"] + plain["ic_local"])


@pytest.mark.parametrize("dropped", TERMS)
def test_zero_weight_drops_term(dropped, monkeypatch):
    inputs = model_outputs(2, 4, seed=12)
    plain = losses.tclr_loss(*inputs)
    # A dropped term must not be computed at all: make its kernel fail if it is called.
    kernel = {
        "ic_global": "nt_xent", "ic_local": "ic_local",
        "local_local": "local_local", "global_local": "_global_local_batched",
    }[dropped]

    def forbidden(*args, **kwargs):
        raise AssertionError(f"{dropped} was computed with weight 0")

    monkeypatch.setattr(losses.tclr, kernel, forbidden)
    got = losses.tclr_loss(*inputs, weights={dropped: 0.0})
    assert got[dropped].item() == 0.0
    assert_close(got["total"], sum(plain[name] for name in TERMS if name != dropped))
    got["total"].backward()


def test_ablation_ic_only():
    inputs = model_outputs(2, 4, seed=13)
    got = losses.tclr_loss(*inputs, weights={"local_local": 0, "global_local": 0})
    assert_close(got["total"], got["ic_global"] + got["ic_local"])
    assert got["total"].grad_fn is not None
    # sparse_local only feeds the global-local term, so it receives no gradient.
    assert torch.autograd.grad(got["total"], inputs[1], allow_unused=True)[0] is None


def test_bad_weights_raise():
    inputs = model_outputs(2, 2, seed=14)
    with pytest.raises(ValueError, match="ic_global, ic_local, local_local, global_local"):
        losses.tclr_loss(*inputs, weights={"instance": 1.0})
    with pytest.raises(ValueError, match="local_local"):
        losses.tclr_loss(*inputs, weights={"local_local": -1.0})
    with pytest.raises(ValueError, match="all loss weights are 0"):
        losses.tclr_loss(*inputs, weights=dict.fromkeys(TERMS, 0.0))


def test_bad_shapes_raise():
    sparse_global, sparse_local, dense = model_outputs(2, 4, seed=15)
    with pytest.raises(ValueError, match="same shape"):
        losses.tclr_loss(sparse_global, sparse_local[:, :, :3], dense)
    with pytest.raises(ValueError, match="V = 2"):
        losses.tclr_loss(sparse_global.repeat(2, 1, 1), sparse_local.repeat(2, 1, 1, 1),
                         dense.repeat(2, 1, 1, 1))
    with pytest.raises(ValueError, match="sparse_global"):
        losses.tclr_loss(sparse_global[:, :1], sparse_local, dense)
    with pytest.raises(ValueError, match="z_a"):
        losses.nt_xent(sparse_global[0], sparse_global[1, :1])


# ----------------------------------------------------------------------------------------------
# Precision.
# ----------------------------------------------------------------------------------------------
def test_float32_logits_under_autocast():
    inputs = [x.detach().float() for x in model_outputs(8, 4, dim=128, seed=16)]
    plain = losses.tclr_loss(*inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = losses.tclr_loss(*inputs)
        low = losses.tclr_loss(*[x.bfloat16() for x in inputs])
    for name in plain:
        assert mixed[name].dtype == torch.float32 and low[name].dtype == torch.float32
        assert torch.isfinite(mixed[name]) and torch.isfinite(low[name])
        # fp32 inputs: the logits ignore autocast, so the result is the fp32 one.
        assert_close(mixed[name], plain[name], tol=1e-5)
    # bf16 inputs: only the inputs are rounded (3 significant digits); the sum stays close.
    assert low["total"].item() == pytest.approx(plain["total"].item(), rel=2e-2)


def test_float64_kept():
    got = losses.tclr_loss(*model_outputs(2, 2, seed=17))
    assert all(value.dtype == torch.float64 for value in got.values())


@pytest.mark.filterwarnings("ignore:Anomaly Detection has been enabled")
@pytest.mark.parametrize("num_videos,num_clips", [(1, 4), (3, 1)])
def test_single_member_sets_backward_without_nan(num_videos, num_clips):
    # B = 1 (ic_global, ic_local) or K = 1 (local_local, global_local): a set of one vector has
    # nothing but itself to mask. Anomaly mode fails on any NaN produced inside backward.
    inputs = model_outputs(num_videos, num_clips, seed=18)
    with torch.autograd.detect_anomaly():
        total = losses.tclr_loss(*inputs)["total"]
        for grad in torch.autograd.grad(total, inputs):
            assert torch.isfinite(grad).all()
    assert_close(total, loop_tclr(*inputs, 0.1)["total"])
