"""QR codes of invitations (PNG), drawn with segno (pure Python, BSD-3-Clause).

CPU work: call it in the executor. The picture carries the invitation's one-time secret,
so it is only served to signed-in users (Home Assistant's image proxy) and never logged.
"""

from __future__ import annotations

import io
from typing import Final

import segno

# Error correction "M" (15 % of the symbol may be damaged) and 8 pixels per module: a
# ~200-character invitation gives a version 8-10 symbol, about 500 pixels wide.
QR_ERROR: Final = "m"
QR_SCALE: Final = 8
QR_BORDER: Final = 4


def invitation_qr_png(text: str) -> bytes:
    """A PNG of the QR code (byte mode, no micro QR) that reads back as ``text``."""
    if not text:
        raise ValueError("nothing to encode")
    symbol = segno.make(text, error=QR_ERROR, micro=False, boost_error=False)
    buf = io.BytesIO()
    symbol.save(buf, kind="png", scale=QR_SCALE, border=QR_BORDER)
    return buf.getvalue()
