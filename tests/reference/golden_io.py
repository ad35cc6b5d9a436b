"""Readers and writers for the two binary formats the golden data uses.

1. The golden tensor file (`*.golden.bin`, our own format, documented in tests/reference/README.md):
   a magic, a version, then named tensors. `read_golden(path)` returns {name: numpy array}.
2. safetensors (the Hugging Face format), written here by hand because this machine has no
   `safetensors` package: 8-byte little-endian header size N, N bytes of JSON
   {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}} padded with spaces
   to a multiple of 8, then the raw little-endian data; offsets are relative to the end of the header.

Run `python3 golden_io.py FILE` to list the tensors of a golden file or a .safetensors file.
"""
import json
import struct
import sys

import numpy as np

# ---------------------------------------------------------------------------------------------
# Golden tensor file
# ---------------------------------------------------------------------------------------------
GOLDEN_MAGIC = b"VKTGOLD\0"  # 8 bytes
GOLDEN_VERSION = 1

# dtype code in the file -> numpy dtype (little-endian). Codes are part of the format: never reuse.
GOLDEN_DTYPES = {
    0: np.dtype("<f4"),  # f32
    1: np.dtype("<i4"),  # i32
    2: np.dtype("u1"),   # u8
    3: np.dtype("<f2"),  # f16
    4: np.dtype("<f8"),  # f64
    5: np.dtype("<i8"),  # i64
}
GOLDEN_CODES = {dtype: code for code, dtype in GOLDEN_DTYPES.items()}


def write_golden(path, tensors):
    """tensors: list of (name, numpy array) in file order; names must be unique ASCII."""
    names = [name for name, _ in tensors]
    assert len(set(names)) == len(names), "duplicate tensor names"
    with open(path, "wb") as f:
        f.write(GOLDEN_MAGIC)
        f.write(struct.pack("<II", GOLDEN_VERSION, len(tensors)))
        for name, array in tensors:
            array = np.asarray(array, order="C")  # (ascontiguousarray would turn a scalar into shape [1])
            code = GOLDEN_CODES[array.dtype]  # a KeyError here means: convert to a listed dtype first
            encoded = name.encode("ascii")
            f.write(struct.pack("<I", len(encoded)))
            f.write(encoded)
            f.write(struct.pack("<II", code, array.ndim))
            f.write(struct.pack("<%dQ" % array.ndim, *array.shape))
            data = array.astype(GOLDEN_DTYPES[code], copy=False).tobytes(order="C")
            f.write(struct.pack("<Q", len(data)))
            f.write(data)


def read_golden(path):
    """Returns an insertion-ordered dict {name: numpy array} (arrays are read-only views)."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != GOLDEN_MAGIC:
        raise ValueError("%s: not a golden file (bad magic)" % path)
    version, count = struct.unpack_from("<II", blob, 8)
    if version != GOLDEN_VERSION:
        raise ValueError("%s: golden version %d, this reader knows %d" % (path, version, GOLDEN_VERSION))
    at = 16
    out = {}
    for _ in range(count):
        (name_len,) = struct.unpack_from("<I", blob, at)
        at += 4
        name = blob[at:at + name_len].decode("ascii")
        at += name_len
        code, ndim = struct.unpack_from("<II", blob, at)
        at += 8
        shape = struct.unpack_from("<%dQ" % ndim, blob, at)
        at += 8 * ndim
        (nbytes,) = struct.unpack_from("<Q", blob, at)
        at += 8
        dtype = GOLDEN_DTYPES[code]
        expected = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if nbytes != expected:
            raise ValueError("%s: tensor %s has %d bytes, shape says %d" % (path, name, nbytes, expected))
        out[name] = np.frombuffer(blob, dtype=dtype, count=nbytes // dtype.itemsize, offset=at).reshape(shape)
        at += nbytes
    if at != len(blob):
        raise ValueError("%s: %d trailing bytes" % (path, len(blob) - at))
    return out


# ---------------------------------------------------------------------------------------------
# safetensors
# ---------------------------------------------------------------------------------------------
SAFETENSORS_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "U8": np.dtype("u1"),
    "I32": np.dtype("<i4"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def write_safetensors(path, tensors, metadata=None):
    """tensors: dict {name: numpy array}. Data is laid out in sorted-name order (as the reference
    implementation does for equal alignments); metadata: dict of str -> str."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        array = np.asarray(tensors[name], order="C")
        dtype_name = SAFETENSORS_NAMES[array.dtype]
        data = array.tobytes(order="C")
        header[name] = {"dtype": dtype_name, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for data in chunks:
            f.write(data)


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict)."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack_from("<Q", blob, 0)
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    base = 8 + header_len
    out = {}
    for name, info in header.items():
        dtype = SAFETENSORS_DTYPES[info["dtype"]]
        begin, end = info["data_offsets"]
        array = np.frombuffer(blob, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=base + begin)
        out[name] = array.reshape(info["shape"])
    return out, metadata


def _describe(array):
    if array.size == 0:
        return ""
    if array.dtype.kind == "f":
        a = array.astype(np.float64)
        return "min %.6g max %.6g mean %.6g" % (a.min(), a.max(), a.mean())
    return "first %s" % (array.reshape(-1)[:8].tolist(),)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        if path.endswith(".safetensors"):
            tensors, metadata = read_safetensors(path)
            print("%s: %d tensors, metadata %s" % (path, len(tensors), metadata))
        else:
            tensors = read_golden(path)
            print("%s: %d tensors" % (path, len(tensors)))
        for name, array in tensors.items():
            print("  %-80s %-4s %-18s %s" % (name, array.dtype.str, list(array.shape), _describe(array)))


def write_or_verify(path, tensors, verify):
    """Writes `tensors` (as write_golden) into `path`, or with `verify` exits unless the file holds exactly them."""
    if not verify:
        write_golden(path, tensors)
        print("wrote", path)
        return
    expected = read_golden(path)
    for name, value in tensors:
        if name not in expected or not np.array_equal(expected[name], value):
            sys.exit(f"{path}: {name} differs from a fresh run")
    print("verified", path)


def write_or_verify_text(path, text, verify):
    """Writes `text` into `path`, or with `verify` exits unless the file holds exactly it."""
    if verify:
        with open(path) as f:
            if f.read() != text:
                sys.exit("differs from " + path)
        print(path + " is what this script writes")
        return
    with open(path, "w") as f:
        f.write(text)
    print("wrote", path)
