"""Clinical channel labels -> the 19 electrodes (`hms_infer.recordings.channels`)."""
from __future__ import annotations

import dataclasses
import random

import pytest
import yaml

from hms_infer.constants import ELECTRODES
from hms_infer.errors import HMSInputError
from hms_infer.recordings.channels import ChannelMatch, load_channel_map, match_channels, normalise_label

# The labels of a TUH EEG Corpus file (01_tcp_ar), in file order.
TUH_LABELS = (
    "EEG FP1-REF", "EEG FP2-REF", "EEG F3-REF", "EEG F4-REF", "EEG C3-REF", "EEG C4-REF", "EEG P3-REF", "EEG P4-REF",
    "EEG O1-REF", "EEG O2-REF", "EEG F7-REF", "EEG F8-REF", "EEG T3-REF", "EEG T4-REF", "EEG T5-REF", "EEG T6-REF",
    "EEG A1-REF", "EEG A2-REF", "EEG FZ-REF", "EEG CZ-REF", "EEG PZ-REF", "EEG ROC-REF", "EEG LOC-REF",
    "EEG EKG1-REF", "EMG-REF", "EEG 26-REF", "EEG 27-REF", "EEG 28-REF", "EEG 29-REF", "EEG 30-REF", "EEG T1-REF",
    "EEG T2-REF", "PHOTIC-REF", "IBI", "BURSTS", "SUPPR",
)
# ELECTRODES order: Fp1 F3 C3 P3 F7 T3 T5 O1 Fz Cz Pz Fp2 F4 C4 P4 F8 T4 T6 O2, read off TUH_LABELS by hand.
TUH_PICKS = (0, 2, 4, 6, 10, 12, 14, 8, 18, 19, 20, 1, 3, 5, 7, 11, 13, 15, 9)
TUH_IGNORED = (
    "EEG A1-REF", "EEG A2-REF", "EEG ROC-REF", "EEG LOC-REF", "EEG EKG1-REF", "EMG-REF", "EEG 26-REF", "EEG 27-REF",
    "EEG 28-REF", "EEG 29-REF", "EEG 30-REF", "EEG T1-REF", "EEG T2-REF", "PHOTIC-REF", "IBI", "BURSTS", "SUPPR",
)


@pytest.mark.parametrize("label", ["EEG FP1-REF", "EEG Fp1", "Fp1-LE", "FP1", "POL Fp1", "Fp1-AVG", "EEG FP1-LE",
                                   "fp1", "  Fp1 ", "EEG-FP1-Ref", "eeg fp1-ref", "Fp1-M1", "Fp1-A2", "POL-Fp1-AV"])
def test_labels_of_fp1(label):
    assert normalise_label(label) == "Fp1"


@pytest.mark.parametrize("label, electrode", [
    ("EEG T7-REF", "T3"), ("T8", "T4"), ("p7-le", "T5"), ("P8", "T6"), ("EEG T3-REF", "T3"), ("T5", "T5"),
    ("T6", "T6"), ("FZ", "Fz"), ("EEG CZ-REF", "Cz"), ("Cz", "Cz"), ("pz-avg", "Pz"), ("O2-A12", "O2"),
])
def test_labels_of_other_electrodes(label, electrode):
    assert normalise_label(label) == electrode


@pytest.mark.parametrize("label, cleaned", [
    ("ECG", "ECG"), ("EKG", "EKG"), ("EEG EKG1-REF", "EKG1"), ("PHOTIC-REF", "PHOTIC"), ("EMG", "EMG"),
    ("EEG A1-REF", "A1"), ("Resp", "Resp"), ("SpO2", "SpO2"), ("Fp1-Cz", "Fp1-Cz"), ("Fp1-F7", "Fp1-F7"),
    ("EEG T1-REF", "T1"), ("T9", "T9"), ("EEG ", "EEG"), ("-REF", "-REF"), ("EEG 26-REF", "26"),
])
def test_labels_of_no_electrode(label, cleaned):
    assert normalise_label(label) == cleaned
    assert cleaned not in ELECTRODES


def test_tuh_labels_match_all_19():
    match = match_channels(TUH_LABELS, source="tuh.edf")
    assert match.picks == TUH_PICKS
    assert match.labels == TUH_LABELS
    assert match.ignored == TUH_IGNORED
    assert match.missing == ()
    assert list(match.found) == list(ELECTRODES)
    assert match.found["Fp1"] == "EEG FP1-REF" and match.found["Fz"] == "EEG FZ-REF"
    assert match.found["O2"] == "EEG O2-REF"
    with pytest.raises(dataclasses.FrozenInstanceError):
        match.picks = ()


def test_modern_names_match_as_the_old_ones():
    modern = {"EEG T3-REF": "EEG T7-REF", "EEG T4-REF": "EEG T8-REF", "EEG T5-REF": "EEG P7-REF",
              "EEG T6-REF": "EEG P8-REF"}
    labels = tuple(modern.get(label, label) for label in TUH_LABELS)
    match = match_channels(labels)
    assert match.picks == TUH_PICKS
    assert match.found["T3"] == "EEG T7-REF" and match.found["T6"] == "EEG P8-REF"


def test_shuffled_labels_pick_the_same_channels():
    labels = list(TUH_LABELS)
    random.Random(7).shuffle(labels)
    assert labels != list(TUH_LABELS)
    match = match_channels(labels)
    assert match.found == match_channels(TUH_LABELS).found
    assert [labels[i] for i in match.picks] == [TUH_LABELS[i] for i in TUH_PICKS]
    assert set(match.ignored) == set(TUH_IGNORED)
    assert list(match.ignored) == [label for label in labels if label in TUH_IGNORED]  # file order


def test_two_labels_for_one_electrode_is_an_error():
    with pytest.raises(HMSInputError) as e:
        match_channels(TUH_LABELS + ("EEG T7-REF",), source="rec.edf")
    assert str(e.value) == ("rec.edf: labels 'EEG T3-REF' and 'EEG T7-REF' both give electrode T3 (name the one to "
                            "use with --channel-map FILE.yaml, e.g. a line `EEG T3-REF: T3`)")


def test_channel_map_resolves_two_labels_for_one_electrode():
    labels = TUH_LABELS + ("EEG T7-REF",)
    match = match_channels(labels, channel_map={"EEG T7-REF": "T3"})
    assert match.found["T3"] == "EEG T7-REF"
    assert match.picks[ELECTRODES.index("T3")] == len(TUH_LABELS)
    assert "EEG T3-REF" in match.ignored and "EEG T7-REF" not in match.ignored


def test_channel_map_wins_over_the_labels_own_names():
    match = match_channels(TUH_LABELS, channel_map={"EEG FP1-REF": "Fp2", "EEG FP2-REF": "fp1"})
    assert match.picks[ELECTRODES.index("Fp1")] == 1
    assert match.picks[ELECTRODES.index("Fp2")] == 0
    assert match.picks[1:11] == TUH_PICKS[1:11] and match.picks[12:] == TUH_PICKS[12:]


SHORT = ("EEG Fp1", "EEG F3", "EEG C3", "EEG P3", "EEG F7", "EEG T5", "EEG O1", "EEG Fz", "EEG Cz", "EEG Pz",
         "ECG", "EEG Fp2", "EEG F4", "EEG C4", "EEG P4", "EEG F8", "EEG T4", "EEG T6")  # no T3, no O2


def test_missing_electrodes_is_an_error_listing_every_label():
    with pytest.raises(HMSInputError) as e:
        match_channels(SHORT, source="night.edf")
    assert str(e.value) == (
        "night.edf: no channel for electrode(s) T3, O2 (labels found: EEG Fp1, EEG F3, EEG C3, EEG P3, EEG F7, EEG T5, "
        "EEG O1, EEG Fz, EEG Cz, EEG Pz, ECG, EEG Fp2, EEG F4, EEG C4, EEG P4, EEG F8, EEG T4, EEG T6; map others "
        "with --channel-map FILE.yaml or fill them with NaN with --allow-missing)")


def test_allow_missing_gives_none():
    match = match_channels(SHORT, allow_missing=True)
    assert match.missing == ("T3", "O2")
    assert match.picks == (0, 1, 2, 3, 4, None, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, None)
    assert match.ignored == ("ECG",)
    assert "T3" not in match.found and len(match.found) == 17


@pytest.mark.parametrize("allow_missing", [False, True])
def test_no_electrode_at_all_is_an_error(allow_missing):
    with pytest.raises(HMSInputError) as e:
        match_channels(["ECG", "Resp", "Fp1-F7"], allow_missing=allow_missing, source="poly.edf")
    assert str(e.value) == ("poly.edf: no EEG channel among its labels: ECG, Resp, Fp1-F7 (map them to electrodes "
                            "with --channel-map FILE.yaml)")
    with pytest.raises(HMSInputError, match=r"^empty.edf: no EEG channel among its labels: \(none\)"):
        match_channels([], allow_missing=allow_missing, source="empty.edf")


def test_channel_map_of_pyedflib_generator_file(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    reader = pyedflib.EdfReader(pyedflib.data.get_generator_filename())
    try:
        labels = reader.getSignalLabels()
    finally:
        reader.close()
    assert len(labels) == 11 and labels[:3] == ["squarewave", "ramp", "pulse"]
    names = ["fp1", "F3", "C3", "P3", "F7", "T7", "P7", "O1", "FZ", "Cz", "Pz"]  # any case, modern names allowed
    path = tmp_path / "map.yaml"
    path.write_text(yaml.safe_dump(dict(zip(labels, names)), sort_keys=False))
    channel_map = load_channel_map(path)
    assert channel_map == dict(zip(labels, ELECTRODES[:11]))
    with pytest.raises(HMSInputError) as e:
        match_channels(labels, channel_map, source="test_generator.edf")
    assert str(e.value).startswith("test_generator.edf: no channel for electrode(s) Fp2, F4, C4, P4, F8, T4, T6, O2 "
                                   f"(labels found: {', '.join(labels)};")
    match = match_channels(labels, channel_map, allow_missing=True)
    assert match.picks == tuple(range(11)) + (None,) * 8
    assert match.missing == ELECTRODES[11:]
    assert match.ignored == ()
    assert match.found["T3"] == labels[5] and match.found["T5"] == labels[6]


def test_channel_map_keys_match_labels_up_to_case():
    match = match_channels(["Chan 1", "EEG 2", "EEG F3"], {"chan 1": "Fp1", "EEG 2": "c3"}, allow_missing=True)
    assert match.found == {"Fp1": "Chan 1", "F3": "EEG F3", "C3": "EEG 2"}
    assert isinstance(match, ChannelMatch)


def test_channel_map_key_that_is_no_label():
    with pytest.raises(HMSInputError) as e:
        match_channels(["Chan 1", "Chan 2"], {"Chan 3": "Fp1"}, source="x.edf")
    assert str(e.value) == "x.edf: channel map label 'Chan 3' is none of its labels: Chan 1, Chan 2"


def test_channel_map_keys_naming_one_label():
    with pytest.raises(HMSInputError) as e:
        match_channels(["Chan 1", "Chan 2"], {"Chan 1": "Fp1", "CHAN 1": "F3"}, source="x.edf")
    assert str(e.value) == "x.edf: channel map labels 'Chan 1' and 'CHAN 1' both name its label 'Chan 1'"


def _map_error(tmp_path, text: str | None) -> str:
    path = tmp_path / "map.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(HMSInputError) as e:
        load_channel_map(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message[len(f"{path}: "):]


def test_channel_map_file_errors(tmp_path):
    assert _map_error(tmp_path, None) == "channel map not found"
    assert _map_error(tmp_path, "EEG 1: [Fp1\n").startswith("not valid YAML (line 2, column 1: ")
    assert _map_error(tmp_path, "") == ("the channel map is empty (expected lines `FILE LABEL: ELECTRODE`, "
                                        "e.g. `EEG 1: Fp1`)")
    assert _map_error(tmp_path, "- Fp1\n- F3\n") == ("a channel map must map file labels to electrodes "
                                                     "(e.g. `EEG 1: Fp1`), got a list")
    assert _map_error(tmp_path, "1: Fp1\n") == ("channel map entry 1: 'Fp1': labels and electrodes must be text "
                                                "(quote numbers: '1': Fp1)")
    assert _map_error(tmp_path, "EEG 1: [Fp1]\n").startswith("channel map entry 'EEG 1': ['Fp1']: ")
    assert _map_error(tmp_path, "EEG 1: Fp1\nEEG 2: EKG\n") == (
        "channel map label 'EEG 2' maps to 'EKG', not an electrode (the 19: Fp1, F3, C3, P3, F7, T3, T5, O1, Fz, Cz, "
        "Pz, Fp2, F4, C4, P4, F8, T4, T6, O2; T7, T8, P7, P8 are taken as T3, T4, T5, T6)")
    assert _map_error(tmp_path, "EEG 1: T3\nEEG 2: t7\n") == ("channel map labels 'EEG 1' and 'EEG 2' both map to "
                                                              "electrode T3")
    assert _map_error(tmp_path, "EEG 1: Fp1\nEEG 1: F3\n") == ("not valid YAML (line 2, column 1: label 'EEG 1' "
                                                             "given twice)")
    assert _map_error(tmp_path, "EEG 1: Fp1\x00\n").startswith("not valid YAML (unacceptable character #x0000")
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(HMSInputError, match="folder.yaml: unreadable channel map"):
        load_channel_map(tmp_path / "folder.yaml")
