"""Without gcloud or Java, starting the emulator says exactly what to install (instead of a stack trace)."""

from __future__ import annotations

import pytest

from tools.emulator import Emulator, MissingPrerequisite


def test_missing_gcloud_and_java_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingPrerequisite) as caught:
        Emulator().start()
    message = str(caught.value)
    assert "gcloud" in message and "Java 17" in message and "cloud-firestore-emulator" in message
