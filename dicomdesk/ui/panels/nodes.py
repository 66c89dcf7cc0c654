"""Nodes panel: the address book editor (add, edit, delete, duplicate, echo) over the TOML file.

Invalid input is refused at the field: a QValidator rejects keystrokes that can never form a
valid value (a 17th AE title character, a backslash — PS3.5 6.2 VR AE; a letter in a port) and
flags incomplete ones, while the label under the form says why in words. ``config.Node`` does
the final validation on save, so the file can never hold a node the CLI would refuse.

Each node may carry a user identity (PS3.7 D.3.3.7: user name and passcode) and DICOM TLS files
(PS3.15 B.1: our certificate and private key, and the CA certificates we trust for the peer);
they are written to the node's ``[node.tls]`` table and used by every panel that talks to it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import calls
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.widgets import StatusLabel
from dicomdesk.ui.workers import OperationWorker

__all__ = ["AeTitleValidator", "NodesPanel", "PortValidator"]

_log = logging.getLogger(__name__)

AE_TITLE_MAX = 16  # PS3.5 6.2, VR AE: 16 bytes maximum


class _ExplainingValidator(QValidator):
    """A validator that keeps the reason for its last verdict, for the message label."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.reason = ""

    def _verdict(self, state: QValidator.State, reason: str = "") -> QValidator.State:
        self.reason = reason
        return state


class AeTitleValidator(_ExplainingValidator):
    """PS3.5 6.2 VR AE: at most 16 characters, no backslash, no control characters, not blank."""

    def validate(self, text: str, pos: int) -> QValidator.State:  # type: ignore[override]
        if "\\" in text:
            return self._verdict(QValidator.State.Invalid,
                                 "An AE title cannot contain a backslash (\\).")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text) or not text.isascii():
            return self._verdict(QValidator.State.Invalid,
                                 "An AE title uses plain ASCII letters, digits and symbols only.")
        if len(text.strip(" ")) > AE_TITLE_MAX or len(text) > AE_TITLE_MAX:
            return self._verdict(QValidator.State.Invalid,
                                 f"An AE title has at most {AE_TITLE_MAX} characters.")
        if not text.strip(" "):
            return self._verdict(QValidator.State.Intermediate, "The AE title must not be empty.")
        return self._verdict(QValidator.State.Acceptable)


class PortValidator(_ExplainingValidator):
    """A TCP port, 1-65535 (0 is not a port a peer can listen on)."""

    def validate(self, text: str, pos: int) -> QValidator.State:  # type: ignore[override]
        if not text:
            return self._verdict(QValidator.State.Intermediate, "The port must not be empty.")
        if not text.isdigit() or not text.isascii():
            return self._verdict(QValidator.State.Invalid, "The port is a number from 1 to 65535.")
        if int(text) > 65535:
            return self._verdict(QValidator.State.Invalid, "The port must be at most 65535.")
        if int(text) == 0:
            return self._verdict(QValidator.State.Intermediate, "The port must be at least 1.")
        return self._verdict(QValidator.State.Acceptable)


class _TextValidator(_ExplainingValidator):
    """Required, single-line text; for the host, no spaces either."""

    def __init__(self, what: str, no_spaces: bool = False, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.what = what
        self.no_spaces = no_spaces

    def validate(self, text: str, pos: int) -> QValidator.State:  # type: ignore[override]
        if self.no_spaces and any(c.isspace() for c in text):
            return self._verdict(QValidator.State.Invalid, f"The {self.what} cannot contain spaces.")
        if not text.strip():
            return self._verdict(QValidator.State.Intermediate, f"The {self.what} must not be empty.")
        return self._verdict(QValidator.State.Acceptable)


class NodesPanel(QWidget):
    """List of nodes on the left, the form of the selected one on the right."""

    #: a node was saved/deleted (after the file was written)
    saved = Signal()
    #: an echo from the form ended: (node as the form described it, EchoResult)
    echoed = Signal(object, object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._editing: str | None = None  # name of the node in the form, None for a new one
        self._echo: OperationWorker | None = None

        self.list = QListWidget(self)
        self.list.currentItemChanged.connect(self._on_current_changed)

        self.name_edit = QLineEdit(self)
        self.aet_edit = QLineEdit(self)
        self.host_edit = QLineEdit(self)
        self.port_edit = QLineEdit(self)
        self.description_edit = QLineEdit(self)
        self.retrieve_combo = QComboBox(self)
        self.retrieve_combo.addItem("C-MOVE (the peer connects back to us)", "move")
        self.retrieve_combo.addItem("C-GET (same association)", "get")
        self.username_edit = QLineEdit(self)
        self.password_edit = QLineEdit(self)
        self.password_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.aet_edit.setPlaceholderText("e.g. PACS (at most 16 characters)")
        self.port_edit.setPlaceholderText("104 or 11112")
        self.username_edit.setPlaceholderText("optional (User Identity, PS3.7 D.3.3.7)")

        self._validators = {
            self.name_edit: _TextValidator("name", parent=self),
            self.aet_edit: AeTitleValidator(self),
            self.host_edit: _TextValidator("host", no_spaces=True, parent=self),
            self.port_edit: PortValidator(self),
        }
        for edit, validator in self._validators.items():
            edit.setValidator(validator)
            edit.textChanged.connect(lambda _t, e=edit: self._field_changed(e))
            edit.inputRejected.connect(lambda e=edit: self._field_rejected(e))

        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("AE title", self.aet_edit)
        form.addRow("Host", self.host_edit)
        form.addRow("Port", self.port_edit)
        form.addRow("Description", self.description_edit)
        form.addRow("Retrieve with", self.retrieve_combo)
        form.addRow("User name", self.username_edit)
        form.addRow("Password", self.password_edit)

        # DICOM TLS (PS3.15 B.1): the group's check box says whether the node uses TLS at all;
        # each file is optional (no certificate: we do not authenticate; no CA: system store).
        self.tls_group = QGroupBox("Secure transport (DICOM TLS)", self)
        self.tls_group.setCheckable(True)
        self.tls_group.setChecked(False)
        self.tls_cert_edit = QLineEdit(self.tls_group)
        self.tls_key_edit = QLineEdit(self.tls_group)
        self.tls_ca_edit = QLineEdit(self.tls_group)
        self.tls_cert_edit.setPlaceholderText("optional: our certificate (PEM), if the peer asks")
        self.tls_key_edit.setPlaceholderText("optional: its private key (PEM)")
        self.tls_ca_edit.setPlaceholderText("optional: CA certificates to trust (PEM); "
                                            "default: the system's")
        tls_form = QFormLayout(self.tls_group)
        self.tls_browse_buttons: dict[str, QPushButton] = {}
        for key, label, edit in (("cert", "Certificate", self.tls_cert_edit),
                                 ("key", "Private key", self.tls_key_edit),
                                 ("ca", "CA file", self.tls_ca_edit)):
            browse = QPushButton("Browse…", self.tls_group)
            browse.clicked.connect(lambda _c=False, k=key: self._choose_tls_file(k))
            self.tls_browse_buttons[key] = browse
            row = QHBoxLayout()
            row.addWidget(edit, 1)
            row.addWidget(browse)
            tls_form.addRow(label, row)
            edit.textChanged.connect(self._tls_changed)
        self.tls_group.toggled.connect(self._tls_changed)
        self.message = StatusLabel(self)

        self.new_button = QPushButton("New", self)
        self.save_button = QPushButton("Save", self)
        self.duplicate_button = QPushButton("Duplicate", self)
        self.delete_button = QPushButton("Delete", self)
        self.echo_button = QPushButton("Echo", self)
        self.new_button.clicked.connect(self.new_node)
        self.save_button.clicked.connect(self.save)
        self.duplicate_button.clicked.connect(self.duplicate)
        self.delete_button.clicked.connect(self.delete)
        self.echo_button.clicked.connect(self.echo)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.save_button, self.duplicate_button,
                       self.delete_button, self.echo_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.addLayout(form)
        right_layout.addWidget(self.tls_group)
        right_layout.addWidget(self.message)
        right_layout.addLayout(buttons)
        right_layout.addStretch(1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.addWidget(self.list)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(splitter)

        ctx.book.changed.connect(self._refill)
        self._refill(ctx.book.nodes)
        if ctx.book.load_error:
            self.message.show_message(ctx.book.load_error, "error")

    # -- list ------------------------------------------------------------------------------
    def _refill(self, nodes: list[Any]) -> None:
        keep = self._editing
        self.list.blockSignals(True)
        self.list.clear()
        for node in nodes:
            item = QListWidgetItem(f"{node.name}\n{node.aet}@{node.host}:{node.port}")
            item.setData(Qt.ItemDataRole.UserRole, node.name)
            self.list.addItem(item)
        self.list.blockSignals(False)
        if keep is not None and self._select(keep):
            return
        if nodes:
            self.list.setCurrentRow(0)
        else:
            self.new_node()

    def _select(self, name: str) -> bool:
        for row in range(self.list.count()):
            if self.list.item(row).data(Qt.ItemDataRole.UserRole) == name:
                self.list.setCurrentRow(row)
                self._load(self.ctx.book.find(name))
                return True
        return False

    def _on_current_changed(self, current: QListWidgetItem | None, _previous: Any) -> None:
        if current is not None:
            self._load(self.ctx.book.find(current.data(Qt.ItemDataRole.UserRole)))

    def _load(self, node: Any | None) -> None:
        self._editing = node.name if node is not None else None
        self.name_edit.setText(node.name if node else "")
        self.aet_edit.setText(node.aet if node else "")
        self.host_edit.setText(node.host if node else "127.0.0.1")
        self.port_edit.setText(str(node.port) if node else "104")
        self.description_edit.setText(node.description if node else "")
        self.retrieve_combo.setCurrentIndex(
            max(0, self.retrieve_combo.findData(node.retrieve if node else "move")))
        self.username_edit.setText((node.username or "") if node else "")
        self.password_edit.setText((node.password or "") if node else "")
        tls = getattr(node, "tls", None) if node else None
        self.tls_group.setChecked(tls is not None)
        for edit, value in ((self.tls_cert_edit, getattr(tls, "cert", None)),
                            (self.tls_key_edit, getattr(tls, "key", None)),
                            (self.tls_ca_edit, getattr(tls, "ca", None))):
            edit.setText(str(value) if value is not None else "")
        self.message.show_message("")
        self.save_button.setEnabled(not self._first_problem())

    # -- validation ------------------------------------------------------------------------
    def _field_changed(self, edit: QLineEdit) -> None:
        validator = self._validators[edit]
        edit.setProperty("invalid", not edit.hasAcceptableInput())
        edit.style().unpolish(edit)
        edit.style().polish(edit)
        if not edit.hasAcceptableInput():
            validator.validate(edit.text(), 0)
            self.message.show_message(validator.reason, "error")
        elif self.message.property("kind") == "error":
            self.message.show_message(self._first_problem() or "")
        self.save_button.setEnabled(not self._first_problem())

    def _field_rejected(self, edit: QLineEdit) -> None:
        # the validator already said Invalid for the refused keystroke; its reason stands
        self.message.show_message(self._validators[edit].reason, "error")

    def _first_problem(self) -> str:
        for edit, validator in self._validators.items():
            if not edit.hasAcceptableInput():
                validator.validate(edit.text(), 0)
                return validator.reason
        return self._tls_problem()

    def _tls_problem(self) -> str:
        """Why the TLS files cannot work, in words ("" when they can or TLS is off)."""
        if not self.tls_group.isChecked():
            return ""
        cert, key, ca = (e.text().strip() for e in (self.tls_cert_edit, self.tls_key_edit,
                                                     self.tls_ca_edit))
        if key and not cert:
            return "A private key needs its certificate: choose the certificate file too."
        for text, what in ((cert, "certificate"), (key, "private key"), (ca, "CA file")):
            if text and not Path(text).expanduser().is_file():
                return f"The TLS {what} file {text} does not exist."
        return ""

    def _tls_changed(self, *_: Any) -> None:
        problem = self._tls_problem()
        if problem:
            self.message.show_message(problem, "error")
        elif self.message.property("kind") == "error":
            self.message.show_message(self._first_problem() or "")
        self.save_button.setEnabled(not self._first_problem())

    def _choose_tls_file(self, which: str) -> None:
        edit = {"cert": self.tls_cert_edit, "key": self.tls_key_edit, "ca": self.tls_ca_edit}[which]
        path, _filter = QFileDialog.getOpenFileName(
            self, "Choose a TLS file", edit.text() or str(Path.home()),
            "PEM files (*.pem *.crt *.cer *.key);;All files (*)")
        if path:
            edit.setText(path)

    def form_tls(self) -> Any:
        """``config.TLSSettings`` from the TLS group, or None when the node uses plain TCP."""
        from dicomdesk import config

        if not self.tls_group.isChecked():
            return None
        cert, key, ca = (e.text().strip() or None for e in (self.tls_cert_edit,
                                                             self.tls_key_edit, self.tls_ca_edit))
        return config.TLSSettings(cert=Path(cert).expanduser() if cert else None,
                                  key=Path(key).expanduser() if key else None,
                                  ca=Path(ca).expanduser() if ca else None)

    def form_node(self) -> Any:
        """The node described by the form; raises config.ConfigError when a field is invalid."""
        from dicomdesk import config

        problem = self._first_problem()
        if problem:
            raise config.ConfigError(problem)
        username = self.username_edit.text().strip() or None
        return config.Node(
            name=self.name_edit.text().strip(),
            aet=self.aet_edit.text(),
            host=self.host_edit.text().strip(),
            port=int(self.port_edit.text()),
            description=self.description_edit.text(),
            tls=self.form_tls(),
            username=username,
            password=(self.password_edit.text() if username else None),
            retrieve=self.retrieve_combo.currentData(),
        )

    # -- actions ---------------------------------------------------------------------------
    def new_node(self) -> None:
        self.list.clearSelection()
        self._load(None)
        self.name_edit.setFocus()

    def save(self) -> bool:
        """Validate the form and write the whole address book; False (and a message) if refused."""
        from dicomdesk import config

        try:
            node = self.form_node()
        except config.ConfigError as exc:
            self.message.show_message(str(exc), "error")
            return False
        nodes = self.ctx.book.nodes
        names = [n.name.casefold() for n in nodes]
        if node.name.casefold() in names and (self._editing or "").casefold() != node.name.casefold():
            self.message.show_message(f"A node named {node.name!r} already exists.", "error")
            return False
        if self._editing is not None and self._editing.casefold() in names:
            nodes[names.index(self._editing.casefold())] = node
        else:
            nodes.append(node)
        if not self._write(nodes, editing=node.name):
            return False
        self.message.show_message(f"Saved {node.name} to {self.ctx.book.path}.", "ok")
        return True

    def duplicate(self) -> None:
        node = self.ctx.book.find(self._editing) if self._editing else None
        if node is None:
            return
        existing = {n.name.casefold() for n in self.ctx.book.nodes}
        suffix = 2
        while f"{node.name} ({suffix})".casefold() in existing:
            suffix += 1
        copy = dataclasses.replace(node, name=f"{node.name} ({suffix})")
        if self._write(self.ctx.book.nodes + [copy], editing=copy.name):
            self.message.show_message(f"Duplicated as {copy.name}.", "ok")

    def delete(self, confirm: bool = True) -> None:
        name = self._editing
        if name is None:
            return
        if confirm and QMessageBox.question(self, "Delete node", f"Delete the node {name!r}?") \
                != QMessageBox.StandardButton.Yes:
            return
        nodes = [n for n in self.ctx.book.nodes if n.name != name]
        self._editing = None
        if self._write(nodes, editing=None):
            self.message.show_message(f"Deleted {name}.", "ok")

    def _write(self, nodes: list[Any], editing: str | None) -> bool:
        from dicomdesk import config

        self._editing = editing
        try:
            self.ctx.book.replace_all(nodes)
        except (config.ConfigError, OSError) as exc:
            self.message.show_message(f"Could not save the address book: {exc}", "error")
            return False
        self.saved.emit()
        return True

    def echo(self) -> OperationWorker | None:
        """C-ECHO the node as the form describes it (saved or not), result under the form."""
        from dicomdesk import config

        try:
            node = self.form_node()
        except config.ConfigError as exc:
            self.message.show_message(str(exc), "error")
            return None
        if self._echo is not None:
            return self._echo
        self.message.show_message(f"Echoing {node.aet}@{node.host}:{node.port}…")
        def finished(result: Any) -> None:
            if getattr(result, "ok", False):
                self.message.show_message(
                    f"{node.name} answered the echo in {result.rtt_ms:.0f} ms.", "ok")
            else:
                self.message.show_message(f"{node.name}: {result.error}", "error")
            self.echoed.emit(node, result)  # the Echo panel lists it too

        self._echo = self.ctx.tracker.run(
            calls.echo_call(calls.target_from_node(node, self.ctx.local_aet())),
            label=f"echo {node.name}", finished=finished,
            failed=lambda s: self.message.show_message(s, "error"),
            done=lambda: setattr(self, "_echo", None))
        return self._echo
