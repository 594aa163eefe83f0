"""matplotlib, headless. A dependency of rn50; where it cannot be imported (a broken install) the
reports are written without charts and a warning says so."""

from __future__ import annotations

import io
import logging
from typing import Any

log = logging.getLogger(__name__)


def pyplot(what: str) -> Any:
    """``matplotlib.pyplot`` on the Agg backend, or None (logged) when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib cannot be imported: no %s (pip install matplotlib)", what)
        return None
    return plt


def png(fig: Any, *, dpi: int) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()
