"""Datasets: parsers into one record format, checks, transforms and loaders."""
