"""The token-level view of what the student has not learned yet: an answer with each token shaded by the
student's disagreement with the teacher (KL), the top tokens of both on hover, and the hardest tokens of
the shown answers."""

from __future__ import annotations

import html
import math

from PySide6.QtCore import QUrl, Slot
from PySide6.QtGui import QColor, QCursor, QPalette
from PySide6.QtWidgets import QLabel, QListWidget, QSplitter, QTextBrowser, QToolTip, QVBoxLayout, QWidget

SHADE_FULL_KL = 2.0
"""KL (nats) shaded at full strength by default; lower values fade towards the background."""
SHADE_MIN_FULL_KL = 0.5
"""An answer is shaded relative to its own largest KL, but never above this scale (tiny KLs stay pale)."""


def _visible(token: str) -> str:
    """A token as text in the view: spaces and line ends kept visible."""
    return token.replace("\n", "⏎\n") if token.strip() else token.replace("\n", "⏎\n").replace(" ", "·") or "∅"


def shade(kl: float, base: QColor, accent: QColor, full: float = SHADE_FULL_KL) -> QColor:
    """The background of a token: the palette's base blended towards ``accent`` by KL / ``full`` (capped)."""
    weight = min(max(kl, 0.0) / full, 1.0) if math.isfinite(kl) else 1.0
    return QColor(
        round(base.red() + (accent.red() - base.red()) * weight),
        round(base.green() + (accent.green() - base.green()) * weight),
        round(base.blue() + (accent.blue() - base.blue()) * weight),
    )


def describe_token(score) -> str:
    """The hover text of one token: its KL, the student's choice and both models' top tokens."""
    def top(pairs) -> str:
        return "\n".join(f"  {p:6.1%}  {tok!r}" for tok, p in pairs)

    return (f"{score.text!r}: KL {score.kl:.3f} nats\n"
            f"the student would say {score.student_choice!r} (teacher's probability {score.teacher_p_student_choice:.1%})\n"
            f"teacher's top tokens:\n{top(score.teacher_top)}\nstudent's top tokens:\n{top(score.student_top)}")


class TokenView(QWidget):
    """One scored answer (tokens shaded by KL, hover for details) above the hardest tokens list."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.scores: list = []
        self.caption = QLabel("Press “Where does the student disagree?” to score the shown answers token by token.")
        self.caption.setObjectName("token_view_caption")
        self.caption.setWordWrap(True)
        self.text = QTextBrowser()
        self.text.setObjectName("token_view")
        self.text.setOpenLinks(False)
        self.text.highlighted.connect(self.on_token_hovered)
        self.hardest = QListWidget()
        self.hardest.setObjectName("hardest_tokens")
        self.hardest.setToolTip("Tokens the student disagrees on most over the scored answers (mean KL, times seen)")
        splitter = QSplitter()
        splitter.addWidget(self.text)
        column = QWidget()
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.addWidget(QLabel("<b>Hardest tokens</b>"))
        column_layout.addWidget(self.hardest)
        splitter.addWidget(column)
        splitter.setSizes([600, 200])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(splitter, 1)

    # ---- Public API
    def show_scores(self, scores: list, title: str = "") -> None:
        """Shade each token of an answer by the student's KL from the teacher."""
        self.scores = list(scores)
        palette = self.palette()
        base, accent = palette.color(QPalette.ColorRole.Base), QColor(230, 80, 60)
        text_color = palette.color(QPalette.ColorRole.Text).name()
        finite = [s.kl for s in self.scores if math.isfinite(s.kl)]
        full = max(max(finite, default=0.0), SHADE_MIN_FULL_KL)  # the answer's worst token is the darkest
        spans = []
        for i, score in enumerate(self.scores):
            background = shade(score.kl, base, accent, full).name()
            spans.append(f"<a href='token:{i}' style='background-color:{background}; color:{text_color}; "
                         f"text-decoration:none'>{html.escape(_visible(score.text))}</a>")
        body = "".join(spans).replace("\n", "<br>")
        self.text.setHtml(f"<div style='font-family: monospace; white-space: pre-wrap'>{body}</div>")
        mean = sum(s.kl for s in self.scores) / len(self.scores) if self.scores else 0.0
        self.caption.setText(f"{html.escape(title)} — {len(self.scores)} tokens, mean KL {mean:.3f} nats, darkest "
                             f"{full:.2f}; darker: the student disagrees more. Hover a token for both models' top choices.")

    def show_hardest(self, hardest: list) -> None:
        self.hardest.clear()
        for token, kl, count in hardest:
            self.hardest.addItem(f"{kl:6.3f}  {_visible(token)!r}  ×{count}")

    def token_at(self, index: int) -> str:
        """The hover text of token ``index`` (what a pointer over it shows)."""
        return describe_token(self.scores[index])

    # ---- Slots
    @Slot(QUrl)
    def on_token_hovered(self, url: QUrl) -> None:
        text = url.toString()
        if text.startswith("token:"):
            QToolTip.showText(QCursor.pos(), self.token_at(int(text.split(":", 1)[1])), self.text)
        else:
            QToolTip.hideText()
