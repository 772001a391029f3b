"""Structured logs: one JSON object per line on stdout, which Cloud Logging reads as a structured entry
(`severity`, `message`, `logging.googleapis.com/trace`, ...)."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(line, default=str) + "\n")
    sys.stdout.flush()
