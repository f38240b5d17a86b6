"""Files appear whole or not at all, under one temporary-name scheme."""

import pytest

from brainprop.utils.atomic import partial_path, write_atomically

pytestmark = pytest.mark.backend_independent


def test_partial_name_is_hidden_beside_the_file_and_keeps_its_suffix(tmp_path):
    partial = partial_path(tmp_path / "run_weights.weights.h5")
    assert partial.parent == tmp_path
    assert partial.name.startswith(".") and partial.name.endswith(".weights.h5")


def test_a_failed_write_leaves_the_old_file_and_no_partial(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")

    def fail(partial):
        partial.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(path, fail)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_finished_write_replaces_the_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("old")
    write_atomically(path, lambda partial: partial.write_text("new"))
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_write_failing_without_a_file_name_is_raised_naming_the_file(tmp_path):
    import errno

    def full(partial):
        with open(partial, "wb"):
            raise OSError(errno.ENOSPC, "No space left on device")  # as a write to a full disk

    with pytest.raises(OSError) as error:
        write_atomically(tmp_path / "backup.npz", full)
    assert error.value.filename == str(tmp_path / "backup.npz")
    assert error.value.errno == errno.ENOSPC
