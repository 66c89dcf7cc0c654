"""Association doctor window: the negotiation explained in words (PS3.8 7.1.1, Table 9-18/9-21).

Opened from the Echo panel (a node) or the Send panel (its selected or failed files): a worker
runs ``operations.diagnose`` — an association proposing exactly what the files need, or a
standard set — and the dialog shows its report line by line: accepted with which transfer
syntax, refused because of the abstract or the transfer syntax, the peer's maximum PDU length,
role selection and user identity replies, implementation name, or why it was rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls
from dicomdesk.ui.widgets import copy_to_clipboard
from dicomdesk.ui.workers import OperationWorker, TaskTracker

__all__ = ["DoctorDialog", "open_doctor"]

_log = logging.getLogger(__name__)


class DoctorDialog(QDialog):
    """Shows one diagnosis: "Diagnosing…" while the worker runs, then the report."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Association doctor — {title}")
        self.resize(760, 520)
        self.result: Any = None
        self.worker: OperationWorker | None = None
        self.heading = QLabel(f"Diagnosing the association with <b>{title}</b>…", self)
        self.heading.setWordWrap(True)
        self.report = QPlainTextEdit(self)
        self.report.setReadOnly(True)
        self.report.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.report.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.report.setPlainText("Proposing presentation contexts…")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.copy_button = QPushButton("Copy report", self)
        self.copy_button.setEnabled(False)
        self.copy_button.clicked.connect(lambda: copy_to_clipboard(self.report.toPlainText()))
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.heading)
        layout.addWidget(self.report, 1)
        layout.addWidget(buttons)

    def show_result(self, result: Any) -> None:
        self.result = result
        ok = bool(getattr(result, "ok", False))
        self.heading.setText("The association was accepted; what the peer said to each proposal:"
                             if ok else "The association could not be established:")
        lines = getattr(result, "lines", None)
        self.report.setPlainText("\n".join(lines) if lines else str(getattr(result, "error", "")))
        self.copy_button.setEnabled(True)

    def show_failure(self, sentence: str) -> None:
        self.heading.setText("The diagnosis could not run:")
        self.report.setPlainText(sentence)
        self.copy_button.setEnabled(True)

    def closeEvent(self, event: Any) -> None:
        if self.worker is not None and self.worker.is_running:
            self.worker.cancel()
        super().closeEvent(event)


def open_doctor(tracker: TaskTracker, target: calls.Target, files: Sequence[Any] | None = None,
                parent: QWidget | None = None) -> DoctorDialog:
    """Show a DoctorDialog for ``target`` and start the diagnosis in a worker."""
    dialog = DoctorDialog(f"{target.name} ({target.called_aet}@{target.host}:{target.port})", parent)
    dialog.worker = tracker.run(calls.diagnose_call(target, files), label=f"diagnose {target.name}",
                                finished=dialog.show_result, failed=dialog.show_failure)
    dialog.show()
    return dialog
