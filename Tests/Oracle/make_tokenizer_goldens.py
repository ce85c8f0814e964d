"""Make the tokenizer goldens in Tests/Fixtures/tokenizer/ with the sentencepiece library.

    .venv/bin/python Tests/Oracle/make_tokenizer_goldens.py

Deterministic: re-running rewrites byte-identical files (the fixed, committed corpus
Tests/Oracle/corpus.txt, one trainer thread, no paths recorded in the models). Writes:

  gemma-style.model        BPE as Gemma/PaliGemma: byte fallback, no dummy prefix, no whitespace
                           collapsing, split digits, identity normalization, <loc>/<seg> pieces
  dummy-prefix.model       same, with add_dummy_prefix=True and remove_extra_whitespaces=True
  unused-pieces.model      gemma-style with a few merged pieces retyped UNUSED (resegmentation)
  no-fallback.model        small BPE without byte fallback: unknown characters become <unk>
  custom-rule.model        identity rule plus a user normalization table: needs a
                           precompiled_charsmap, which the Swift tokenizer must refuse
  <model>.json             [{"text", "ids", "pieces", "decoded"}]: sp.encode(text), its pieces,
                           sp.decode(ids)
  decode.json              decode-only cases: [{"model", "ids", "decoded", "decoded_skip_special"}]
                           decoded = sp.decode(ids); decoded_skip_special = sp.decode(ids without
                           pad/eos/bos/unk), which is what transformers' slow GemmaTokenizer._decode
                           does with skip_special_tokens=True (transformers itself needs protobuf
                           to read tokenizer.model, which this environment does not have)
"""
import json
import os
import random
import struct
import sys

import sentencepiece as spm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sp_models  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Fixtures", "tokenizer")

# ---------------------------------------------------------------------------------------------
# Sample texts: encoded as goldens (texts_for) and used by bench_tokenizer.py. The models are trained
# on the committed corpus (sp_models.corpus_lines(): Tests/Oracle/corpus.txt), not on these lists.

_PROSE = [
    "a photo of a red circle on a blue background",
    "the quick brown fox jumps over the lazy dog",
    "two green triangles and a yellow star next to a small house",
    "a man riding a bicycle down the street in the rain",
    "a woman holding an umbrella while walking her dog in the park",
    "there is a cat sleeping on the sofa near the window",
    "the car is parked in front of the building",
    "people are standing on the beach watching the sunset",
    "a bowl of fruit with apples, bananas and oranges on the table",
    "what color is the car? the car is red.",
    "how many people are in the picture? there are three people.",
    "where is the dog? the dog is under the table.",
    "this is a picture of a kitchen with a stove and a refrigerator",
    "the train arrives at the station at 10:45 in the morning",
    "caption en", "caption es", "caption fr", "caption de", "caption ja", "caption zh",
    "describe en", "detect cat ; dog", "detect person ; car ; bicycle", "segment red square",
    "answer en what is in the image?", "answer en what color is the shirt?", "ocr", "question en",
    "circle square triangle star hexagon ring cross arrow heart diamond",
    "red green blue yellow purple orange white black gray pink cyan brown",
    "def main(args):\n    return 0", "if (x > 0) { y = x * 2; }", "for i in range(10): print(i)",
    "https://example.com/path?query=1&lang=en", "user@example.org", "#hashtag @mention",
]

_MULTILINGUAL = [
    "un chat noir dort sur le canapé près de la fenêtre", "où est la gare? je ne sais pas.",
    "der schnelle braune Fuchs springt über den faulen Hund", "Größe, Straße, Äpfel und Öl",
    "el niño comió una manzana roja en la mañana", "¿dónde está el baño? ¡gracias!",
    "o gato está dormindo no sofá da sala", "il gatto dorme sul divano vicino alla finestra",
    "Zażółć gęślą jaźń, pchnąć w tę łódź jeża", "Pijamalı hasta yağız şoföre çabucak güvendi",
    "Tiếng Việt có dấu và rất nhiều thanh điệu", "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Это пример текста на русском языке", "Съешь же ещё этих мягких французских булок",
    "Жовтий пес біжить по дорозі", "Ελληνικά γράμματα και λέξεις για τη δοκιμή",
    "これは日本語のテキストです", "猫がソファの上で寝ています", "カタカナとひらがなと漢字",
    "这是一个中文句子", "一只黑猫在沙发上睡觉", "今天天气很好，我们去公园吧。",
    "이것은 한국어 문장입니다", "고양이가 소파 위에서 자고 있습니다",
    "هذه جملة باللغة العربية", "القطة تنام على الأريكة", "این یک جمله فارسی است",
    "זהו משפט בעברית", "החתול ישן על הספה",
    "यह हिंदी में एक वाक्य है", "बिल्ली सोफे पर सो रही है", "এটি বাংলা ভাষার একটি বাক্য",
    "இது தமிழ் மொழியில் ஒரு வாக்கியம்", "ภาษาไทยเป็นภาษาที่สวยงาม", "แมวนอนอยู่บนโซฟา",
    "ქართული ენა ძალიან ლამაზია", "Հայերեն լեզուն գեղեցիկ է", "አማርኛ ቋንቋ ነው",
    "1234 5678 90 3.14159 2026-11-22 100% 42", "$19.99 €5 £3 ¥1000",
]


# ---------------------------------------------------------------------------------------------
# Minimal protobuf wire-format editing (no protobuf package here): retype pieces of a ModelProto.

def _varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, i


def _enc_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf):
    """Yield (field, wire_type, raw_bytes_of_whole_field, payload) for each top-level field."""
    i = 0
    while i < len(buf):
        start = i
        key, i = _varint(buf, i)
        field, wt = key >> 3, key & 7
        if wt == 0:
            _, i = _varint(buf, i)
            payload = None
        elif wt == 1:
            i += 8
            payload = None
        elif wt == 2:
            n, i = _varint(buf, i)
            payload = buf[i:i + n]
            i += n
        elif wt == 5:
            i += 4
            payload = None
        else:
            raise ValueError(f"unexpected wire type {wt}")
        yield field, wt, buf[start:i], payload


def retype_pieces(model_bytes, new_types):
    """Return model_bytes with pieces (by index) given new SentencePiece.Type values."""
    out = bytearray()
    index = 0
    for field, wt, raw, payload in _fields(model_bytes):
        if field == 1 and wt == 2:
            if index in new_types:
                body = bytearray()
                for f, w, r, _ in _fields(payload):
                    if f != 3:
                        body += r
                body += bytes([3 << 3 | 0]) + _enc_varint(new_types[index])
                raw = bytes([1 << 3 | 2]) + _enc_varint(len(body)) + bytes(body)
            index += 1
        out += raw
    return bytes(out)


def piece_scores(model_bytes):
    result = []
    for field, wt, raw, payload in _fields(model_bytes):
        if field == 1 and wt == 2:
            piece, score, typ = b"", 0.0, 1
            for f, w, r, p in _fields(payload):
                if f == 1:
                    piece = p
                elif f == 2:
                    score = struct.unpack("<f", r[-4:])[0]
                elif f == 3:
                    typ = r[-1]
            result.append((piece.decode("utf-8"), score, typ))
    return result


# ---------------------------------------------------------------------------------------------
# Texts to encode.

def texts_for(sp):
    t = [
        "", " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "a", "A", "?", ".", "0", "▁", "▁▁", " ▁ ",
        "caption en", "caption es", "describe en", "ocr", "answer en what is in the image?",
        "detect cat ; dog", "segment red square", "caption en\n", "detect shoe\n",
        "detect shoe\n<loc0051><loc0309><loc0708><loc0646> shoe",
        "<loc0051><loc0309><loc0708><loc0646> shoe ; <loc0000><loc0000><loc1023><loc1023> dog",
        "<seg012><seg034><seg056><seg078><seg090><seg100><seg110><seg127><seg000><seg001><seg002>"
        "<seg003><seg004><seg005><seg006><seg007>",
        "<loc0001><loc0002>", "<loc0001> <loc0002>", "<loc0001>\n<loc0002>", "a<loc0001>b",
        " <loc0001> ", "<loc12>", "<loc1024>", "<loc0000", "loc0001>", "<<loc0001>>", "<loc00001>",
        "<LOC0001>", "<loc0001", "<seg128>", "<seg000><seg127>", "<seg12>", "<loc0001><seg001>",
        "<loc0001><loc0001><loc0001>", "<image>", "<image><bos>caption en\n", "<pad>", "<eos>",
        "<bos>", "<unk>", "<mask>", "<s>", "</s>", "<0x41>", "<0xFF>", "<0x0A>", "<0xZZ>",
        "the quick brown fox jumps over the lazy dog",
        "The Quick Brown Fox Jumps Over The Lazy Dog", "THE QUICK BROWN FOX",
        "a  b", "a   b", "a    b", "a\tb", "a\t\tb", "a\nb", "a\n\nb", "a \n b", "  leading",
        "trailing  ", "  both  ", " x", "x ", "\ttabs\tand\nnewlines\n", "\n\n\n", "line1\r\nline2",
        "a\u00a0b", "a\u3000b", "a\u2009b", "a\u200bb", "a\u2028b", "a\u0085b", "\ufeffbom",
        "1234567890", "3.14159", "2026-11-22", "12:30", "100%", "-42", "1,000,000", "0.000001",
        "١٢٣٤", "१२३", "１２３", "½ ⅓ ¼", "²³", "Ⅻ",
        "😀", "👍", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵", "❤️", "1️⃣", "🧑🏿‍🚀", "🤷‍♀️", "😀😀😀",
        "I ❤️ you 😀!", "emoji 🐈 cat",
        "e\u0301", "é", "n\u0303", "ñ", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇", "a\u0300\u0301\u0302\u0303", "\u0301",
        "\u1100\u1161\u11a8", "각", "क्षत्रिय", "ﬁ", "Å", "Å",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𓀀𓀁", "ᚠᛇᚻ", "☃", "∮ E⋅da = Q", "┌─┐│└┘", "\u0000", "a\u0000b", "\u0007",
        "\u007f", "\ufffd", "\U0010ffff", "\ue000", "\U0001f9ff", "ẞ", "ǅ", "ﷺ", "꧁꧂", "\u2581",
        "hello\u2581world", "hello world", "Hello, World!", "don't", "it's a dog's life",
        "https://example.com/path?query=1&lang=en", "user@example.org", "#hashtag @mention",
        "def main(args):\n    return 0\n", "if (x > 0) { y = x * 2; }", "    indented code",
        "C:\\path\\to\\file.txt", "\"quoted\" 'single'", "back\\slash", "\\n is not a newline",
        "tab\there", "{\"json\": [1, 2, 3]}", "<html><body>hi</body></html>",
    ]
    t += _MULTILINGUAL
    t += [s.upper() for s in _MULTILINGUAL[:8]]
    t += _PROSE[:14]
    t += [
        "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt "
        "ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco "
        "laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in "
        "voluptate velit esse cillum dolore eu fugiat nulla pariatur.",
        " ".join(_MULTILINGUAL[:12]),
        "answer en " + " ".join(_PROSE[:6]) + "\n" + "<loc0100><loc0200><loc0300><loc0400> car",
    ]
    # Every piece type as text: the surface of some vocabulary pieces, alone and concatenated.
    n = sp.get_piece_size()
    surfaces = []
    for i in range(0, n, max(1, n // 60)):
        p = sp.id_to_piece(i)
        surfaces.append(p.replace("\u2581", " "))
        t.append(p)
    t.append("".join(surfaces))
    # Random mixtures with a fixed seed.
    pool = (list("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789 .,;:!?'\"-_()[]{}<>/\\\t\n")
            + list("éèàçñüößøåæœłżščřğışáíóúâêîôûãõ")
            + list("жщыэюяЖЩЫЭЮЯ αβγδεζηθ חשל عربي हिंदी 日本語中文한국어 ไทย")
            + ["😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "e\u0301", "\u200d", "\ufe0f", "𝔘", "\U0010ffff",
               "<loc0007>", "<seg042>", "<loc", "  ", "\u2581", "<0x41>"])
    rng = random.Random(7)
    for _ in range(100):
        t.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 40))))
    seen, unique = set(), []
    for s in t:
        if s not in seen:
            seen.add(s)
            unique.append(s)
    return unique


def encode_cases(model_path, texts):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    cases = []
    for text in texts:
        ids = sp.encode(text)
        pieces = sp.encode(text, out_type=str)
        assert len(pieces) == len(ids)
        cases.append({"text": text, "ids": ids, "pieces": pieces, "decoded": sp.decode(ids)})
    return cases


def decode_cases(name, model_path):
    sp = spm.SentencePieceProcessor(model_file=model_path)
    def pid(piece):  # -1 (case dropped) where this model lacks the piece
        i = sp.piece_to_id(piece)
        return -1 if sp.is_unknown(i) else i

    def byte(b):
        return pid(f"<0x{b:02X}>")

    specials = {sp.pad_id(), sp.eos_id(), sp.bos_id(), sp.unk_id()} - {-1}
    words = sp.encode("a red circle")
    idlists = [
        [], [sp.bos_id()], [sp.bos_id()] + words + [sp.eos_id()], [sp.pad_id()] * 3 + words,
        [sp.unk_id()], [sp.unk_id(), sp.unk_id()], words[:1] + [sp.unk_id()] + words[1:],
        [byte(0xE3), byte(0x81), byte(0x82)],                          # valid あ
        [byte(0xE3), byte(0x81)],                                      # truncated
        [byte(0x81)], [byte(0xFF)], [byte(0xC0), byte(0xAF)],          # stray, invalid, overlong
        [byte(0xED), byte(0xA0), byte(0x80)],                          # surrogate
        [byte(0xF4), byte(0x90), byte(0x80), byte(0x80)],              # above U+10FFFF
        [byte(0xF0), byte(0x9F), byte(0x98), byte(0x80)],              # 😀
        [byte(0xE3)] + words + [byte(0x81), byte(0x82)],               # split by a normal piece
        [byte(0xE3), sp.bos_id(), byte(0x81), byte(0x82)],             # split by a control piece
        [byte(0xE3), byte(0x41), byte(0x82)], [byte(0x41), byte(0x0A)],
        [pid("<loc0051>"), pid("<loc0309>"), pid("<loc0708>"), pid("<loc0646>")] + words,
        [pid("<seg000>"), pid("<seg127>"), sp.eos_id()],
        [pid("\u2581"), pid("\u2581")] + words, [sp.bos_id(), pid("\u2581")] + words,
        [byte(0x20)] + words, [byte(0xE2), byte(0x96), byte(0x81)] + words,
    ]
    if name == "gemma-style":
        idlists.append(list(range(sp.get_piece_size())))  # every piece once
    cases = []
    for ids in idlists:
        if any(i < 0 for i in ids):
            continue
        kept = [i for i in ids if i not in specials]
        cases.append({"model": name, "ids": ids, "decoded": sp.decode(ids),
                      "decoded_skip_special": sp.decode(kept)})
    return cases


def write_json(path, cases):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("[\n" + ",\n".join(json.dumps(c, ensure_ascii=False) for c in cases) + "\n]\n")


def train_no_fallback(path, lines):
    import io
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter([l for l in lines if l.isascii()]), model_writer=model,
        model_type="bpe", vocab_size=300, hard_vocab_limit=False, character_coverage=0.98,
        byte_fallback=False, split_digits=True, add_dummy_prefix=False,
        remove_extra_whitespaces=False, normalization_rule_name="identity",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        user_defined_symbols=["<loc0000>", "<loc0001>", "<seg000>"],
        num_threads=1, minloglevel=2)
    with open(path, "wb") as f:
        f.write(model.getvalue())


def train_custom_rule(path, lines):
    import io
    import tempfile
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)  # the trainer records the rule file's path in the model: keep it relative
        tsv = "rule.tsv"
        with open(tsv, "w") as f:  # source code points TAB target code points
            f.write("41\t61\n42\t62\n")
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([l for l in lines if l.isascii()][:500]), model_writer=model,
            model_type="bpe", vocab_size=200, hard_vocab_limit=False, byte_fallback=False,
            normalization_rule_tsv=tsv, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
            num_threads=1, minloglevel=2)
        os.chdir(cwd)
    with open(path, "wb") as f:
        f.write(model.getvalue())


def main():
    os.makedirs(OUT, exist_ok=True)
    lines = sp_models.corpus_lines()
    gemma = os.path.join(OUT, "gemma-style.model")
    dummy = os.path.join(OUT, "dummy-prefix.model")
    unused = os.path.join(OUT, "unused-pieces.model")
    nofb = os.path.join(OUT, "no-fallback.model")
    rule = os.path.join(OUT, "custom-rule.model")
    sp_models.train(gemma, vocab_size=4000, lines=lines, allow_whitespace_only_pieces=True)
    sp_models.train(dummy, vocab_size=3000, dummy_prefix=True, collapse_whitespace=True, lines=lines)
    train_no_fallback(nofb, lines)
    train_custom_rule(rule, lines)

    # UNUSED pieces: retype every 7th merged NORMAL piece of more than two characters, so encode
    # must merge through them and then split them back (bpe_model.cc's resegmentation).
    data = open(gemma, "rb").read()
    table = piece_scores(data)
    normal = [i for i, (p, _, typ) in enumerate(table) if typ == 1 and len(p) > 2]
    retyped = {i: 5 for i in normal[::7]}
    with open(unused, "wb") as f:
        f.write(retype_pieces(data, retyped))

    sp = spm.SentencePieceProcessor(model_file=gemma)
    texts = texts_for(sp)
    for name, path, subset in [("gemma-style", gemma, texts), ("dummy-prefix", dummy, texts),
                               ("unused-pieces", unused, texts[::2]),
                               ("no-fallback", nofb, texts[::2])]:
        write_json(os.path.join(OUT, name + ".json"), encode_cases(path, subset))

    decode = []
    for name, path in [("gemma-style", gemma), ("dummy-prefix", dummy), ("no-fallback", nofb)]:
        decode += decode_cases(name, path)
    write_json(os.path.join(OUT, "decode.json"), decode)

    for f in sorted(os.listdir(OUT)):
        print(f"{os.path.getsize(os.path.join(OUT, f)):>8}  {f}")


if __name__ == "__main__":
    main()
