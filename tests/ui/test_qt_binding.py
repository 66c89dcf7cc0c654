"""The Qt binding we install must not leak references to None (PySide6 6.12.0 did).

On Python 3.11 None is an ordinary object: a binding that drops one reference per call makes
a long session abort with "Fatal Python error: none_dealloc". pyproject.toml pins below 6.12.
"""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject


def test_qt_calls_returning_nothing_keep_the_reference_count_of_none():
    obj = QObject()
    before = sys.getrefcount(None)
    for _ in range(10_000):
        obj.setObjectName("probe")
    assert abs(sys.getrefcount(None) - before) < 100
