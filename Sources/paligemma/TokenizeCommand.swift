// `paligemma tokenize`: encode text with a tokenizer.model, print {"ids", "text"} as JSON.
import ArgumentParser
import Foundation
import PaliJSON
import PaliTokenizer

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text with a SentencePiece tokenizer.model and print {\"ids\", \"text\"} as JSON.",
        discussion: """
            Prints one JSON line {"ids": [...], "text": "..."}: ids are what sentencepiece's \
            encode(TEXT) returns (no BOS/EOS), text is sentencepiece's decode(ids) (an unknown \
            character without byte fallback shows as " ⁇ "). With --text-file, each line of the \
            file (split on \\n only) is one text and gets one JSON line.
            """)

    @Option(help: ArgumentHelp("A SentencePiece tokenizer.model, or a model directory holding one.",
                               valueName: "path"))
    var tokenizer: String

    @Option(help: "The text to encode (use --text=TEXT for text that starts with '-').")
    var text: String?

    @Option(help: ArgumentHelp("A UTF-8 file with one text per line; prints one JSON line per text.",
                               valueName: "path"))
    var textFile: String?

    func validate() throws {
        guard (text == nil) != (textFile == nil) else {
            throw ValidationError("pass exactly one of --text and --text-file")
        }
    }

    func run() throws {
        let model = try SentencePieceTokenizer(contentsOf: URL(fileURLWithPath: tokenizer))
        var out = JSONLineWriter()
        if let text {
            let ids = model.encode(text)
            out.write(ids: ids, text: model.decode(ids, skipSpecialTokens: false))
        } else if let textFile {
            let bytes = try readAll(textFile)
            bytes.withUnsafeBufferPointer { buffer in
                var start = 0
                while start < buffer.count {  // a final newline ends the last line
                    var end = start
                    while end < buffer.count && buffer[end] != 0x0A { end += 1 }
                    let line = String(decoding: UnsafeBufferPointer(rebasing: buffer[start..<end]), as: UTF8.self)
                    let ids = model.encode(line)
                    out.write(ids: ids, text: model.decode(ids, skipSpecialTokens: false))
                    start = end + 1
                }
            }
        }
        out.flush()
    }
}

/// Every byte of `path`, read to its end: a regular file, /dev/null, a pipe or process substitution
/// (`--text-file <(...)`) alike. Errors name the file and say what the system said (no such file, a
/// directory, permissions).
func readAll(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw ValidationError("cannot read --text-file \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = read(fd, &chunk, chunk.count)
        if n < 0 {
            if errno == EINTR { continue }
            throw ValidationError("cannot read --text-file \(path): \(String(cString: strerror(errno)))")
        }
        if n == 0 { return bytes }
        bytes.append(contentsOf: chunk[0..<n])
    }
}

/// Writes {"ids": [...], "text": "..."} lines byte-for-byte as Python's
/// json.dumps({"ids": ids, "text": text}, ensure_ascii=False) does.
struct JSONLineWriter {
    private var buffer: [UInt8] = []

    mutating func write(ids: [Int], text: String) {
        buffer.append(contentsOf: Array(#"{"ids": ["#.utf8))
        for (i, id) in ids.enumerated() {
            if i > 0 { buffer.append(contentsOf: [0x2C, 0x20]) }
            writeDecimal(id)
        }
        buffer.append(contentsOf: Array(#"], "text": ""#.utf8))
        let hex = Array("0123456789abcdef".utf8)
        for byte in text.utf8 {
            switch byte {
            case 0x22: buffer.append(contentsOf: [0x5C, 0x22])                   // \"
            case 0x5C: buffer.append(contentsOf: [0x5C, 0x5C])                   // \\
            case 0x0A: buffer.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: buffer.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: buffer.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: buffer.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: buffer.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0..<0x20:
                buffer.append(contentsOf: Array(#"\u00"#.utf8))
                buffer.append(hex[Int(byte >> 4)])
                buffer.append(hex[Int(byte & 15)])
            default: buffer.append(byte)
            }
        }
        buffer.append(contentsOf: [0x22, 0x7D, 0x0A])  // "}\n
        if buffer.count >= 1 << 16 { flush() }
    }

    private mutating func writeDecimal(_ value: Int) { appendDecimal(Int64(value), to: &buffer) }

    mutating func flush() {
        guard !buffer.isEmpty else { return }
        FileHandle.standardOutput.write(Data(buffer))
        buffer.removeAll(keepingCapacity: true)
    }
}
