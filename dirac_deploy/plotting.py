"""Small matplotlib helpers shared by the plots (matplotlib is imported by the caller, through `require`)."""

from __future__ import annotations


def readable_log_axis(ax, axis: str = "y") -> None:
    """Log-scale ticks at 1, 2 and 5 per decade, labelled as plain numbers: a range within one decade still
    gets several labelled ticks (the default labels only powers of ten)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0), numticks=30))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_locator(NullLocator())
