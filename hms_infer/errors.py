"""The one exception users see for bad input: its message names the file (and row) at fault."""


class HMSInputError(ValueError):
    """Bad competition data, manifest, checkpoint or CLI argument; the message says what and where."""
