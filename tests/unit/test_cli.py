"""The command line refuses bad input with one clear line, before any long work starts."""

import pytest

import sas_lens as sl
from sas_lens import cli
from sas_lens.loading import models
from tests.helpers import tiny_model


@pytest.fixture
def tiny_default(monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *args, **kwargs: tiny_model())


def run(capsys, *argv):
    code = cli.main(list(argv))
    return code, capsys.readouterr().err


def test_train_sae_on_empty_folder(tmp_path, capsys):
    code, err = run(capsys, "train-sae", str(tmp_path), "--layer", "1", "--out", str(tmp_path / "sae"))
    assert code == 2 and "holds no text files" in err


def test_train_sae_on_binary_file(tmp_path, capsys):
    (tmp_path / "model.bin").write_bytes(bytes(range(256)))
    code, err = run(capsys, "train-sae", str(tmp_path / "model.bin"), "--layer", "1", "--out", str(tmp_path / "sae"))
    assert code == 2 and "binary file" in err


def test_train_sae_on_missing_hook(tmp_path, capsys, tiny_default):
    (tmp_path / "a.txt").write_text("the movie was good")
    code, err = run(
        capsys,
        "train-sae",
        str(tmp_path),
        "--layer",
        "1",
        "--hook-point",
        "hook_resid_pots",
        "--out",
        str(tmp_path / "sae"),
    )
    assert code == 2 and "no hook 'blocks.1.hook_resid_pots'" in err and "Did you mean" in err
    code, err = run(capsys, "train-sae", str(tmp_path), "--layer", "9", "--out", str(tmp_path / "sae"))
    assert code == 2 and "valid layers are 0 to 2" in err
    assert not (tmp_path / "sae").exists()


def test_train_sae_several_layers_from_one_activation_pass(tmp_path, capsys, tiny_default):
    import numpy as np

    from tests.helpers import WORDS

    rng = np.random.default_rng(0)
    (tmp_path / "corpus.txt").write_text("\n\n".join(" ".join(rng.choice(WORDS, size=40)) for _ in range(30)))
    argv = [
        "train-sae",
        str(tmp_path / "corpus.txt"),
        "--layer",
        "0",
        "2",
        "--d-sae",
        "32",
        "--k",
        "4",
        "--tokens",
        "128",
        "--batch-size",
        "16",
        "--context-size",
        "8",
    ]
    code, err = run(capsys, *argv, "--out", str(tmp_path / "sae"))
    assert code == 2 and "{layer}" in err
    code, err = run(capsys, *argv[:2], "--layer", "1", "1", "--out", str(tmp_path / "l{layer}"))
    assert code == 2 and "twice" in err
    assert cli.main([*argv, "--out", str(tmp_path / "l{layer}")]) == 0
    for layer in (0, 2):
        sae = sl.load_sae(tmp_path / f"l{layer}")
        assert sae.cfg.metadata.hook_name == f"blocks.{layer}.hook_resid_post"
    caches = sorted(p.name for p in (tmp_path / "ls.work" / "activations").iterdir())
    assert caches == ["blocks.0.hook_resid_post", "blocks.2.hook_resid_post"]


def test_every_command_has_help(capsys):
    for command in ("demo", "train-sae", "eval-sae", "extract", "steer", "index", "report", "eval", "align"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: sas-lens " + command in capsys.readouterr().out


def test_extract_then_steer(tmp_path, capsys, monkeypatch, tiny_default):
    from sas_lens.loading import saes
    from tests.helpers import random_sae

    sae = random_sae("jumprelu")
    monkeypatch.setattr(saes, "load_sae", lambda *args, **kwargs: sae)
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(
        '{"prompt": "the movie was", "positive": " good", "negative": " bad"}\n'
        '{"prompt": "i", "positive": " love it", "negative": " hate it"}\n'
    )
    assert cli.main(["extract", str(pairs), "--out", str(tmp_path / "v"), "--tau", "0.5"]) == 0
    assert cli.main(["extract", str(pairs), "--dense", "--layer", "1", "--out", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "latents; saved to" in out and "norm" in out and "reached τ on the positive side" in out
    code = cli.main(
        [
            "steer",
            str(tmp_path / "v.safetensors"),
            str(tmp_path / "d.safetensors"),
            "--prompt",
            "the movie",
            "--strength",
            "3",
            "--max-new-tokens",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "unsteered:" in out and "steered (p x 3, p x 3)" in out
    assert (
        cli.main(["extract", str(pairs), "--out", str(tmp_path / "c"), "--selection", "contrast", "--top-k", "2"]) == 0
    )
    vec = sl.load_vector(tmp_path / "c.safetensors")
    assert len(vec) == 2 and vec.gate == "none" and vec.metadata["extraction"]["selection"] == "contrast"
    assert (
        cli.main(["extract", str(pairs), "--out", str(tmp_path / "a"), "--selection", "attribution", "--top-k", "3"])
        == 0
    )
    vec = sl.load_vector(tmp_path / "a.safetensors")
    assert len(vec) == 3 and vec.metadata["extraction"]["selection"] == "attribution"
    assert (
        cli.main(
            [
                "extract",
                str(pairs),
                "--out",
                str(tmp_path / "g"),
                "--selection",
                "paper",
                "--tau",
                "0.5",
                "--gate",
                "none",
            ]
        )
        == 0
    )
    assert sl.load_vector(tmp_path / "g.safetensors").gate == "none"


@pytest.fixture
def no_model(monkeypatch):
    monkeypatch.setattr(
        models, "load_model", lambda *a, **k: pytest.fail("a model was loaded before the arguments were checked")
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["extract", "demo:sentiment", "--out", "v", "--tau", "1.5"], "argument --tau: 1.5 is not a number in [0, 1]"),
        (["extract", "demo:sentiment", "--out", "v", "--layer", "-1"], "--layer: -1 is not a layer index (0 or more)"),
        (["extract", "demo:sentiment", "--out", "v", "--sae", "16kk"], "Did you mean '16k'"),
        (["extract", "demo:sentment", "--out", "v"], "No demo pair set 'sentment'"),
        (["steer", "missing.safetensors", "--prompt", "hi", "--strength", "1"], "no such file: missing.safetensors"),
        (["steer", "{vec}", "--prompt", "hi", "--strength", "nan"], "--strength: nan is not a finite number"),
        (
            ["steer", "{vec}", "{vec}", "--prompt", "hi", "--strength", "1", "--strength", "2", "--strength", "3"],
            "one per vector (2); got 3",
        ),
        (["train-sae", "{texts}", "--layer", "1", "--out", "s", "--k", "100", "--d-sae", "64"], "k=100 cannot exceed"),
        (["train-sae", "{texts}", "--layer", "1", "--out", "s", "--lr", "0"], "--lr: 0 is not a positive number"),
        (["index", "{texts}", "--tokens", "0"], "--tokens: 0 is not a positive integer"),
        (["align", "--out", "x"], "give alignment text files, or --demo-topic NAME"),
        (["report", "{vec}", "--eval", "nowhere"], "no such folder: nowhere"),
        (["eval", "missing.toml"], "No such evaluation config"),
    ],
)
def test_every_user_error_is_one_line_and_status_2_before_any_model_loads(
    argv, message, tmp_path, capsys, monkeypatch, no_model
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vec.safetensors").write_bytes(b"")
    (tmp_path / "a.txt").write_text("the movie was good")
    argv = [a.format(vec="vec.safetensors", texts="a.txt") for a in argv]
    with pytest.raises(SystemExit) as raised:  # argparse's own errors exit; the checks after it return 2
        raise SystemExit(cli.main(argv))
    err = capsys.readouterr().err
    assert raised.value.code == 2
    assert message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_a_real_crash_still_shows_its_traceback(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(models, "load_model", crash)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        cli.main(["extract", "demo:sentiment", "--out", str(tmp_path / "v")])


def test_device_default_matches_the_api():
    import inspect

    args = cli.build_parser().parse_args(["extract", "demo:sentiment", "--out", "v"])
    assert args.device is inspect.signature(models.load_model).parameters["device"].default is None


def test_extract_refuses_bad_pairs_before_loading_a_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model loaded before the data was checked"))
    (tmp_path / "bad.json").write_text("[]")
    code, err = run(capsys, "extract", str(tmp_path / "bad.json"), "--out", str(tmp_path / "v"))
    assert code == 2 and "is empty" in err


def test_extract_index_and_report_with_a_width_comparison(tmp_path, capsys, monkeypatch, tiny_default):
    from sas_lens.loading import saes
    from tests.helpers import WORDS, random_sae

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    by_name = {None: random_sae("jumprelu", d_sae=48), "wide": random_sae("jumprelu", d_sae=96, seed=1)}
    monkeypatch.setattr(saes, "load_sae", lambda name=None, **kwargs: by_name[name])
    monkeypatch.setattr(saes, "shipped_saes", lambda: {"16k": tmp_path, "wide": tmp_path})
    pairs = tmp_path / "p.jsonl"
    pairs.write_text(
        '{"prompt": "the movie was", "positive": " good", "negative": " bad"}\n'
        '{"prompt": "i", "positive": " love it", "negative": " hate it"}\n'
    )
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(WORDS * 40))
    assert cli.main(["extract", str(pairs), "--out", str(tmp_path / "v"), "--tau", "0.5"]) == 0
    assert cli.main(["index", str(corpus), "--tokens", "500", "--context-size", "8"]) == 0
    assert "indexed" in capsys.readouterr().out
    code = cli.main(
        [
            "report",
            str(tmp_path / "v.safetensors"),
            "--out",
            str(tmp_path / "r.html"),
            "--index-texts",
            str(corpus),
            "--index-tokens",
            "500",
            "--compare-saes",
            "wide",
        ]
    )
    assert code == 0 and f"wrote {tmp_path / 'r.html'}" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    assert "Monosemanticity across SAE widths" in page and "<td>96</td>" in page


def test_eval_refuses_a_bad_config_before_loading_a_model(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model loaded before the config was checked"))
    (tmp_path / "eval.toml").write_text('behaviours = ["sycophancy"]\ndata_dir = "."\nlamda = [1]\n')
    code, err = run(capsys, "eval", str(tmp_path / "eval.toml"))
    assert code == 2 and "unknown settings ['lamda']" in err


def test_align_a_demo_topic(tmp_path, capsys, monkeypatch, tiny_default):
    from sas_lens.loading import saes
    from tests.helpers import random_sae

    monkeypatch.setenv("SAS_LENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(saes, "load_sae", lambda *a, **k: random_sae("jumprelu"))
    monkeypatch.setattr(
        "sas_lens.loading.embeddings.embed",
        lambda texts: __import__("torch").nn.functional.normalize(__import__("torch").rand(len(texts), 8), dim=1),
    )
    assert cli.main(["align", "--demo-topic", "sports", "--out", str(tmp_path / "sports"), "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert out.count("latent ") == 3 and "aligned 'sports' from 15 texts" in out
    assert (tmp_path / "sports.safetensors").exists()
    code, err = run(capsys, "align", "--demo-topic", "sport", "--out", str(tmp_path / "x"))
    assert code == 2 and "Did you mean" in err


def test_eval_on_ray_reads_the_cluster_options_and_says_how_to_install_ray(tmp_path, capsys, monkeypatch):
    pytest.importorskip("ray")
    (tmp_path / "eval.toml").write_text('behaviours = ["sycophancy"]\ndata_dir = "."\n')
    args = cli.build_parser().parse_args(
        ["eval", str(tmp_path / "eval.toml"), "--ray", "auto", "--actors", "3", "--gpus-per-actor", "0.5"]
    )
    args.check(args)
    assert (args.executor.address, args.executor.actors, args.executor.gpus_per_actor) == ("auto", 3, 0.5)
    args = cli.build_parser().parse_args(["eval", str(tmp_path / "eval.toml"), "--ray"])
    args.check(args)
    assert args.executor.address is None  # a local cluster
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # as if Ray were not installed
    code, err = run(capsys, "eval", str(tmp_path / "eval.toml"), "--ray")
    assert code == 2 and 'pip install -e ".[ray]"' in err
