#!/usr/bin/env python3
"""Writes the committed seed corpora under Fuzz/corpus/TARGET from the test fixtures (Tests/Fixtures)
plus a few hand-written inputs (CSV manifests, one pipeline message of each kind). Run from anywhere;
rerun only to change the seeds. Kept small: a few KB to ~100 KB per target."""
import base64
import glob, io, json, os, shutil, struct, zipfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
fixtures = os.path.join(root, "Tests", "Fixtures")
corpus = os.path.join(root, "Fuzz", "corpus")


def put(target, name, data):
    folder = os.path.join(corpus, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def fixture(*parts):
    with open(os.path.join(fixtures, *parts), "rb") as f:
        return f.read()


shutil.rmtree(corpus, ignore_errors=True)

# safetensors: the small weights fixtures (every dtype, misaligned data, a tiny model's real header).
for name in ["dtypes", "expected", "misaligned"]:
    put("safetensors", name + ".safetensors", fixture("weights", name + ".safetensors"))
put("safetensors", "tiny_hub.safetensors", fixture("weights", "tiny_hub", "model.safetensors"))
# Inputs that crashed matrixRows (HostileFileTests.matrixRowsOfEveryAcceptedShapeDoesNotTrap).
for name, tensors, data in [("zero-by-huge", {"t": {"dtype": "F32", "shape": [0, 1 << 32, 1 << 32], "data_offsets": [0, 0]}}, b""),
                            ("f64-scalar", {"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]}}, struct.pack("<d", 1.5))]:
    header = json.dumps(tensors).encode()
    put("safetensors", name + ".safetensors", struct.pack("<Q", len(header)) + header + data)

# config.json: every config fixture.
for path in sorted(glob.glob(os.path.join(fixtures, "**", "config.json"), recursive=True)):
    rel = os.path.relpath(os.path.dirname(path), fixtures).replace(os.sep, "_")
    put("config", rel + ".json", open(path, "rb").read())

# tokenizer.model: the two small models (the 60-80 KB ones make every input slow).
for name in ["custom-rule", "no-fallback"]:
    put("tokenizer", name + ".model", fixture("tokenizer", name + ".model"))

# JSONL manifests: the demo manifest's first lines, and lines with extras, numbers as ids, CRLF, blanks.
demo = fixture("demo", "manifest.jsonl").splitlines(keepends=True)
put("manifest-jsonl", "demo.jsonl", b"".join(demo[:8]))
put("manifest-jsonl", "extras.jsonl",
    b'{"id": "a1", "image": "imgs/a1.jpg", "prompt": "caption en", "z": 1.50, "a": {"k": [1, "x"]}}\n\n'
    b'{"image": "b.png", "id": 17, "prompt": "ocr"}\r\n{"id": "c", "image": "/data/c.jpg"}\n'
    b'{"id": "d\\u00e9\\ud83d\\ude00", "image": "d.png", "prompt": "", "n": null, "t": true, "f": -1e-3}')

# CSV manifests: header, quoting (commas, quotes, newlines inside cells), CRLF, extra columns.
put("manifest-csv", "basic.csv", b"id,image,prompt\na1,imgs/a1.jpg,caption en\nb2,b.png,ocr\n")
put("manifest-csv", "quoted.csv",
    b'image,id,prompt,source\r\n"x,1.jpg","q""1","detect cat\r\nand dog",web\r\n'
    b'y.png,2,,\r\n"z.png",3,"answer en what is ""this""?",\r\n')
put("manifest-csv", "noprompt.csv", b"id,image\n1,a.jpg\n2,\xc3\xa9.png")

# NPZ: the small archives (stored and deflated) and one bare .npy.
put("npz", "versions.npz", fixture("tasks", "versions.npz"))
with zipfile.ZipFile(io.BytesIO(fixture("tasks", "versions.npz"))) as z:
    first = z.namelist()[0]
    put("npz", "array.npy", z.read(first))
for name, compression in [("stored.npz", zipfile.ZIP_STORED), ("deflated.npz", zipfile.ZIP_DEFLATED)]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as z:
        header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
        header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
        npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + struct.pack("<6f", 1, 2, 3, 4, 5, 6)
        def info(name):  # fixed timestamps: the seeds do not change when regenerated
            entry = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            entry.compress_type = compression
            return entry
        z.writestr(info("a.npy"), npy)
        header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (), }"
        header += b" " * (63 - (10 + len(header)) % 64) + b"\n"
        z.writestr(info("b.npy"), b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + struct.pack("<q", 7))
    put("npz", name, buffer.getvalue())

# Images: small JPEG and PNG sources covering every layout the decoder handles, and the bad ones.
for path in sorted(glob.glob(os.path.join(fixtures, "images", "sources", "*"))):
    if os.path.getsize(path) <= 4000:
        put("image", os.path.basename(path), open(path, "rb").read())
for path in sorted(glob.glob(os.path.join(fixtures, "images", "bad", "*"))):
    if 0 < os.path.getsize(path) <= 4000:
        put("image", "bad_" + os.path.basename(path), open(path, "rb").read())

# Pipeline messages: one of each kind, encoded exactly as WireFormat.encode does.
M = (1 << 64) - 1
K1, K2, K3 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def checksum(data):
    def rotl(x, r): return ((x << r) | (x >> (64 - r))) & M
    def mix(lane, word): return (rotl((lane + word * K2) & M, 29) * K1) & M
    def word(i): return struct.unpack_from("<Q", data, i)[0]
    n, i = len(data), 0
    a, b, c, d = K1, K2, K3, K1 ^ K3
    while i + 32 <= n:
        a, b, c, d = mix(a, word(i)), mix(b, word(i + 8)), mix(c, word(i + 16)), mix(d, word(i + 24))
        i += 32
    h = (rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + n * K3) & M
    while i + 8 <= n:
        h, i = mix(h, word(i)), i + 8
    while i < n:
        h, i = mix(h, data[i] + 1), i + 1
    h ^= h >> 31; h = (h * K2) & M; h ^= h >> 29; h = (h * K3) & M; h ^= h >> 32
    return h


def message(kind, header, floats=()):
    """Wire format version 4 (Sources/PaliPipeline/WireFormat.swift): 32-byte frame, floats, JSON header."""
    data = json.dumps(header, separators=(",", ":")).encode()
    body = struct.pack(f"<{len(floats)}f", *floats) + data
    head = struct.pack("<IBBHII", 0x4C504750, 4, kind, 0, len(floats), len(data)) + struct.pack("<Q", checksum(body))
    return head + struct.pack("<II", checksum(head) & 0xFFFFFFFF, 0) + body


params = {"maxNewTokens": 32, "temperature": 0.7, "topK": 40, "topP": 0.9, "seed": 1, "beams": 1}
measured = {"imageWidth": 640, "imageHeight": 480, "visionSeconds": 0.0125}
put("wire", "job.bin", message(1, {"jobID": 7, "imagePath": "imgs/a.jpg", "promptIDs": [2, 100, 200], "parameters": params}))
put("wire", "embeddings.bin", message(2, {"jobID": 7, "tokens": 2, "width": 3, "promptIDs": [2, 5], "parameters": params,
                                          "measurements": measured}, floats=[0.5, -1, 2, 3, 4, 5]))
put("wire", "hidden.bin", message(3, {"microBatch": 1, "step": 0, "width": 2,
                                      "sequences": [{"id": 10, "position": 0, "newTokens": 2, "prefixLength": 2},
                                                    {"id": 11, "position": 4, "newTokens": 1, "prefixLength": 5}],
                                      "admitted": [{"id": 10, "parameters": params, "measurements": measured}],
                                      "released": [9]}, floats=[1, 2, 3, 4, 5, 6]))
put("wire", "tokens.bin", message(4, {"microBatch": 1, "step": 3, "updates": [{"id": 10, "token": 42, "finished": False},
                                                                             {"id": 11, "token": 1, "finished": True}]}))
put("wire", "result.bin", message(5, {"jobID": 7, "tokenIDs": [5, 6, 1], "tokenLogprobs": [-0.5, -1.25, -0.0], "logprob": -1.75, "failure": {"kind": "image", "message": "cannot decode"},
                                      "measurements": measured}))
put("wire", "stats.bin", message(6, {"sequence": 3, "isFinal": True, "values": {"tokens": 100, "prefill_ms": 3.25}}))
put("wire", "shutdown.bin", message(7, {"code": 2, "reason": "peer lost ✗"}))
put("wire", "heartbeat.bin", message(8, {"sequence": 5, "sentAt": 1.5e9}))
# A trace chunk: events packed 32 bytes each (start, duration Int64; kind UInt32; a, b, c Int32), base64.
events = struct.pack("<qqIiii", 1000, 250, 3, 1, 2, 3) + struct.pack("<qqIiii", 2000, 0, 7, -1, 0, 2**31 - 1)
put("wire", "trace.bin", message(9, {"isFinal": False, "host": "node-ß", "clock": -0.25,
                                     "events": base64.b64encode(events).decode()}))
put("wire", "failure.bin", message(10, {"reason": "rank 1 (vision 0 of replica 0) on node7 has been silent for 24 s"}))

for target in sorted(os.listdir(corpus)):
    files = os.listdir(os.path.join(corpus, target))
    size = sum(os.path.getsize(os.path.join(corpus, target, f)) for f in files)
    print(f"{target:16} {len(files):3} files {size / 1024:7.1f} KB")
