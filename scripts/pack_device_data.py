"""A smaller copy of the offline CIFAR-10 zip for a GPU node, with the same images, pixel for pixel.

A lent GPU machine receives the checkout and carried files, 64 MiB in all; the offline copy is 60.3 MiB. Each
JPEG is transcoded losslessly with ``jpegtran -optimize -copy none`` (optimal Huffman tables, no metadata
markers: the same DCT coefficients, so the same decoded pixels), stored in a zip under the same names, and every
image of the new zip is decoded and compared with the original's before the file is written. Needs ``jpegtran``
(Debian: ``apt-get install -y libjpeg-turbo-progs``).

    python scripts/pack_device_data.py ../shared/data/cifar10-jpeg.zip .device/cifar10-jpeg.zip
"""
from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image


def transcode(blob: bytes) -> bytes:
    out = subprocess.run(["jpegtran", "-optimize", "-copy", "none"], input=blob, capture_output=True, check=True)
    return out.stdout


def pixels(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as img:
        return np.asarray(img.convert("RGB"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    if shutil.which("jpegtran") is None:
        sys.exit("error: no jpegtran here; install it: apt-get install -y libjpeg-turbo-progs")
    with zipfile.ZipFile(args.source) as src:
        names = src.namelist()
        blobs = {n: src.read(n) for n in names}
    jpegs = [n for n in names if n.lower().endswith((".jpg", ".jpeg"))]
    with ThreadPoolExecutor(8) as pool:
        small = dict(zip(jpegs, pool.map(transcode, [blobs[n] for n in jpegs])))
    different = [n for n in jpegs if not np.array_equal(pixels(blobs[n]), pixels(small[n]))]
    if different:
        sys.exit(f"error: {len(different)} images decode differently after transcoding (e.g. {different[0]}); nothing written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as dst:
        for n in names:
            dst.writestr(n, small.get(n, blobs[n]))
    tmp.replace(args.out)
    before, after = args.source.stat().st_size, args.out.stat().st_size
    print(f"{args.out}: {len(jpegs)} images, the same pixels as {args.source}; {after / 2 ** 20:.1f} MiB "
          f"(was {before / 2 ** 20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
