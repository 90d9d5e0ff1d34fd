"""reconciler: Microsoft Entra ID group-based licensing as code."""

__version__ = "0.1.0"
