"""Shared fixtures. The addon package is imported from the source tree (no install needed)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
