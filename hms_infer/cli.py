"""Command line: argparse only. Each command builds its arguments (and one `RunOptions`), calls its task
(`hms_infer.tasks`) by keyword, and prints; the library reports through `logging`, which `configure_logging` shows
here (INFO lines on stdout as they are, warnings on stderr).

    python -m hms_infer --test-dir DIR --out submission.csv [options]     # the main command (also `predict`)
    python -m hms_infer COMMAND [options]                                 # python -m hms_infer --help lists them
"""
from __future__ import annotations

import argparse
import difflib
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from . import __version__
from .constants import (
    BLENDS, BOOTSTRAP_RESAMPLES, HEAD_CHOICES, MANIFEST_NAME, MIN_VOTES, PARITY_TOLERANCE, PRECISIONS,
    PSEUDO_LABEL_CHUNK_ROWS, RECORDING_CHUNK_WINDOWS, REPORT_PAGE_MAX_BYTES, SEIZURE_BURDEN_THRESHOLD,
    SPECTROGRAM_SOURCES, TIMELINE_CHUNK_RECORDINGS, TIMELINE_STRIDE_S, WORST_ROWS,
)
from .errors import HMSInputError
from .manifest import default_manifest_path
from .montage import VIEWS
from .options import RunOptions

T = TypeVar("T")
INCOMPLETE = 3  # pseudo-labels or timeline stopped by --time-limit: run the same command again to resume


class _Console(logging.StreamHandler):
    """Writes to whatever sys.stdout / sys.stderr is when a record arrives (a notebook or a test may swap it)."""

    def __init__(self, stderr: bool):
        super().__init__()
        self._stderr = stderr

    @property
    def stream(self):
        return sys.stderr if self._stderr else sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging() -> None:
    """hms_infer's INFO messages (a run's progress and summary lines) on stdout as they are; warnings and errors
    on stderr with their level and logger. Replaces what an earlier call installed."""
    logger = logging.getLogger("hms_infer")
    for handler in [h for h in logger.handlers if isinstance(h, _Console)]:
        logger.removeHandler(handler)
    out, err = _Console(stderr=False), _Console(stderr=True)
    out.setLevel(logging.INFO)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    err.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logger.addHandler(out)
    logger.addHandler(err)
    logger.setLevel(logging.INFO)


def version() -> str:
    """`hms_infer X.Y.Z`, and the git commit when run from a checkout (`-dirty` when tracked files changed)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return f"hms_infer {__version__}"
    git = ["git", "-C", str(root)]
    try:
        commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"hms_infer {__version__}"
    return f"hms_infer {__version__} (git {commit}{'-dirty' if dirty else ''})"


# -- shared arguments -----------------------------------------------------------------------------------------------

def _manifest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, default=None,
                   help="weights manifest (default: WEIGHTS_DIR/weights_manifest.yaml, else ./weights_manifest.yaml)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder the manifest's checkpoint paths are relative to (default: the manifest's folder)")


BATCH_SHARDS = ("compute every N-th batch from the I-th and write it as a part; the shard completing the set merges "
                "(under torchrun: RANK/WORLD_SIZE, rank 0 merges)")
PART_SHARDS = ("compute every N-th part from the I-th (resumable: parts on disk are skipped); the process completing "
               "the set writes the outputs (under torchrun: RANK/WORLD_SIZE, rank 0)")


def _run_args(p: argparse.ArgumentParser, views: bool = True, batches: bool = True, shard: str | None = None,
              compile: bool = False) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:0,cuda:1 (default auto: all GPUs)")
    p.add_argument("--precision", default="auto", choices=["auto", *PRECISIONS],
                   help="autocast dtype (default auto: fp16 on GPU, as validated in training; fp32 on CPU)")
    if views:
        p.add_argument("--tta", default=None, help=f"comma list of views from {','.join(VIEWS)} (default: the "
                                                    f"manifest's)")
    if batches:
        p.add_argument("--batch-size", default="auto",
                       help="rows per batch (default auto: what fits the GPU's memory, 8 on a 16 GB T4; 4 on CPU)")
        p.add_argument("--num-workers", default="auto",
                       help="DataLoader worker processes (default auto: CPU cores - 1, at most 8; 0: in-process)")
    if shard:
        p.add_argument("--shard", default=None, metavar="I/N", help=shard)
    if compile:
        p.add_argument("--compile", action="store_true", help="torch.compile each member (compile time: minutes)")


def _time_limit_arg(p: argparse.ArgumentParser) -> None:
    """The resumable commands' (pseudo-labels, timeline) stop after a time."""
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help=f"stop after the part that passes this many seconds (exit {INCOMPLETE}; run again to resume)")


def _options(args: argparse.Namespace) -> RunOptions:
    """The one `RunOptions` of a command's arguments."""
    return RunOptions(device=args.device, precision=args.precision, views=getattr(args, "tta", None),
                      batch_size=getattr(args, "batch_size", "auto"), num_workers=getattr(args, "num_workers", "auto"),
                      compile=getattr(args, "compile", False), shard=getattr(args, "shard", None))


def _manifest_path(args: argparse.Namespace) -> Path:
    return args.manifest if args.manifest is not None else default_manifest_path(args.weights_dir)


def _group(layout: str, option: str) -> Callable[[str], tuple[str, str, str]]:
    def parse(spec: str) -> tuple[str, str, str]:
        from .training import parse_group
        try:
            return (layout, *parse_group(spec, option))
        except HMSInputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


# -- the commands ---------------------------------------------------------------------------------------------------

def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-dir", type=Path, required=True, help="folder with test.csv, test_eegs/, test_spectrograms/")
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write (atomically)")
    _manifest_args(p)
    _run_args(p, shard=BATCH_SHARDS, compile=True)
    p.add_argument("--strict", action="store_true",
                   help="the first row without usable input is an error (default: degraded / fallback rows, "
                        "listed and written to <out>.issues.json)")
    p.add_argument("--time-budget", default=None, metavar="SECONDS",
                   help="never run longer: past the projection, the remaining rows run with fewer TTA views (lrfb, "
                        "fb, lr), then fewer members (from the manifest's end); said in the log and <out>.issues.json")


def _predict(args: argparse.Namespace) -> int:
    from .tasks.predict import predict
    predict(args.test_dir, out=args.out, manifest=_manifest_path(args), weights_dir=args.weights_dir,
            options=_options(args), strict=args.strict, time_budget=args.time_budget)
    return 0


def _inputs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="competition folder")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--flip", default="none", help=f"view(s), comma-separated, from {','.join(VIEWS)}")
    p.add_argument("--out", type=Path, required=True, help=".npz to write")


def _inputs(args: argparse.Namespace) -> int:
    from .tasks.inputs import inputs
    inputs(data_dir=args.data_dir, out=args.out, split=args.split, views=args.flip)
    return 0


def _manifest_cmd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help=".pt / .safetensors checkpoints")
    p.add_argument("-o", "--out", type=Path, required=True, help="manifest YAML to write")
    p.add_argument("--blend", choices=BLENDS, default="prob")
    p.add_argument("--tta", default=",".join(VIEWS))


def _manifest_cmd(args: argparse.Namespace) -> int:
    from .tasks.manifest import write_manifest
    write_manifest(checkpoints=args.checkpoints, out=args.out, views=args.tta, blend=args.blend)
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=Path("demo_out"), help="where to write the demo (default demo_out/)")
    p.add_argument("--device", default="auto")
    p.add_argument("--rows", type=int, default=4, help="synthetic test rows")


def _demo(args: argparse.Namespace) -> int:
    from .tasks.demo import run_demo
    run_demo(root=args.dir, device=args.device, rows=args.rows)
    return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solution", type=Path, required=True, help="CSV with eeg_id and the six *_vote columns (votes)")
    p.add_argument("--submission", type=Path, required=True, help="submission CSV, rows in the solution's order")
    p.add_argument("--min-votes", type=int, default=None, metavar="N",
                   help="also the score on the rows with at least N total votes (the solution must hold vote counts)")


def _score(args: argparse.Namespace) -> int:
    from .tasks.score import score
    result = score(solution=args.solution, submission=args.submission, min_votes=args.min_votes)
    if args.min_votes is not None:
        print(f"score_min_votes {result['score_min_votes']:.6f} ({result['rows_min_votes']} of {result['rows']} rows "
              f"have >= {args.min_votes} votes)")
    print(f"score {result['score']:.6f}")
    return 0


def _training_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="folder with train_eegs/, train_spectrograms/")
    p.add_argument("--table", type=Path, required=True,
                   help="training table with eeg_id, eeg_sub_id, offsets, spectrogram_id, label_id, fold, votes")


def _parity_args(p: argparse.ArgumentParser) -> None:
    _training_args(p)
    saved = p.add_mutually_exclusive_group(required=True)
    saved.add_argument("--preds-dir", type=Path, help="training layout: PREDS_DIR/<label_id>/pred_<seed>.npy")
    saved.add_argument("--oof", type=Path, help="CSV with label_id and logit_<class> columns")
    p.add_argument("--seed", type=int, default=None, help="the seed in pred_<seed>.npy (with --preds-dir)")
    _manifest_args(p)
    _run_args(p, views=False, shard=BATCH_SHARDS)
    p.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE,
                   help=f"largest |logit difference| that passes (default {PARITY_TOLERANCE}: saved OOF came from "
                        f"fp16-mixed)")
    p.add_argument("--report", type=Path, default=None, help="JSON report to write (atomically)")
    p.add_argument("--members", default="*",
                   help="glob on member names selecting one configuration, e.g. 'cfg_1/*' (default: all)")


def _parity(args: argparse.Namespace) -> int:
    from .tasks.parity import parity
    from .training import read_oof, read_preds_dir
    if args.preds_dir is not None and args.seed is None:
        raise HMSInputError("--preds-dir needs --seed (the files are PREDS_DIR/<label_id>/pred_<seed>.npy)")
    saved = read_oof(args.oof) if args.oof is not None else read_preds_dir(args.preds_dir, args.seed)
    report = parity(data_dir=args.data_dir, table=args.table, manifest=_manifest_path(args), saved=saved,
                    weights_dir=args.weights_dir, options=_options(args), tolerance=args.tolerance,
                    report_path=args.report, members=args.members)
    return 0 if report["passed"] else 1


def _fit_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", type=Path, required=True, help="training table with label_id, fold and the votes")
    p.add_argument("--preds", dest="groups", action="append", default=[], metavar="NAME=DIR",
                   type=_group("preds", "--preds"),
                   help="a member group's OOF logits in the training layout DIR/<label_id>/pred_<seed>.npy")
    p.add_argument("--oof", dest="groups", action="append", metavar="NAME=CSV", type=_group("oof", "--oof"),
                   help="a member group's OOF logits as a CSV with label_id and logit_<class> columns")
    p.add_argument("--seed", type=int, default=None, help="the seed in pred_<seed>.npy (with --preds)")
    p.add_argument("--manifest", type=Path, required=True,
                   help="the manifest; a group NAME is its members named NAME or NAME/...")
    p.add_argument("-o", "--out", type=Path, required=True, help="the fitted manifest to write (atomically)")
    p.add_argument("--blend", choices=BLENDS, default=None, help="blend space (default: the manifest's)")
    p.add_argument("--temperature", action="store_true", help="also fit one temperature per group")
    p.add_argument("--min-votes", type=int, default=None, metavar="N",
                   help="fit and score on the rows with at least N total votes only")
    p.add_argument("--vote-weighted", action="store_true",
                   help="weight each row's KL by its total votes in the objective (as the training loss did)")
    p.add_argument("--report", type=Path, default=None, help="JSON report to write (atomically)")


def _fit_weights(args: argparse.Namespace) -> int:
    from .tasks.fit_weights import fit_weights
    from .training import read_groups
    fit_weights(table=args.table, groups=read_groups(args.groups, args.seed), manifest=args.manifest, out=args.out,
                blend=args.blend, temperature=args.temperature, report_path=args.report, min_votes=args.min_votes,
                vote_weighted=args.vote_weighted)
    return 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", type=Path, required=True,
                   help="training table with label_id, eeg_id, the six vote columns (counts); fold, patient_id used "
                        "where present")
    for flag, layout, metavar, what in (
            ("--preds", "preds", "NAME=DIR", "OOF logits in the training layout DIR/<label_id>/pred_<seed>.npy"),
            ("--oof", "oof", "NAME=CSV", "OOF logits as a CSV with label_id and logit_<class> columns"),
            ("--submission", "submission", "NAME=CSV", "probabilities: a CSV with label_id and the six *_vote columns"),
            ("--pseudo", "pseudo", "NAME=PARQUET", "the pseudo-labels' Parquet twin (label_id, six *_vote columns)")):
        p.add_argument(flag, dest="sets", action="append", default=[], metavar=metavar, type=_group(layout, flag),
                       help=f"a set: {what}")
    p.add_argument("--seed", type=int, default=None,
                   help="the seed in pred_<seed>.npy (with --preds; the bootstrap's is --bootstrap-seed)")
    p.add_argument("--blend", nargs="?", const="prob", default=None, choices=BLENDS,
                   help="also the sets' equal blend, named 'blend' (prob, the default, or logit space; probability "
                        "sets enter the logit blend as log-probabilities)")
    p.add_argument("--min-votes", type=int, default=MIN_VOTES, metavar="N",
                   help=f"the 'many votes' rows: at least N total votes (default {MIN_VOTES})")
    p.add_argument("--groups", choices=["patient_id", "eeg_id"], default=None,
                   help="bootstrap groups (default: patient_id where the table has it, else eeg_id)")
    p.add_argument("--bootstrap", type=int, default=BOOTSTRAP_RESAMPLES, metavar="B",
                   help=f"group-bootstrap resamples (default {BOOTSTRAP_RESAMPLES}; 0: no intervals)")
    p.add_argument("--bootstrap-seed", type=int, default=0, help="the bootstrap's random seed (default 0)")
    p.add_argument("--worst", type=int, default=WORST_ROWS, metavar="N",
                   help=f"rows of highest KL listed per set (default {WORST_ROWS})")
    p.add_argument("--out", type=Path, required=True, help="folder for evaluation.json, summary.txt, index.html")


def _evaluate(args: argparse.Namespace) -> int:
    from .tasks.evaluate import evaluate
    evaluate(table=args.table, sets=args.sets, out=args.out, seed=args.seed, blend=args.blend,
             min_votes=args.min_votes, groups=args.groups, bootstrap=args.bootstrap,
             bootstrap_seed=args.bootstrap_seed, worst=args.worst)
    return 0


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help=".pt checkpoints")
    p.add_argument("--half", action="store_true",
                   help="store floating tensors as fp16 (half the size; models still load them as fp32)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder to write to (default: beside each checkpoint)")


def _convert(args: argparse.Namespace) -> int:
    from .tasks.convert import convert_checkpoints
    convert_checkpoints(args.checkpoints, out_dir=args.out_dir, half=args.half)
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    members = p.add_mutually_exclusive_group()
    members.add_argument("--presets", default="cfg_1,cfg_5", help="presets with random weights (default cfg_1,cfg_5)")
    members.add_argument("--manifest", type=Path, default=None,
                         help="a manifest's members (its checkpoints where they exist, else random weights)")
    p.add_argument("--weights-dir", type=Path, default=None, help="the manifest's checkpoint folder")
    p.add_argument("--rows", type=int, default=None, help="synthetic rows (default: 4 batches on GPU, 2 on CPU)")
    _run_args(p, compile=True)
    p.add_argument("--reference", action="store_true",
                   help="also run the plain path (eager, one forward per view) and compare speed and probabilities")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")


def _bench(args: argparse.Namespace) -> int:
    from .tasks.bench import bench
    presets = [] if args.manifest else [p.strip() for p in args.presets.split(",") if p.strip()]
    bench(presets=presets, manifest=args.manifest, weights_dir=args.weights_dir, rows=args.rows,
          options=_options(args), reference=args.reference, json_path=args.json)
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", "--test-dir", dest="data_dir", type=Path, required=True,
                   help="competition folder with <split>.csv, <split>_eegs/, <split>_spectrograms/ (--test-dir: "
                        "the same)")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="train: the training table (offsets, votes: the page shows them and each row's KL)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rows", default=None, help="table rows to report, 0-based, comma-separated: 0,5,9")
    which.add_argument("--eeg-id", type=int, nargs="+", default=None, help="every row of these eeg_ids")
    which.add_argument("--all", action="store_true", help="every row (the default)")
    p.add_argument("--full", action="store_true",
                   help="every page's figure a full-resolution PNG (1600 x 1100, 1.4-1.9 MB a page), also written as "
                        "<page>.png. Without it a one-row report is the same, and a report of several rows (--all, or "
                        "--rows/--eeg-id choosing more than one) embeds a WebP at 1360 x 935 in each page, at most "
                        f"{REPORT_PAGE_MAX_BYTES // 1000} kB a page, and writes no image files")
    p.add_argument("--out", type=Path, required=True, help="folder for the pages, index.html and any PNGs")
    _manifest_args(p)
    _run_args(p)


def _report(args: argparse.Namespace) -> int:
    from .tasks.report import make_report, parse_rows
    make_report(data_dir=args.data_dir, out=args.out, manifest=_manifest_path(args), weights_dir=args.weights_dir,
                split=args.split, rows=None if args.rows is None else parse_rows(args.rows), eeg_ids=args.eeg_id,
                full=args.full, options=_options(args))
    return 0


def _pseudo_labels_args(p: argparse.ArgumentParser) -> None:
    _training_args(p)
    p.add_argument("--out", type=Path, required=True,
                   help="the pickle to write, e.g. oof_noisy_student.pkl (+ .parquet twin, .issues.json)")
    _manifest_args(p)
    _run_args(p, shard=PART_SHARDS)
    _time_limit_arg(p)
    p.add_argument("--members", default="*", help="glob on member names (default: all)")
    p.add_argument("--any-fold", action="store_true",
                   help="rows of a fold without members are predicted by all members (default: an error)")
    p.add_argument("--strict", action="store_true", help="the first row without usable input is an error")
    p.add_argument("--chunk-rows", type=int, default=PSEUDO_LABEL_CHUNK_ROWS,
                   help=f"windows per resumable part in OUT.parts/ (whole batches; default {PSEUDO_LABEL_CHUNK_ROWS})")


def _pseudo_labels(args: argparse.Namespace) -> int:
    from .tasks.pseudo_labels import pseudo_labels
    summary = pseudo_labels(data_dir=args.data_dir, table=args.table, manifest=_manifest_path(args), out=args.out,
                            weights_dir=args.weights_dir, members=args.members, options=_options(args),
                            any_fold=args.any_fold, strict=args.strict,
                            chunk_rows=args.chunk_rows,
                            time_limit=args.time_limit)
    return INCOMPLETE if summary["stopped"] else 0


def _timeline_args(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-dir", type=Path, default=None,
                        help="competition folder with <split>.csv, <split>_eegs/, <split>_spectrograms/")
    source.add_argument("--recording", type=Path, default=None, metavar="FILE_OR_DIR",
                        help="a clinical EEG file (EDF, BDF, BrainVision .vhdr, EEGLAB .set, FIF, ... anything MNE "
                             "reads: pip install 'hms_infer[recordings]') or a folder of them")
    p.add_argument("--split", choices=["train", "test"], default=None,
                   help="with --data-dir: train (default): every window along each recording, the labelled ones "
                        "marked; test: each recording's one window")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--eeg-id", type=int, nargs="+", default=None, help="with --data-dir: the recordings to run")
    which.add_argument("--all", action="store_true", help="with --data-dir: every recording of the table")
    p.add_argument("--heads", choices=HEAD_CHOICES, default=None,
                   help="all: head_all, the prediction (default with --data-dir or --spectrogram multitaper); eeg: "
                        "the EEG-only heads head_eeg and head_1d, their probabilities averaged (default with "
                        "--recording: no spectrogram needed)")
    p.add_argument("--spectrogram", choices=SPECTROGRAM_SOURCES, default=None,
                   help="kaggle: the folder's spectrogram files (default with --data-dir); multitaper: rebuilt from "
                        "the EEG (Chronux-style, an approximation of Kaggle's unpublished recipe)")
    p.add_argument("--channel-map", type=Path, default=None, metavar="FILE.yaml",
                   help="with --recording: YAML mapping file channel labels to electrodes, e.g. 'EEG 1: Fp1'")
    p.add_argument("--allow-missing", action="store_true",
                   help="with --recording: fill an electrode without a channel with NaN (a dropped-out channel) "
                        "and flag every window of that recording, instead of an error")
    p.add_argument("--invert-polarity", action="store_true",
                   help="with --recording: multiply every electrode by -1 (exports that store negative-up)")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"with --recording: p(seizure) above which a window counts towards the seizure burden "
                        f"(default {SEIZURE_BURDEN_THRESHOLD:g})")
    p.add_argument("--stride", type=float, default=TIMELINE_STRIDE_S,
                   help=f"seconds between windows (default {TIMELINE_STRIDE_S:g}: the spectrograms' resolution; a "
                        "multiple of 0.005 s)")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="also show the report's figure of the window at this offset on each page")
    p.add_argument("--members", action="store_true", help="also each member's probabilities in timeline.parquet")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for timeline.parquet, <eeg_id>.png/.html, index.html, timeline.json")
    _manifest_args(p)
    _run_args(p, shard=PART_SHARDS)
    _time_limit_arg(p)
    p.add_argument("--chunk-recordings", type=int, default=None,
                   help=f"with --data-dir: whole recordings per resumable part in OUT/timeline.parts/ (default "
                        f"{TIMELINE_CHUNK_RECORDINGS})")
    p.add_argument("--chunk-windows", type=int, default=None,
                   help=f"with --recording: windows per resumable part (default {RECORDING_CHUNK_WINDOWS})")


def _given(value: T | None, default: T) -> T:
    """An option's value, or its default where it was not given (options whose meaning depends on others)."""
    return default if value is None else value


def _timeline(args: argparse.Namespace) -> int:
    common = dict(out=args.out, manifest=_manifest_path(args), stride=args.stride, at=args.at, members=args.members,
                  weights_dir=args.weights_dir, options=_options(args), time_limit=args.time_limit,
                  heads=args.heads)
    if args.recording is not None:
        from .tasks.timeline_recording import timeline_recordings
        if args.eeg_id or args.all:
            raise HMSInputError("--eeg-id and --all choose recordings of a --data-dir table; --recording runs every "
                                "segment of its file(s)")
        table = [o for o, v in (("--split", args.split), ("--chunk-recordings", args.chunk_recordings))
                 if v is not None]
        if table:
            raise HMSInputError(f"{', '.join(table)}: options of --data-dir (a competition folder)")
        summary = timeline_recordings(recording=args.recording, spectrogram=args.spectrogram,
                                      channel_map=args.channel_map, allow_missing=args.allow_missing,
                                      invert_polarity=args.invert_polarity,
                                      threshold=_given(args.threshold, SEIZURE_BURDEN_THRESHOLD),
                                      chunk_windows=_given(args.chunk_windows, RECORDING_CHUNK_WINDOWS), **common)
    else:
        from .tasks.timeline import timeline
        clinical = [o for o, given in (("--channel-map", args.channel_map is not None),
                                       ("--allow-missing", args.allow_missing),
                                       ("--invert-polarity", args.invert_polarity),
                                       ("--chunk-windows", args.chunk_windows is not None),
                                       ("--threshold", args.threshold is not None)) if given]
        if clinical:
            raise HMSInputError(f"{', '.join(clinical)}: options of --recording (a competition folder's files "
                                f"have the 19 electrodes by name, in µV at 200 Hz)")
        summary = timeline(data_dir=args.data_dir, split=args.split or "train", eeg_ids=args.eeg_id,
                           all_recordings=args.all,
                           chunk_recordings=_given(args.chunk_recordings, TIMELINE_CHUNK_RECORDINGS),
                           spectrogram=args.spectrogram or "kaggle",
                           **{**common, "heads": args.heads or "all"})
    return INCOMPLETE if summary["stopped"] else 0


def _multitaper_check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True,
                   help="competition folder with train.csv, train_eegs/, train_spectrograms/")
    p.add_argument("--eeg-id", type=int, nargs="+", default=None, help="the recordings to compare (default: all)")
    p.add_argument("--out", type=Path, default=None, help="folder for multitaper_check.json and .csv")
    p.add_argument("--max-lag", type=int, default=4, metavar="SECONDS",
                   help="try every lag from -SECONDS to SECONDS in 1-s steps (default 4)")


def _multitaper_check(args: argparse.Namespace) -> int:
    from .tasks.multitaper_check import multitaper_check
    multitaper_check(data_dir=args.data_dir, eeg_ids=args.eeg_id, out=args.out, max_lag_s=args.max_lag)
    return 0


def _bundle_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument("--wheels", type=Path, required=True, help="folder with the staged wheels")
    p.add_argument("--requirements", type=Path, required=True, help="the name==version pins of those wheels")
    p.add_argument("--kernel", type=Path, required=True, help="kernel.py to bundle")
    p.add_argument("--weights-dir", type=Path, default=None, help="folder of the checkpoints to bundle")
    p.add_argument("--manifest", type=Path, default=None,
                   help="the manifest (default: WEIGHTS_DIR's if it has one, else --default-manifest)")
    p.add_argument("--default-manifest", type=Path, default=Path(MANIFEST_NAME), help="the repo's manifest")
    p.add_argument("--commit", default="unknown", help="the git commit the bundle is built from")
    p.add_argument("--notebook-out", type=Path, default=None, help="the notebook folder to write")
    p.add_argument("--notebook-cell", type=Path, default=None, help="the notebook's one cell (a python script)")


def _bundle(args: argparse.Namespace) -> int:
    from .tasks.bundle import bundle
    bundle(out=args.out, wheels=args.wheels, requirements=args.requirements, kernel=args.kernel,
           weights_dir=args.weights_dir, manifest=args.manifest, default_manifest=args.default_manifest,
           commit=args.commit, notebook_out=args.notebook_out, notebook_cell=args.notebook_cell)
    return 0


@dataclass(frozen=True)
class Command:
    summary: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    example: str


COMMANDS: dict[str, Command] = {
    "predict": Command("run the ensemble on a test folder and write the submission (the default command)",
                       _predict_args, _predict,
                       "python -m hms_infer --test-dir /kaggle/input/hms-harmful-brain-activity-classification "
                       "--out submission.csv --manifest weights/weights_manifest.yaml"),
    "inputs": Command("write the exact model inputs of every row to an .npz", _inputs_args, _inputs,
                      "python -m hms_infer inputs --data-dir hms --split train --flip none,lr --out inputs.npz"),
    "manifest": Command("recognise checkpoints' presets and write a weights manifest", _manifest_cmd_args,
                        _manifest_cmd,
                        "python -m hms_infer manifest weights/cfg_*/*.pt -o weights/weights_manifest.yaml"),
    "convert": Command("checkpoints to .safetensors (no pickle), optionally fp16", _convert_args, _convert,
                       "python -m hms_infer convert weights/cfg_*/*.pt --half"),
    "score": Command("Kaggle's KL-divergence score of a submission against vote counts", _score_args, _score,
                     "python -m hms_infer score --solution train_votes.csv --submission submission.csv"),
    "parity": Command("recompute saved out-of-fold logits per fold and compare", _parity_args, _parity,
                      "python -m hms_infer parity --data-dir hms --table train_folds.csv --preds-dir preds --seed 0 "
                      "--manifest weights/weights_manifest.yaml --report parity.json"),
    "fit-weights": Command("fit group blend weights (and temperatures) on saved OOF logits, cross-validated",
                           _fit_weights_args, _fit_weights,
                           "python -m hms_infer fit-weights --table train_folds.csv --oof cfg_1=cfg_1_oof.csv "
                           "--oof cfg_5=cfg_5_oof.csv --manifest weights/weights_manifest.yaml -o weights/FITTED.yaml"),
    "evaluate": Command("vote-aware scores of prediction sets: group-bootstrap intervals, paired comparisons, a page",
                        _evaluate_args, _evaluate,
                        "python -m hms_infer evaluate --table train_folds.csv --oof cfg_1=cfg_1_oof.csv "
                        "--oof cfg_5=cfg_5_oof.csv --blend --out evaluation/"),
    "pseudo-labels": Command("out-of-fold noisy-student labels for the training code (oof_noisy_student.pkl)",
                             _pseudo_labels_args, _pseudo_labels,
                             "python -m hms_infer pseudo-labels --data-dir hms --table train_folds.csv "
                             "--manifest stage1/weights_manifest.yaml --out oof_noisy_student.pkl"),
    "timeline": Command("the ensemble along whole recordings: a competition folder's (against the experts' "
                        "labels) or clinical EEG files' (EDF, BDF, ...: burden and trends)",
                        _timeline_args, _timeline,
                        "python -m hms_infer timeline --data-dir hms --eeg-id 1628180742 --stride 2 "
                        "--manifest weights/weights_manifest.yaml --out timeline/\n  "
                        "python -m hms_infer timeline --recording patient01.edf --manifest "
                        "weights/weights_manifest.yaml --out patient01/"),
    "multitaper-check": Command("how well the multitaper spectrogram rebuilt from each EEG matches the Kaggle "
                                "spectrogram files of a training folder", _multitaper_check_args, _multitaper_check,
                                "python -m hms_infer multitaper-check --data-dir hms --out multitaper_check/"),
    "bench": Command("time the end-to-end path on synthetic rows, stage by stage", _bench_args, _bench,
                     "python -m hms_infer bench --presets cfg_1,cfg_5 --rows 1 --device cpu --reference"),
    "report": Command("an HTML page per row (signals, images, every member, view and head) and a sortable index",
                      _report_args, _report,
                      "python -m hms_infer report --data-dir hms --split train --eeg-id 1628180742 "
                      "--manifest weights/weights_manifest.yaml --out report/"),
    "demo": Command("random-weight end-to-end run on synthetic data", _demo_args, _demo,
                    "python -m hms_infer demo --dir demo_out"),
    "bundle": Command("the Kaggle offline bundle from staged wheels (build_wheels.sh runs it)", _bundle_args, _bundle,
                      "./build_wheels.sh --weights-dir /path/to/checkpoints"),
}


def _parser(name: str | None) -> argparse.ArgumentParser:
    """The parser of command `name` (None: the main command, whose help lists every command)."""
    command = COMMANDS[name or "predict"]
    formatter = argparse.RawDescriptionHelpFormatter
    if name is not None:
        p = argparse.ArgumentParser(prog=f"python -m hms_infer {name}", description=command.summary,
                                    epilog=f"example:\n  {command.example}", formatter_class=formatter)
    else:
        width = max(map(len, COMMANDS))
        listing = "\n".join(f"  {k:<{width}}  {c.summary}" for k, c in COMMANDS.items())
        p = argparse.ArgumentParser(
            prog="python -m hms_infer", formatter_class=formatter,
            description="Run the HMS ensemble on a test folder and write a submission (the main command), or one "
                        "of the commands below: python -m hms_infer COMMAND --help.",
            epilog=f"commands:\n{listing}\n\nexample:\n  {command.example}")
        p.add_argument("--version", action="version", version=version())
    command.add_args(p)
    return p


def _command_name(argv: Sequence[str]) -> str | None:
    """The command `argv` starts with; None: the main command (its arguments start with an option). A first word
    that names no command is an error listing the commands (exit 2), not the main command's missing options."""
    if not argv or argv[0].startswith("-"):
        return None
    if argv[0] in COMMANDS:
        return argv[0]
    close = difflib.get_close_matches(argv[0], COMMANDS, n=1)
    p = argparse.ArgumentParser(prog="python -m hms_infer", usage="%(prog)s [COMMAND] [options]")
    p.error(f"{argv[0]!r} is not a command{f'; did you mean {close[0]!r}?' if close else ''} (choose from "
            f"{', '.join(COMMANDS)}; python -m hms_infer --help describes them)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    name = _command_name(argv)
    args = _parser(name).parse_args(argv[1:] if name else argv)
    try:
        return COMMANDS[name or "predict"].run(args)
    except HMSInputError as e:
        print(f"hms_infer: error: {e}", file=sys.stderr)
        return 2
