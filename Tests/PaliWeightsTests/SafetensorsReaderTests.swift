// Reading valid files: values against goldens from torch, in-place mapping vs. copies, integer
// tensors, metadata, and a round trip through SafetensorsWriter.
import Foundation
import PaliTensor
import Testing
@testable import PaliWeights

@Suite struct SafetensorsReaderTests {
    static let expected = try! SafetensorsFile(contentsOf: fixture("expected.safetensors"))

    /// Every golden tensor: "<file stem>/<tensor>" in expected.safetensors.
    static let goldenNames = expected.tensorNames

    @Test(arguments: goldenNames)
    func valuesEqualTorch(golden: String) throws {
        let parts = golden.split(separator: "/", maxSplits: 1).map(String.init)
        let file = try SafetensorsFile(contentsOf: fixture("\(parts[0]).safetensors"))
        let name = parts[1]
        let info = try #require(file.info(name))
        switch info.dtype {
        case .f32, .f16, .bf16:
            let want = try Self.expected.tensor(golden)
            let got = try file.tensor(name)
            #expect(got.shape == info.shape)
            #expect(got.shape == want.shape)
            let mismatches = zip(got.scalars, want.scalars).enumerated().filter { !sameFloat($0.element.0, $0.element.1) }
            #expect(mismatches.isEmpty, "\(golden): \(mismatches.prefix(4).map { "[\($0.offset)] \($0.element.0) vs \($0.element.1)" })")
        case .i64, .i32:
            #expect(try file.int64s(name) == Self.expected.int64s(golden))
        default:
            Issue.record("unexpected dtype \(info.dtype) for \(golden)")
        }
    }

    @Test func goldensCoverEveryFloatAndIntegerTensor() throws {
        for stem in ["dtypes", "misaligned"] {
            let file = try SafetensorsFile(contentsOf: fixture("\(stem).safetensors"))
            for name in file.tensorNames where file.info(name)?.dtype != .u8 {
                #expect(Self.expected.contains("\(stem)/\(name)"), "\(stem)/\(name) has no golden")
            }
        }
    }

    @Test func specialValuesSurvive() throws {
        let file = try SafetensorsFile(contentsOf: fixture("dtypes.safetensors"))
        let f16 = try file.tensor("f16_special").scalars
        #expect(f16[4] == 0x1p-24)                 // smallest half subnormal
        #expect(f16[5] == -(0x3FF * 0x1p-24))      // largest negative half subnormal
        #expect(f16[7] == 65504)
        #expect(f16[8] == .infinity && f16[9] == -.infinity)
        #expect(f16[10].isNaN && f16[11].isNaN)
        #expect(f16[1] == 0 && f16[1].sign == .minus)
        let bf16 = try file.tensor("bf16_special").scalars
        #expect(bf16[4] == Float(bitPattern: 0x0001_0000))  // bf16 subnormal
        #expect(bf16[7] == Float(bitPattern: 0x7F7F_0000))
        #expect(bf16[11].isNaN && bf16[11].sign == .minus)
        #expect(bf16[11].bitPattern == 0xFFC1_0000)          // payload kept
        #expect(try file.tensor("f32_scalar").shape == [])
        #expect(try file.tensor("f32_scalar").scalars == [2.5])
        #expect(try file.tensor("f32_empty").shape == [0, 4])
        #expect(try file.tensor("f32_empty").count == 0)
    }

    @Test func alignedF32IsMappedInPlace() throws {
        let file = try SafetensorsFile(contentsOf: fixture("dtypes.safetensors"))
        let t = try file.tensor("f32_special")
        #expect(file.isMapped(t))
        #expect(t.scalars[2] == 1)
        // Converted dtypes get their own storage.
        #expect(!file.isMapped(try file.tensor("bf16_special")))
        #expect(!file.isMapped(try file.tensor("f16_special")))
    }

    @Test func mappedTensorOutlivesFileObject() throws {
        var file: SafetensorsFile? = try SafetensorsFile(contentsOf: fixture("dtypes.safetensors"))
        let t = try file!.tensor("f32_special")
        file = nil
        #expect(t.scalars[2] == 1 && t.scalars[3] == -1)
    }

    @Test func misalignedF32IsCopied() throws {
        let file = try SafetensorsFile(contentsOf: fixture("misaligned.safetensors"))
        let info = try #require(file.info("f32_after_odd"))
        #expect(info.dataOffsets.lowerBound % 4 != 0)
        let t = try file.tensor("f32_after_odd")
        #expect(!file.isMapped(t))
        #expect(Int(bitPattern: t.data) % 4 == 0)
        #expect(t.shape == [2, 3])
        #expect(file.metadata == ["format": "pt", "note": "misaligned on purpose"])
        #expect(try file.rawBytes("odd_u8") == [1, 2, 3])
    }

    @Test func integerAccessors() throws {
        let file = try SafetensorsFile(contentsOf: fixture("dtypes.safetensors"))
        #expect(try file.int64s("input_ids") == [2, 257152, 9, 0, -1, .max, .min, 1 << 40])
        #expect(try file.int32s("i32_values") == [0, 1, -1, .max, .min, 257152])
        #expect(try file.int64s("i32_values") == [0, 1, -1, Int64(Int32.max), Int64(Int32.min), 257152])
        #expect(file.info("input_ids")?.shape == [1, 8])
        #expect(file.metadata == ["format": "pt"])
    }

    @Test func wrongAccessorIsAnError() throws {
        let url = fixture("dtypes.safetensors")
        let file = try SafetensorsFile(contentsOf: url)
        let cases: [(String, (SafetensorsFile) throws -> Void)] = [
            ("input_ids", { _ = try $0.tensor("input_ids") }),
            ("f32_special", { _ = try $0.int64s("f32_special") }),
            ("input_ids", { _ = try $0.int32s("input_ids") }),
        ]
        for (tensor, body) in cases {
            #expect {
                try body(file)
            } throws: { error in
                guard let e = error as? WeightsError, case .dtypeMismatch = e else { return false }
                return e.tensor == tensor && e.description.contains(url.path)
            }
        }
        #expect(throws: WeightsError.tensorNotFound(path: url.path, tensor: "nope")) { try file.tensor("nope") }
    }

    /// The F16 conversion (CKernels, shared with the packer) must equal the platform's Float16 for every bit pattern.
    @Test func halfConversionIsExactForAllPatterns() {
        var bad: [UInt16] = []
        let all = Array(0...UInt16.max)
        var widened = [Float](repeating: 0, count: all.count)
        all.withUnsafeBytes { convertToFloat(.f16, from: $0.baseAddress!, count: all.count, into: &widened) }
        for bits in 0...UInt16.max {
            let manual = widened[Int(bits)]
            #if (arch(x86_64) && os(Linux)) || arch(arm64)
            let platform = Float(Float16(bitPattern: bits))
            if !sameFloat(manual, platform) { bad.append(bits) }
            if !manual.isNaN, Float16(manual).bitPattern != bits { bad.append(bits) }  // round-trips
            #endif
        }
        #expect(bad.isEmpty, "first mismatches: \(bad.prefix(5))")
    }

    @Test func writerRoundTrip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("round.safetensors")
        let values: [Float] = [1.5, -0.0, .infinity, Float(bitPattern: 0x0003_4567), .greatestFiniteMagnitude, -7]
        try SafetensorsWriter.write([
            .f32("weights", shape: [2, 3], values),
            SafetensorsEntry(name: "odd", dtype: .u8, shape: [1], bytes: [9]),   // pushes the next one off 4-byte alignment
            .f32("after_odd", shape: [2], [0.25, -1]),
            .i64("ids", shape: [3], [7, -8, .max]),
            .f32("empty", shape: [0], []),
        ], metadata: ["format": "pt", "producer": "test"], to: url)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.metadata == ["format": "pt", "producer": "test"])
        #expect(Set(file.tensorNames) == ["weights", "odd", "after_odd", "ids", "empty"])
        let w = try file.tensor("weights")
        #expect(w.shape == [2, 3])
        #expect(zip(w.scalars, values).allSatisfy { sameFloat($0, $1) })
        #expect(file.isMapped(w))
        let a = try file.tensor("after_odd")
        #expect(a.scalars == [0.25, -1])
        #expect(!file.isMapped(a))
        #expect(try file.int64s("ids") == [7, -8, .max])
        #expect(try file.tensor("empty").shape == [0])
        #expect(try file.rawBytes("odd") == [9])
    }

    /// The streaming writer (`paligemma quantize`): the same file as the in-memory one, each tensor asked
    /// for once and in order; a tensor of the wrong size fails the write and leaves nothing behind.
    @Test func plannedWriterEqualsTheInMemoryOneAndLeavesNothingOnError() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let entries: [SafetensorsEntry] = [
            .f32("weights", shape: [2, 3], [1, 2, 3, -4, 5, .infinity]),
            SafetensorsEntry(name: "q", dtype: .i8, shape: [3], bytes: [0x81, 0, 0x7f]),
            .f32("empty", shape: [0], []),
            .i64("ids", shape: [2], [7, -8]),
        ]
        let whole = dir.appendingPathComponent("whole.safetensors"), streamed = dir.appendingPathComponent("streamed.safetensors")
        try SafetensorsWriter.write(entries, metadata: ["format": "pt", "x": "y"], to: whole)
        var asked: [Int] = []
        try SafetensorsWriter.write(planned: entries.map { SafetensorsPlannedEntry(name: $0.name, dtype: $0.dtype, shape: $0.shape) },
                                    metadata: ["format": "pt", "x": "y"], to: streamed) { i in asked.append(i); return entries[i].bytes }
        #expect(asked == Array(entries.indices))
        #expect(try Data(contentsOf: whole) == (try Data(contentsOf: streamed)))

        let bad = dir.appendingPathComponent("bad.safetensors")
        #expect(throws: (any Error).self) {
            try SafetensorsWriter.write(planned: [SafetensorsPlannedEntry(name: "w", dtype: .f32, shape: [2])], to: bad) { _ in [1, 2, 3] }
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
        #expect(left == ["streamed.safetensors", "whole.safetensors"], "nothing of the failed write is left: \(left)")
    }

    @Test func emptyHeaderIsAValidEmptyFile() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = try writeRawFile(dir.appendingPathComponent("empty.safetensors"), header: "{}      ")
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.tensorNames.isEmpty)
        #expect(file.metadata.isEmpty)
    }

    @Test func gapsAndTrailingBytesAreAllowed() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = "{" + entry("a", "F32", "[1]", 4, 8) + "," + entry("b", "F32", "[1]", 12, 16) + "}"
        let data: [UInt8] = [0, 0, 0, 0, 0, 0, 0x80, 0x3F, 0, 0, 0, 0, 0, 0, 0, 0x40, 0xAA, 0xBB]
        let url = try writeRawFile(dir.appendingPathComponent("gaps.safetensors"), header: header, data: data)
        let file = try SafetensorsFile(contentsOf: url)
        #expect(try file.tensor("a").scalars == [1])
        #expect(try file.tensor("b").scalars == [2])
        #expect(file.tensorNames == ["a", "b"])
    }

    @Test func unicodeNamesAndEscapes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let header = #"{"caf\u00e9.\ud83d\ude00\"q\"": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}"#
        let url = try writeRawFile(dir.appendingPathComponent("u.safetensors"), header: header, data: [0, 0, 0x80, 0x3F])
        let file = try SafetensorsFile(contentsOf: url)
        #expect(file.tensorNames == ["café.😀\"q\""])
    }
}
