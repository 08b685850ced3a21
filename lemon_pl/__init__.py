"""lemon-pl: learning to learn multi-operator networks (LeMON) with PyTorch Lightning."""

__version__ = "0.1.0"
