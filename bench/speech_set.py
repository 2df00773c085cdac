"""A speech-like comparison set: spoken command words from Debian's espeak-ng in several voices,
speeds and pitches. Used to compare the audio backbones (docs/benchmarks.md); needs `espeak-ng`.

    python bench/speech_set.py OUT_DIR && edgemaker train OUT_DIR --out runs/speech
"""

from __future__ import annotations

import itertools
import random
import shutil
import subprocess
import sys
from pathlib import Path

WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
VOICES = ("en", "en-us", "en-gb-scotland", "en+f3", "en+m3", "en+f2", "en-us+f4", "en+m7")


def main(out: Path, per_word: int = 24, seed: int = 0) -> None:
    if not shutil.which("espeak-ng"):
        sys.exit("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    rng = random.Random(seed)
    combos = list(itertools.product(VOICES, (110, 140, 170, 200), (25, 45, 65, 85)))
    for word in WORDS:
        folder = out / word
        folder.mkdir(parents=True, exist_ok=True)
        for i, (voice, speed, pitch) in enumerate(rng.sample(combos, per_word)):
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w",
                            str(folder / f"{word}_{i:02d}.wav"), word], check=True, capture_output=True)
    print(f"wrote {len(WORDS)} words x {per_word} clips to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
