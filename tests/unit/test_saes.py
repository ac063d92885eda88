"""Loading SAEs and refusing ones that do not fit the model, before anything is attached."""

import json

import pytest
import torch

import sas_lens as sl
from sas_lens.loading import saes as saes_module
from sas_lens.loading.saes import check_sae_fits
from tests.helpers import ARCHITECTURES, HOOK, random_sae


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_load_sae_from_folder_round_trips(tmp_path, model, architecture):
    sae = random_sae(architecture)
    sae.save_model(tmp_path / "sae")
    loaded = sl.load_sae(tmp_path / "sae", model=model)
    assert loaded.cfg.architecture() == architecture
    assert loaded.cfg.metadata.hook_name == HOOK
    for name, param in sae.state_dict().items():
        assert loaded.state_dict()[name].equal(param), name


def test_misspelled_hook_is_refused_with_suggestions(model):
    sae = random_sae(hook_name="blocks.1.hook_resid_pots")
    with pytest.raises(sl.errors.HookNotFoundError, match="Did you mean 'blocks.1.hook_resid_post'") as info:
        check_sae_fits(sae, model)
    assert isinstance(info.value, KeyError)


def test_sae_of_other_width_is_refused(model):
    sae = random_sae(d_in=model.cfg.d_model + 4)
    with pytest.raises(sl.errors.IncompatibleSAEError, match=r"d_in=20 but tiny-random has d_model=16"):
        check_sae_fits(sae, model)


def test_layer_out_of_range_is_refused(model):
    sae = random_sae(hook_name="blocks.7.hook_resid_post")
    with pytest.raises(sl.errors.LayerOutOfRangeError, match="valid layers are 0 to 2"):
        check_sae_fits(sae, model)


def test_load_sae_checks_fit_before_returning(tmp_path, model):
    random_sae(d_in=8).save_model(tmp_path / "narrow")
    with pytest.raises(sl.errors.IncompatibleSAEError):
        sl.load_sae(tmp_path / "narrow", model=model)


def test_no_default_sae_error_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(saes_module, "PRETRAINED_DIR", tmp_path / "empty")
    with pytest.raises(sl.errors.NoDefaultSAEError, match="No default SAE is shipped"):
        sl.load_sae()


def test_unknown_short_name_lists_shipped(tmp_path, monkeypatch):
    folder = tmp_path / "pretrained" / "tiny"
    random_sae().save_model(folder)
    (folder / "card.json").write_text('{"short_name": "16k"}')
    monkeypatch.setattr(saes_module, "PRETRAINED_DIR", tmp_path / "pretrained")
    assert sl.shipped_saes() == {"16k": folder}
    assert sl.load_sae().cfg.d_sae == 48
    with pytest.raises(sl.errors.NoDefaultSAEError, match="Did you mean '16k'"):
        sl.load_sae("16K")


def test_a_shipped_sae_says_which_it_is_so_vectors_record_the_sae_they_need(tmp_path):
    """Vectors built on a shipped SAE used to record "release": null, "id": null."""
    from sas_lens.steering.provenance import Provenance, SAEIdentity
    from sas_lens.steering.vectors import SASVector, load_vector

    sae = sl.load_sae("4k")
    identity = SAEIdentity.of(sae)
    assert (identity.release, identity.id, identity.d_sae) == ("sas_lens", "gemma-3-270m-res-l9-4k", 4096)
    assert identity.describe() == "sl.load_sae('sas_lens', 'gemma-3-270m-res-l9-4k')"
    again = sl.load_sae("sas_lens", "gemma-3-270m-res-l9-4k")  # what describe() says works
    assert SAEIdentity.of(again) == identity
    vec = SASVector(torch.tensor([5]), torch.tensor([1.0]), 4096, Provenance(name="v", sae=identity))
    saved = load_vector(vec.save(tmp_path / "v"), sae=again)
    assert saved.metadata["sae"] == {
        "release": "sas_lens",
        "id": "gemma-3-270m-res-l9-4k",
        "d_sae": 4096,
        "architecture": "jumprelu",
    }
    with pytest.raises(sl.errors.IncompatibleSAEError, match=r"sl.load_sae\('sas_lens', 'gemma-3-270m-res-l9-4k'\)"):
        load_vector(vec.save(tmp_path / "v"), sae=sl.load_sae("16k"))


def test_load_sae_picks_a_shipped_sae_by_width_and_layer(tmp_path, monkeypatch):
    for name, layer, d_sae in (("4k", 1, 48), ("l2-4k", 2, 48), ("16k", 1, 64)):
        folder = tmp_path / "pretrained" / name
        random_sae(d_sae=d_sae).save_model(folder)
        (folder / "card.json").write_text(json.dumps({"short_name": name, "layer": layer, "d_sae": d_sae * 1024}))
    monkeypatch.setattr(saes_module, "PRETRAINED_DIR", tmp_path / "pretrained")
    assert sl.load_sae("48k", layer=2).cfg.d_sae == 48
    assert sl.load_sae("48k", layer=1).cfg.d_sae == 48
    assert sl.load_sae(layer=1).cfg.d_sae == 64  # the widest at that layer
    with pytest.raises(sl.errors.NoDefaultSAEError, match=r"at layer 7.*\(1, '48k'\), \(1, '64k'\), \(2, '48k'\)"):
        sl.load_sae("48k", layer=7)
    with pytest.raises(ValueError, match="not both"):
        sl.load_sae("48k", "some_id", layer=1)


def test_a_width_and_layer_keep_their_sae_when_one_on_more_tokens_ships_beside_it(tmp_path, monkeypatch):
    from sas_lens.loading.saes import shipped_sae_at, shipped_sae_per_width

    # "l1-48k-6.4M" sorts after "48k" and would win a plain max over names
    for name, d_sae in (("48k", 48), ("l1-48k-6.4M", 48), ("64k-6.4M", 64), ("64k", 64)):
        folder = tmp_path / "pretrained" / name
        random_sae(d_sae=d_sae).save_model(folder)
        (folder / "card.json").write_text(json.dumps({"short_name": name, "layer": 1, "d_sae": d_sae * 1024}))
    monkeypatch.setattr(saes_module, "PRETRAINED_DIR", tmp_path / "pretrained")
    assert shipped_sae_at(1, "48k") == "48k"
    assert shipped_sae_at(1) == "64k"
    assert shipped_sae_per_width(1) == {"48k": "48k", "64k": "64k"}
    assert sl.load_sae("l1-48k-6.4M").cfg.d_sae == 48  # the other one, by its own name


def test_a_float16_sae_is_refused_before_it_overflows(model):
    sae = random_sae("jumprelu").to(torch.float16)
    big = torch.full((1, model.cfg.d_model), 7e4)  # a residual norm real models reach, beyond float16
    assert not torch.isfinite(sae.encode(big.half())).all() or not torch.isfinite(big.half()).all()
    with pytest.raises(sl.errors.IncompatibleSAEError, match=r"float16.*sae.to\(torch.float32\)"):
        check_sae_fits(sae, model)
    check_sae_fits(random_sae("jumprelu").to(torch.bfloat16), model)  # bfloat16 keeps float32's range


def test_the_fingerprint_changes_with_each_thing_that_changes_the_numbers():
    from sas_lens.loading.saes import fingerprint_matches, legacy_sae_fingerprint, sae_fingerprint

    base = sae_fingerprint(random_sae("jumprelu"))
    assert base == sae_fingerprint(random_sae("jumprelu"))
    edits = {
        "W_enc": lambda sae: sae.W_enc.data[3, 40].add_(0.01),  # one weight (under 256 latents, all are sampled)
        "threshold": lambda sae: sae.threshold.data.mul_(1.1),  # a re-calibrated threshold
        "W_dec": lambda sae: sae.W_dec.data[41, 0].add_(0.01),
        "b_enc": lambda sae: sae.b_enc.data[0].add_(0.01),
        "normalisation": lambda sae: setattr(sae.cfg, "normalize_activations", "layer_norm"),
    }
    for name, edit in edits.items():
        sae = random_sae("jumprelu")
        assert sae_fingerprint(sae) == base
        edit(sae)  # after a first fingerprint: nothing may be cached on the SAE
        assert sae_fingerprint(sae) != base, name
    topk = random_sae("topk")
    rescaled = random_sae("topk")
    rescaled.cfg.rescale_acts_by_decoder_norm = True
    assert sae_fingerprint(topk) != sae_fingerprint(rescaled)
    # files of earlier versions carry the legacy fingerprint, and still match their SAE (and only it)
    sae = random_sae("jumprelu")
    assert fingerprint_matches(legacy_sae_fingerprint(sae), sae)
    assert not fingerprint_matches(legacy_sae_fingerprint(sae), random_sae("jumprelu", seed=3))
    assert fingerprint_matches(None, sae) and not fingerprint_matches(base[:-1] + "x", sae)
