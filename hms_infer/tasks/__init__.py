"""The commands' API functions, one module per command; `cli` is argparse over them."""
