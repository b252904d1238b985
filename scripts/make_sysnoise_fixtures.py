#!/usr/bin/python3
"""Fixtures for tests/unit/sysnoise (written once and committed; python is never used at run time).

The expected values come from implementations other than lib/sysnoise's own:
  * JPEG: two small images (a 32x24 RGB and a 24x16 grey) encoded by Pillow at quality 90
    (4:2:0 for colour, baseline, standard Huffman tables), then decoded
      - by Pillow (libjpeg-turbo with JDCT_ISLOW and fancy upsampling: Pillow's defaults), and
      - by libjpeg-turbo's own djpeg with `-dct int`, `-dct fast`, `-dct float` and
        `-dct int -nosmooth` (package libjpeg-turbo-progs, needed only to rerun this script).
    The script stops, before writing any decode, if Pillow's decode differs from djpeg's `-dct int`.
  * Resize: a 64x64 RGB and a 64x64 grey image resized by Pillow's Image.resize with BILINEAR and
    BICUBIC (antialiased, ImagingResample) to 56x56, 37x23 and 80x70.
Every image is a PNG (lossless); the sources are smooth gradients with hard-edged shapes (so that
bicubic overshoots and clips) and a little seeded noise.

usage: scripts/make_sysnoise_fixtures.py [OUT_DIR]   (default tests/fixtures/sysnoise)
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

RESIZE_SIZES = [(56, 56), (37, 23), (80, 70)]
FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
DJPEG = {"islow": ["-dct", "int"], "ifast": ["-dct", "fast"], "float": ["-dct", "float"],
         "nofancy": ["-dct", "int", "-nosmooth"]}


def source(width, height, channels, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for c in range(channels):
        base = 40 + 150 * (x / (width - 1)) * (1 - c / 3) + 60 * (y / (height - 1)) * (c + 1) / 3
        base += 25 * np.sin((x + 2 * c) / 3.0) * np.cos(y / 5.0)
        planes.append(base)
    img = np.stack(planes, axis=-1)
    # Hard edges: a bright disc, a dark bar and a one-pixel checker patch.
    disc = (x - width * 0.65) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.2) ** 2
    img[disc] = [250, 245, 235][:channels]
    img[int(height * 0.7):int(height * 0.8), 2:width // 2] = 5
    cy, cx = int(height * 0.15), int(width * 0.1)
    patch = ((np.indices((6, 6)).sum(axis=0) % 2) * 255)[..., None]
    img[cy:cy + 6, cx:cx + 6] = patch
    img += rng.integers(-3, 4, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img if channels == 3 else img[..., 0]


def to_pil(arr):
    return Image.fromarray(arr, "RGB" if arr.ndim == 3 else "L")


def djpeg(path, args):
    out = subprocess.run(["djpeg", *args, "-pnm", path], check=True, capture_output=True).stdout
    with tempfile.NamedTemporaryFile(suffix=".pnm") as f:
        f.write(out)
        f.flush()
        return np.array(Image.open(f.name))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "tests", "fixtures", "sysnoise")
    os.makedirs(out, exist_ok=True)

    for name, arr in [("rgb", source(32, 24, 3, 1)), ("grey", source(24, 16, 1, 2))]:
        to_pil(arr).save(os.path.join(out, f"jpeg_{name}_src.png"))
        jpg = os.path.join(out, f"jpeg_{name}_q90.jpg")
        to_pil(arr).save(jpg, quality=90, subsampling="4:2:0", optimize=False, progressive=False)
        with Image.open(jpg) as im:
            pil = np.array(im)  # Pillow's decoder: JDCT_ISLOW, fancy upsampling (its defaults)
        decodes = {k: djpeg(jpg, a) for k, a in DJPEG.items()}
        if not np.array_equal(pil, decodes["islow"]):
            sys.exit(f"{name}: Pillow's decode differs from djpeg -dct int")
        for k, v in decodes.items():
            to_pil(v).save(os.path.join(out, f"jpeg_{name}_{k}.png"))
            diff = np.abs(v.astype(int) - pil.astype(int))
            print(f"{name} {k}: {int((diff > 0).sum())} values differ from islow, max {int(diff.max())}")

    for name, arr in [("rgb", source(64, 64, 3, 3)), ("grey", source(64, 64, 1, 4))]:
        to_pil(arr).save(os.path.join(out, f"resize_{name}_src.png"))
        for fname, f in FILTERS.items():
            for w, h in RESIZE_SIZES:
                to_pil(arr).resize((w, h), f).save(os.path.join(out, f"resize_{name}_pil_{fname}_{w}x{h}.png"))
    print("wrote", os.path.normpath(out))


if __name__ == "__main__":
    main()
