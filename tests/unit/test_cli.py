"""The command line refuses bad input with one clear line, before any long work starts."""

import pytest

from sas_lens import cli, models
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
    code, err = run(capsys, "train-sae", str(tmp_path), "--layer", "1", "--hook-point", "hook_resid_pots",
                    "--out", str(tmp_path / "sae"))
    assert code == 2 and "no hook 'blocks.1.hook_resid_pots'" in err and "Did you mean" in err
    code, err = run(capsys, "train-sae", str(tmp_path), "--layer", "9", "--out", str(tmp_path / "sae"))
    assert code == 2 and "valid layers are 0 to 2" in err
    assert not (tmp_path / "sae").exists()


def test_every_command_has_help(capsys):
    for command in ("demo", "train-sae", "eval-sae"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert "usage: sas-lens " + command in capsys.readouterr().out
