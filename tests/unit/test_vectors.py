"""Algorithm 1 against a literal reference; vectors' arithmetic, saving, loading and refusals."""

import pytest
import torch

import sas_lens as sl
from sas_lens.errors import IncompatibleSAEError
from sas_lens.steering.build_vectors import dense_vector, sas_from_codes, sas_vector
from sas_lens.steering.vectors import DenseVector, SASVector, load_vector
from tests.helpers import HOOK, random_sae

PAIRS = sl.load_pairs(
    [
        {"prompt": "the movie was", "positive": " good and fun", "negative": " bad"},
        {"prompt": "i", "positive": " love this story", "negative": " hate this boring story ."},
        {"prompt": "the plot of this film was very", "positive": " great", "negative": " awful"},
        {"prompt": "the music", "positive": " was happy", "negative": " was sad"},
    ],
    name="tiny-sentiment",
)


def literal_algorithm_1(pos, neg, tau, mean_over, strict):
    """The paper's steps 3-6, one latent at a time."""
    n, d_sae = pos.shape
    v = torch.zeros(d_sae)
    for c in range(d_sae):
        sides = []
        for codes in (pos, neg):
            active = [float(codes[r, c]) for r in range(n) if codes[r, c] > 0]
            frequency = len(active) / n
            if tau == 0:  # "active in at least 0% of rows" means active at all, not every latent
                kept = len(active) > 0
            else:
                kept = frequency > tau if strict else frequency >= tau
            if mean_over == "all":
                mean = sum(float(codes[r, c]) for r in range(n)) / n
            else:
                mean = sum(active) / max(len(active), 1)
            sides.append((kept, mean if kept else 0.0))
        (kept_pos, v_pos), (kept_neg, v_neg) = sides
        v[c] = 0.0 if (kept_pos and kept_neg) else v_pos - v_neg
    return v


@pytest.mark.parametrize("tau", [0.0, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("mean_over", ["all", "active"])
@pytest.mark.parametrize("strict", [False, True])
def test_sas_from_codes_equals_literal_algorithm(tau, mean_over, strict):
    generator = torch.Generator().manual_seed(0)
    pos = torch.rand(4, 12, generator=generator) * (torch.rand(4, 12, generator=generator) > 0.4)
    neg = torch.rand(4, 12, generator=generator) * (torch.rand(4, 12, generator=generator) > 0.4)
    expected = literal_algorithm_1(pos, neg, tau, mean_over, strict)
    torch.testing.assert_close(sas_from_codes(pos, neg, tau=tau, mean_over=mean_over, strict=strict), expected)


def test_hand_checked_example():
    # latent 0: + side 2/2 active, - side 0/2  -> kept on +: mean 3 -> +3
    # latent 1: active on both sides 2/2         -> common, removed -> 0
    # latent 2: - side only, 1/2 active at tau .5 -> kept on -: mean over all rows (4+0)/2 = 2 -> -2
    pos = torch.tensor([[2.0, 1.0, 0.0], [4.0, 1.0, 0.0]])
    neg = torch.tensor([[0.0, 5.0, 4.0], [0.0, 5.0, 0.0]])
    assert sas_from_codes(pos, neg, tau=0.5).tolist() == [3.0, 0.0, -2.0]
    assert sas_from_codes(pos, neg, tau=0.5, strict=True).tolist() == [3.0, 0.0, 0.0]
    assert sas_from_codes(pos, neg, tau=0.5, mean_over="active").tolist() == [3.0, 0.0, -4.0]


def completion_means_by_hand(model, pairs, hook):
    """Each pair's mean residual at ``hook`` over its completion's tokens, one unpadded forward per text."""
    means = {"positive": [], "negative": []}
    for pair in pairs:
        for side in means:
            prompt = model.to_tokens(pair.prompt)
            whole = model.to_tokens(pair.prompt + getattr(pair, side))
            assert torch.equal(whole[0, : prompt.shape[1]], prompt[0])  # the completion starts a new token
            _, cache = model.run_with_cache(whole, names_filter=hook)
            means[side].append(cache[hook][0, prompt.shape[1] :].mean(0).detach())
    return means


def test_sas_vector_encodes_the_collected_residuals(model):
    sae = random_sae("jumprelu")
    vec = sas_vector(model, sae, PAIRS, tau=0.5, selection="paper")
    # the reference: residuals taken by hand, encoded, then Algorithm 1 written out latent by latent
    means = completion_means_by_hand(model, PAIRS, HOOK)
    codes = {side: sae.encode(torch.stack(rows)).detach() for side, rows in means.items()}
    expected = literal_algorithm_1(codes["positive"], codes["negative"], tau=0.5, mean_over="all", strict=False)
    torch.testing.assert_close(vec.dense(), expected, atol=1e-5, rtol=1e-5)  # batched (padded) forwards: float32
    assert len(vec) > 0
    meta = vec.metadata
    assert (meta["layer"], meta["hook_name"], meta["model_name"]) == (1, "blocks.1.hook_resid_post", "tiny-random")
    assert meta["extraction"]["tau"] == 0.5 and meta["extraction"]["pairs"]["n"] == 4
    assert meta["sae"]["d_sae"] == 48 and meta["sae"]["architecture"] == "jumprelu"


def test_dense_vector_is_the_mean_difference(model):
    vec = dense_vector(model, PAIRS, layer=2)
    means = completion_means_by_hand(model, PAIRS, "blocks.2.hook_resid_post")
    expected = torch.stack(means["positive"]).mean(0) - torch.stack(means["negative"]).mean(0)
    torch.testing.assert_close(vec.vector, expected, atol=1e-5, rtol=1e-5)  # batched (padded) forwards: float32


def test_save_load_round_trip_and_refusals(tmp_path, model):
    sae = random_sae("topk")
    vec = sas_vector(model, sae, PAIRS, tau=0.5)
    path = vec.save(tmp_path / "v")
    loaded = load_vector(path, model=model, sae=sae)
    assert torch.equal(loaded.dense(), vec.dense()) and loaded.metadata == vec.metadata
    assert loaded.gate == vec.gate == "none" and load_vector(vec.with_gate("sae").save(tmp_path / "u")).gate == "sae"
    with pytest.raises(IncompatibleSAEError, match="built on another SAE"):
        load_vector(path, sae=random_sae("topk", seed=1))
    dense = dense_vector(model, PAIRS, layer=1)
    assert torch.equal(load_vector(dense.save(tmp_path / "d.safetensors"), model=model).vector, dense.vector)
    other = type(model)(model.cfg.to_dict() | {"d_model": 8, "d_head": 2, "model_name": "other"})
    with pytest.raises(IncompatibleSAEError, match="built on tiny-random, not other"):
        load_vector(path, model=other)


def test_vector_arithmetic():
    meta = {"sae_fingerprint": "x", "name": "a"}
    a = SASVector(torch.tensor([1, 3]), torch.tensor([1.0, -2.0]), 5, meta)
    b = SASVector(torch.tensor([3, 4]), torch.tensor([2.0, 1.0]), 5, {**meta, "name": "b"})
    assert (a + b).dense().tolist() == [0.0, 1.0, 0.0, 0.0, 1.0]
    assert len(a + b) == 2  # latent 3 cancelled out of the support
    assert (a - 2 * b).dense().tolist() == [0.0, 1.0, 0.0, -6.0, -2.0]
    assert (-a).dense().tolist() == [0.0, -1.0, 0.0, 2.0, 0.0]
    with pytest.raises(IncompatibleSAEError):
        a + SASVector(torch.tensor([1]), torch.tensor([1.0]), 5, {"sae_fingerprint": "y"})
    d = DenseVector(torch.ones(3), {"hook_name": "h"})
    assert (d - 0.5 * d).vector.tolist() == [0.5, 0.5, 0.5]
    assert "<table>" in a._repr_html_() and "DenseVector" in d._repr_html_()
    with pytest.raises(ValueError, match="finite"):
        SASVector(torch.tensor([0]), torch.tensor([float("nan")]), 5)


def test_several_layers_from_one_pass_equal_one_layer_at_a_time(model):
    from sas_lens.steering.build_vectors import dense_vectors, sas_vectors

    saes = [random_sae("jumprelu", hook_name=f"blocks.{layer}.hook_resid_post", seed=layer) for layer in (0, 2)]
    together = sas_vectors(model, saes, PAIRS, tau=0.5)
    for sae, vector in zip(saes, together, strict=True):
        assert torch.equal(vector.dense(), sas_vector(model, sae, PAIRS, tau=0.5).dense())
    dense = dense_vectors(model, PAIRS, [0, 1])
    torch.testing.assert_close(dense[1].vector, dense_vector(model, PAIRS, layer=1).vector)


def test_two_saes_at_one_layer_each_get_their_vector(model):
    """Keyed by layer, the second SAE of a layer used to replace the first."""
    from sas_lens.steering.build_vectors import sas_vectors

    narrow = random_sae("jumprelu", d_sae=32, seed=1)
    wide = random_sae("jumprelu", d_sae=64, seed=2)
    by_label = sas_vectors(model, {"narrow": narrow, "wide": wide}, PAIRS, tau=0.5)
    assert sorted(by_label) == ["narrow", "wide"]
    assert by_label["narrow"].d_sae == 32 and by_label["wide"].d_sae == 64
    assert [v.d_sae for v in sas_vectors(model, [narrow, wide], PAIRS, tau=0.5)] == [32, 64]


@pytest.mark.parametrize("strict", [False, True])
def test_tau_zero_keeps_latents_active_at_all_instead_of_emptying_the_vector(strict):
    generator = torch.Generator().manual_seed(0)
    positive = torch.rand(6, 40, generator=generator).sub(0.6).relu()  # sparse codes
    negative = torch.rand(6, 40, generator=generator).sub(0.6).relu()
    positive[:, :4] = 0.0  # latents 0-3 fire only on the negative side, 4-7 only on the positive
    negative[:, 4:8] = 0.0
    negative[:, :4] += 0.1
    positive[:, 4:8] += 0.1
    got = sas_from_codes(positive, negative, tau=0.0, strict=strict)
    assert (got[:4] < 0).all() and (got[4:8] > 0).all()  # "≥ 0" made every latent common: all zero
    torch.testing.assert_close(got, literal_algorithm_1(positive, negative, 0.0, "all", strict))


def test_files_written_before_typed_provenance_still_load(tmp_path):
    """The header layout of the first version (metadata dict, sae_fingerprint beside an "sae" object)."""
    import json

    from safetensors.torch import save_file

    header = {
        "kind": "sas",
        "d_sae": 48,
        "name": "old",
        "model_name": "tiny-random",
        "layer": 1,
        "hook_name": "blocks.1.hook_resid_post",
        "sas_lens_version": "0.1.0",
        "sae": {"release": None, "id": None, "d_sae": 48, "architecture": "jumprelu"},
        "sae_fingerprint": "0123456789abcdef",
        "extraction": {"tau": 0.7, "read": "mean over completion"},
    }
    save_file(
        {"indices": torch.tensor([2, 7]), "values": torch.tensor([0.5, -1.0])},
        tmp_path / "old.safetensors",
        metadata={"format": "sas_lens.vector/1", "sas_lens": json.dumps(header)},
    )
    vec = load_vector(tmp_path / "old.safetensors")
    assert vec.name == "old" and vec.layer == 1 and vec.provenance.sae.fingerprint == "0123456789abcdef"
    assert vec.provenance.extraction["tau"] == 0.7 and vec.gate == "sae"  # the only form there was
    assert vec.metadata == {k: v for k, v in header.items() if k not in ("kind", "d_sae")}  # written back the same


@pytest.mark.parametrize("read", ["tokens", "token_mean"])
def test_token_read_modes_equal_algorithm_1_on_token_codes(model, read):
    """ "tokens": every completion token is a row of Algorithm 1; "token_mean": each pair's token codes averaged."""
    from tests.unit.test_extraction import token_rows_one_by_one

    sae = random_sae("jumprelu")
    positive, positive_pair, negative, negative_pair = token_rows_one_by_one(model, PAIRS, 1)
    codes = [sae.encode(rows).detach() for rows in (positive, negative)]
    if read == "token_mean":  # written out pair by pair
        codes = [
            torch.stack([c[owner == p].mean(0) for p in range(len(PAIRS))])
            for c, owner in zip(codes, (positive_pair, negative_pair))
        ]
    expected = literal_algorithm_1(*codes, 0.5, "all", False)
    vec = sas_vector(model, sae, PAIRS, tau=0.5, read=read, selection="paper")
    assert len(vec) > 0 and vec.metadata["extraction"]["read"] == f"{read} over completion"
    torch.testing.assert_close(vec.dense(), expected, atol=1e-4, rtol=1e-4)  # batched residuals: float32


def test_dense_vector_with_tokens_weighs_every_token_the_same(model):
    from tests.unit.test_extraction import token_rows_one_by_one

    positive, _, negative, _ = token_rows_one_by_one(model, PAIRS, 1)
    dense = dense_vector(model, PAIRS, layer=1, read="tokens")
    torch.testing.assert_close(dense.vector, positive.mean(0) - negative.mean(0), atol=1e-5, rtol=1e-4)


def literal_contrast(pos, neg, top_k, rank_by, mean_over):
    """The contrastive rule latent by latent: rank by |difference|, keep the top k, value mean⁺ − mean⁻."""

    def stats(codes, c):
        active = [float(x) for x in codes[:, c] if x > 0]
        mean = (
            sum(float(x) for x in codes[:, c]) / len(codes)
            if mean_over == "all"
            else (sum(active) / len(active) if active else 0.0)
        )
        return len(active) / len(codes), mean

    scored = []
    for c in range(pos.shape[1]):
        (f_pos, m_pos), (f_neg, m_neg) = stats(pos, c), stats(neg, c)
        if m_pos == m_neg:
            continue
        key = abs(m_pos - m_neg) if rank_by == "mean" else (abs(f_pos - f_neg), abs(m_pos - m_neg))
        scored.append((key, c, m_pos - m_neg))
    v = torch.zeros(pos.shape[1])
    for _, c, value in sorted(scored, reverse=True)[:top_k]:
        v[c] = value
    return v


@pytest.mark.parametrize("rank_by", ["mean", "frequency"])
@pytest.mark.parametrize("mean_over", ["all", "active"])
@pytest.mark.parametrize("top_k", [1, 3, 50])
def test_contrast_rule_equals_the_literal_rule(rank_by, mean_over, top_k):
    from sas_lens.steering.selection import contrast_from_codes

    generator = torch.Generator().manual_seed(1)
    pos = torch.rand(5, 12, generator=generator) * (torch.rand(5, 12, generator=generator) > 0.5)
    neg = torch.rand(6, 12, generator=generator) * (torch.rand(6, 12, generator=generator) > 0.5)
    neg[:, 0] = 0.0  # a latent that never fires on one side
    got = contrast_from_codes(pos, neg, top_k=top_k, rank_by=rank_by, mean_over=mean_over)
    expected = literal_contrast(pos, neg, top_k, rank_by, mean_over)
    assert int((got != 0).sum()) == min(top_k, 12)
    torch.testing.assert_close(got, expected)  # the same means, summed in another order: float32


def test_contrast_keeps_latents_that_fire_on_both_sides(model):
    """The paper's rule drops latent 0 (common); the contrastive rule keeps it, as it differs most."""
    from sas_lens.steering.selection import contrast_from_codes

    pos = torch.tensor([[5.0, 1.0, 0.0], [5.0, 0.0, 0.0]])
    neg = torch.tensor([[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert sas_from_codes(pos, neg, tau=0.5).tolist() == [0.0, 0.5, -0.5]
    assert contrast_from_codes(pos, neg, top_k=1).tolist() == [4.0, 0.0, 0.0]
    sae = random_sae("jumprelu")
    vec = sas_vector(model, sae, PAIRS, selection="contrast", top_k=5)
    assert len(vec) == 5 and vec.metadata["extraction"]["selection"] == "contrast"
    assert (
        vec.gate == "none" and sas_vector(model, sae, PAIRS, selection="paper").gate == "sae"
    )  # the paper: Algorithm 2
    assert "chosen by the contrast (mean, top 5) rule" in vec.diagnostics.summary()
    with pytest.raises(ValueError, match="selection must be one of"):
        sas_vector(model, sae, PAIRS, selection="best")


def test_decompose_recovers_a_direction_built_from_a_few_decoder_rows():
    """A sum of 3 rows of an incoherent dictionary is rebuilt from exactly those rows and values."""
    from sas_lens.steering.selection import decompose_direction

    decoder = torch.randn(40, 64, generator=torch.Generator().manual_seed(0))
    target = 2.0 * decoder[3] - 1.5 * decoder[17] + 0.5 * decoder[29]
    values = decompose_direction(target, decoder, top_k=3)
    assert torch.nonzero(values).squeeze(-1).tolist() == [3, 17, 29]
    torch.testing.assert_close(values[[3, 17, 29]], torch.tensor([2.0, -1.5, 0.5]), atol=1e-4, rtol=0)  # lstsq
    # The greedy refit matters: with rows 0 and 1 at 60°, projecting alone would value row 0 at 1.5, not 1.
    skew = torch.tensor([[1.0, 0.0], [0.5, 3**0.5 / 2]])
    torch.testing.assert_close(decompose_direction(skew[0] + skew[1], skew, top_k=2), torch.tensor([1.0, 1.0]))


def test_decompose_selection_rebuilds_the_dense_difference(model):
    sae = random_sae("jumprelu")
    vec = sas_vector(model, sae, PAIRS, selection="decompose", top_k=8)
    dense = dense_vector(model, PAIRS, layer=1)
    rebuilt = vec.values @ sae.W_dec.detach()[vec.indices]
    assert len(vec) == 8 and vec.gate == "none" and vec.metadata["extraction"]["selection"] == "decompose"
    # Least squares on 8 of 48 rows in 16 dimensions: closer to the target than any single row could get.
    best_single = max(
        float(torch.nn.functional.cosine_similarity(row, dense.vector, dim=0).abs()) for row in sae.W_dec.detach()
    )
    assert float(torch.nn.functional.cosine_similarity(rebuilt, dense.vector, dim=0)) > best_single


def test_an_unknown_gate_is_refused_with_the_choices(model):
    sae = random_sae("jumprelu")
    with pytest.raises(ValueError, match=r"gate must be one of \('sae', 'none'\) \(or None"):
        sas_vector(model, sae, PAIRS, gate="relu")
    with pytest.raises(ValueError, match=r"gate must be one of \('sae', 'none'\), got 'off'"):
        SASVector(torch.tensor([1]), torch.tensor([1.0]), 4, gate="off")


REBUILT_RULES = [
    dict(selection="paper", tau=0.5),
    dict(selection="paper", tau=0.25, strict=True, mean_over="active", gate="none"),
    dict(selection="contrast", top_k=3, rank_by="frequency"),
    dict(selection="contrast", top_k=5, read="last", gate="sae"),
    dict(selection="decompose", top_k=4, read="token_mean"),
]


@pytest.mark.parametrize("rule", REBUILT_RULES, ids=lambda rule: "-".join(f"{k}={v}" for k, v in rule.items()))
def test_a_vector_rebuilt_from_its_provenance_is_the_same_vector(model, tmp_path, rule):
    import json

    from sas_lens.analysis.monosemanticity import compare_widths, width_comparison
    from sas_lens.steering.build_vectors import rebuild_settings

    pair_file = tmp_path / "pairs.json"
    pair_file.write_text(
        json.dumps([{"prompt": p.prompt, "positive": p.positive, "negative": p.negative} for p in PAIRS])
    )
    sae, wider = random_sae("jumprelu"), random_sae("jumprelu", d_sae=96, seed=2)
    vec = sas_vector(model, sae, sl.load_pairs(pair_file), **rule)
    again = sas_vector(model, sae, sl.load_pairs(pair_file), **rebuild_settings(load_vector_round_trip(vec, tmp_path)))
    assert torch.equal(again.indices, vec.indices)
    # decompose's least-squares solve can round differently from one call to the next (threaded BLAS)
    torch.testing.assert_close(again.values, vec.values, rtol=1e-5, atol=1e-6)
    assert again.gate == vec.gate and again.provenance.extraction == vec.provenance.extraction
    # compare_widths (sas-lens report --compare-saes) rebuilds with the same rule, not the default one
    table = compare_widths(model, [sae, wider], [vec])
    expected, _ = width_comparison(model, [sae, wider], sl.load_pairs(pair_file), **rule)
    assert table["support"].tolist() == expected["support"].tolist()


def load_vector_round_trip(vec, tmp_path):
    path = vec.save(tmp_path / "v.safetensors")
    return load_vector(path)
