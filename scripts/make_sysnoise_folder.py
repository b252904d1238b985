#!/usr/bin/python3
"""The image folder of experiments/sysnoise_folder.yaml (issue 20): Fashion-MNIST as 64x64 RGB JPEGs.

Each 28x28 grey image is upscaled to 64x64 with Pillow's BICUBIC, replicated to three channels and
encoded once by Pillow at JPEG quality 90 (4:2:0 chroma subsampling, Pillow's defaults), in the
ImageNet layout that the imagefolder dataset reads:
    OUT/train/<class>/<index>.jpg  and  OUT/val/<class>/<index>.jpg
The first TRAIN training images and the first TEST test images are written, in file order, so the
folder is the same on every machine. qbench evaluates it at image_size 48: the shorter side is
resized 64 -> floor(48 / 0.875) = 54 and the centre 48x48 cropped, so the resize noises apply.

usage: scripts/make_sysnoise_folder.py [OUT] [--train N] [--test N] [--source DIR]
       (defaults: datasets/fmnist-jpeg64, 12000, 2000, /usr/share/datasets/fashion-mnist)
Python is used here to write data only; qbench never runs it.
"""
import argparse
import gzip
import os
import sys

from PIL import Image

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def read_idx(path):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    body, size = data[4 + 4 * dims:], 1
    if dims == 1:
        return list(body[:shape[0]])  # labels
    for d in shape[1:]:
        size *= d
    return [body[i * size:(i + 1) * size] for i in range(shape[0])]  # bytes per item


def find(source, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(source, name)
        if os.path.exists(p):
            return p
    sys.exit(f"{source}: no {stem}[.gz] (Debian's dataset-fashion-mnist package installs it)")


def write_split(images, labels, out, count):
    n = min(count, len(images))
    for c in CLASSES:
        os.makedirs(os.path.join(out, c), exist_ok=True)
    for i in range(n):
        grey = Image.frombytes("L", (28, 28), images[i]).resize((64, 64), Image.BICUBIC)
        Image.merge("RGB", (grey, grey, grey)).save(os.path.join(out, CLASSES[labels[i]], f"{i:05d}.jpg"),
                                                     "JPEG", quality=90)
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", default="datasets/fmnist-jpeg64")
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--source", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    splits = [("train", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", a.train),
              ("val", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", a.test)]
    for split, img, lab, count in splits:
        n = write_split(read_idx(find(a.source, img)), read_idx(find(a.source, lab)), os.path.join(a.out, split), count)
        print(f"{os.path.join(a.out, split)}: {n} JPEGs, 64x64 RGB, quality 90", file=sys.stderr)


if __name__ == "__main__":
    main()
