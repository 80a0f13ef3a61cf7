"""The `faceinsight` command: composed configs, dotted overrides, --print_config, tools."""

from pathlib import Path

import pytest
import yaml

from faceinsight.cli import run

ROOT = Path(__file__).resolve().parents[1]


def print_config(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exit_info:
        run(["fit", *args, "--print_config"])
    assert exit_info.value.code in (None, 0)
    return yaml.safe_load(capsys.readouterr().out)


def test_configs_compose_and_dotted_overrides_win(tmp_path, capsys):
    extra = tmp_path / "ablation.yaml"
    extra.write_text("model:\n  use_correlation: false\n  correlation:\n    omega: 0.6\ntrainer:\n  max_epochs: 2\n")
    config = print_config(
        capsys, "-c", str(ROOT / "configs/synthface.yaml"), "-c", str(extra), "--model.use_seg", "false"
    )
    assert config["model"]["use_correlation"] is False  # from the second file
    assert config["model"]["correlation"]["omega"] == 0.6
    assert config["model"]["correlation"]["tau"] == 0.4  # untouched values of the first file stay
    assert config["trainer"]["max_epochs"] == 2
    assert config["model"]["use_seg"] is False  # dotted override


@pytest.mark.parametrize("preset", ["synthface", "celebahq64", "paper"])
def test_presets_parse(preset, capsys):
    config = print_config(capsys, "-c", str(ROOT / f"configs/{preset}.yaml"))
    assert config["model"]["use_seg"] and config["model"]["use_correlation"] and config["model"]["use_logic"]


@pytest.mark.parametrize("preset", ["synthface", "celebahq64"])
def test_frozen_overlays_freeze_every_backbone_on_the_pretrained_folders(preset, capsys):
    config = print_config(
        capsys, "-c", str(ROOT / f"configs/{preset}.yaml"), "-c", str(ROOT / f"configs/frozen_{preset}.yaml")
    )
    model = config["model"]
    name = "synthface" if preset == "synthface" else "celebamaskhq"
    for part in ("image_encoder", "seg_encoder", "llm"):
        assert model[part]["trainable"] is False, part
    assert model["image_encoder"]["pretrained"] == model["text_encoder"]["pretrained"] == f"runs/pretrain/clip_{name}"
    assert model["seg_encoder"]["checkpoint"] == f"runs/pretrain/seg_{name}/model.safetensors"
    assert model["llm"]["pretrained"] == f"runs/pretrain/lm_{name}"
    assert model["feature_cache"] is True
    assert model["image_head_weight"] == 0  # the module refuses an image head on a frozen E_i
    assert config["trainer"]["default_root_dir"] == f"runs/{preset}_frozen"


@pytest.mark.parametrize("preset", ["celebahq64", "utkface", "expw"])
def test_pretrained_ei_overlay_starts_a_trainable_e_i_from_the_pretrained_clip(preset, capsys):
    base = print_config(capsys, "-c", str(ROOT / f"configs/{preset}.yaml"))
    config = print_config(
        capsys, "-c", str(ROOT / f"configs/{preset}.yaml"), "-c", str(ROOT / "configs/pretrained_ei.yaml")
    )
    model = config["model"]
    assert model["image_encoder"]["pretrained"] == "runs/pretrain/clip_celebamaskhq"
    assert model["image_encoder"]["trainable"] is True and model["image_head_weight"] == 1.0
    for part in ("seg_encoder", "llm", "text_encoder"):  # everything else is the preset's
        assert model[part] == base["model"][part], part
    assert config["data"] == base["data"]


def test_unknown_tool_command_says_usage():
    with pytest.raises(SystemExit, match="usage: faceinsight rules"):
        run(["rules", "nonsense"])


def test_synthface_preview_command(tmp_path):
    out = tmp_path / "grid.png"
    run(["synthface", "preview", "--out", str(out), "--n", "4", "--size", "32"])
    assert out.stat().st_size > 0


def test_rules_audit_command_on_real_celeba(shared_data, capsys):
    run(["rules", "audit", str(ROOT / "rules/celeba.rules"), "--data", str(shared_data / "celeba")])
    out = capsys.readouterr().out
    # Bald -> ~Bangs never fails in CelebA's first 20,000 rows; No_Beard -> ~5_o_Clock_Shadow often does.
    assert "Bald -> ~Bangs" in out and "No_Beard -> ~5_o_Clock_Shadow" in out
    assert "20000" in out


def test_every_architecture_option_is_a_cli_option(capsys):
    """Each ``FaceInsightConfig`` field is an argument of ``FaceInsightModule`` (so a YAML key and a
    ``--model.<field>`` flag): ``readout_start`` once was not, and ``--model.readout_start`` was refused."""
    import dataclasses
    import inspect

    from faceinsight.model.faceinsight import FaceInsightConfig
    from faceinsight.train.faceinsight_module import FaceInsightModule

    fields = {f.name for f in dataclasses.fields(FaceInsightConfig)}
    assert fields <= set(inspect.signature(FaceInsightModule.__init__).parameters)
    config = print_config(capsys, "-c", str(ROOT / "configs/celebahq64.yaml"), "--model.readout_start", "random")
    assert config["model"]["readout_start"] == "random"
