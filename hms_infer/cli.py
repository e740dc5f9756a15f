"""Command line: a thin layer over the package API.

    python -m hms_infer --test-dir DIR --out submission.csv [options]     # the main command: predict
    python -m hms_infer inputs|manifest|demo|score|parity|fit-weights|convert|bench|report|pseudo-labels|timeline ...
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .constants import VIEWS
from .errors import HMSInputError

Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _add_runtime_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", type=Path, default=None,
                   help="weights manifest (default: WEIGHTS_DIR/weights_manifest.yaml, else ./weights_manifest.yaml)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="folder the manifest's checkpoint paths are relative to (default: the manifest's folder)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:0,cuda:1 (default auto: all GPUs)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="autocast dtype (default auto: fp16 on GPU, as validated in training; fp32 on CPU)")


def _manifest_path(args: argparse.Namespace) -> Path:
    if args.manifest is not None:
        return args.manifest
    if args.weights_dir is not None and (args.weights_dir / "weights_manifest.yaml").is_file():
        return args.weights_dir / "weights_manifest.yaml"
    return Path("weights_manifest.yaml")


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-dir", type=Path, required=True, help="folder with test.csv, test_eegs/, test_spectrograms/")
    p.add_argument("--out", type=Path, required=True, help="submission CSV to write (atomically)")
    _add_runtime_args(p)
    _add_tta_arg(p)
    _add_batch_args(p)
    _add_shard_arg(p)
    p.add_argument("--compile", action="store_true", help="torch.compile each member (compile time: minutes)")
    p.add_argument("--strict", action="store_true",
                   help="the first row without usable input is an error (default: degraded / fallback rows, "
                        "listed and written to <out>.issues.json)")
    p.add_argument("--time-budget", default=None, metavar="SECONDS",
                   help="never run longer: past the projection, the remaining rows run with fewer TTA views (lrfb, "
                        "fb, lr), then fewer members (from the manifest's end); said in the log and <out>.issues.json")


def _add_tta_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tta", default=None, help=f"comma list of views from {','.join(VIEWS)} (overrides the manifest)")


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-size", default="auto",
                   help="rows per batch (default auto: what fits the GPU's memory, 8 on a 16 GB T4; 4 on CPU)")
    p.add_argument("--num-workers", default="auto",
                   help="DataLoader worker processes (default auto: CPU cores - 1, at most 8; 0: read in-process)")


def _add_shard_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shard", default=None, metavar="I/N",
                   help="compute every N-th batch from the I-th and write it as a part; the shard completing the "
                        "set merges (under torchrun: RANK/WORLD_SIZE, rank 0 merges)")


def _predict(args: argparse.Namespace) -> int:
    from .ensemble import predict
    predict(args.test_dir, args.out, _manifest_path(args), args.weights_dir, args.device, args.precision,
            args.tta, args.batch_size, args.num_workers, shard=args.shard, compile=args.compile, strict=args.strict,
            time_budget=args.time_budget)
    return 0


def _inputs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="competition folder")
    p.add_argument("--split", choices=["test", "train"], default="test")
    p.add_argument("--flip", default="none", help=f"view(s), comma-separated, from {','.join(VIEWS)}")
    p.add_argument("--out", type=Path, required=True, help=".npz to write")


def _inputs(args: argparse.Namespace) -> int:
    from .data import Competition
    from .files import atomic_path
    from .manifest import parse_tta
    from .preprocess import bipolar, eeg_electrodes, spectrogram_image
    views = parse_tta(args.flip, "--flip")
    arrays: dict[str, np.ndarray] = {}
    comp = Competition(args.data_dir, args.split)
    for row, eeg, spect in comp:  # duplicate test rows share a key and identical arrays
        key = f"{args.split}/{row.key}"
        electrodes = eeg_electrodes(eeg)
        for view in views:
            arrays[f"{key}/eeg/{view}"] = bipolar(electrodes, view)
        arrays[f"{key}/spect"] = spectrogram_image(spect)
    with atomic_path(args.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    print(f"hms_infer inputs: {len(comp)} rows, {len(arrays)} arrays -> {args.out}")
    return 0


def _manifest_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help=".pt / .safetensors checkpoints")
    p.add_argument("-o", "--out", type=Path, required=True, help="manifest YAML to write")
    p.add_argument("--blend", choices=["prob", "logit"], default="prob")
    p.add_argument("--tta", default=",".join(VIEWS))


def _manifest(args: argparse.Namespace) -> int:
    from .manifest import write_manifest_for
    manifest = write_manifest_for(args.checkpoints, args.out, tta=args.tta, blend=args.blend)
    for m in manifest.members:
        print(f"{m.name}: {m.arch}, fold {m.fold}, sha256 {m.sha256[:12]}...")
    print(f"hms_infer manifest: {len(manifest.members)} members -> {args.out}")
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dir", type=Path, default=Path("demo_out"), help="where to write the demo (default demo_out/)")
    p.add_argument("--device", default="auto")
    p.add_argument("--rows", type=int, default=4, help="synthetic test rows")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo
    run_demo(args.dir, device=args.device, rows=args.rows)
    return 0


def _score_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solution", type=Path, required=True, help="CSV with eeg_id and the six *_vote columns (votes)")
    p.add_argument("--submission", type=Path, required=True, help="submission CSV, rows in the solution's order")


def _score(args: argparse.Namespace) -> int:
    from .data import read_csv
    from .metric import score
    print(f"score {score(read_csv(args.solution), read_csv(args.submission)):.6f}")
    return 0


def _parity_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="folder with train_eegs/, train_spectrograms/")
    p.add_argument("--table", type=Path, required=True,
                   help="training table with eeg_id, eeg_sub_id, offsets, spectrogram_id, label_id, fold, votes")
    saved = p.add_mutually_exclusive_group(required=True)
    saved.add_argument("--preds-dir", type=Path, help="training layout: PREDS_DIR/<label_id>/pred_<seed>.npy")
    saved.add_argument("--oof", type=Path, help="CSV with label_id and logit_<class> columns")
    p.add_argument("--seed", type=int, default=None, help="the seed in pred_<seed>.npy (with --preds-dir)")
    _add_runtime_args(p)
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="largest |logit difference| that passes (default 0.05: saved OOF came from fp16-mixed)")
    p.add_argument("--report", type=Path, default=None, help="JSON report to write (atomically)")
    p.add_argument("--members", default="*",
                   help="glob on member names selecting one configuration, e.g. 'cfg_1/*' (default: all)")
    _add_batch_args(p)
    _add_shard_arg(p)


def _parity(args: argparse.Namespace) -> int:
    from .parity import format_report, parity, read_oof, read_preds_dir
    if args.preds_dir is not None and args.seed is None:
        raise HMSInputError("--preds-dir needs --seed (the files are PREDS_DIR/<label_id>/pred_<seed>.npy)")
    saved = read_oof(args.oof) if args.oof is not None else read_preds_dir(args.preds_dir, args.seed)
    report = parity(args.data_dir, args.table, _manifest_path(args), saved, args.weights_dir, args.device,
                    args.precision, args.tolerance, args.batch_size, args.num_workers, args.report,
                    members=args.members, shard=args.shard)
    if report.get("merged", True):
        print(format_report(report))
    return 0 if report["passed"] else 1


def _fit_weights_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", type=Path, required=True, help="training table with label_id, fold and the votes")
    p.add_argument("--preds", dest="groups", action="append", default=[], metavar="NAME=DIR",
                   type=lambda s: ("preds", *_group(s, "--preds")),
                   help="a member group's OOF logits in the training layout DIR/<label_id>/pred_<seed>.npy")
    p.add_argument("--oof", dest="groups", action="append", metavar="NAME=CSV",
                   type=lambda s: ("oof", *_group(s, "--oof")),
                   help="a member group's OOF logits as a CSV with label_id and logit_<class> columns")
    p.add_argument("--seed", type=int, default=None, help="the seed in pred_<seed>.npy (with --preds)")
    p.add_argument("--manifest", type=Path, required=True,
                   help="the manifest; a group NAME is its members named NAME or NAME/...")
    p.add_argument("-o", "--out", type=Path, required=True, help="the fitted manifest to write (atomically)")
    p.add_argument("--blend", choices=["prob", "logit"], default=None, help="blend space (default: the manifest's)")
    p.add_argument("--temperature", action="store_true", help="also fit one temperature per group")
    p.add_argument("--report", type=Path, default=None, help="JSON report to write (atomically)")


def _group(spec: str, option: str) -> tuple[str, str]:
    from .fitweights import parse_group
    try:
        return parse_group(spec, option)
    except HMSInputError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _fit_weights(args: argparse.Namespace) -> int:
    from .fitweights import fit_weights, read_groups
    fit_weights(args.table, read_groups(args.groups, args.seed), args.manifest, args.out, args.blend,
                args.temperature, args.report)
    return 0


def _convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoints", nargs="+", type=Path, help=".pt checkpoints")
    p.add_argument("--half", action="store_true",
                   help="store floating tensors as fp16 (half the size; models still load them as fp32)")
    p.add_argument("--out-dir", type=Path, default=None, help="folder to write to (default: beside each checkpoint)")


def _convert(args: argparse.Namespace) -> int:
    from .convert import convert_checkpoints
    for path, out in zip(args.checkpoints, convert_checkpoints(args.checkpoints, args.out_dir, args.half)):
        print(f"hms_infer convert: {path} ({path.stat().st_size / 2**20:.1f} MiB) -> {out} "
              f"({out.stat().st_size / 2**20:.1f} MiB, {'fp16' if args.half else 'dtypes kept'})")
    return 0


def _bench_args(p: argparse.ArgumentParser) -> None:
    members = p.add_mutually_exclusive_group()
    members.add_argument("--presets", default="cfg_1,cfg_5", help="presets with random weights (default cfg_1,cfg_5)")
    members.add_argument("--manifest", type=Path, default=None,
                         help="a manifest's members (its checkpoints where they exist, else random weights)")
    p.add_argument("--weights-dir", type=Path, default=None, help="the manifest's checkpoint folder")
    p.add_argument("--rows", type=int, default=None, help="synthetic rows (default: 4 batches on GPU, 2 on CPU)")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--tta", default=None, help="views (default: the manifest's, all four for presets)")
    p.add_argument("--compile", action="store_true", help="torch.compile each member (counted in the time)")
    p.add_argument("--reference", action="store_true",
                   help="also run the plain path (eager, one forward per view) and compare speed and probabilities")
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    _add_batch_args(p)


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench
    presets = [] if args.manifest else [p.strip() for p in args.presets.split(",") if p.strip()]
    bench(presets, args.manifest, args.weights_dir, args.rows, args.batch_size, args.device, args.precision,
          args.tta, args.compile, args.reference, args.num_workers, args.json)
    return 0


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--test-dir", type=Path, required=True,
                   help="competition folder with <split>.csv, <split>_eegs/, <split>_spectrograms/")
    p.add_argument("--split", choices=["test", "train"], default="test",
                   help="train: the training table (offsets, votes: the page shows them and each row's KL)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--rows", default=None, help="table rows to report, 0-based, comma-separated: 0,5,9")
    which.add_argument("--eeg-id", type=int, nargs="+", default=None, help="every row of these eeg_ids")
    which.add_argument("--all", action="store_true", help="every row (the default)")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNGs, the pages and index.html")
    _add_runtime_args(p)
    _add_tta_arg(p)
    _add_batch_args(p)


def _report(args: argparse.Namespace) -> int:
    try:
        from .report import make_report, parse_rows
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        raise HMSInputError("the report needs matplotlib: pip install 'hms_infer[plot]'") from None
    rows = None if args.rows is None else parse_rows(args.rows)
    make_report(args.test_dir, args.out, _manifest_path(args), args.weights_dir, args.split, rows, args.eeg_id,
                args.device, args.precision, args.tta, args.batch_size, args.num_workers)
    return 0


def _pseudo_labels_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True, help="folder with train_eegs/, train_spectrograms/")
    p.add_argument("--table", type=Path, required=True,
                   help="training table with eeg_id, eeg_sub_id, offsets, spectrogram_id, label_id, fold, votes")
    p.add_argument("--out", type=Path, required=True,
                   help="the pickle to write, e.g. oof_noisy_student.pkl (+ .parquet twin, .issues.json)")
    _add_runtime_args(p)
    p.add_argument("--members", default="*", help="glob on member names (default: all)")
    _add_tta_arg(p)
    p.add_argument("--any-fold", action="store_true",
                   help="rows of a fold without members are predicted by all members (default: an error)")
    p.add_argument("--strict", action="store_true", help="the first row without usable input is an error")
    p.add_argument("--chunk-rows", type=int, default=None,
                   help="windows per resumable part in OUT.parts/ (whole batches; default 1024)")
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after the part that passes this many seconds (exit 3; run again to resume)")
    _add_batch_args(p)
    _add_shard_arg(p)


def _pseudo_labels(args: argparse.Namespace) -> int:
    from .pseudo_labels import CHUNK_ROWS, INCOMPLETE, pseudo_labels
    summary = pseudo_labels(args.data_dir, args.table, _manifest_path(args), args.out, args.weights_dir,
                            args.members, args.tta, args.device, args.precision, args.batch_size, args.num_workers,
                            args.shard, args.any_fold, args.strict,
                            CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows, args.time_limit)
    return INCOMPLETE if summary["stopped"] else 0


def _timeline_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, required=True,
                   help="competition folder with <split>.csv, <split>_eegs/, <split>_spectrograms/")
    p.add_argument("--split", choices=["train", "test"], default="train",
                   help="train (default): every window along each recording, the labelled ones marked; test: each "
                        "recording's one window")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--eeg-id", type=int, nargs="+", default=None, help="the recordings to run")
    which.add_argument("--all", action="store_true", help="every recording of the table")
    p.add_argument("--stride", type=float, default=2.0, help="seconds between windows (default 2: the spectrograms' "
                                                             "resolution; a multiple of 0.005 s)")
    p.add_argument("--at", type=float, default=None, metavar="SECONDS",
                   help="also show the report's figure of the window at this offset on each page")
    p.add_argument("--members", action="store_true", help="also each member's probabilities in timeline.parquet")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for timeline.parquet, <eeg_id>.png/.html, index.html, timeline.json")
    _add_runtime_args(p)
    _add_tta_arg(p)
    _add_batch_args(p)
    _add_shard_arg(p)
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="stop after the part that passes this many seconds (exit 3; run again to resume)")
    p.add_argument("--chunk-recordings", type=int, default=None,
                   help="whole recordings per resumable part in OUT/timeline.parts/ (default 32)")


def _timeline(args: argparse.Namespace) -> int:
    from .constants import TIMELINE_CHUNK_RECORDINGS
    from .sharding import INCOMPLETE
    from .tasks.timeline import timeline
    summary = timeline(data_dir=args.data_dir, out=args.out, manifest=_manifest_path(args), split=args.split,
                       eeg_ids=args.eeg_id, all=args.all, stride=args.stride, at=args.at, members=args.members,
                       weights_dir=args.weights_dir, device=args.device, precision=args.precision, tta=args.tta,
                       batch_size=args.batch_size, num_workers=args.num_workers, shard=args.shard,
                       time_limit=args.time_limit,
                       chunk_recordings=args.chunk_recordings or TIMELINE_CHUNK_RECORDINGS)
    print(summary["report"])
    return INCOMPLETE if summary["stopped"] else 0


COMMANDS: dict[str, Command] = {
    "inputs": ("write the exact model inputs of every row to an .npz", _inputs_args, _inputs),
    "manifest": ("recognise checkpoints' presets and write a weights manifest", _manifest_args, _manifest),
    "demo": ("random-weight end-to-end run on synthetic data", _demo_args, _demo),
    "score": ("Kaggle's KL-divergence score of a submission against vote counts", _score_args, _score),
    "parity": ("recompute saved out-of-fold logits per fold and compare", _parity_args, _parity),
    "fit-weights": ("fit group blend weights (and temperatures) on saved OOF logits, cross-validated",
                    _fit_weights_args, _fit_weights),
    "convert": ("checkpoints to .safetensors (no pickle), optionally fp16", _convert_args, _convert),
    "bench": ("time the end-to-end path on synthetic rows, stage by stage", _bench_args, _bench),
    "report": ("a PNG and an HTML page per row (signals, images, every member, view and head) and an index",
               _report_args, _report),
    "pseudo-labels": ("out-of-fold noisy-student labels for the training code (oof_noisy_student.pkl)",
                      _pseudo_labels_args, _pseudo_labels),
    "timeline": ("the ensemble's predictions along whole recordings, against the experts' labelled windows",
                 _timeline_args, _timeline),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv and argv[0] in COMMANDS:
        help_, add_args, run = COMMANDS[argv[0]]
        parser = argparse.ArgumentParser(prog=f"python -m hms_infer {argv[0]}", description=help_)
        argv = argv[1:]
    else:
        add_args, run = _predict_args, _predict
        parser = argparse.ArgumentParser(
            prog="python -m hms_infer", description="Run the HMS ensemble on a test folder and write a submission.",
            epilog="other commands: " + "; ".join(f"{k}: {v[0]}" for k, v in COMMANDS.items()))
    add_args(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except HMSInputError as e:
        print(f"hms_infer: error: {e}", file=sys.stderr)
        return 2
