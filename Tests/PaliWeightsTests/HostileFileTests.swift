// Hostile and damaged safetensors files, built by mutating a good one: each must throw a
// WeightsError naming the file (and the tensor where there is one), never crash or read out of bounds.
import Foundation
import Testing
@testable import PaliWeights

@Suite struct HostileFileTests {
    /// A good file: F32 [2,3], BF16 [4], I64 [2] (written by SafetensorsWriter).
    static func goodFile(in dir: URL) throws -> (url: URL, bytes: [UInt8], headerLength: Int) {
        let url = dir.appendingPathComponent("good.safetensors")
        try SafetensorsWriter.write([
            .f32("weight", shape: [2, 3], [1, 2, 3, 4, 5, 6]),
            SafetensorsEntry(name: "half", dtype: .bf16, shape: [4], bytes: [0, 0x3F, 0, 0x40, 0x80, 0x3F, 0, 0]),
            .i64("ids", shape: [2], [1, 2]),
        ], to: url)
        let bytes = Array(try Data(contentsOf: url))
        let headerLength = Int(bytes[0..<8].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        _ = try SafetensorsFile(contentsOf: url)  // the unmutated file is fine
        return (url, bytes, headerLength)
    }

    @Test func truncatedAtEveryHeaderByteAndInTheData() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Self.goodFile(in: dir)
        let dataStart = 8 + good.headerLength
        let cuts = Array(0..<dataStart) + Array(stride(from: dataStart, to: good.bytes.count, by: 3))
            + [good.bytes.count - 1]
        var seen = 0
        for cut in cuts {
            let url = dir.appendingPathComponent("cut\(cut).safetensors")
            try Data(good.bytes[0..<cut]).write(to: url)
            guard let error = expectWeightsError(url) else { continue }
            #expect(error.path == url.path)
            if cut < dataStart {
                guard case .truncated = error else { Issue.record("cut \(cut): \(error)"); continue }
            } else {
                // Truncated in the data: the first tensor that no longer fits is named.
                guard case .invalidTensor(_, let tensor, let detail) = error else { Issue.record("cut \(cut): \(error)"); continue }
                #expect(["weight", "half", "ids"].contains(tensor))
                #expect(detail.contains("truncated"))
            }
            seen += 1
            try FileManager.default.removeItem(at: url)
        }
        #expect(seen == cuts.count)
    }

    @Test(arguments: [UInt64(1) << 63, UInt64.max, UInt64(Int.max), 1 << 40])
    func headerLengthBeyondFile(declared: UInt64) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Self.goodFile(in: dir)
        var bytes = good.bytes
        withUnsafeBytes(of: declared.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        let url = dir.appendingPathComponent("long.safetensors")
        try Data(bytes).write(to: url)
        let error = expectWeightsError(url)
        guard case .truncated = error else { Issue.record("\(String(describing: error))"); return }
    }

    @Test func headerLengthJustPastFileEnd() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Self.goodFile(in: dir)
        var bytes = good.bytes
        withUnsafeBytes(of: UInt64(bytes.count - 7).littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
        let url = dir.appendingPathComponent("long.safetensors")
        try Data(bytes).write(to: url)
        guard case .truncated = expectWeightsError(url) else { Issue.record("not .truncated"); return }
    }

    @Test func headerOverTheLimitIsRejectedWithoutReadingIt() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("huge.safetensors")
        let declared = SafetensorsFile.maxHeaderLength + 8
        try writeRawFile(url, header: "{", declaredLength: UInt64(declared))
        let handle = try FileHandle(forWritingTo: url)
        try handle.truncate(atOffset: UInt64(8 + declared + 16))  // sparse: no disk used
        try handle.close()
        guard case .invalidHeader(_, let detail) = expectWeightsError(url) else { Issue.record("not .invalidHeader"); return }
        #expect(detail.contains("limit"))
    }

    @Test func emptyShortAndMissingFiles() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.safetensors")
        try Data().write(to: empty)
        guard case .truncated = expectWeightsError(empty) else { Issue.record("empty file"); return }
        guard case .cannotOpen = expectWeightsError(dir.appendingPathComponent("missing.safetensors")) else {
            Issue.record("missing file"); return
        }
        guard case .cannotOpen = expectWeightsError(dir) else { Issue.record("directory"); return }
    }

    /// Malformed JSON: each must be .invalidHeader naming the file.
    static let malformedHeaders: [String] = [
        "",
        "{",
        "[1, 2]",
        "\"text\"",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},}",
        "{\"a\" {\"dtype\": \"F32\"}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}} trailing",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [01], \"data_offsets\": [0, 4]}}",
        "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4], \"dtype\": \"F16\"}}",
        "{\"a\": {\"dtype\": \"F\\q32\"}}",
        "{\"a\": {\"dtype\": \"F32\u{01}\"}}",
        "{\"\\ud800\": 1}",
        "{\"a\": tru}",
        "{\"__metadata__\": [\"x\"]}",
        "{\"__metadata__\": {\"format\": 1}}",
        "{\"a\": 1e}",
        "{\"a\": -}",
        "{" + String(repeating: "\"x\": [", count: 1) + String(repeating: "[", count: 100_000) + "}",
        "{\"a\":\u{00}}",
    ]

    @Test(arguments: malformedHeaders.indices)
    func malformedJSON(index: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try writeRawFile(dir.appendingPathComponent("bad\(index).safetensors"),
                                   header: Self.malformedHeaders[index], data: [0, 0, 0x80, 0x3F])
        let error = expectWeightsError(url)
        guard case .invalidHeader(let path, _) = error else { Issue.record("\(String(describing: error))"); return }
        #expect(path == url.path)
    }

    @Test func invalidUTF8InHeader() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        var header = Array("{\"a\u{00e9}\": 1}".utf8)
        header[3] = 0xFF  // break the é
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { bytes += $0 }
        let url = dir.appendingPathComponent("utf8.safetensors")
        try Data(bytes + header).write(to: url)
        guard case .invalidHeader = expectWeightsError(url) else { Issue.record("not .invalidHeader"); return }
    }

    /// (header entry, expected error kind) — each names tensor "t".
    static let badEntries: [(String, String)] = [
        (entry("t", "F8_E4M3", "[1]", 0, 1), "dtype"),
        (entry("t", "f32", "[1]", 0, 4), "dtype"),
        (entry("t", "Q4_K", "[1]", 0, 4), "dtype"),
        ("\"t\": {\"dtype\": 32, \"shape\": [1], \"data_offsets\": [0, 4]}", "tensor"),
        (entry("t", "F32", "[-1]", 0, 4), "tensor"),
        (entry("t", "F32", "[2, -2]", 0, 16), "tensor"),
        (entry("t", "F32", "[1.0]", 0, 4), "tensor"),
        (entry("t", "F32", "[1.5]", 0, 4), "tensor"),
        (entry("t", "F32", "[1e0]", 0, 4), "tensor"),
        (entry("t", "F32", "[\"1\"]", 0, 4), "tensor"),
        (entry("t", "F32", "[null]", 0, 4), "tensor"),
        (entry("t", "F32", "[true]", 0, 4), "tensor"),
        (entry("t", "F32", "4", 0, 4), "tensor"),
        (entry("t", "F32", "[99999999999999999999]", 0, 4), "tensor"),
        (entry("t", "F32", "[4611686018427387904, 4]", 0, 4), "tensor"),        // 2^62 × 4 elements overflow
        (entry("t", "F32", "[2305843009213693952]", 0, 4), "tensor"),           // 2^61 × 4 bytes overflow... = 2^63
        (entry("t", "F32", "[4294967296, 4294967296, 0]", 0, 0), "tensor"),      // running product overflows (as safetensors' own check)
        (entry("t", "F32", "[0, 4294967296, 4294967296]", 0, 0), "ok"),          // zero elements: no overflow
        (entry("t", "F32", "[3037000500, 3037000500]", 0, 4), "tensor"),        // product overflows Int64
        (entry("t", "F32", "[1]", 0, 1000), "tensor"),
        (entry("t", "F32", "[1]", 8, 4), "tensor"),
        (entry("t", "F32", "[1]", -4, 0), "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 99999999999999999999]}", "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}", "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0.0, 4]}", "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": {\"0\": 4}}", "tensor"),
        (entry("t", "F32", "[2]", 0, 4), "tensor"),       // size ≠ dtype × shape
        (entry("t", "F32", "[1]", 0, 8), "tensor"),
        (entry("t", "BF16", "[3]", 0, 8), "tensor"),
        (entry("t", "I64", "[]", 0, 4), "tensor"),
        ("\"t\": {\"shape\": [1], \"data_offsets\": [0, 4]}", "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}", "tensor"),
        ("\"t\": {\"dtype\": \"F32\", \"shape\": [1]}", "tensor"),
        ("\"t\": [0, 4]", "tensor"),
        ("\"t\": null", "tensor"),
    ]

    @Test(arguments: badEntries.indices)
    func invalidTensorEntry(index: Int) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let (body, kind) = Self.badEntries[index]
        let url = try writeRawFile(dir.appendingPathComponent("entry\(index).safetensors"),
                                   header: "{" + body + "}", data: [UInt8](repeating: 0, count: 8))
        if kind == "ok" {
            let file = try SafetensorsFile(contentsOf: url)
            #expect(try file.tensor("t").count == 0)
            return
        }
        let error = expectWeightsError(url)
        #expect(error?.tensor == "t", "\(body): \(String(describing: error))")
        #expect(error?.description.contains("'t'") == true)
        switch (error, kind) {
        case (.unknownDType?, "dtype"), (.invalidTensor?, "tensor"): break
        default: Issue.record("\(body): expected \(kind), got \(String(describing: error))")
        }
    }

    @Test func overlappingTensors() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let cases: [(String, Set<String>)] = [
            ("{" + entry("a", "F32", "[6]", 0, 24) + "," + entry("b", "F32", "[2]", 20, 28) + "}", ["a", "b"]),
            ("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 0, 8) + "}", ["a", "b"]),
            ("{" + entry("a", "F32", "[6]", 0, 24) + "," + entry("inner", "BF16", "[2]", 8, 12) + "}", ["a", "inner"]),
        ]
        for (i, (header, names)) in cases.enumerated() {
            let url = try writeRawFile(dir.appendingPathComponent("overlap\(i).safetensors"), header: header,
                                       data: [UInt8](repeating: 0, count: 28))
            let error = expectWeightsError(url)
            guard case .invalidTensor(_, let tensor, let detail)? = error else { Issue.record("\(String(describing: error))"); continue }
            #expect(names.contains(tensor))
            #expect(detail.contains("overlap"))
        }
        // Empty tensors overlap nothing.
        let ok = try writeRawFile(dir.appendingPathComponent("empty-ok.safetensors"),
                                  header: "{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("e", "F32", "[0]", 4, 4) + "}",
                                  data: [UInt8](repeating: 0, count: 8))
        #expect(try SafetensorsFile(contentsOf: ok).tensorNames.count == 2)
    }

    @Test func duplicateTensorNames() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = "{" + entry("w", "F32", "[1]", 0, 4) + "," + entry("w", "F32", "[1]", 4, 8) + "}"
        let url = try writeRawFile(dir.appendingPathComponent("dup.safetensors"), header: header, data: [UInt8](repeating: 0, count: 8))
        #expect(throws: WeightsError.duplicateTensor(path: url.path, tensor: "w")) { try SafetensorsFile(contentsOf: url) }
        let meta = "{\"__metadata__\": {}, \"__metadata__\": {}}"
        let url2 = try writeRawFile(dir.appendingPathComponent("dupmeta.safetensors"), header: meta)
        expectWeightsError(url2)
    }

    /// Found writing the safetensors fuzz target (Fuzz/): a header the reader accepts made `matrixRows` trap. Zero
    /// elements beside dimensions whose product overflows ([0, 2^32, 2^32]) overflowed the column count;
    /// an F64 scalar failed TensorRows' rank precondition. Each now throws or reads as rows.
    @Test func matrixRowsOfEveryAcceptedShapeDoesNotTrap() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = "{" + [entry("huge", "F32", "[0, 4294967296, 4294967296]", 0, 0),
                            entry("scalar", "F64", "[]", 0, 8),
                            entry("empty", "F32", "[3, 0, 4611686018427387904]", 8, 8),
                            entry("wide", "F64", "[1, 2, 0]", 8, 8)].joined(separator: ", ") + "}"
        let url = try writeRawFile(dir.appendingPathComponent("rows.safetensors"), header: header,
                                   data: Array(withUnsafeBytes(of: Double(1.5).bitPattern.littleEndian, Array.init)))
        let file = try SafetensorsFile(contentsOf: url)
        let error = expectWeightsError(url) { _ in _ = try file.matrixRows("huge") }
        guard case .invalidTensor(_, "huge", let detail)? = error else { Issue.record("\(String(describing: error))"); return }
        #expect(detail.contains("columns"))

        let scalar = try file.matrixRows("scalar")
        #expect(scalar.rowCount == 1 && scalar.columnCount == 1)
        try scalar.withRows(0..<1) { #expect($0.load(as: Float.self) == 1.5) }
        let empty = try file.matrixRows("empty")
        #expect(empty.rowCount == 3 && empty.columnCount == 0)
        let wide = try file.matrixRows("wide")
        #expect(wide.rowCount == 1 && wide.columnCount == 0)
    }

    /// Random byte flips in the header of a good file: whatever happens, no crash, and any tensor
    /// that opens reads back without faults.
    @Test func randomHeaderMutations() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Self.goodFile(in: dir)
        var rng = SeededRandom(seed: 7)
        let url = dir.appendingPathComponent("fuzz.safetensors")
        var opened = 0
        for _ in 0..<300 {
            var bytes = good.bytes
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                let i = Int.random(in: 0..<(8 + good.headerLength), using: &rng)
                bytes[i] = [UInt8(ascii: "0"), UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "\""),
                            UInt8(ascii: "}"), UInt8(ascii: ","), 0xFF, UInt8.random(in: 0...255, using: &rng)]
                    .randomElement(using: &rng)!
            }
            try Data(bytes).write(to: url)
            do {
                let file = try SafetensorsFile(contentsOf: url)
                opened += 1
                for name in file.tensorNames {
                    _ = try? file.tensor(name).scalars
                    _ = try? file.int64s(name)
                    _ = try? file.rawBytes(name)
                }
            } catch let error as WeightsError {
                #expect(error.path == url.path)
            }
        }
        #expect(opened < 300)
    }
}
