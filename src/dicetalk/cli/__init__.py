"""Command-line interface: ``dicetalk <command>``. Each command lives in its own module."""
