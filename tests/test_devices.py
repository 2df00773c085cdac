"""Device presets: `edgemaker devices`, `--device NAME` (explicit budgets win, unknown names list the
known ones), and the web app's device picker (a value the schema refuses is a 422)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from edgemaker.cli import cli
from edgemaker.devices import DEVICES, get_device, limits
from edgemaker.errors import EdgemakerError


def test_presets_leave_room_for_the_program():
    nano = get_device("Arduino_Nano 33 BLE Sense")  # case, spaces and underscores ignored
    assert (nano.flash_bytes, nano.ram_bytes) == (1024 * 1024, 256 * 1024)
    assert get_device("raspberry-pi-pico").ram_bytes == 264 * 1024
    for d in DEVICES.values():
        assert 0 < d.max_flash < d.flash_bytes and 0 < d.max_ram < d.ram_bytes and d.note
    assert limits("esp32-s3", None, None) == (DEVICES["esp32-s3"].max_flash, DEVICES["esp32-s3"].max_ram)
    assert limits("esp32-s3", 100, None) == (100, DEVICES["esp32-s3"].max_ram)  # explicit values win
    assert limits(None, 5, 6) == (5, 6)
    with pytest.raises(EdgemakerError, match="unknown device 'nano': choose from arduino-nano-33-ble-sense, "):
        get_device("nano")


def test_devices_command_and_train_device_option(tmp_path):
    out = CliRunner().invoke(cli, ["devices"])
    assert out.exit_code == 0 and all(name in out.output for name in DEVICES)
    assert "768 kB" in out.output.splitlines()[1]  # the Nano's model flash: 1 MB less 256 kB for the program
    listed = json.loads(CliRunner().invoke(cli, ["devices", "--json"]).output)["devices"]
    assert {d["name"]: d["max_ram_bytes"] for d in listed}["raspberry-pi-pico"] == 200 * 1024
    bad = CliRunner().invoke(cli, ["train", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "toaster"])
    assert isinstance(bad.exception, EdgemakerError)  # main() prints it as `error: ...`, exit 2
    assert "unknown device 'toaster'" in str(bad.exception) and "phone" in str(bad.exception)


def test_web_device_picker_passes_a_preset_and_rejects_others(tmp_path):
    from web_helpers import Api

    from edgemaker.web.app import WebConfig, create_app
    from edgemaker.web.worker import device_from_request

    nano = DEVICES["arduino-nano-33-ble-sense"]
    assert device_from_request({"options": {"device": nano.name}}) == (nano.max_flash, nano.max_ram)
    assert device_from_request({"options": {}}) == (None, None) == device_from_request({"options": {"device": ""}})
    api = Api(create_app(WebConfig(home=tmp_path / "projects")))
    offered = api.get("/api/v1/options?task=image").json()["devices"]
    assert [d["name"] for d in offered] == list(DEVICES) and offered[0]["max_flash_bytes"] == nano.max_flash
    assert api.post("/api/v1/projects", json={"name": "p", "task": "image"}).status_code == 201
    for bad in ("toaster", 3, ["phone"]):
        r = api.post("/api/v1/projects/p/train", json={"options": {"device": bad}})
        assert r.status_code == 422 and "device" in r.text, (bad, r.text)
