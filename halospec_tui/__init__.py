"""HaloSpec TUI: tune speculative decoding draft length on your own inference server."""

__version__ = "0.1.0"
