"""Extracting the official `tiny-imagenet-200.zip`: `python tinyimagenet.py [ZIP]`.

The zip is checked (a zip, the Tiny ImageNet layout, room on the disk) before anything is
written, extracted into a hidden folder beside it (`.partial.tiny-imagenet-200`), and renamed to
`tiny-imagenet-200/` only once every file came out intact: an interrupted or failed
extraction never leaves a folder that looks complete.  An existing folder is left alone.
Only one process extracts a zip at a time (a lock on the zip).
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from brainprop.data.tinyimagenet import ANNOTATIONS, FOLDER, URL, ZIP_NAME
from brainprop.utils.atomic import partial_path
from brainprop.utils.errors import BrainPropError, Parser, run_command
from brainprop.utils.invocation import Invocation, invoked_as
from brainprop.utils.locks import LockHeld, exclusive


def extract_tinyimagenet(zip_path: str | os.PathLike) -> tuple[Path, bool]:
    """Extract `zip_path` beside it; (the folder, whether it was extracted now).

    Raises BrainPropError (one line saying what to do) for a missing file, a file that
    is not a zip or is truncated or corrupt, a zip without the Tiny ImageNet layout, or
    too little disk space.
    """
    zip_path = Path(zip_path)
    if zip_path.is_dir():
        zip_path = zip_path / ZIP_NAME
    target = zip_path.parent / FOLDER
    if target.is_symlink() and not target.exists():
        raise BrainPropError(
            f"{target} is a symbolic link to nothing (or one of a loop of links): delete it, "
            "or point it at an extracted tiny-imagenet-200 folder, and run again"
        )
    if target.exists():
        return target, False
    if not zip_path.is_file():
        raise BrainPropError(
            f"{zip_path} not found: download {ZIP_NAME} from the official Tiny ImageNet "
            f"page ({URL}), put it in {zip_path.parent} (or pass its path) and run again"
        )
    try:
        with exclusive(zip_path, record_pid=False):
            if target.exists():  # another process extracted it while this one waited
                return target, False
            _unpack(zip_path, target)
    except LockHeld:
        raise BrainPropError(
            f"another process is extracting {zip_path} right now; wait for it to finish "
            f"(then {target} is there)"
        ) from None
    except OSError as exc:  # the zip unreadable, or the folder not writable
        raise BrainPropError(
            f"cannot extract into {target.parent} ({exc.strerror or exc}): move the zip "
            "into a folder you can write and run again"
        ) from None
    return target, True


def _unpack(zip_path: Path, target: Path) -> None:
    again = f"download {ZIP_NAME} again from {URL}"
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BrainPropError(
            f"{zip_path} is not a zip file or is truncated ({exc}); {again}"
        ) from exc
    with archive:
        members = archive.infolist()
        _check_layout(zip_path, [m.filename for m in members], again)
        _check_space(zip_path, members)
        _extract_then_rename(archive, members, target, again)


def _check_layout(zip_path: Path, names: list[str], again: str) -> None:
    """BrainPropError unless every member is under tiny-imagenet-200/ with the known parts."""
    outside = [name for name in names if not name.startswith(f"{FOLDER}/")]
    parts = {
        f"{FOLDER}/wnids.txt": lambda n: n == f"{FOLDER}/wnids.txt",
        f"{FOLDER}/{ANNOTATIONS}": lambda n: n == f"{FOLDER}/{ANNOTATIONS}",
        f"{FOLDER}/train/<wnid>/images/*.JPEG": lambda n: _is_train_image(n),
        f"{FOLDER}/val/images/*.JPEG": lambda n: n.startswith(f"{FOLDER}/val/images/")
        and n.endswith(".JPEG"),
    }
    missing = [part for part, found in parts.items() if not any(map(found, names))]
    if outside or missing:
        problem = f"{outside[0]} is outside {FOLDER}/" if outside else f"no {missing[0]}"
        raise BrainPropError(
            f"{zip_path} does not hold the Tiny ImageNet layout ({problem}; expected "
            f"{', '.join(parts)}); {again}"
        )


def _is_train_image(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 5 and parts[1] == "train" and parts[3] == "images" and name.endswith(".JPEG")


def _check_space(zip_path: Path, members: list[zipfile.ZipInfo]) -> None:
    needed = sum(m.file_size for m in members)
    free = shutil.disk_usage(zip_path.parent).free
    if free < needed:
        raise BrainPropError(
            f"extracting {zip_path.name} needs {needed / 1e6:.0f} MB but {zip_path.parent} "
            f"has {free / 1e6:.0f} MB free; make room or move the zip elsewhere"
        )


def _extract_then_rename(
    archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], target: Path, again: str
) -> None:
    staging = partial_path(target)
    try:
        staging.mkdir()
    except FileExistsError:
        raise BrainPropError(
            f"{staging} exists: another extraction is running, or one was killed; "
            "if none is running, delete it and run again"
        ) from None
    try:
        # A bar on a terminal; nothing in a log file, where redraws would pile up.
        for member in tqdm(members, unit="file", desc="Extracting", disable=None):
            try:
                archive.extract(member, staging)  # checks each file's CRC
            except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                raise BrainPropError(
                    f"{archive.filename} is corrupt ({member.filename}: {exc}); {again}"
                ) from exc
            except OSError as exc:
                raise BrainPropError(f"cannot extract into {target.parent} ({exc})") from exc
        os.rename(staging / FOLDER, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# How this command can be started, and what its errors say when it was not started so.
STARTED_AS = ("tinyimagenet.py", "brainprop-tinyimagenet")
TINYIMAGENET = Invocation("tinyimagenet.py", ("python", "tinyimagenet.py"), ("python", "tinyimagenet.py"))


def main(argv: list[str] | None = None) -> int:
    invoked = invoked_as(STARTED_AS, TINYIMAGENET)
    parser = Parser(
        prog=invoked.name,
        description=f"Extract {ZIP_NAME} (from {URL}) into {FOLDER}/ beside it.",
    )
    parser.add_argument("zip", nargs="?", default=ZIP_NAME,
                        help=f"the zip, or the folder holding it (default: ./{ZIP_NAME})")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return run_command(invoked.name, lambda: _extract(args.zip))


def _extract(zip_path: str) -> int:
    folder, extracted = extract_tinyimagenet(zip_path)
    if not extracted:
        print(f"{folder} already exists; left it alone (delete it to extract again)")
        return 0
    where = "" if folder.parent.resolve() == Path.cwd().resolve() else f" --data-dir {folder.parent}"
    print(f"Extracted {folder}; train with: python main.py TinyImageNet deep BrainProp{where}")
    return 0
