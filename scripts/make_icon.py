"""Draw the Peer Energy brand icon (two homes trading energy, linked by a bolt).

Regenerate with ``.venv/bin/python scripts/make_icon.py``; it writes
``custom_components/peer_energy/brand/icon.png`` (256x256) and ``icon@2x.png`` (512x512),
and the same picture as ``logo.png`` and ``logo@2x.png`` (Home Assistant shows the logo on
the integration's page), all RGBA with a transparent background. Shapes are drawn on a
large canvas and scaled down with a Lanczos filter so the edges are anti-aliased.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
BRAND = ROOT / "custom_components" / "peer_energy" / "brand"
CANVAS = 2048  # drawing resolution; the outputs are downscaled from it

GREEN = (46, 125, 50, 255)
BLUE = (21, 101, 192, 255)
AMBER = (255, 179, 0, 255)
OUTLINE = (62, 39, 35, 255)


def _px(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Scale unit-square coordinates to the canvas."""
    return [(x * CANVAS, y * CANVAS) for x, y in points]


def _house(draw: ImageDraw.ImageDraw, x0: float, x1: float, colour: tuple[int, ...]) -> None:
    """A house: roof triangle, body, and a door and window cut out (transparent)."""
    mid = (x0 + x1) / 2
    eave = 0.04
    draw.polygon(_px([(x0 - eave, 0.56), (mid, 0.30), (x1 + eave, 0.56)]), fill=colour)
    draw.rectangle(_px([(x0, 0.54), (x1, 0.90)]), fill=colour)
    width = x1 - x0
    clear = (0, 0, 0, 0)
    # Door.
    draw.rectangle(_px([(mid - width * 0.13, 0.70), (mid + width * 0.13, 0.90)]), fill=clear)
    # Window in the gable.
    draw.ellipse(_px([(mid - 0.04, 0.44), (mid + 0.04, 0.52)]), fill=clear)


def _bolt(draw: ImageDraw.ImageDraw) -> None:
    """A lightning bolt between the homes: the energy they trade."""
    bolt = [
        (0.56, 0.06),
        (0.38, 0.50),
        (0.49, 0.50),
        (0.42, 0.94),
        (0.64, 0.42),
        (0.52, 0.42),
        (0.60, 0.06),
    ]
    draw.polygon(_px(bolt), fill=AMBER, outline=OUTLINE, width=int(CANVAS * 0.018))


def render() -> Image.Image:
    """Return the icon at canvas resolution."""
    image = Image.new("RGBA", (CANVAS, CANVAS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    _house(draw, 0.06, 0.36, GREEN)
    _house(draw, 0.64, 0.94, BLUE)
    _bolt(draw)
    return image


def main() -> None:
    """Write the icon and the logo, each in two sizes."""
    BRAND.mkdir(parents=True, exist_ok=True)
    big = render()
    sizes = (("icon.png", 256), ("icon@2x.png", 512), ("logo.png", 256), ("logo@2x.png", 512))
    for name, size in sizes:
        out = big.resize((size, size), Image.Resampling.LANCZOS)
        out.save(BRAND / name, optimize=True)
        print(f"wrote {BRAND / name} ({size}x{size})")


if __name__ == "__main__":
    main()
