"""Clinical channel labels -> the 19 electrodes (`constants.ELECTRODES`), in that order.

A label names an electrode when, stripped of surrounding blanks, of one known prefix (`LABEL_PREFIXES`: `EEG `,
`POL ` ...) and of one known reference suffix (`LABEL_REFERENCES`: `-REF`, `-LE`, `-AVG`, `-M1` ...), both compared
case-insensitively, what is left is an electrode's name in any case: `EEG FP1-REF`, `Fp1-LE`, `POL Fp1` and `fp1`
are all Fp1. The modern 10-10 names T7, T8, P7, P8 are the competition's T3, T4, T5, T6 (`ELECTRODE_ALIASES`; MNE's
own alias table, which makes T5/T6 into T9/T10, is not used). A bipolar derivation (`Fp1-F7`, `Fp1-Cz`) is the
difference of two electrodes and names no single one: it is never taken, and a channel map cannot make it one.

A channel map (`load_channel_map`, `--channel-map FILE.yaml`) names the electrode of any label outright and wins over
the automatic naming: a label that merely normalises to an electrode the map gives to another label is ignored, which
is how a file holding two labels for one electrode (`EEG T3-REF` and `EEG T7-REF`) is resolved.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from ..constants import ELECTRODE_ALIASES, ELECTRODES, LABEL_PREFIXES, LABEL_REFERENCES
from ..errors import HMSInputError

logger = logging.getLogger(__name__)

# Case-folded electrode name (canonical or modern alias) -> canonical electrode.
_ELECTRODE_BY_NAME: dict[str, str] = {
    **{name.casefold(): name for name in ELECTRODES},
    **{alias.casefold(): name for alias, name in ELECTRODE_ALIASES.items()},
}


def _electrode(name: str) -> str | None:
    """The canonical electrode a bare name gives (any case; T7/T8/P7/P8 as T3/T4/T5/T6), None if it names none."""
    return _ELECTRODE_BY_NAME.get(name.strip().casefold())


def _without_prefix(label: str) -> str:
    """`label` without one known prefix (`EEG `, `POL ` ..., any case), if something is left after it."""
    for prefix in LABEL_PREFIXES:
        if len(label) > len(prefix) and label[:len(prefix)].casefold() == prefix.casefold():
            return label[len(prefix):].strip()
    return label


def _without_reference(label: str) -> str:
    """`label` without one known reference suffix (`-REF`, `-LE`, `-AVG` ..., any case), if something is left."""
    for reference in LABEL_REFERENCES:
        if len(label) > len(reference) and label[-len(reference):].casefold() == reference.casefold():
            return label[:-len(reference)].strip()
    return label


def normalise_label(label: str) -> str:
    """The electrode a file's channel label names, as `ELECTRODES` spells it (`EEG FP1-REF` -> `Fp1`, `EEG T7-REF`
    -> `T3`), else the label stripped of blanks, its known prefix and reference suffix (`EEG EKG1-REF` -> `EKG1`,
    `Fp1-Cz` -> `Fp1-Cz`): the result names an electrode iff it is in `ELECTRODES`."""
    cleaned = _without_reference(_without_prefix(label.strip()))
    return _electrode(cleaned) or cleaned


def _checked_map(mapping: Any, source: str) -> dict[str, str]:
    """A channel map's entries as label -> canonical electrode; an error naming `source` unless it maps text labels
    to distinct electrodes."""
    example = "e.g. `EEG 1: Fp1`"
    if mapping is None or (isinstance(mapping, Mapping) and not mapping):
        raise HMSInputError(f"{source}: the channel map is empty (expected lines `FILE LABEL: ELECTRODE`, {example})")
    if not isinstance(mapping, Mapping):
        raise HMSInputError(f"{source}: a channel map must map file labels to electrodes ({example}), "
                            f"got a {type(mapping).__name__}")
    checked: dict[str, str] = {}
    label_of: dict[str, str] = {}  # electrode -> the map's label for it
    for label, name in mapping.items():
        if not isinstance(label, str) or not isinstance(name, str):
            raise HMSInputError(f"{source}: channel map entry {label!r}: {name!r}: labels and electrodes must be "
                                f"text (quote numbers: '1': Fp1)")
        electrode = _electrode(name)
        if electrode is None:
            raise HMSInputError(f"{source}: channel map label {label!r} maps to {name!r}, not an electrode (the 19: "
                                f"{', '.join(ELECTRODES)}; T7, T8, P7, P8 are taken as T3, T4, T5, T6)")
        if electrode in label_of:
            raise HMSInputError(f"{source}: channel map labels {label_of[electrode]!r} and {label!r} both map to "
                                f"electrode {electrode}")
        label_of[electrode] = label
        checked[label] = electrode
    return checked


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a mapping naming one key twice is an error (not its last value silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        mapping = super().construct_mapping(node, deep=deep)
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if (key_node.tag, key_node.value) in seen:
                    raise yaml.constructor.ConstructorError(problem=f"label {key_node.value!r} given twice",
                                                            problem_mark=key_node.start_mark)
                seen.add((key_node.tag, key_node.value))
        return mapping


def load_channel_map(path: str | Path) -> dict[str, str]:
    """A channel map file: YAML lines `FILE LABEL: ELECTRODE` (`EEG 1: Fp1`, electrodes in any case, T7/T8/P7/P8
    allowed) -> {file label: canonical electrode}; a one-line error starting with the path if it is missing, not
    YAML, or not a mapping of text labels onto distinct electrodes."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # a SafeLoader
    except FileNotFoundError:
        raise HMSInputError(f"{path}: channel map not found") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())  # one line, whatever the YAML error
        raise HMSInputError(f"{path}: not valid YAML ({where}{problem})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise HMSInputError(f"{path}: unreadable channel map ({e})") from None
    return _checked_map(data, str(path))


@dataclass(frozen=True)
class ChannelMatch:
    """Which of a file's channels are the 19 electrodes: `picks[e]` the index in `labels` of electrode
    `ELECTRODES[e]`, None where it is missing (an all-NaN column); `ignored` the labels not used, in file order;
    `missing` the electrodes not found, in `ELECTRODES` order."""

    picks: tuple[int | None, ...]
    labels: tuple[str, ...]
    ignored: tuple[str, ...]
    missing: tuple[str, ...]

    @property
    def found(self) -> dict[str, str]:
        """Electrode -> the file label it is read from, in `ELECTRODES` order."""
        return {e: self.labels[i] for e, i in zip(ELECTRODES, self.picks) if i is not None}


def _label_index(key: str, labels: tuple[str, ...], source: str) -> int:
    """The index of the file label a channel map key names: the label equal to it, else the one equal to it up to
    case and surrounding blanks; an error naming `source` if none or several are."""
    hits = [i for i, label in enumerate(labels) if label == key]
    if not hits:
        hits = [i for i, label in enumerate(labels) if label.strip().casefold() == key.strip().casefold()]
    if len(hits) > 1:
        raise HMSInputError(f"{source}: channel map label {key!r} matches several of its labels: "
                            f"{', '.join(labels[i] for i in hits)}")
    if not hits:
        raise HMSInputError(f"{source}: channel map label {key!r} is none of its labels: {', '.join(labels)}")
    return hits[0]


def match_channels(labels: Sequence[str], channel_map: Mapping[str, str] | None = None, allow_missing: bool = False,
                   source: str = "recording") -> ChannelMatch:
    """The file's channel `labels` matched to the 19 electrodes: the labels `channel_map` names take its electrode,
    the others the one `normalise_label` gives (unless the map gives that electrode to another label). Errors
    (`HMSInputError` starting with `source`): a map key that is no label, two labels giving one electrode, no
    electrode at all, or (without `allow_missing`) any electrode missing."""
    labels = tuple(labels)
    index_of: dict[str, int] = {}  # electrode -> label index
    key_of: dict[int, str] = {}  # label index -> the map key naming it
    for key, electrode in (_checked_map(channel_map, source) if channel_map else {}).items():
        i = _label_index(key, labels, source)
        if i in key_of:
            raise HMSInputError(f"{source}: channel map labels {key_of[i]!r} and {key!r} both name its label "
                                f"{labels[i]!r}")
        key_of[i], index_of[electrode] = key, i
    mapped = set(index_of)
    for i, label in enumerate(labels):
        electrode = normalise_label(label)
        if i in key_of or electrode not in ELECTRODES or electrode in mapped:
            continue
        if electrode in index_of:
            first = labels[index_of[electrode]]
            raise HMSInputError(f"{source}: labels {first!r} and {label!r} both give electrode {electrode} (name the "
                                f"one to use with --channel-map FILE.yaml, e.g. a line `{first}: {electrode}`)")
        index_of[electrode] = i
    if not index_of:
        raise HMSInputError(f"{source}: no EEG channel among its labels: {', '.join(labels) or '(none)'} (map them "
                            f"to electrodes with --channel-map FILE.yaml)")
    missing = tuple(e for e in ELECTRODES if e not in index_of)
    if missing and not allow_missing:
        raise HMSInputError(f"{source}: no channel for electrode(s) {', '.join(missing)} (labels found: "
                            f"{', '.join(labels)}; map others with --channel-map FILE.yaml or fill them "
                            f"with NaN with --allow-missing)")
    if missing:
        logger.debug("%s: no channel for electrode(s) %s: filled with NaN", source, ", ".join(missing))
    used = set(index_of.values())
    ignored = tuple(label for i, label in enumerate(labels) if i not in used)
    logger.debug("%s: channels ignored: %s", source, ", ".join(ignored) or "none")
    return ChannelMatch(picks=tuple(index_of.get(e) for e in ELECTRODES), labels=labels, ignored=ignored,
                        missing=missing)
