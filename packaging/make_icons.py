"""Draw the application icon (a blast cell: a large violet nucleus in a thin rim of pale cytoplasm) and write it
as PNG (Linux, the window), ICO (Windows) and ICNS (macOS) into assets/icons/. Run by hand when the design changes;
the outputs are committed.

    .venv/bin/python packaging/make_icons.py
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"
SIZE = 1024
SUPERSAMPLE = 2


def draw(size: int = SIZE) -> Image.Image:
    s = size * SUPERSAMPLE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    inset = s * 0.06
    d.rounded_rectangle((inset, inset, s - inset, s - inset), radius=s * 0.2, fill=(27, 54, 93, 255))
    # A soft light field behind the cell, as under the microscope.
    glow = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ImageDraw.Draw(glow).ellipse((s * 0.16, s * 0.16, s * 0.84, s * 0.84), fill=(240, 226, 236, 90))
    img = Image.alpha_composite(img, glow.filter(ImageFilter.GaussianBlur(s * 0.04)))
    d = ImageDraw.Draw(img)
    d.ellipse((s * 0.2, s * 0.2, s * 0.8, s * 0.8), fill=(205, 190, 232, 255))        # cytoplasm
    d.ellipse((s * 0.26, s * 0.25, s * 0.76, s * 0.75), fill=(104, 52, 150, 255))     # nucleus
    d.ellipse((s * 0.45, s * 0.36, s * 0.56, s * 0.47), fill=(150, 104, 190, 255))    # nucleolus
    d.ellipse((s * 0.34, s * 0.55, s * 0.41, s * 0.62), fill=(140, 94, 182, 255))     # nucleolus
    return img.resize((size, size), Image.LANCZOS)


def main() -> None:
    ICONS.mkdir(parents=True, exist_ok=True)
    icon = draw()
    icon.resize((256, 256), Image.LANCZOS).save(ICONS / "leukviewer.png", optimize=True)
    icon.resize((256, 256), Image.LANCZOS).save(ICONS / "leukviewer.ico",
                                                sizes=[(16, 16), (24, 24), (32, 32), (48, 48), (64, 64),
                                                       (128, 128), (256, 256)])
    icon.save(ICONS / "leukviewer.icns")
    for path in sorted(ICONS.iterdir()):
        print(f"{path.relative_to(ICONS.parents[1])}: {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
