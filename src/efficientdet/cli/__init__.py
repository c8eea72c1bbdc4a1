"""Command-line interface: argument parsing only; each command calls one library function."""
