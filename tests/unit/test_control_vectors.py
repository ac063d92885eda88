"""llama.cpp control vectors: what is exported is what sas_lens steers, and what cannot be exported is refused."""

import gguf
import numpy as np
import pytest
import torch

import sas_lens as sl
from sas_lens import cli
from sas_lens.errors import IncompatibleSAEError
from sas_lens.loading import models
from sas_lens.steering.build_vectors import decompose
from sas_lens.steering.control_vectors import (
    LinearisationWarning,
    NotAConstantVectorError,
    control_vector,
    export_control_vector,
    read_control_vector,
)
from sas_lens.steering.edits import decoder_directions
from sas_lens.steering.provenance import Provenance, SAEIdentity
from tests.helpers import HOOK, random_sae, tiny_model

PROMPTS = ["the movie was good", "i love this story and the music"]


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def sae():
    return random_sae("jumprelu")


def sparse(sae, values: dict[int, float], gate="none", name="planted"):
    dense = torch.zeros(sae.cfg.d_sae)
    for latent, value in values.items():
        dense[latent] = value
    provenance = Provenance(name=name, model_name="tiny-random", hook_name=HOOK, layer=1, sae=SAEIdentity.of(sae))
    return sl.SASVector.from_dense(dense, provenance, gate=gate)


def dense_at(layer: int, seed: int = 0, name="dense"):
    vector = torch.randn(16, generator=torch.Generator().manual_seed(seed))
    hook = f"blocks.{layer}.hook_resid_post"
    return sl.DenseVector(vector, {"name": name, "hook_name": hook, "layer": layer, "model_name": "tiny-random"})


def logits_with_added(model, tokens, additions: dict[int, torch.Tensor]):
    """The model with ``additions[N]`` added to ``blocks.N.hook_resid_post`` by a hand-written hook."""
    hooks = [(f"blocks.{n}.hook_resid_post", lambda a, hook, d=d: a + d) for n, d in additions.items()]
    with torch.no_grad():
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def test_a_file_round_trips_in_llama_cpps_layout(model, tmp_path):
    vector = dense_at(2)
    path = export_control_vector(tmp_path / "v.gguf", model, {vector: -1.5})
    reader = gguf.GGUFReader(str(path))
    assert [t.name for t in reader.tensors] == ["direction.2"]  # block 2: llama.cpp's layer index N
    tensor = reader.tensors[0]
    assert tensor.tensor_type == gguf.GGMLQuantizationType.F32 and list(tensor.shape) == [16]
    assert bytes(reader.get_field("general.architecture").parts[-1]).decode() == "controlvector"
    assert int(reader.get_field("controlvector.layer_count").parts[-1][0]) == 1
    # float32 written and read back as float32: the same numbers, bit for bit (no computation between).
    assert np.array_equal(np.array(tensor.data), (-1.5 * vector.vector).numpy())
    (back,) = read_control_vector(path, model=model)
    assert back.hook_name == "blocks.2.hook_resid_post" and torch.equal(back.vector, -1.5 * vector.vector)


def test_an_sas_vector_without_the_gate_exports_its_decoded_shift(model, sae, tmp_path):
    vector = sparse(sae, {3: 2.0, 7: -1.0, 11: 0.5})
    cv = control_vector(model, {vector: 4.0}, sae=sae)
    rows = sae.W_dec.detach().float()
    literal = 4.0 * (2.0 * rows[3] - 1.0 * rows[7] + 0.5 * rows[11])
    assert cv.errors == {1: 0.0}
    torch.testing.assert_close(cv.directions[1], literal, atol=1e-5, rtol=1e-5)


def test_the_file_steers_the_block_whose_output_sas_lens_steers(model, sae, tmp_path):
    """direction.N added at blocks.N.hook_resid_post (by hand) gives the logits of sl.steer with the vector."""
    vector = sparse(sae, {3: 2.0, 7: -1.0})
    tokens = model.to_tokens(PROMPTS[0])
    steering = read_control_vector(export_control_vector(tmp_path / "v.gguf", model, {vector: 6.0}, sae=sae))
    (file_vector,) = steering
    with torch.no_grad(), sl.steer(model, {vector: 6.0}, sae=sae):
        steered = model(tokens)
    by_hand = logits_with_added(model, tokens, {file_vector.layer: file_vector.vector})
    unsteered = model(tokens)
    assert (steered - unsteered).abs().max() > 1e-2  # the steering does something
    torch.testing.assert_close(by_hand, steered, atol=1e-5, rtol=1e-5)  # float32, same sum in another order
    wrong_block = logits_with_added(model, tokens, {2: file_vector.vector})
    assert (wrong_block - steered).abs().max() > 1e-3  # and the block matters


def test_composed_vectors_export_as_one_file(model, sae, tmp_path):
    a, b, c = sparse(sae, {3: 1.0}, name="a"), dense_at(1, seed=1, name="b"), dense_at(2, seed=2, name="c")
    cv = control_vector(model, {a: 2.0, b: -1.0, c: 0.5}, sae=sae)
    assert sorted(cv.directions) == [1, 2]
    torch.testing.assert_close(cv.directions[1], 2.0 * sae.W_dec[3].detach() - b.vector, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cv.directions[2], 0.5 * c.vector)


def test_a_gated_sas_vector_is_refused_and_linearised_only_on_request(model, sae):
    vector = sparse(sae, {3: 2.0, 7: 1.5}, gate="sae")
    with pytest.raises(NotAConstantVectorError, match=r"gate='sae'.*with_gate\('none'\).*exact=False"):
        control_vector(model, {vector: 4.0}, sae=sae)
    with pytest.warns(LinearisationWarning, match="leaves out"):
        cv = control_vector(model, {vector: 4.0}, sae=sae, exact=False, prompts=PROMPTS)
    # Literal reference: the steered minus the unsteered residual at the hook, per token, averaged (BOS left out).
    edits = []
    for prompt in PROMPTS:
        tokens = model.to_tokens(prompt)
        _, plain = model.run_with_cache(tokens, names_filter=HOOK)
        with torch.no_grad(), sl.steer(model, {vector: 4.0}, sae=sae):
            _, steered = model.run_with_cache(tokens, names_filter=HOOK)
        edits.append((steered[HOOK] - plain[HOOK])[0, 1:])
    edits = torch.cat(edits)
    torch.testing.assert_close(cv.directions[1], edits.mean(0), atol=1e-5, rtol=1e-4)
    missed = float(((edits - edits.mean(0)) ** 2).sum() / (edits**2).sum())
    assert cv.errors[1] == pytest.approx(missed, rel=1e-4) and 0 < cv.errors[1] < 1


def test_a_vector_without_delta_is_refused(model, sae):
    vector = sparse(sae, {3: 2.0}).with_delta(False)
    with pytest.raises(NotAConstantVectorError, match="reconstruction error"):
        control_vector(model, {vector: 1.0}, sae=sae)


@pytest.mark.parametrize(
    ("vector", "match"),
    [
        (dense_at(0), "block 0"),
        (
            sl.DenseVector(torch.ones(16), {"hook_name": "blocks.1.hook_resid_pre", "layer": 1}),
            "blocks.N.hook_resid_post",
        ),
    ],
)
def test_what_llama_cpp_cannot_apply_is_refused_before_a_file_is_written(model, tmp_path, vector, match):
    with pytest.raises(IncompatibleSAEError, match=match):
        export_control_vector(tmp_path / "v.gguf", model, {vector: 1.0})
    assert not list(tmp_path.iterdir())


def test_bad_strengths_and_empty_steerings_are_refused(model):
    with pytest.raises(ValueError, match="finite"):
        control_vector(model, {dense_at(1): float("nan")})
    with pytest.raises(ValueError, match="empty"):
        control_vector(model, {})


def write_raw(path, tensors: dict[str, np.ndarray]):
    writer = gguf.GGUFWriter(str(path), "controlvector")
    for name, data in tensors.items():
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_files_for_another_model_or_not_control_vectors_are_refused(model, tmp_path):
    ones = np.ones(16, dtype=np.float32)
    with pytest.raises(IncompatibleSAEError, match="d_model=8"):
        read_control_vector(write_raw(tmp_path / "narrow.gguf", {"direction.1": np.ones(8, np.float32)}), model=model)
    with pytest.raises(IncompatibleSAEError, match=r"block\(s\) \[5\]"):
        read_control_vector(write_raw(tmp_path / "deep.gguf", {"direction.5": ones}), model=model)
    with pytest.raises(ValueError, match="direction.0"):
        read_control_vector(write_raw(tmp_path / "zero.gguf", {"direction.0": ones}))
    with pytest.raises(ValueError, match="not a control vector"):
        read_control_vector(write_raw(tmp_path / "other.gguf", {"token_embd.weight": ones}))
    with pytest.raises(ValueError, match="F32"):
        read_control_vector(write_raw(tmp_path / "half.gguf", {"direction.1": ones.astype(np.float16)}))


def test_a_file_made_elsewhere_reads_latent_by_latent(model, sae, tmp_path):
    """A planted combination of two decoder directions is recovered by decompose, latents and values."""
    rows = decoder_directions(sae, device="cpu")
    planted = (3.0 * rows[5] - 2.0 * rows[9]).numpy()
    (vector,) = read_control_vector(write_raw(tmp_path / "repeng.gguf", {"direction.1": planted}), model=model)
    read = decompose(vector, sae, top_k=2)
    assert read.indices.tolist() == [5, 9]
    torch.testing.assert_close(read.values, torch.tensor([3.0, -2.0]), atol=1e-4, rtol=1e-4)
    with pytest.raises(IncompatibleSAEError, match="the SAE reads blocks.1"):
        decompose(dense_at(2), sae)


def test_the_cli_exports_and_refuses_in_one_line(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: model)
    vector = dense_at(2)
    vector.save(tmp_path / "v.safetensors")
    out = tmp_path / "v.gguf"
    assert cli.main(["export", str(tmp_path / "v.safetensors"), "--gguf", str(out), "--lam", "3"]) == 0
    assert "direction.2" in capsys.readouterr().out
    (back,) = read_control_vector(out)
    torch.testing.assert_close(back.vector, 3.0 * vector.vector)
    code = cli.main(["export", str(tmp_path / "v.safetensors"), "--gguf", str(out), "--lam", "1", "--lam", "2"])
    assert code == 2 and "one --lam" in capsys.readouterr().err
