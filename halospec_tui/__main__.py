from halospec_tui.cli import entry

entry()
