"""Write the YAMNet front-end test fixture from the shared YAMNet folders (run once, offline).

It keeps a short excerpt of Google's test vectors (coralmicro, Apache-2.0: yamnet_test_audio.bin ->
yamnet_test_spectra.bin) and, for the same samples, the log-mel tensor of the TF-Hub YAMNet TFLite
file, so tests/test_yamnet_frontend.py needs neither ../shared nor an interpreter.

    python tools/make_yamnet_fixtures.py ../shared/weights tests/data/yamnet_frontend.npz
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

FRAMES = 10  # 25 ms windows every 10 ms: 1840 samples, a few KB
SPECTRA_IN = "yamnet_audioset_int8_spectra_in_tflite"
DYNINT8 = "yamnet_audioset_tflite_dynint8"
SHA256 = {
    f"{SPECTRA_IN}/yamnet_test_audio.bin": "5395801333be842af0a9fffe8d699c199c10f83fbaff6f2fb79cbf56121fdc6f",
    f"{SPECTRA_IN}/yamnet_test_spectra.bin": "cec779f36e1ab553a8d38178c1b534deae02876455c06bdac3e2d9b012782fd3",
    f"{DYNINT8}/yamnet.tflite": "687f226c147a2caab4706fbbab5e9cecb14b9a368264bf61108078b1fddf68f5",
}


def checked(root: Path, rel: str) -> Path:
    path = root / rel
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHA256[rel]:
        raise SystemExit(f"{path}: sha256 {digest} is not the expected {SHA256[rel]}")
    return path


def tflite_logmel(model: Path, waveform: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], waveform.astype(np.float32))
    interpreter.invoke()
    (log,) = [d["index"] for d in interpreter.get_tensor_details()
              if d["name"].startswith("yamnet_frames/tf_op_layer_Log/Log")]
    return interpreter.get_tensor(log)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="the shared weights folder")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    audio = np.fromfile(checked(args.weights, f"{SPECTRA_IN}/yamnet_test_audio.bin"), np.int16)
    spectra = np.fromfile(checked(args.weights, f"{SPECTRA_IN}/yamnet_test_spectra.bin"), np.float32).reshape(96, 64)
    logmel = tflite_logmel(checked(args.weights, f"{DYNINT8}/yamnet.tflite"), audio / 32768.0)
    samples = 400 + 160 * (FRAMES - 1)
    np.savez_compressed(args.out, audio_int16=audio[:samples], google_spectra=spectra[:FRAMES],
                        tflite_logmel=logmel[:FRAMES].astype(np.float32))
    print(f"{args.out}: {samples} samples, {FRAMES} frames, {args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
