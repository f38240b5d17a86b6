"""The readers of outside files that fill a Keras model, fuzzed (`fuzzing.py`) under the
backend of the run: weight files given to `-l` (the project's own `.weights.h5` and the
release's Keras 2 `.h5`, also read by `brainprop-classorder`) and the backups `--resume`
reads.  Damaged copies are read or refused in one line with exit status 2, changing no
file and leaving the model as it was.

HDF5 files are damaged through h5py (entries removed, replaced, of the wrong kind, shape
or type, links to nowhere), cut short or given trailing bytes; bytes changed inside
them are left out: HDF5's C library is not meant to survive arbitrary ones.
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from fuzzing import JSON_VALUES, Reader, byte_damage, check_reader, on_file
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from brainprop.nets.weights import load_weights
from brainprop.train.resume import BACKUP_FILE, PREVIOUS_FILE, RunBackup
from brainprop.utils.errors import BrainPropError

ARRAYS = hnp.arrays(st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.bool_,
                                     "S3", np.complex64]),
                    st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4),
                              st.sampled_from([(4, 3), (3,), (3, 4)])))


def small_model() -> keras.Model:
    """Two Dense layers, compiled as training compiles (SGD)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    for i, weight in enumerate(model.weights):
        weight.assign(np.full(weight.shape, i + 0.5, weight.dtype))
    return model


MODEL = None


def model() -> keras.Model:
    global MODEL
    if MODEL is None:
        MODEL = small_model()
    return MODEL


def unchanged_model(read):
    """`read(folder)`, checking a refusal left the model's weights as they were."""
    def checked(folder: Path) -> None:
        before = [keras.ops.convert_to_numpy(w).copy() for w in model().weights]
        try:
            read(folder)
        except BrainPropError:
            for weight, value in zip(model().weights, before, strict=True):
                np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), value)
            raise
        finally:
            for weight, value in zip(model().weights, before, strict=True):
                weight.assign(value)
    return checked


# --- HDF5 damage ------------------------------------------------------------------------------


def _items(root: h5py.Group) -> list[str]:
    names = []
    root.visit(names.append)
    return names


def h5_damage(name: str) -> st.SearchStrategy:
    """Edits of the HDF5 file `name` through h5py, each aimed at an entry drawn by its
    position among the file's entries (the root included, as position 0)."""
    def edit(kind, position, value, array):
        def damage(folder):
            with h5py.File(folder / name, "r+") as f:
                names = ["/", *_items(f)]
                target = names[position % len(names)]
                node = f[target]
                if kind == "attribute":
                    key = sorted(node.attrs)[position % len(node.attrs)] if node.attrs else "x"
                    try:
                        node.attrs[key] = value if value is not None else array
                    except (TypeError, ValueError):  # a value HDF5 cannot store
                        pass
                    return
                if target == "/":
                    return
                parent, leaf = f[target].parent, target.rsplit("/", 1)[-1]
                del f[target]
                if kind == "array":
                    parent.create_dataset(leaf, data=array)
                elif kind == "group":
                    parent.create_group(leaf)
                elif kind == "soft-link":
                    parent[leaf] = h5py.SoftLink("/nowhere")
                elif kind == "external-link":
                    parent[leaf] = h5py.ExternalLink("missing.h5", "/x")
                elif kind == "self-link":
                    parent[leaf] = h5py.SoftLink(target)
        return damage

    attribute_values = st.one_of(
        st.none(), st.integers(-5, 5), st.text(max_size=5), st.binary(max_size=5),
        st.lists(st.binary(max_size=8), max_size=3).map(lambda v: np.asarray(v or [b""])),
    )
    return st.builds(edit, st.sampled_from(["attribute", "remove", "array", "group",
                                            "soft-link", "external-link", "self-link"]),
                     st.integers(0, 100), attribute_values, ARRAYS)


def write_own(folder: Path) -> None:
    model().save_weights(str(folder / "run_weights.weights.h5"))


def write_legacy(folder: Path) -> None:
    """As Keras 2 (TF 2.x) `model.save_weights("x.h5")` wrote a file."""
    with h5py.File(folder / "release.h5", "w") as f:
        names = []
        for index, layer in enumerate(model().layers):
            name = "dense" if index == 0 else f"dense_{index}"
            names.append(name.encode())
            group = f.create_group(name)
            weights = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.attrs["weight_names"] = np.asarray(weights)
            for weight_name, weight in zip(weights, layer.weights, strict=True):
                group.create_dataset(weight_name.decode(), data=keras.ops.convert_to_numpy(weight))
        f.attrs["layer_names"] = np.asarray(names)
        f.attrs["keras_version"] = b"2.3.0-tf"


OWN_WEIGHTS = Reader(
    name="own weight file",
    prog="main.py",
    write_valid=write_own,
    read=unchanged_model(lambda folder: load_weights(model(), folder / "run_weights.weights.h5")),
    damage=st.one_of(h5_damage("run_weights.weights.h5"),
                     on_file("run_weights.weights.h5", byte_damage(flips=False))),
)

LEGACY_WEIGHTS = Reader(
    name="release weight file",
    prog="main.py",
    write_valid=write_legacy,
    read=unchanged_model(lambda folder: load_weights(model(), folder / "release.h5")),
    damage=st.one_of(h5_damage("release.h5"), on_file("release.h5", byte_damage(flips=False))),
)

# --- backups ----------------------------------------------------------------------------------


def callbacks(folder: Path):
    early_stopping = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max")
    checkpoint = keras.callbacks.ModelCheckpoint(str(folder / "best.weights.h5"),
                                                 save_weights_only=True)
    return early_stopping, checkpoint, types.SimpleNamespace(seconds=[])


def write_backups(folder: Path) -> None:
    """Two epochs backed up: the backup and the one of the epoch before."""
    early_stopping, checkpoint, timer = callbacks(folder)
    early_stopping.on_train_begin()
    backup = RunBackup(folder)
    backup.watch(early_stopping, checkpoint, timer)
    backup.set_model(model())
    model().optimizer.build(model().trainable_variables)
    for epoch in range(2):
        backup.timer.seconds.append(1.5)
        backup.on_epoch_end(epoch, {"accuracy": 0.5, "val_accuracy": 0.25 * epoch})
        backup.wait()


def resume(folder: Path) -> None:
    """What `--resume` reads of a backup: the epochs done, whether it had finished, then
    every variable and the callbacks' state."""
    backup = RunBackup(folder)
    backup.watch(*callbacks(folder))
    backup.completed_epochs()
    backup.finished()
    backup.set_model(model())
    backup.on_train_begin()


def state_damage() -> st.SearchStrategy:
    """The backup's state (JSON) with entries set to drawn values or removed."""
    keys = st.one_of(st.sampled_from(["epoch", "history", "epoch_seconds", "early_stopping",
                                      "checkpoint_best", "finished"]), st.text(max_size=5))
    inner = st.sampled_from(["wait", "best", "best_epoch", "stopped_epoch"])

    def edit(file, changes):
        def damage(folder):
            with np.load(folder / file, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            state = json.loads(str(arrays["state"]))
            for key, sub, value in changes:
                target = state.get("early_stopping") if sub and isinstance(
                    state.get("early_stopping"), dict) else state
                name = sub or key
                if value is KeyError:
                    target.pop(name, None)
                else:
                    target[name] = value
            arrays["state"] = np.str_(json.dumps(state))
            np.savez(folder / file, **arrays)
        return damage

    change = st.tuples(keys, st.one_of(st.none(), inner), st.one_of(JSON_VALUES, st.just(KeyError)))
    return st.builds(edit, st.sampled_from([BACKUP_FILE, PREVIOUS_FILE]),
                     st.lists(change, min_size=1, max_size=3))


def array_damage() -> st.SearchStrategy:
    """A backed-up variable replaced by a drawn array, removed, or renumbered."""
    def edit(file, position, array, how):
        def damage(folder):
            with np.load(folder / file, allow_pickle=False) as stored:
                arrays = {name: stored[name] for name in stored.files}
            names = sorted(name for name in arrays if name != "state")
            name = names[position % len(names)]
            if how == "replace":
                arrays[name] = array
            elif how == "remove":
                del arrays[name]
            else:
                arrays[name.rsplit("_", 1)[0] + "_99"] = arrays.pop(name)
            np.savez(folder / file, **arrays)
        return damage

    return st.builds(edit, st.sampled_from([BACKUP_FILE, PREVIOUS_FILE]), st.integers(0, 50),
                     ARRAYS, st.sampled_from(["replace", "remove", "renumber"]))


BACKUPS = Reader(
    name="backup",
    prog="main.py",
    write_valid=write_backups,
    read=unchanged_model(resume),
    damage=st.one_of(
        state_damage(), array_damage(),
        on_file(st.sampled_from([BACKUP_FILE, PREVIOUS_FILE]), byte_damage()),
        st.tuples(state_damage(), on_file(BACKUP_FILE, byte_damage())).map(
            lambda pair: lambda folder: [damage(folder) for damage in pair]),
    ),
    # A backup that cannot be read is set aside (renamed) and the one before it used.
    may_write=(BACKUP_FILE, f"{BACKUP_FILE}.damaged", PREVIOUS_FILE, f"{PREVIOUS_FILE}.damaged"),
)

READERS = [OWN_WEIGHTS, LEGACY_WEIGHTS, BACKUPS]


@pytest.mark.parametrize("reader", READERS, ids=lambda reader: reader.name)
def test_damaged_files_are_read_or_refused_in_one_line_changing_nothing(reader):
    check_reader(reader)
