"""The command line's face: every command listed with one line, each command's help ends with an example, the
version, and options passed on to the tasks as one RunOptions."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

import hms_infer
from hms_infer.cli import COMMANDS, main, version

from .conftest import tiny_manifest


@pytest.fixture(scope="module")
def tiny_manifest_path(tiny_weights):
    path = tiny_weights / "cli_manifest.yaml"
    path.write_text(yaml.safe_dump(tiny_manifest(tiny_weights, tta=("none",))))
    return path


def test_help_lists_every_command_with_one_line_and_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--test-dir" in text  # the main command's own options
    listing = text[text.index("commands:"):]
    for name, command in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(command.summary)}$", listing, re.M), name
    assert text.rstrip().endswith(COMMANDS["predict"].example)
    assert {"predict", "inputs", "manifest", "convert", "score", "parity", "fit-weights", "evaluate", "pseudo-labels",
            "timeline", "multitaper-check", "bench", "report", "demo", "bundle"} == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_help_ends_with_its_example(name, capsys):
    with pytest.raises(SystemExit):
        main([name, "--help"])
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m hms_infer {name}")
    assert text.rstrip().endswith("example:\n  " + COMMANDS[name].example)
    example = COMMANDS[name].example.split()
    if example[:3] == ["python", "-m", "hms_infer"] and len(example) > 3 and example[3] in COMMANDS:
        assert example[3] == name  # the example runs this very command


def test_version_names_the_release_and_the_commit_of_a_checkout():
    done = subprocess.run([sys.executable, "-m", "hms_infer", "--version"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == version()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert done.stdout.startswith(f"hms_infer {hms_infer.__version__} (git {head}")


IMPORTS = """
import json, runpy, sys, time
sys.argv = ["hms_infer", *json.loads(sys.argv[1])]
t = time.perf_counter()
try:
    runpy.run_module("hms_infer", run_name="__main__")
except SystemExit as e:
    code = e.code
sys.stdout = sys.__stdout__
print(json.dumps({"code": code, "torch": "torch" in sys.modules, "timm": "timm" in sys.modules,
                  "numpy": "numpy" in sys.modules, "seconds": time.perf_counter() - t}))
"""


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["predict", "--help"], ["report", "--help"]])
def test_help_and_version_import_neither_torch_nor_timm(argv):
    """0.4.0 imported torch and timm first: ~10 s on an idle 2-core machine, ~45 s under load; now ~0.2 s."""
    done = subprocess.run([sys.executable, "-c", IMPORTS, json.dumps(argv)], capture_output=True, text=True,
                          timeout=120)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["code"] == 0, done.stderr
    assert done.stdout.startswith(f"hms_infer {hms_infer.__version__}" if argv == ["--version"] else
                                  f"usage: python -m hms_infer{' ' + argv[0] if len(argv) > 1 else ''} ")
    assert not seen["torch"] and not seen["timm"] and not seen["numpy"], seen


def test_the_package_names_are_lazy_and_complete():
    """`import hms_infer` imports no model code; each public name is there on first use, in `__all__` and dir()."""
    code = ("import sys, hms_infer; before = 'torch' in sys.modules; ens = hms_infer.Ensemble; "
            "from hms_infer.ensemble import Ensemble; from hms_infer.tasks.predict import predict; "
            "ok = ens is Ensemble and hms_infer.predict is predict and set(hms_infer.__all__) <= set(dir(hms_infer)); "
            "print(before, ok, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr
    assert {name: getattr(hms_infer, name) for name in hms_infer.__all__}  # every name resolves
    assert set(hms_infer._EXPORTS) == set(hms_infer.__all__)  # the lazy table and the written-out list agree
    assert hms_infer.__all__ == ["CLASSES", "SUBMISSION_HEADER", "VIEWS", "Competition", "Ensemble", "blend",
                                 "predict", "evaluate", "HMSInputError", "Manifest", "Member", "load_manifest",
                                 "PRESETS", "ArchConfig", "HMSModel", "create_model", "RunOptions", "read_recording"]
    with pytest.raises(AttributeError, match="module 'hms_infer' has no attribute 'nope'"):
        hms_infer.nope


@pytest.mark.parametrize("word, hint", [("frobnicate", ""), ("pedict", "; did you mean 'predict'?")])
def test_an_unknown_command_is_named_and_the_commands_listed(word, hint, capsys):
    with pytest.raises(SystemExit) as e:
        main([word, "--test-dir", "x"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert err == (f"usage: python -m hms_infer [COMMAND] [options]\npython -m hms_infer: error: {word!r} is not a "
                   f"command{hint} (choose from {', '.join(COMMANDS)}; python -m hms_infer --help describes them)\n")


def test_the_main_command_needs_no_command_name(capsys):
    """Options first: the main command (its own errors, not the unknown-command one); `predict` names it too."""
    for argv in (["--out", "s.csv"], ["predict", "--out", "s.csv"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.endswith("error: the following arguments are required: --test-dir\n"), err


def test_predict_is_also_a_named_command(synthetic_dir, tiny_manifest_path, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    common = ["--manifest", str(tiny_manifest_path), "--device", "cpu", "--num-workers", "0"]
    assert main(["--test-dir", str(synthetic_dir), "--out", str(a), *common]) == 0
    assert main(["predict", "--test-dir", str(synthetic_dir), "--out", str(b), *common]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_a_checkpoint_that_is_no_checkpoint_is_one_line_naming_the_file(tiny_weights, synthetic_dir, tmp_path,
                                                                        capsys):
    """A manifest whose checkpoint is a text file, reached through `../` out of the weights folder: torch's
    weights-only unpickler raises IndexError on it (0.3.0: a traceback); an error naming the file, exit 2, before
    any inference, the previous submission untouched."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (tmp_path / "notes.txt").write_text("these are not the weights you are looking for\n" * 20)
    m = tiny_manifest(tiny_weights, tta=("none",))
    m["members"][0]["checkpoint"] = "../notes.txt"
    m["members"][1]["checkpoint"] = str(tiny_weights / m["members"][1]["checkpoint"])
    (weights / "weights_manifest.yaml").write_text(yaml.safe_dump(m))
    out = tmp_path / "submission.csv"
    out.write_text("previous\n")
    code = main(["--test-dir", str(synthetic_dir), "--out", str(out), "--weights-dir", str(weights), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"hms_infer: error: {weights / '../notes.txt'}: not a readable weights-only checkpoint (")
    assert "member tiny0's checkpoint path leaves the weights folder" in err
    assert out.read_text() == "previous\n"


def test_run_options_reach_the_tasks_as_one_value(monkeypatch, tmp_path):
    import hms_infer.tasks.parity as parity_task
    import hms_infer.tasks.predict as predict_task
    seen = {}
    monkeypatch.setattr(predict_task, "predict", lambda test_dir, **kw: seen.update(predict=kw))
    assert main(["--test-dir", str(tmp_path), "--out", str(tmp_path / "s.csv"), "--device", "cpu", "--precision",
                 "bf16", "--tta", "none,lr", "--batch-size", "3", "--num-workers", "0", "--compile",
                 "--shard", "1/2"]) == 0
    assert seen["predict"]["options"] == hms_infer.RunOptions(
        device="cpu", precision="bf16", views=("none", "lr"), batch_size="3", num_workers="0", compile=True,
        shard="1/2")
    monkeypatch.setattr(parity_task, "parity", lambda **kw: seen.update(parity=kw) or {"passed": False})
    oof = tmp_path / "oof.csv"
    oof.write_text("label_id,logit_gpd,logit_grda,logit_lpd,logit_lrda,logit_other,logit_seizure\n")
    assert main(["parity", "--data-dir", str(tmp_path), "--table", "t.csv", "--oof", str(oof), "--device", "cpu",
                 "--batch-size", "2", "--tolerance", "0.1"]) == 1  # parity failed: exit 1
    assert seen["parity"]["options"] == hms_infer.RunOptions(device="cpu", batch_size="2")
    assert seen["parity"]["tolerance"] == 0.1


def test_an_output_that_cannot_be_written_fails_before_the_work(synthetic_dir, tmp_path, capsys):
    (tmp_path / "folder.npz").mkdir()
    assert main(["inputs", "--data-dir", str(synthetic_dir), "--out", str(tmp_path / "folder.npz")]) == 2
    assert capsys.readouterr().err.strip() == f"hms_infer: error: {tmp_path / 'folder.npz'}: is a folder; give the " \
                                              f"file to write"
