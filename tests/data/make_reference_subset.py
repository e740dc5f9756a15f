"""Write tests/data/reference: the compact subset of ../shared/reference that the fidelity tests read from a
plain clone (one test row, one training label row, the tiny model, the preset key lists).

    python tests/data/make_reference_subset.py [--full ../shared/reference]

- hms_sample: test row eeg 3777693186 (files copied as they are); training label 899348838 (eeg 2761330204 at
  7 s, spectrogram 69282694 at 154 s), its files cut to what the window reads (EEG rows before the window's end,
  the 300 spectrogram frames of the window; values unchanged).
- expected_inputs.npz: that row's expected arrays every EEG_STRIDE-th sample / SPECT_STRIDE-th frame and bin
  (strides in subset.json); all four views of the test row, `none` of the training row.
- tiny_model: config.json and weights.safetensors as they are; io.npz with the logits of the test row only (its
  inputs are rebuilt from hms_sample by the preprocessing the expected arrays check).
- state_dict_keys: the eight key lists, gzipped.
"""
from __future__ import annotations

import argparse
import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq

TEST_EEG, TEST_SPECT = 3777693186, 6109005
LABEL = 899348838
EEG_STRIDE, SPECT_STRIDE = 10, 3


def main() -> None:
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser()
    p.add_argument("--full", type=Path, default=here.parents[2] / "shared" / "reference")
    full = p.parse_args().full
    out = here / "reference"
    shutil.rmtree(out, ignore_errors=True)
    sample, dst = full / "hms_sample", out / "hms_sample"
    for d in ("test_eegs", "test_spectrograms", "train_eegs", "train_spectrograms"):
        (dst / d).mkdir(parents=True)
    test = pd.read_csv(sample / "test.csv")
    test[test.eeg_id == TEST_EEG].to_csv(dst / "test.csv", index=False)
    shutil.copy(sample / "test_eegs" / f"{TEST_EEG}.parquet", dst / "test_eegs")
    shutil.copy(sample / "test_spectrograms" / f"{TEST_SPECT}.parquet", dst / "test_spectrograms")

    train = pd.read_csv(sample / "train.csv")
    row = train[train.label_id == LABEL]
    row.to_csv(dst / "train.csv", index=False)
    r = row.iloc[0]
    eeg = pq.read_table(sample / "train_eegs" / f"{r.eeg_id}.parquet")
    end = int(r.eeg_label_offset_seconds * 200) + 10000
    pq.write_table(eeg.slice(0, end), dst / "train_eegs" / f"{r.eeg_id}.parquet", compression="zstd")
    spect = pq.read_table(sample / "train_spectrograms" / f"{r.spectrogram_id}.parquet")
    start = int(r.spectrogram_label_offset_seconds)
    start += start % 2 == 0
    keep = pc.and_(pc.greater_equal(spect["time"], start), pc.less_equal(spect["time"], start + 598))
    pq.write_table(spect.filter(keep), dst / "train_spectrograms" / f"{r.spectrogram_id}.parquet",
                   compression="zstd")

    expected = np.load(full / "expected_inputs.npz")
    keys = [k for k in expected.files if k.startswith((f"test/{TEST_EEG}/", f"train/{LABEL}/"))]
    np.savez_compressed(out / "expected_inputs.npz", **{
        k: expected[k][:, ::EEG_STRIDE] if "/eeg/" in k else expected[k][:, ::SPECT_STRIDE, ::SPECT_STRIDE]
        for k in keys})
    (out / "subset.json").write_text(json.dumps({"eeg_stride": EEG_STRIDE, "spect_stride": SPECT_STRIDE}) + "\n")

    (out / "tiny_model").mkdir()
    for name in ("config.json", "weights.safetensors"):
        shutil.copy(full / "tiny_model" / name, out / "tiny_model")
    config = json.loads((full / "tiny_model" / "config.json").read_text())
    i = config["eeg_ids"].index(TEST_EEG)
    io = np.load(full / "tiny_model" / "io.npz")
    np.savez(out / "tiny_model" / "io.npz", eeg_ids=np.array([TEST_EEG]),
             **{k: io[k][i:i + 1] for k in io.files if k.startswith("logits_")})

    (out / "state_dict_keys").mkdir()
    for tsv in sorted((full / "state_dict_keys").glob("*.tsv")):
        (out / "state_dict_keys" / f"{tsv.name}.gz").write_bytes(gzip.compress(tsv.read_bytes(), mtime=0))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
