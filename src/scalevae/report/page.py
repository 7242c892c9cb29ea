"""The HTML shell of the report: styles, escaping, tables, notes and embedded figures.

Everything is inline (CSS in the head, figures as base64 PNG or WebP), so the page opens anywhere and
fetches nothing from the network.
"""

from __future__ import annotations

import base64
import html
import io
import json

import numpy as np

from ..plot._layout import thin_ticks

_DPI = 90
#: WebP quality of the photographic figures: text and edges stay clean, noise is dropped.
_WEBP_QUALITY = 82

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f6f7f9; color: #1d2330; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2em 1.6em 3em; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #d5dae3; padding-bottom: 0.2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
.sub { color: #5b6475; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0; background: #fff; }
td, th { border: 1px solid #d5dae3; padding: 0.25em 0.7em; text-align: left; font-size: 0.93em; }
th { background: #eef1f5; }
figure { background: #fff; border: 1px solid #d5dae3; border-radius: 6px; padding: 0.6em;
         margin: 0.8em 0; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { color: #3d4554; font-size: 0.9em; margin-top: 0.4em; }
.big { font-size: 1.5em; font-weight: 600; color: #0b6e4f; }
.card { background: #fff; border: 1px solid #d5dae3; border-left: 5px solid #0b6e4f;
        border-radius: 6px; padding: 0.8em 1.1em; margin: 1em 0; }
.warn { border-left-color: #c0392b; }
.inconclusive { border-left-color: #8a93a3; }
.neutral { font-size: 1.2em; font-weight: 600; color: #3d4554; }
.note { color: #7a4b00; background: #fff6e5; border: 1px solid #f0d9a8; border-radius: 4px;
        padding: 0.4em 0.8em; margin: 0.5em 0; font-size: 0.92em; }
pre { background: #fff; border: 1px solid #d5dae3; padding: 0.8em; overflow-x: auto;
      font-size: 0.85em; }
nav a { margin-right: 1em; }
"""


def esc(text):
    """``text`` as HTML-escaped ``str``."""
    return html.escape(str(text))


def figure_html(fig, caption, lossy=False, encoder=None):
    """A matplotlib figure embedded as a base64 image ``<figure>`` with its caption.

    The figure is rendered once (Agg, at :data:`_DPI`, :func:`scalevae.plot.thin_ticks`) and
    encoded by Pillow: plots as PNG on a 256-colour palette (a plot has far fewer colours; a
    quarter of the bytes of a full-colour PNG and as fast), ``lossy`` figures
    (photograph-like: the input image under the keypoints, decoded patches, maps over the
    image) as WebP at quality :data:`_WEBP_QUALITY`, where a palette would band the grey
    levels. With an ``encoder`` (a :class:`concurrent.futures.Executor`) the encoding runs
    there (Pillow releases the GIL) and a future of the HTML is returned.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    fig.set_dpi(_DPI)
    thin_ticks(fig)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    image = Image.fromarray(np.asarray(canvas.buffer_rgba())[..., :3])  # a copy
    if encoder is not None:
        return encoder.submit(_figure_tag, image, caption, lossy)
    return _figure_tag(image, caption, lossy)


def _figure_tag(image, caption, lossy):
    from PIL import Image

    buf = io.BytesIO()
    if lossy:
        # method 2: a tenth of the default effort's time for a few % more bytes
        image.save(buf, format="webp", quality=_WEBP_QUALITY, method=2)
        mime = "webp"
    else:
        image.quantize(256, method=Image.Quantize.FASTOCTREE).save(buf, format="png",
                                                                   compress_level=6)
        mime = "png"
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure><img src="data:image/{mime};base64,{data}" alt="{esc(caption)}">'
            f"<figcaption>{esc(caption)}</figcaption></figure>")


def note(text):
    """A highlighted note (something skipped or worth knowing)."""
    return f'<p class="note">{esc(text)}</p>'


def table(rows, header=None):
    """An HTML table of ``rows`` (sequences of cells), with an optional header row."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


def json_attr(ds, key):
    """An attribute that may hold JSON text; None when absent or unreadable."""
    value = ds.attrs.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def json_block(value):
    """A parsed JSON value (or text that was not JSON) pretty-printed in a ``<pre>`` block."""
    return "<pre>" + esc(json.dumps(value, indent=2, default=str)
                         if not isinstance(value, str) else value) + "</pre>"


def html_page(title, body):
    """The whole page: the head with the inline styles, then ``body`` (HTML parts, or futures
    of them: :func:`figure_html` with an encoder) in order."""
    parts = [p if isinstance(p, str) else p.result() for p in body]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>SI-VAE report: {esc(title)}</title><style>{_CSS}</style></head>"
            "<body><main>" + "\n".join(parts) + "</main></body></html>\n")
