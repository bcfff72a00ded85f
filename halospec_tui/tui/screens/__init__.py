"""Screens: the live monitor, the end-of-run summary, and the modal dialogs."""
