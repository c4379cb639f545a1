"""Records: frozen, keyword-only dataclasses. This package imports nothing else
from vnetdiag, so every layer can use it."""
