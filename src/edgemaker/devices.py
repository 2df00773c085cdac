"""Device presets: common boards as flash and RAM budgets for the model (`--device NAME`,
`edgemaker devices`, the web app's device picker).

A board's budget is what it has minus what the rest of the program needs: the firmware (Arduino or
RTOS core, TensorFlow Lite Micro's kernels: about 100-200 kB of flash) and its RAM (stacks, buffers,
the core's heap). Board figures are the vendors' data sheets; the reserves are round assumptions,
stated per board. The model's flash is its .tflite size; its RAM is the tensor arena (TFLM's measured
one when tflite-micro is installed). Explicit --max-flash/--max-ram win over a preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .errors import EdgemakerError

KiB, MiB = 1024, 1024 * 1024


@dataclass(frozen=True)
class Device:
    name: str
    title: str
    flash_bytes: int  # on the board
    ram_bytes: int
    flash_reserve: int  # left for the rest of the program
    ram_reserve: int
    note: str  # where the numbers come from, and what was assumed

    @property
    def max_flash(self) -> int:
        return self.flash_bytes - self.flash_reserve

    @property
    def max_ram(self) -> int:
        return self.ram_bytes - self.ram_reserve

    def to_dict(self) -> dict:
        return {**asdict(self), "max_flash_bytes": self.max_flash, "max_ram_bytes": self.max_ram}


DEVICES = {d.name: d for d in (
    Device("arduino-nano-33-ble-sense", "Arduino Nano 33 BLE Sense (nRF52840)", 1 * MiB, 256 * KiB, 256 * KiB, 64 * KiB,
           "nRF52840: 1 MB flash, 256 kB SRAM; 256 kB of flash left for the Mbed OS core and TFLM, 64 kB of RAM "
           "for the core, stacks and serial buffers"),
    Device("esp32-s3", "ESP32-S3 without PSRAM", 3 * MiB, 512 * KiB, 512 * KiB, 192 * KiB,
           "ESP32-S3: 512 kB SRAM; flash: the 3 MB app partition of the 'Huge APP' scheme (8 MB module), 512 kB "
           "of it for the firmware and TFLM; 192 kB of RAM for the IDF, Wi-Fi off"),
    Device("esp32-s3-psram", "ESP32-S3 with 8 MB PSRAM (N16R8)", 8 * MiB, 8 * MiB, 1 * MiB, 1 * MiB,
           "ESP32-S3-N16R8: 16 MB flash with an 8 MB partition for the app, 8 MB PSRAM for the arena (slower than "
           "SRAM); 1 MB of each for the firmware"),
    Device("imxrt1060", "NXP i.MX RT1060 (Teensy 4.1, MIMXRT1060-EVK)", 8 * MiB, 1 * MiB, 1 * MiB, 256 * KiB,
           "i.MX RT1060: 1 MB on-chip SRAM (TCM + OCRAM), 8 MB QSPI flash on Teensy 4.1; 1 MB of flash and 256 kB "
           "of RAM for the firmware (external SDRAM on the EVK not counted)"),
    Device("raspberry-pi-pico", "Raspberry Pi Pico (RP2040)", 2 * MiB, 264 * KiB, 256 * KiB, 64 * KiB,
           "RP2040: 264 kB SRAM, 2 MB QSPI flash on the Pico; 256 kB of flash and 64 kB of RAM for the firmware"),
    Device("phone", "A phone (Android or iOS app)", 100 * 1000 * 1000, 4096 * MiB, 50 * 1000 * 1000, 3584 * MiB,
           "an app download: 50 MB of a ~100 MB store-friendly app for the model; 512 MB of a 4 GB phone's RAM "
           "(the OS and other apps keep the rest)"),
)}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(" ", "-")


def get_device(name: str) -> Device:
    """The preset called `name` (case, spaces and underscores ignored); else one line listing them."""
    device = DEVICES.get(_key(name))
    if device is None:
        raise EdgemakerError(f"unknown device {name!r}: choose from {', '.join(DEVICES)} "
                             "(or give --max-flash/--max-ram yourself)")
    return device


def limits(device: str | None, max_flash: int | None, max_ram: int | None) -> tuple[int | None, int | None]:
    """(flash, RAM) budgets: explicit values win over the device's."""
    if not device:
        return max_flash, max_ram
    d = get_device(device)
    return (max_flash if max_flash is not None else d.max_flash, max_ram if max_ram is not None else d.max_ram)


def _human(n: int) -> str:
    return f"{n / MiB:g} MB" if n >= MiB and n % (MiB // 4) == 0 else \
        (f"{n / 1e6:g} MB" if n >= 1e6 else f"{n / KiB:g} kB")


def table() -> str:
    """`edgemaker devices`: one line per preset, the budget first."""
    rows = [("device", "model flash", "model RAM", "board"), *(
        (d.name, _human(d.max_flash), _human(d.max_ram),
         f"{d.title}: {_human(d.flash_bytes)} flash, {_human(d.ram_bytes)} RAM")
        for d in DEVICES.values())]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3] for r in rows)
