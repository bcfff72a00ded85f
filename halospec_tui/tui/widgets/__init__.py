"""Monitor panes, one module per area."""
