"""Images that stay on disk: the arrays of an .npz memory-mapped, read a batch at a time.

`load_mapped` maps every array of an uncompressed .npz (what `np.savez` writes) read-only,
so opening a cache of several GB reads none of its images.  Pages a batch touched stay
counted in the process's resident memory until released: `release_pages` hands them back
(the file stays in the page cache, shared and reclaimable), so that memory while training
grows with the batch, not the data set.  `take_rows` picks rows of an array: a copy of an
array in memory, as fancy indexing makes, but a lazy `Rows` of a mapped one, gathered
only when indexed.
"""

from __future__ import annotations

import mmap
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

# A ZIP local file header: its fixed part, and where the lengths of its two variable parts are.
LOCAL_HEADER = struct.Struct("<4s22xHH")
LOCAL_SIGNATURE = b"PK\x03\x04"
# Bytes checksummed at a time: the pages read are released after each chunk.
CRC_CHUNK = 64 * 2**20


def load_mapped(path: Path, in_memory: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of the .npz `path`: those named in `in_memory` read into memory, every
    other one memory-mapped read-only, each checked against its CRC.

    ValueError (or zipfile.BadZipFile, OSError) for a file that is no uncompressed .npz of
    plain arrays, is cut short, or whose contents do not match their checksums.
    """
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as file:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name in in_memory:
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            else:
                arrays[name] = _map_member(path, file, info)
    return arrays


def _map_member(path: Path, file, info: zipfile.ZipInfo) -> np.ndarray:
    """The .npy member `info` of the zip file `path` (open as `file`), memory-mapped."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename} is compressed; only stored members can be mapped")
    file.seek(info.header_offset)
    header = file.read(LOCAL_HEADER.size)
    if len(header) != LOCAL_HEADER.size:
        raise zipfile.BadZipFile(f"{info.filename}: the file ends in its header")
    signature, name_length, extra_length = LOCAL_HEADER.unpack(header)
    if signature != LOCAL_SIGNATURE:
        raise zipfile.BadZipFile(f"no local header for {info.filename}")
    start = info.header_offset + LOCAL_HEADER.size + name_length + extra_length
    file.seek(start)
    version = np.lib.format.read_magic(file)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(file)
    else:
        raise ValueError(f"{info.filename}: .npy format {version} is not mapped")
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects")
    offset = file.tell()
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + nbytes != info.file_size:
        raise ValueError(f"{info.filename}: its header does not match its size")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    array = np.memmap(path, dtype, "r", offset, shape, "F" if fortran else "C")
    _check_crc(file, start, offset, array, info)
    return array


def _check_crc(file, start: int, offset: int, array: np.memmap, info: zipfile.ZipInfo) -> None:
    """ValueError unless the member's bytes (header, then the mapped data) match its CRC."""
    file.seek(start)
    crc = zlib.crc32(file.read(offset - start))
    flat = array.reshape(-1, order="A").view(np.uint8)
    for begin in range(0, len(flat), CRC_CHUNK):
        crc = zlib.crc32(flat[begin : begin + CRC_CHUNK], crc)
        release_pages(array)
    if crc != info.CRC:
        raise ValueError(f"{info.filename} does not match its checksum")


def release_pages(array: object) -> None:
    """Drop the pages of the file mapping behind `array` (a memory-map, a view of one, or
    `Rows` of one) from this process's resident memory; nothing for an array in memory.

    The data stay in the file (and in the page cache): the next read maps them again.
    """
    mapping = _mapping(array)
    if mapping is not None and hasattr(mmap, "MADV_DONTNEED") and not mapping.closed:
        mapping.madvise(mmap.MADV_DONTNEED)


def is_mapped(array: object) -> bool:
    """Whether `array` is a memory-map, a view of one, or `Rows` of one."""
    return _mapping(array) is not None


def _mapping(array: object) -> mmap.mmap | None:
    """The file mapping at the end of `array`'s chain of bases, if any."""
    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    return base


class Rows:
    """Rows `indices` of `base`, gathered only when indexed: a row subset of a mapped array
    that copies nothing until a batch is taken.

    Indexing takes the same rows as `base[indices][key]` would, from `base` directly.
    `np.asarray` gathers them all.
    """

    def __init__(self, base: np.ndarray, indices: np.ndarray):
        self.base = base
        self.indices = np.asarray(indices, dtype=np.int64)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.indices), *self.base.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> np.ndarray:
        return self.base[self.indices[key]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        rows = self.base[self.indices]
        return rows if dtype is None else rows.astype(dtype)


def take_rows(array: np.ndarray, indices: np.ndarray) -> np.ndarray | Rows:
    """Rows `indices` of `array`: a copy where `array` is in memory, a lazy `Rows` where it
    is mapped (a copy would read the whole file into memory)."""
    if is_mapped(array):
        return Rows(array, indices)
    return array[indices]
