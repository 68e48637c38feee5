"""Seeded mutations of checkpoint files, and what loading each one gave.

`python fuzz_checkpoints.py SEED SCALE [MEMORY_LIMIT_BYTES]` mutates the bert2bert
fixture SCALE x `COUNTS[kind]` times for each kind of file, loads every mutated folder with `load_state`,
and prints one JSON object: the number of each allowed outcome, and every
outcome that is not allowed. Allowed: an encdec error that names one of the
folder's weight files, or a load whose tensors are identical to the
original's. With a memory limit, the process runs under that RLIMIT_AS, and
also opens files built to make a reader allocate far more than they hold.

Mutations that make a valid checkpoint of other values (a new value in a
tensor's data, a float32 weight stored as float16) are not made: no reader
could tell them from the real thing. So bytes are flipped where a format
checks them (all of a `.bin`, whose members have CRC-32s) or where they are
structure (a safetensors header, the msgpack stream outside array data).
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import random
import shutil
import struct
import sys
import tempfile
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from core_refs import FILES, FIXTURES, copy_case, keras_strings, write_bin_with_tensor  # noqa: E402

CASE = "bert2bert"
# Mutations per kind at scale 1: about a minute in all on a slow shared machine (h5 edits cost most).
COUNTS = {"safetensors": 300, "pt": 300, "tf": 150, "flax": 300, "index": 200}
KINDS = tuple(COUNTS)


def _weight_files(folder) -> list[str]:
    return [f for f in os.listdir(folder) if f.endswith((".safetensors", ".bin", ".h5", ".msgpack", ".json"))
            and f not in ("config.json", "generation_config.json")]


def outcome(folder, spec, want) -> str:
    from encdec.errors import EncdecError
    from encdec.weights import load_state

    files = _weight_files(folder)
    try:
        state, _ = load_state(folder, spec)
    except EncdecError as e:
        if any(name in str(e) for name in files):
            return "error"
        return f"error not naming the file ({files}): {type(e).__name__}: {e}"
    except MemoryError:
        return "MemoryError"
    except Exception as e:  # noqa: BLE001 - what the fuzz test is looking for
        return f"raw {type(e).__name__}: {str(e)[:300]}"
    if sorted(state) != sorted(want):
        return "loaded other tensor names"
    for name, value in want.items():
        got = state[name]
        if got.dtype != value.dtype or got.shape != value.shape or got.tobytes() != value.tobytes():
            return f"loaded other values for {name}"
    return "equal"


# ---------------------------------------------------------------------------
# safetensors


def _split_safetensors(data: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join_safetensors(header_text: bytes, rest: bytes) -> bytes:
    header_text += b" " * (-len(header_text) % 8)
    return struct.pack("<Q", len(header_text)) + header_text + rest


def mutate_safetensors(rng: random.Random, path: str) -> str:
    data = open(path, "rb").read()
    header, rest = _split_safetensors(data)
    n = struct.unpack("<Q", data[:8])[0]
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    op = rng.choice(["truncate", "flip", "flip", "dtype", "shape", "offsets", "delete", "overlap", "metadata",
                     "duplicate", "deep", "huge"])
    text = None
    if op == "truncate":
        open(path, "wb").write(data[: rng.randrange(len(data))])
        return op
    if op == "flip":
        raw = bytearray(data)
        raw[rng.randrange(8 + n)] ^= 1 << rng.randrange(8)
        open(path, "wb").write(bytes(raw))
        return op
    if op == "dtype":
        header[name]["dtype"] = rng.choice(["F16", "BF16", "I32", "F64", "U8", "XX", 5, None])
    elif op == "shape":
        shape = header[name]["shape"]
        header[name]["shape"] = rng.choice([shape + [1], shape[:-1], [s * 2 for s in shape], [-s for s in shape],
                                           ["2"], 10**20, None])
    elif op == "offsets":
        begin, end = header[name]["data_offsets"]
        header[name]["data_offsets"] = rng.choice([[begin + 4, end + 4], [end, begin], [begin - 4, end - 4],
                                                   [begin, end + 8], ["0", end], [begin]])
    elif op == "delete":
        del header[name]
    elif op == "overlap":
        header[name + ".copy"] = dict(header[name])
    elif op == "metadata":
        header["__metadata__"] = rng.choice([["format", "pt"], 3, {"format": {"nested": 1}}, {"format": "tf"}, None])
    elif op == "duplicate":
        entry = json.dumps(header[name]).encode()
        body = json.dumps(header).encode()
        text = body[:-1] + b"," + json.dumps(name).encode() + b":" + entry + b"}"
    elif op == "deep":
        depth = rng.choice([100, 10_000, 200_000])
        body = json.dumps(header).encode()
        text = body[:-1] + b',"deep":' + b"[" * depth + b"]" * depth + b"}"
    else:  # huge
        body = json.dumps(header).encode()
        text = body[:-1] + b',"x":{"dtype":"F32","shape":[' + b"9" * rng.choice([30, 5000]) + b'],"data_offsets":[0,4]}}'
    open(path, "wb").write(_join_safetensors(text if text is not None else json.dumps(header).encode(), rest))
    return op


# ---------------------------------------------------------------------------
# pytorch_model.bin


def mutate_pt(rng: random.Random, path: str) -> str:
    data = open(path, "rb").read()
    op = rng.choice(["truncate", "flip", "flip", "flip", "compress", "rename"])
    if op == "truncate":
        open(path, "wb").write(data[: rng.randrange(len(data))])
    elif op == "flip":
        raw = bytearray(data)
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        open(path, "wb").write(bytes(raw))
    else:
        with zipfile.ZipFile(path) as zf:
            members = [(info, zf.read(info)) for info in zf.infolist()]
        target = rng.randrange(len(members))
        with zipfile.ZipFile(path, "w") as zf:
            for i, (info, blob) in enumerate(members):
                name, method = info.filename, zipfile.ZIP_STORED
                if i == target and op == "compress":
                    method = zipfile.ZIP_DEFLATED
                if i == target and op == "rename":
                    name = name + "x"
                zf.writestr(name, blob, compress_type=method)
    return op


# ---------------------------------------------------------------------------
# tf_model.h5: edits of datasets and attributes through h5py (raw bytes of HDF5 metadata are not
# flipped: the HDF5 library itself does not check most of them)


def mutate_tf(rng: random.Random, path: str) -> str:
    import h5py

    op = rng.choice(["truncate", "int_dtype", "big_endian", "shape", "delete", "external", "external_link",
                     "soft_link", "compressed", "unwritten", "weight_names", "layer_names", "twice"])
    if op == "truncate":
        data = open(path, "rb").read()
        open(path, "wb").write(data[: rng.randrange(len(data))])
        return op
    with h5py.File(path, "r+") as f:
        layers = keras_strings(f, "layer_names")
        layer = rng.choice(layers)
        weights = keras_strings(f[layer], "weight_names")
        weight = rng.choice(weights)
        where = f"{layer}/{weight}"
        value = f[where][()]
        if op in ("int_dtype", "big_endian", "shape", "delete", "external", "external_link", "soft_link",
                  "compressed", "unwritten"):
            del f[where]
        if op == "int_dtype":
            f[where] = value.astype(np.int32)
        elif op == "big_endian":
            f[where] = value.astype(value.dtype.newbyteorder(">"))
        elif op == "shape":
            f[where] = value.reshape(value.shape + (1,))
        elif op == "external":
            secret = path + ".secret"
            open(secret, "wb").write(value.tobytes())
            f.create_dataset(where, value.shape, value.dtype, external=[(os.path.basename(secret), 0, value.nbytes)])
        elif op == "external_link":
            with h5py.File(path + ".other.h5", "w") as other:
                other["x"] = value
            f[where] = h5py.ExternalLink(os.path.basename(path) + ".other.h5", "/x")
        elif op == "soft_link":
            f[where] = h5py.SoftLink(rng.choice([where, f"/{layer}"]))
        elif op == "compressed":
            f.create_dataset(where, data=value, compression="gzip")
        elif op == "unwritten":
            f.create_dataset(where, value.shape, value.dtype, chunks=True)
        elif op == "weight_names":
            f[layer].attrs["weight_names"] = rng.choice([np.arange(3), np.array([b"\xff\xfe"]), np.array([b"nope:0"])])
        elif op == "layer_names":
            if rng.random() < 0.5:
                del f.attrs["layer_names"]
            else:
                f.attrs["layer_names"] = np.array([b"missing"] + [n.encode() for n in layers])
        else:  # twice
            f[layer].attrs["weight_names"] = np.array([w.encode() for w in weights + [weight]])
    return op


# ---------------------------------------------------------------------------
# flax_model.msgpack


def _msgpack_data_segments(path: str) -> list[tuple[int, int]]:
    from encdec.weights.formats import MsgpackFile

    with MsgpackFile(path) as reader:
        return [seg for ref in reader._refs.values() for seg in ref.segments]


TYPE_CODES = [0xC0, 0xC2, 0xC3, 0x90, 0x93, 0x80, 0x81, 0xA0, 0xA5, 0x00, 0x7F, 0xFF, 0xCC, 0xCD, 0xCE, 0xD0, 0xC4,
              0xC5, 0xC6, 0xC7, 0xC9, 0xD4, 0xD8, 0xDE, 0xDF, 0xDC, 0xDD, 0xCA, 0xCB, 0xC1, 0xD9, 0xDB]


def _structure_positions(path: str) -> list[int]:
    """The byte offsets of a msgpack file that are not array data."""
    inside = np.zeros(os.path.getsize(path), bool)
    for offset, nbytes in _msgpack_data_segments(path):
        inside[offset : offset + nbytes] = True
    return np.flatnonzero(~inside).tolist()


def mutate_flax(rng: random.Random, path: str, structure: list[int]) -> str:
    data = bytearray(open(path, "rb").read())
    op = rng.choice(["truncate", "flip", "type"])
    if op == "truncate":
        data = data[: rng.randrange(len(data))]
    elif op == "flip":
        data[rng.choice(structure)] ^= 1 << rng.randrange(8)
    else:
        data[rng.choice(structure)] = rng.choice(TYPE_CODES)
    open(path, "wb").write(bytes(data))
    return op


# ---------------------------------------------------------------------------
# sharded safetensors: index edits


def mutate_index(rng: random.Random, folder: str) -> str:
    path = os.path.join(folder, "model.safetensors.index.json")
    index = json.load(open(path))
    weight_map = index["weight_map"]
    names = list(weight_map)
    shards = sorted(set(weight_map.values()))
    op = rng.choice(["value_type", "missing_shard", "traversal", "other_shard", "unknown_tensor", "no_map",
                     "not_a_dict", "truncate", "delete_shard", "metadata"])
    if op == "value_type":
        weight_map[rng.choice(names)] = rng.choice([None, 3, [shards[0]], {"a": 1}, True])
    elif op == "missing_shard":
        weight_map[rng.choice(names)] = "model-00009-of-00009.safetensors"
    elif op == "traversal":
        weight_map[rng.choice(names)] = rng.choice(["../model.safetensors", "/etc/passwd", "", ".", ".."])
    elif op == "other_shard":
        name = rng.choice(names)
        weight_map[name] = rng.choice([s for s in shards if s != weight_map[name]])
    elif op == "unknown_tensor":
        weight_map["decoder.surprise"] = shards[0]
    elif op == "no_map":
        del index["weight_map"]
    elif op == "not_a_dict":
        index = rng.choice([[1, 2], "x", 3])
    elif op == "delete_shard":
        os.remove(os.path.join(folder, rng.choice(shards)))
    elif op == "metadata":
        index["metadata"] = rng.choice([None, [1], {"total_size": "big"}])  # informative only: loads equal
    text = json.dumps(index)
    if op == "truncate":
        text = text[: rng.randrange(len(text))]
    open(path, "w").write(text)
    return op


# ---------------------------------------------------------------------------
# Files built to make a reader allocate far more than they hold


def bombs(workdir: str) -> dict[str, tuple[str, str]]:
    """name -> (format, path) of files that hold a few kilobytes and declare gigabytes."""
    import h5py

    out = {}
    path = os.path.join(workdir, "stride0.bin")
    write_bin_with_tensor(path, (2**29,), (0,), 1)  # 4 bytes stored, 2 GiB as a tensor
    out["stride-0 tensor"] = ("pt", path)

    path = os.path.join(workdir, "zipbomb.bin")
    with zipfile.ZipFile(os.path.join(FIXTURES, CASE, FILES["pt"])) as zf:
        members = [(info.filename, zf.read(info)) for info in zf.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, blob in members:
            if name.endswith("data.pkl"):
                # a valid pickle, then 1 GiB of zeros that deflate to about 4 MB
                with zf.open(name, "w", force_zip64=True) as w:
                    w.write(blob)
                    zero = bytes(2**24)
                    for _ in range(64):
                        w.write(zero)
            else:
                zf.writestr(name, blob, compress_type=zipfile.ZIP_STORED)
    out["zip bomb"] = ("pt", path)

    path = os.path.join(workdir, "unwritten.h5")
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([b"encoder/w:0"])
        f.create_dataset("encoder/w:0", (2**14, 2**15), np.float32, chunks=(1024, 1024))  # 2 GiB, none written
    out["unwritten chunked dataset"] = ("tf", path)

    path = os.path.join(workdir, "longstr.msgpack")
    open(path, "wb").write(b"\x81\xdb\xff\xff\xff\xf0" + b"x" * 64)  # a key claiming 4 GB
    out["msgpack length"] = ("flax", path)
    return out


def run_bombs(workdir: str) -> dict[str, str]:
    from encdec.errors import EncdecError
    from encdec.weights.formats import open_file

    results = {}
    for name, (fmt, path) in bombs(workdir).items():
        try:
            with open_file(path, fmt) as reader:
                for tensor in reader.names():
                    reader.read(tensor)
            results[name] = "loaded"
        except EncdecError as e:
            results[name] = "error" if os.path.basename(path) in str(e) else f"error not naming the file: {e}"
        except MemoryError:
            results[name] = "MemoryError"
        except Exception as e:  # noqa: BLE001
            results[name] = f"raw {type(e).__name__}: {str(e)[:200]}"
    return results


def run(seed: int, scale: float) -> dict:
    from encdec.config import EncoderDecoderConfig
    from encdec.weights import convert_checkpoint, load_state, model_spec

    logging.disable(logging.WARNING)  # mutated files may hold NaNs; the outcome is what is checked
    rng = random.Random(seed)
    spec = model_spec(EncoderDecoderConfig.from_pretrained(FIXTURES / CASE))
    want, _ = load_state(FIXTURES / CASE, spec, fmt="safetensors")
    counts: dict[str, dict[str, int]] = {}
    bad: list[str] = []
    with tempfile.TemporaryDirectory() as work:
        pristine = {fmt: copy_case(CASE, pathlib.Path(work) / f"base-{fmt}", [fmt])
                    for fmt in ("safetensors", "pt", "tf", "flax")}
        sharded = pathlib.Path(work) / "base-index"
        convert_checkpoint(pristine["safetensors"], sharded, "safetensors", shard_size="60KB", progress=False)
        structure = _structure_positions(str(pristine["flax"] / FILES["flax"]))
        for kind in KINDS:
            counts[kind] = {}
            for i in range(max(1, int(COUNTS[kind] * scale))):
                folder = os.path.join(work, f"{kind}-{i}")
                shutil.copytree(sharded if kind == "index" else pristine[kind], folder)
                if kind == "safetensors":
                    op = mutate_safetensors(rng, os.path.join(folder, FILES[kind]))
                elif kind == "pt":
                    op = mutate_pt(rng, os.path.join(folder, FILES[kind]))
                elif kind == "tf":
                    op = mutate_tf(rng, os.path.join(folder, FILES[kind]))
                elif kind == "flax":
                    op = mutate_flax(rng, os.path.join(folder, FILES[kind]), structure)
                else:
                    op = mutate_index(rng, folder)
                result = outcome(folder, spec, want)
                key = "equal" if result == "equal" else "error" if result == "error" else "bad"
                counts[kind][key] = counts[kind].get(key, 0) + 1
                if key == "bad":
                    bad.append(f"{kind} #{i} ({op}): {result}")
                shutil.rmtree(folder)
    return {"counts": counts, "bad": bad}


def main(argv: list[str]) -> None:
    seed, scale = int(argv[1]), float(argv[2])
    if len(argv) > 3:
        import resource

        limit = int(argv[3])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    report = run(seed, scale)
    if len(argv) > 3:
        with tempfile.TemporaryDirectory() as work:
            report["bombs"] = run_bombs(work)
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv)
