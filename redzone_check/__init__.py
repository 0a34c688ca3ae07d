"""redzone-check: find x86-64 code that uses the System V red zone."""

__version__ = "0.1.0"
