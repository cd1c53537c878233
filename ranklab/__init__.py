"""ranklab: shared contracts (settings, schemas, I/O helpers) and the command line."""

__version__ = "0.1.0"
