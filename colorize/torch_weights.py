"""Read a PyTorch state dict saved in PyTorch's legacy format, without PyTorch.

The legacy format (`torch.save(..., _use_new_zipfile_serialization=False)`, the only one
before PyTorch 1.6) is a sequence of pickles: a magic number, the protocol version, the
system info, the object itself (each tensor a reference to a storage by key), the list of
storage keys, then each storage's raw little-endian bytes after its element count (int64).
Reading it takes `pickle` and numpy: installing PyTorch (hundreds of megabytes) to load
18 MB of weights once is not worth it.
"""

from __future__ import annotations

import collections
import pickle
import struct
from pathlib import Path

import numpy as np

from colorize.errors import ColorizeError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
# PyTorch's storage classes and the numpy dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _Tensor:
    """A tensor not yet read: its storage, offset, shape and strides (in elements)."""

    def __init__(self, storage: _Storage, offset: int, shape: tuple, strides: tuple):
        self.storage, self.offset, self.shape, self.strides = storage, offset, tuple(shape), tuple(strides)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.array
        if flat is None:
            raise ValueError("a tensor's storage was not read")
        if not self.shape:
            return flat[self.offset].copy()
        itemsize = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.shape, strides=[s * itemsize for s in self.strides])
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, shape, strides, requires_grad=False, hooks=None, *extra):
    return _Tensor(storage, offset, shape, strides)


class _Unpickler(pickle.Unpickler):
    """Resolves only the few PyTorch names a state dict refers to; anything else is refused,
    so a crafted file cannot run code through pickle."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a state dict")

    def persistent_load(self, pid):
        kind, dtype, key = pid[0], pid[1], pid[2]
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        return self.storages.setdefault(key, _Storage(dtype))


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """{name: array} of a legacy-format PyTorch state dict at `path`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            header = [pickle.load(f) for _ in range(3)]  # magic number, protocol, system info
            if header[0] != MAGIC_NUMBER or header[1] != PROTOCOL_VERSION:
                raise ColorizeError(f"{path} is not a PyTorch file in the legacy format")
            if not header[2].get("little_endian", False):
                raise ColorizeError(f"{path} was saved on a big-endian machine; not supported")
            storages: dict = {}
            state = _Unpickler(f, storages).load()
            for key in pickle.load(f):
                storage = storages[key]
                (count,) = struct.unpack("<q", f.read(8))
                storage.array = np.frombuffer(f.read(count * np.dtype(storage.dtype).itemsize),
                                              dtype=storage.dtype)
    except FileNotFoundError:
        raise ColorizeError(f"weights file not found: {path}") from None
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error, ValueError) as exc:
        raise ColorizeError(f"could not read the weights in {path}: {exc}") from None
    return {name: tensor.to_numpy() for name, tensor in state.items()}
