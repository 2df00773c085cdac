"""A compare run reuses a stored int8 file only when the code that builds int8 files is the same."""

from edgemaker.experiments.int8file import export_code_id


def test_the_export_code_digest_follows_the_code(tmp_path):
    for folder in ("export", "backbones"):
        (tmp_path / folder).mkdir()
    (tmp_path / "export" / "tflite.py").write_text("SCALE = 1\n")
    (tmp_path / "backbones" / "yamnet.py").write_text("NAME = 'yamnet'\n")
    first = export_code_id(tmp_path)
    assert export_code_id(tmp_path) == first
    (tmp_path / "export" / "tflite.py").write_text("SCALE = 2\n")
    changed = export_code_id(tmp_path)
    assert changed != first
    (tmp_path / "backbones" / "yamnet.py").write_text("NAME = 'yamnet2'\n")
    assert export_code_id(tmp_path) not in (first, changed)


def test_the_package_digest_is_stable():
    assert export_code_id() == export_code_id() and len(export_code_id()) == 16
