// Writes safetensors files: an 8-byte little-endian header length, a JSON header, then the data.
// Used by the CLI's outputs (`preprocess`, `logits`, `mask`) and by test fixtures.
import Foundation

/// Element types a safetensors file can hold that this project reads or writes.
public enum SafetensorsDType: String, Sendable, CaseIterable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", f64 = "F64"
    case i64 = "I64", i32 = "I32", u8 = "U8", bool = "BOOL", i8 = "I8"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: return 8
        case .f32, .i32: return 4
        case .f16, .bf16: return 2
        case .u8, .bool, .i8: return 1
        }
    }
}

/// One tensor to write: name, dtype, shape and the raw little-endian bytes.
public struct SafetensorsEntry: Sendable {
    public var name: String
    public var dtype: SafetensorsDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        precondition(bytes.count == shape.reduce(1, *) * dtype.byteSize,
                     "\(name): \(bytes.count) bytes for shape \(shape) of \(dtype.rawValue)")
        self.name = name; self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }

    public static func f32(_ name: String, shape: [Int], _ values: [Float]) -> SafetensorsEntry {
        SafetensorsEntry(name: name, dtype: .f32, shape: shape,
                         bytes: values.withUnsafeBytes { Array($0) })
    }

    public static func i64(_ name: String, shape: [Int], _ values: [Int64]) -> SafetensorsEntry {
        SafetensorsEntry(name: name, dtype: .i64, shape: shape,
                         bytes: values.withUnsafeBytes { Array($0) })
    }
}

/// A tensor announced before its bytes exist (`SafetensorsWriter.write(planned:…)`).
public struct SafetensorsPlannedEntry: Sendable {
    public var name: String
    public var dtype: SafetensorsDType
    public var shape: [Int]
    public var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }

    public init(name: String, dtype: SafetensorsDType, shape: [Int]) {
        self.name = name; self.dtype = dtype; self.shape = shape
    }
}

public enum SafetensorsWriter {
    /// Writes the tensors of `planned` (in order) to `url`, asking `bytes(i)` for entry i's bytes one at a
    /// time, so that only one tensor is in memory at once (a quantized copy of a 28B checkpoint is written
    /// in the memory of its largest tensor). Atomic: a temporary file beside `url`, renamed at the end;
    /// removed when anything fails. `bytes(i)` must return exactly `planned[i].byteCount` bytes.
    public static func write(planned: [SafetensorsPlannedEntry], metadata: [String: String] = ["format": "pt"],
                             to url: URL, bytes: (Int) throws -> [UInt8]) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in planned {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape,
                              "data_offsets": [offset, offset + e.byteCount]] as [String: Any]
            offset += e.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).\(ProcessInfo.processInfo.processIdentifier).tmp")
        FileManager.default.createFile(atPath: temporary.path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: temporary.path) else {
            throw CocoaError(.fileWriteNoPermission, userInfo: [NSFilePathErrorKey: temporary.path])
        }
        var done = false
        defer {
            try? handle.close()
            if !done { try? FileManager.default.removeItem(at: temporary) }
        }
        var prefix = Data()
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { prefix.append(contentsOf: $0) }
        prefix.append(json)
        try handle.write(contentsOf: prefix)
        for (i, e) in planned.enumerated() {
            let data = try bytes(i)
            guard data.count == e.byteCount else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: url.path, NSLocalizedDescriptionKey:
                    "\(e.name): \(data.count) bytes for shape \(e.shape) of \(e.dtype.rawValue) (needs \(e.byteCount))"])
            }
            try handle.write(contentsOf: data)
        }
        try handle.synchronize()
        try handle.close()
        if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        try FileManager.default.moveItem(at: temporary, to: url)
        done = true
    }

    /// Writes `entries` (in order) to `url`, atomically (temporary file, then rename).
    public static func write(_ entries: [SafetensorsEntry], metadata: [String: String] = ["format": "pt"],
                             to url: URL) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        for e in entries {
            header[e.name] = ["dtype": e.dtype.rawValue, "shape": e.shape,
                              "data_offsets": [offset, offset + e.bytes.count]] as [String: Any]
            offset += e.bytes.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        // Pad the header with spaces so the data starts 8-byte aligned (as the Python writer does).
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for e in entries { out.append(contentsOf: e.bytes) }
        try out.write(to: url, options: .atomic)
    }
}
