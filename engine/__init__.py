"""engine: repeated sampling with execution-based verification."""

__version__ = "0.1.0"
