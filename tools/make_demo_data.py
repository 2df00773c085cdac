"""Write examples/: the small real photo and sound sets `make demo` trains on, with their sources.

    python tools/make_demo_data.py ../shared/data examples

Photos: 3 Caltech-101 classes from caltech-dev10, 40 training photos and 5 held-out photos per class,
picked by a seeded shuffle of the sorted file names, resized so the longest side is 160 px, JPEG
quality 85, no metadata. Sounds: 3 ESC-10 classes from esc10-dev9, every clip, keeping the dataset's
fold split (train = folds 1-3, val = fold 4, test = fold 5: clips cut from one recording share a
fold), re-encoded as Ogg Vorbis (the 16 kHz PCM originals would be about 5 times larger).
Every output file is listed in SOURCES.json with its source path and both files' sha256, so the
subset can be checked and rebuilt. A second run picks the same files and writes the same photos and
the same decoded audio; the Ogg bytes differ in the stream serial number libvorbis draws at random.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
from pathlib import Path

PHOTO_CLASSES = ("butterfly", "starfish", "sunflower")
PHOTOS_TRAIN, PHOTOS_HOLDOUT = 40, 5
PHOTO_SIDE, JPEG_QUALITY = 160, 85
SOUND_CLASSES = ("crying_baby", "dog", "rooster")
SEED = 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resize_photo(src: Path, dst: Path) -> None:
    """Longest side PHOTO_SIDE, kept in its own mode (a few Caltech photos are greyscale)."""
    from PIL import Image

    with Image.open(src) as im:
        im.load()
        if im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
        scale = PHOTO_SIDE / max(im.size)
        if scale < 1:
            im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                           Image.Resampling.LANCZOS)
        im.save(dst, "JPEG", quality=JPEG_QUALITY, optimize=True)


def reencode_clip(src: Path, dst: Path) -> None:
    import soundfile as sf

    data, rate = sf.read(src, dtype="float32")
    sf.write(dst, data, rate, format="OGG", subtype="VORBIS")


def photos(source: Path, out: Path) -> list[dict]:
    rows = []
    for label in PHOTO_CLASSES:
        files = sorted((source / "caltech-dev10" / label).glob("*.jpg"))
        random.Random(f"{SEED}-{label}").shuffle(files)
        for folder, picked in (("photos", files[:PHOTOS_TRAIN]),
                               ("photos-holdout", files[PHOTOS_TRAIN:PHOTOS_TRAIN + PHOTOS_HOLDOUT])):
            for src in sorted(picked):
                dst = out / folder / label / src.name
                dst.parent.mkdir(parents=True, exist_ok=True)
                resize_photo(src, dst)
                rows.append({"file": dst.relative_to(out).as_posix(),
                             "source": src.relative_to(source).as_posix(),
                             "source_sha256": sha256(src), "sha256": sha256(dst)})
    return rows


def sounds(source: Path, out: Path) -> list[dict]:
    rows = []
    for split in ("train", "val", "test"):
        for label in SOUND_CLASSES:
            for src in sorted((source / "esc10-dev9" / split / label).glob("*.wav")):
                dst = out / "sounds" / split / label / (src.stem + ".ogg")
                dst.parent.mkdir(parents=True, exist_ok=True)
                reencode_clip(src, dst)
                rows.append({"file": dst.relative_to(out).as_posix(),
                             "source": src.relative_to(source).as_posix(),
                             "source_sha256": sha256(src), "sha256": sha256(dst)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="the folder holding caltech-dev10/ and esc10-dev9/")
    parser.add_argument("out", type=Path, help="the examples folder (its photos*/ and sounds/ are replaced)")
    args = parser.parse_args()
    for name in ("photos", "photos-holdout", "sounds"):
        shutil.rmtree(args.out / name, ignore_errors=True)
    rows = photos(args.source, args.out) + sounds(args.source, args.out)
    manifest = {"made_by": "tools/make_demo_data.py", "seed": SEED,
                "photos": {"dataset": "Caltech-101 (caltech-dev10 subset)", "licence": "CC BY 4.0",
                           "classes": list(PHOTO_CLASSES), "train_per_class": PHOTOS_TRAIN,
                           "holdout_per_class": PHOTOS_HOLDOUT, "longest_side_px": PHOTO_SIDE,
                           "jpeg_quality": JPEG_QUALITY},
                "sounds": {"dataset": "ESC-10 (esc10-dev9 subset)", "licence": "CC BY 3.0",
                           "classes": list(SOUND_CLASSES), "split": "train = folds 1-3, val = fold 4, test = fold 5",
                           "encoding": "Ogg Vorbis, re-encoded from 16 kHz mono PCM-16 WAV"},
                "files": rows}
    (args.out / "SOURCES.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size = sum((args.out / r["file"]).stat().st_size for r in rows)
    print(f"wrote {len(rows)} files ({size / 1e6:.2f} MB) and SOURCES.json under {args.out}")


if __name__ == "__main__":
    main()
