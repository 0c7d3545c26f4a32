"""exporters/fingerprint.py: the source hash and library versions every code version uses."""
from exporters import fingerprint


def test_the_source_hash_changes_when_bytes_move_between_a_name_and_its_content(tmp_path):
  (tmp_path / "a").write_bytes(b"bc")
  first = fingerprint.sources_sha256(tmp_path, [tmp_path / "a"])
  (tmp_path / "a").unlink()
  (tmp_path / "ab").write_bytes(b"c")
  assert fingerprint.sources_sha256(tmp_path, [tmp_path / "ab"]) != first


def test_the_source_hash_names_files_relative_to_the_root(tmp_path):
  for folder in ("one", "two"):
    (tmp_path / folder).mkdir()
    (tmp_path / folder / "f.py").write_bytes(b"x = 1\n")
  assert (fingerprint.sources_sha256(tmp_path / "one", [tmp_path / "one" / "f.py"])
          == fingerprint.sources_sha256(tmp_path / "two", [tmp_path / "two" / "f.py"]))


def test_installed_versions_leaves_out_what_is_not_installed():
  versions = fingerprint.installed_versions(["absl-py", "no-such-distribution-xyz"])
  assert list(versions) == ["absl-py"] and versions["absl-py"][0].isdigit()
