"""The preview pane of the Server panel: the selected instance's picture and its tags.

Decoding and the tag dump run in a worker (a large or compressed object must not hold the event
loop); while one runs only the latest request is kept. Dragging over the picture sets the VOI
window (PS3.3 C.11.2.1.2) and re-renders on the GUI thread with one numpy pass
(``preview.render``), at most once per event-loop pass; the wheel steps through the frames of a
multi-frame object.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import QFontDatabase, QImage, QMouseEvent, QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from dicomdesk.ui import preview
from dicomdesk.ui.context import UiContext
from dicomdesk.ui.workers import OperationWorker, WorkerContext

__all__ = ["ImageView", "PreviewPane"]


class ImageView(QLabel):
    """The preview picture; a left-button drag sets the window (PS3.3 C.11.2.1.2): horizontal
    motion changes the width, vertical motion the center, as in most DICOM viewers."""

    #: (center, width) while dragging
    window_dragged = Signal(float, float)
    #: +1 / -1: the wheel steps through the frames of a multi-frame object
    frame_step = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(220, 220)
        self.setToolTip("Drag with the left button: left/right = window width, up/down = level")
        self._origin: QPoint | None = None
        self._start = (0.0, 0.0)
        self.window = (0.0, 0.0)
        self.sensitivity = 1.0  # modality units per pixel of mouse motion

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if event.button() == Qt.MouseButton.LeftButton:
            self._origin = event.position().toPoint()
            self._start = self.window
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self._origin is not None and event.buttons() & Qt.MouseButton.LeftButton:
            delta = event.position().toPoint() - self._origin
            center = self._start[0] + delta.y() * self.sensitivity
            width = max(1.0, self._start[1] + delta.x() * self.sensitivity)
            self.window_dragged.emit(center, width)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._origin = None
        super().mouseReleaseEvent(event)

    def wheelEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        delta = event.angleDelta().y()
        if delta:
            self.frame_step.emit(-1 if delta > 0 else 1)
        event.accept()


class PreviewPane(QTabWidget):
    """Tabs "Image" (picture, caption, window reset, frame slider) and "Tags" (the dump)."""

    #: the ``preview.Preview`` just shown (after a load, a window change or a frame step)
    preview_ready = Signal(object)

    def __init__(self, ctx: UiContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        #: the running decode, None when idle
        self.worker: OperationWorker | None = None
        self._pending: tuple[str, int] | None = None
        self._path = ""
        self._image: preview.ImageData | None = None
        self._window: tuple[float, float] | None = None
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(0)
        self._render_timer.timeout.connect(self._render_now)
        self.image_view = ImageView(self)
        self.image_view.setText("Select an instance to preview it.")
        self.image_view.window_dragged.connect(self.set_window)
        self.caption = QLabel("", self)
        self.caption.setWordWrap(True)
        self.reset_window_button = QPushButton("Reset window", self)
        self.reset_window_button.clicked.connect(self.reset_window)
        self.reset_window_button.setEnabled(False)
        # multi-frame objects: a slider (and the mouse wheel over the picture) picks the frame
        self.frame_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.frame_slider.setMinimum(1)
        self.frame_slider.setPageStep(1)
        self.frame_slider.setToolTip("Frame (the mouse wheel over the picture steps too)")
        self.frame_slider.setVisible(False)
        self.frame_slider.valueChanged.connect(self._on_frame_slider)
        self.image_view.frame_step.connect(
            lambda step: self.frame_slider.setValue(self.frame_slider.value() + step))
        image_box = QWidget(self)
        image_layout = QVBoxLayout(image_box)
        image_layout.addWidget(self.image_view, 1)
        image_layout.addWidget(self.frame_slider)
        caption_row = QHBoxLayout()
        caption_row.addWidget(self.caption, 1)
        caption_row.addWidget(self.reset_window_button)
        image_layout.addLayout(caption_row)
        self.tags_view = QPlainTextEdit(self)
        self.tags_view.setReadOnly(True)
        self.tags_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.tags_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.tags_view.setPlaceholderText("The tags of the selected instance appear here.")
        self.addTab(image_box, "Image")
        self.addTab(self.tags_view, "Tags")

    def show_preview(self, path: str, frame: int = 0) -> None:
        """Decode and dump in a worker; while one runs, only the latest request is kept."""
        if self.worker is not None:
            self._pending = (path, frame)
            return
        same = path == self._path
        self._path = path
        if not same:
            self.image_view.setText("Loading preview…")

        def call(ctx: WorkerContext) -> tuple[Any, str]:
            try:
                image: Any = preview.load_image(path, frame=frame)
            except preview.PreviewError as exc:
                image = str(exc)
            if same and frame:  # another frame of the object shown: the tags did not change
                return image, None
            try:
                dump = preview.tag_dump(path)
            except Exception as exc:  # a file pydicom cannot parse at all
                dump = f"Cannot read the tags of {path}: {exc}"
            return image, dump

        self.worker = self.ctx.tracker.run(call, label="preview", finished=self._preview_loaded,
                                           failed=self._no_preview, done=self._preview_done)

    def _preview_done(self) -> None:
        self.worker = None
        pending, self._pending = self._pending, None
        if pending:
            self.show_preview(*pending)

    def _on_frame_slider(self, value: int) -> None:
        if self._path and self._image is not None and value - 1 != self._image.frame:
            self.show_preview(self._path, value - 1)

    def _no_preview(self, sentence: str) -> None:
        self._image = None
        self.reset_window_button.setEnabled(False)
        self.image_view.clear()
        self.image_view.setText(f"No preview: {sentence}")
        self.caption.setText("")

    def _preview_loaded(self, outcome: tuple[Any, str | None]) -> None:
        image, dump = outcome
        if dump is not None:
            self.tags_view.setPlainText(dump)
        if isinstance(image, str):
            self.frame_slider.setVisible(False)
            self._no_preview(image)
            return
        keep_window = (self._image is not None and self._window is not None
                       and dump is None and not image.rgb)
        self._image = image
        self.frame_slider.blockSignals(True)
        self.frame_slider.setMaximum(max(image.frames, 1))
        self.frame_slider.setValue(image.frame + 1)
        self.frame_slider.blockSignals(False)
        self.frame_slider.setVisible(image.frames > 1)
        if keep_window:  # stepping frames keeps the window the user set
            self.image_view.sensitivity = max((image.high - image.low) / 512.0, 0.05)
            self._render_now()
            return
        self.image_view.sensitivity = max((image.high - image.low) / 512.0, 0.05)
        self.reset_window_button.setEnabled(not image.rgb)
        self.set_window(image.center, image.width)
        self._render_now()

    def set_window(self, center: float, width: float) -> None:
        """New window center/width; the picture is re-rendered once per event-loop pass."""
        self._window = (float(center), max(float(width), 1.0))
        self.image_view.window = self._window
        if not self._render_timer.isActive():
            self._render_timer.start()

    def reset_window(self) -> None:
        if self._image is not None:
            self.set_window(self._image.center, self._image.width)

    def _render_now(self) -> None:
        self._render_timer.stop()
        if self._image is None or self._window is None:
            return
        self._show_image(preview.render(self._image, *self._window))

    def _show_image(self, image: preview.Preview) -> None:
        fmt = QImage.Format.Format_RGB888 if image.rgb else QImage.Format.Format_Grayscale8
        stride = image.width * (3 if image.rgb else 1)
        qimage = QImage(image.pixels, image.width, image.height, stride, fmt).copy()
        pixmap = QPixmap.fromImage(qimage)
        self.image_view.setPixmap(pixmap.scaled(
            self.image_view.size(), Qt.AspectRatioMode.KeepAspectRatio,
            Qt.TransformationMode.SmoothTransformation))
        caption = image.caption
        if not image.rgb:
            caption += f" — window {image.window:g} / level {image.center:g}"
        self.caption.setText(caption)
        self.preview_ready.emit(image)

