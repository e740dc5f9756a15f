"""Each command's API function, one module per command (`tasks/<command>.py`); `cli.py` calls them by keyword."""
