"""The sentencepiece side of Launch/bench-tokenizer.sh.

    bench_tokenizer.py texts OUT [LINES]    write LINES deterministic benchmark texts, one per line
    bench_tokenizer.py inflate MODEL OUT N  MODEL plus random NORMAL pieces up to N pieces in all
                                            (a Gemma-sized 257k vocabulary: hash tables that miss
                                            the cache, as the real tokenizer.model does)
    bench_tokenizer.py run MODEL TEXTS OUT  encode + decode every line with the sentencepiece
                                            library on one thread; print the seconds taken (model
                                            load + batch encode + batch decode, no JSON) on stdout;
                                            write {"ids", "text"} lines to OUT as `paligemma
                                            tokenize --text-file` does, for a byte comparison
"""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def make_texts(out, count):
    import make_tokenizer_goldens as g
    rng = random.Random(99)
    words = " ".join(g._PROSE + g._MULTILINGUAL).split()
    prompts = ["caption en", "answer en what is in the image?", "detect cat ; dog",
               "segment red square", "ocr", "describe en"]
    locs = [f"<loc{i:04d}>" for i in range(0, 1024, 37)] + [f"<seg{i:03d}>" for i in range(0, 128, 9)]
    lines = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            line = rng.choice(prompts) + " " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 10)))
        elif kind < 0.5:
            line = "".join(rng.choice(locs) for _ in range(4)) + " " + rng.choice(words)
        elif kind < 0.8:
            line = " ".join(rng.choice(words) for _ in range(rng.randint(5, 40)))
        else:
            line = rng.choice(g._MULTILINGUAL) + " " + rng.choice(["😀", "👍🏽", "𝔘𝔫𝔦", "१२३", "\t", "  "])
        lines.append(line.replace("\n", " "))
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def inflate(model, out, total):
    import struct
    import make_tokenizer_goldens as g
    import sentencepiece as spm
    data = open(model, "rb").read()
    sp = spm.SentencePieceProcessor(model_file=model)
    seen = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
    alphabet = sorted(set("".join(g._PROSE + g._MULTILINGUAL)) - {" ", "\n"})
    rng = random.Random(5)
    extra = bytearray()
    added = 0
    while sp.get_piece_size() + added < total:
        piece = ("\u2581" if rng.random() < 0.5 else "") + "".join(
            rng.choice(alphabet) for _ in range(rng.randint(2, 8)))
        if piece in seen:
            continue
        seen.add(piece)
        body = bytearray()
        raw = piece.encode("utf-8")
        body += b"\x0a" + g._enc_varint(len(raw)) + raw                      # piece
        body += b"\x15" + struct.pack("<f", -100000.0 - added)                # score
        body += b"\x18\x01"                                                   # NORMAL
        extra += b"\x0a" + g._enc_varint(len(body)) + body
        added += 1
    with open(out, "wb") as f:
        f.write(data + bytes(extra))  # repeated fields may continue after the other fields


def run(model, texts, out):
    with open(texts, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    lines = [l.decode("utf-8") for l in lines]
    import sentencepiece as spm
    start = time.perf_counter()
    sp = spm.SentencePieceProcessor(model_file=model)
    ids = sp.encode(lines, num_threads=1)
    decoded = sp.decode(ids, num_threads=1)
    seconds = time.perf_counter() - start
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for i, t in zip(ids, decoded):
            f.write(json.dumps({"ids": i, "text": t}, ensure_ascii=False) + "\n")
    print(f"{seconds:.4f}")


if __name__ == "__main__":
    if sys.argv[1] == "texts":
        make_texts(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50000)
    elif sys.argv[1] == "inflate":
        inflate(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
