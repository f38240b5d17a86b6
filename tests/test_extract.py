"""Extracting tiny-imagenet-200.zip: complete folders only, one-line refusals."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tinyimagenet_files import write_tiny_imagenet, zip_folder

from brainprop.data.datasets import dataset_spec, load_dataset
from brainprop.data.extract import main

pytestmark = pytest.mark.backend_independent

ROOT = Path(__file__).resolve().parents[1]
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@pytest.fixture(scope="module")
def good_zip(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("zip")
    expected = write_tiny_imagenet(base)
    zip_folder(base / "tiny-imagenet-200", base / "official.zip")
    shutil.rmtree(base / "tiny-imagenet-200")
    (base / "y_test.txt").write_text(" ".join(map(str, expected["y_test"])))
    return base / "official.zip"


def place(good_zip: Path, folder: Path) -> Path:
    return Path(shutil.copy(good_zip, folder / "tiny-imagenet-200.zip"))


def refusal(argv: list[str], capsys, folder: Path) -> str:
    """The one stderr line of a refused extraction, after checking nothing was left."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tinyimagenet.py: error: ")
    assert not [p for p in folder.iterdir() if "tiny-imagenet-200" in p.name and p.is_dir()]
    return err


def test_extracts_beside_the_zip_and_the_loader_reads_it(good_zip, tmp_path, capsys):
    zip_path = place(good_zip, tmp_path)
    assert main([str(zip_path)]) == 0
    out = capsys.readouterr().out
    assert f"--data-dir {tmp_path}" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-imagenet-200", "tiny-imagenet-200.zip"]
    with zipfile.ZipFile(zip_path) as archive:
        files = [n for n in archive.namelist() if not n.endswith("/")]
    assert all((tmp_path / name).is_file() for name in files)
    data = load_dataset(dataset_spec("TinyImageNet"), tmp_path)
    assert " ".join(map(str, data.y_test)) == (good_zip.parent / "y_test.txt").read_text()


def test_default_is_the_zip_in_the_current_directory(good_zip, tmp_path, monkeypatch, capsys):
    place(good_zip, tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert "--data-dir" not in capsys.readouterr().out
    assert (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").is_file()


def test_existing_folder_is_left_alone(good_zip, tmp_path, capsys):
    zip_path = place(good_zip, tmp_path)
    (tmp_path / "tiny-imagenet-200").mkdir()
    (tmp_path / "tiny-imagenet-200" / "mine.txt").write_text("keep")
    assert main([str(tmp_path)]) == 0
    assert "already exists; left it alone" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "tiny-imagenet-200").iterdir()] == ["mine.txt"]
    assert zip_path.is_file()


def test_missing_zip_says_where_to_get_it_and_put_it(tmp_path, capsys):
    err = refusal([str(tmp_path)], capsys, tmp_path)
    assert "not found" in err and URL in err and f"put it in {tmp_path}" in err


def test_not_a_zip(tmp_path, capsys):
    (tmp_path / "tiny-imagenet-200.zip").write_text("<html>404 Not Found</html>")
    err = refusal([str(tmp_path / "tiny-imagenet-200.zip")], capsys, tmp_path)
    assert "is not a zip file or is truncated" in err and URL in err


@pytest.mark.parametrize("keep", [0.3, 0.97])
def test_truncated_zip(good_zip, tmp_path, capsys, keep):
    zip_path = place(good_zip, tmp_path)
    content = zip_path.read_bytes()
    zip_path.write_bytes(content[: int(len(content) * keep)])
    assert "is not a zip file or is truncated" in refusal([str(zip_path)], capsys, tmp_path)


def test_corrupt_member_fails_its_crc_and_leaves_nothing(good_zip, tmp_path, capsys):
    zip_path = place(good_zip, tmp_path)
    with zipfile.ZipFile(zip_path) as archive:
        member = [m for m in archive.infolist() if m.filename.endswith("val_3.JPEG")][0]
    content = bytearray(zip_path.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    content[start + member.compress_size // 2] ^= 0xFF  # stored: the JPEG's own bytes
    zip_path.write_bytes(bytes(content))
    err = refusal([str(zip_path)], capsys, tmp_path)
    assert "is corrupt" in err and "val_3.JPEG" in err and "CRC" in err


@pytest.mark.parametrize(
    "skip, prefix, missing",
    [("val/val_annotations.txt", "tiny-imagenet-200/", "val/val_annotations.txt"),
     ("wnids.txt", "tiny-imagenet-200/", "wnids.txt"),
     ("", "tiny/", "is outside tiny-imagenet-200/")],
)
def test_zip_without_the_layout(good_zip, tmp_path, capsys, skip, prefix, missing):
    source = tmp_path / "src"
    with zipfile.ZipFile(good_zip) as archive:
        archive.extractall(source)
    zip_folder(source / "tiny-imagenet-200", tmp_path / "tiny-imagenet-200.zip", skip, prefix)
    shutil.rmtree(source)
    err = refusal([str(tmp_path / "tiny-imagenet-200.zip")], capsys, tmp_path)
    assert "does not hold the Tiny ImageNet layout" in err and missing in err


def test_root_script_runs_the_extraction(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tinyimagenet.py"), str(tmp_path / "x.zip")],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("tinyimagenet.py: error: ") and URL in result.stderr


def test_second_extraction_at_the_same_time_is_refused_in_one_line(good_zip, tmp_path, capsys):
    zip_path = place(good_zip, tmp_path)
    holder = subprocess.Popen(  # another extraction, holding the zip's lock
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(zip_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        err = refusal([str(zip_path)], capsys, tmp_path)
        assert "another process is extracting" in err
    finally:
        holder.kill()
        holder.wait()
    assert main([str(zip_path)]) == 0  # the lock died with its process


def test_dangling_folder_link_is_refused_in_one_line(good_zip, tmp_path, capsys):
    zip_path = place(good_zip, tmp_path)
    (tmp_path / "tiny-imagenet-200").symlink_to(tmp_path / "gone")
    assert main([str(zip_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "symbolic link to nothing" in err


def test_zip_in_a_read_only_folder_is_refused_in_one_line(good_zip, tmp_path, capsys):
    from filesystems import read_only_folder

    with read_only_folder(tmp_path / "ro", fill=lambda folder: place(good_zip, folder)) as ro:
        err = refusal([str(ro / "tiny-imagenet-200.zip")], capsys, ro)
    assert "cannot extract into" in err


def test_ctrl_c_during_extraction_ends_in_one_line_and_leaves_nothing(
    good_zip, tmp_path, monkeypatch, capsys
):
    zip_path = place(good_zip, tmp_path)
    calls = []

    def extract(self, member, path=None, pwd=None):
        calls.append(member)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, member, path, pwd)

    original = zipfile.ZipFile.extract
    monkeypatch.setattr(zipfile.ZipFile, "extract", extract)
    assert main([str(zip_path)]) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "interrupted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny-imagenet-200.zip"]


def test_extracting_imports_neither_keras_nor_a_backend(good_zip, tmp_path):
    zip_path = place(good_zip, tmp_path)
    script = ("import sys; from brainprop.data.extract import main; status = main([sys.argv[1]]); "
              "print(sorted(m for m in ('keras', 'tensorflow', 'jax') if m in sys.modules)); "
              "sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", script, str(zip_path)], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny-imagenet-200" / "wnids.txt").exists()
    assert result.stdout.splitlines()[-1] == "[]"
    assert result.stderr == ""  # no progress bar when stderr is not a terminal
