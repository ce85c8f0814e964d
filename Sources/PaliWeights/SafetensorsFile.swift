// Reads a safetensors file: memory-mapped, header validated before any tensor is touched.
//
// Layout: u64 little-endian N, then N bytes of JSON header, then the data section. The header is
// an object: "__metadata__" (optional string→string map) and, per tensor,
// {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with offsets relative to the data
// section. Validation (docs/weights.md): N within the file and ≤ 100 MB, JSON well-formed with no
// duplicate keys, dtype known, shape of non-negative integers, offsets inside the data section,
// end − begin = dtype size × element count (overflow-checked), no two tensors overlapping.
// Gaps between tensors and bytes after the last one are allowed.
//
// The header is read with pread; a tensor's bytes are mapped (its pages only) when it is read. F32
// tensors whose bytes are 4-byte aligned are handed out in place (borrowed storage that keeps their
// region mapped); others, and F16/BF16/F64, are converted into new storage and their region unmapped.
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import PaliJSON
import PaliTensor

/// One tensor's header entry.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    /// Byte range inside the data section (the bytes after the header).
    public let dataOffsets: Range<Int>

    /// Number of elements (the product of `shape`; 1 for a scalar).
    public var elementCount: Int { shape.reduce(1, *) }
    public var byteCount: Int { dataOffsets.count }
}

public final class SafetensorsFile: @unchecked Sendable {
    /// The largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    public let url: URL
    /// Tensor names in file order (by data offset, then name).
    public let tensorNames: [String]
    /// The header's `__metadata__` map (empty when absent).
    public let metadata: [String: String]

    private let file: MappedFile
    private let dataStart: Int
    private let infos: [String: TensorInfo]

    public var path: String { url.path }
    /// Size of the file in bytes.
    public var fileSize: Int { file.count }

    /// Maps and validates the file at `url`. Throws `WeightsError` naming the file (and tensor).
    public init(contentsOf url: URL) throws {
        self.url = url
        let path = url.path
        file = try MappedFile(path: path)
        let size = file.count
        guard size >= 8 else {
            throw WeightsError.truncated(path: path, detail: "the file is \(size) bytes; a safetensors file "
                                         + "starts with an 8-byte header length")
        }
        let lengthField = try file.read(0..<8)
        let declared = lengthField.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard declared <= UInt64(size - 8) else {
            throw WeightsError.truncated(path: path, detail: "the header length field says \(declared) bytes but only "
                                         + "\(size - 8) bytes follow it")
        }
        let headerLength = Int(declared)
        guard headerLength <= Self.maxHeaderLength else {
            throw WeightsError.invalidHeader(path: path, detail: "header length \(headerLength) exceeds the "
                                             + "\(Self.maxHeaderLength)-byte limit")
        }
        let header = try file.read(8..<(8 + max(headerLength, 0)))
        guard headerLength >= 2, header[0] == UInt8(ascii: "{") else {
            throw WeightsError.invalidHeader(path: path, detail: "the header does not start with '{'")
        }
        dataStart = 8 + headerLength
        let dataLength = size - dataStart

        let root: JSONValue
        do {
            root = try header.withUnsafeBytes { try JSONValue.parse(utf8: $0, options: .weights) }
        } catch let e as JSONParseError {
            if let duplicate = e.duplicateKey, duplicate.depth == 0 {
                throw WeightsError.duplicateTensor(path: path, tensor: duplicate.key)
            }
            throw WeightsError.invalidHeader(path: path, detail: "\(e.message) at header byte \(e.offset)")
        }
        guard case .object(let members) = root else {
            throw WeightsError.invalidHeader(path: path, detail: "the header is \(root.kindName), not an object")
        }

        var metadata: [String: String] = [:]
        var infos: [String: TensorInfo] = [:]
        var ordered: [TensorInfo] = []
        for (name, value) in members {
            if name == "__metadata__" {
                guard case .object(let entries) = value else {
                    throw WeightsError.invalidHeader(path: path, detail: "__metadata__ is \(value.kindName), not an object")
                }
                for (k, v) in entries {
                    guard case .string(let s) = v else {
                        throw WeightsError.invalidHeader(path: path, detail: "__metadata__[\"\(k)\"] is \(v.kindName), not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            let info = try Self.validateEntry(name: name, value: value, dataLength: dataLength, path: path)
            infos[name] = info
            ordered.append(info)
        }

        // No two non-empty tensors may share a byte.
        ordered.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name)
                       < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name) }
        var previous: TensorInfo?
        for info in ordered where !info.dataOffsets.isEmpty {
            if let p = previous, info.dataOffsets.lowerBound < p.dataOffsets.upperBound {
                throw WeightsError.invalidTensor(path: path, tensor: info.name, detail: "data_offsets "
                    + "[\(info.dataOffsets.lowerBound), \(info.dataOffsets.upperBound)] overlap tensor '\(p.name)' "
                    + "at [\(p.dataOffsets.lowerBound), \(p.dataOffsets.upperBound)]")
            }
            previous = info
        }
        self.metadata = metadata
        self.infos = infos
        self.tensorNames = ordered.map(\.name)
    }

    private static func validateEntry(name: String, value: JSONValue, dataLength: Int, path: String) throws -> TensorInfo {
        func bad(_ detail: String) -> WeightsError { .invalidTensor(path: path, tensor: name, detail: detail) }
        guard case .object = value else { throw bad("header entry is \(value.kindName), not an object") }
        func field(_ key: String) throws -> JSONValue {
            guard let v = value[key] else { throw bad("header entry has no \"\(key)\"") }
            return v
        }
        guard case .string(let dtypeName) = try field("dtype") else { throw bad("\"dtype\" is not a string") }
        guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
            throw WeightsError.unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        guard case .array(let dims) = try field("shape") else { throw bad("\"shape\" is not an array") }
        var shape: [Int] = []
        var elements = 1
        for d in dims {
            guard case .number(let literal) = d else { throw bad("shape entry is \(d.kindName), not an integer") }
            guard let n = d.intValue else {
                throw bad("shape entry \(literal) is not an integer that fits in 64 bits")
            }
            guard n >= 0 else { throw bad("shape entry \(n) is negative") }
            let (product, overflow) = elements.multipliedReportingOverflow(by: n)
            guard !overflow else { throw bad("shape [\(dims.map(entryText).joined(separator: ", "))] has more elements than fit in 64 bits") }
            shape.append(n)
            elements = product
        }
        let (byteCount, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw bad("shape \(shape) of \(dtypeName) is more bytes than fit in 64 bits") }

        guard case .array(let offsets) = try field("data_offsets"), offsets.count == 2 else {
            throw bad("\"data_offsets\" is not an array of two integers")
        }
        var bounds: [Int] = []
        for o in offsets {
            guard case .number(let literal) = o, let n = o.intValue else {
                throw bad("data_offsets entry \(entryText(o)) is not an integer that fits in 64 bits")
            }
            guard n >= 0 else { throw bad("data_offsets entry \(literal) is negative") }
            bounds.append(n)
        }
        let (begin, end) = (bounds[0], bounds[1])
        guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] end before they begin") }
        guard end <= dataLength else {
            throw bad("data_offsets [\(begin), \(end)] run past the end of the data section (\(dataLength) bytes); "
                      + "the file may be truncated")
        }
        guard end - begin == byteCount else {
            throw bad("data_offsets [\(begin), \(end)] hold \(end - begin) bytes but shape \(shape) of \(dtypeName) "
                      + "needs \(byteCount)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    // MARK: - Access

    /// The header entry for `name`, or nil when the file has no such tensor.
    public func info(_ name: String) -> TensorInfo? { infos[name] }

    public func contains(_ name: String) -> Bool { infos[name] != nil }

    private func entry(_ name: String) throws -> TensorInfo {
        guard let info = infos[name] else { throw WeightsError.tensorNotFound(path: path, tensor: name) }
        return info
    }

    /// The tensor's bytes, mapped (nil when it has none).
    private func region(of info: TensorInfo) throws -> MappedRegion? {
        guard !info.dataOffsets.isEmpty else { return nil }
        return try file.map((dataStart + info.dataOffsets.lowerBound)..<(dataStart + info.dataOffsets.upperBound))
    }

    /// The tensor as F32. F32 data that is 4-byte aligned is borrowed from the mapping (read-only);
    /// misaligned F32 and F16/BF16/F64 data are converted into newly allocated storage.
    public func tensor(_ name: String) throws -> Tensor {
        let info = try entry(name)
        switch info.dtype {
        case .f32, .f16, .bf16, .f64: break
        default:
            throw WeightsError.dtypeMismatch(path: path, tensor: name, dtype: info.dtype.rawValue,
                                             expected: "a floating-point dtype (F32, F16, BF16, F64)")
        }
        let count = info.elementCount
        guard count > 0, let region = try region(of: info) else { return Tensor(zeros: info.shape) }
        let source = region.base
        if info.dtype == .f32, Int(bitPattern: source) % MemoryLayout<Float>.alignment == 0 {
            let pointer = UnsafeMutableRawPointer(mutating: source).bindMemory(to: Float.self, capacity: count)
            return Tensor(shape: info.shape, storage: TensorStorage(borrowing: pointer, count: count, owner: region))
        }
        let storage = TensorStorage(count: count)
        convertToFloat(info.dtype, from: source, count: count, into: storage.pointer)
        return Tensor(shape: info.shape, storage: storage)
    }

    /// The rows of a floating-point tensor [N, ...] (N = shape[0], rows of the remaining elements), read
    /// in pieces for packing: each piece's pages are read ahead before and released from this
    /// process's memory after (madvise), so packing never keeps the file resident. F64 is converted
    /// whole (no model ships it).
    public func matrixRows(_ name: String) throws -> MatrixRows {
        let info = try entry(name)
        // A scalar is one row of one column. The header check bounds the product of all dimensions, so
        // the columns' product can overflow only beside a zero dimension ([0, 2^32, 2^32] holds no
        // bytes): then it is 0 when a column dimension is 0, and refused when only the rows are.
        let rows = info.shape.first ?? 1
        let rest = info.shape.dropFirst()
        var columns = rest.contains(0) ? 0 : 1
        for d in rest where columns != 0 {
            let (product, overflow) = columns.multipliedReportingOverflow(by: d)
            guard !overflow else {
                throw WeightsError.invalidTensor(path: path, tensor: name, detail: "shape \(info.shape) has more "
                                                 + "columns than fit in 64 bits")
            }
            columns = product
        }
        let element: SourceElement
        switch info.dtype {
        case .f32: element = .f32
        case .bf16: element = .bf16
        case .f16: element = .f16
        case .i8: element = .int8   // values only: Checkpoint.matrix pairs them with their `_scale`
        case .f64: return TensorRows(Tensor(shape: [rows, columns], storage: try tensor(name).storage))
        default:
            throw WeightsError.dtypeMismatch(path: path, tensor: name, dtype: info.dtype.rawValue,
                                             expected: "a floating-point dtype (F32, F16, BF16, F64)")
        }
        return FileMatrixRows(file: file, start: dataStart + info.dataOffsets.lowerBound, rowCount: rows,
                              columnCount: columns, element: element)
    }

    /// The elements of an I64 (or, widened, I32) tensor, row-major.
    public func int64s(_ name: String) throws -> [Int64] {
        let info = try entry(name)
        switch info.dtype {
        case .i64: return try readIntegers(info, as: Int64.self).map { Int64(littleEndian: $0) }
        case .i32: return try readIntegers(info, as: Int32.self).map { Int64(Int32(littleEndian: $0)) }
        default:
            throw WeightsError.dtypeMismatch(path: path, tensor: name, dtype: info.dtype.rawValue, expected: "I64")
        }
    }

    /// The elements of an I32 tensor, row-major.
    public func int32s(_ name: String) throws -> [Int32] {
        let info = try entry(name)
        guard info.dtype == .i32 else {
            throw WeightsError.dtypeMismatch(path: path, tensor: name, dtype: info.dtype.rawValue, expected: "I32")
        }
        return try readIntegers(info, as: Int32.self).map { Int32(littleEndian: $0) }
    }

    /// The tensor's raw little-endian bytes, whatever its dtype.
    public func rawBytes(_ name: String) throws -> [UInt8] {
        let info = try entry(name)
        guard info.byteCount > 0 else { return [] }
        return try file.read((dataStart + info.dataOffsets.lowerBound)..<(dataStart + info.dataOffsets.upperBound))
    }

    private func readIntegers<T: FixedWidthInteger>(_ info: TensorInfo, as: T.Type) throws -> [T] {
        let count = info.elementCount
        guard count > 0, let region = try region(of: info) else { return [] }
        let source = region.base
        return (0..<count).map { source.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
    }

    /// Whether `tensor`'s storage points into this file (i.e. it was handed out in place).
    public func isMapped(_ tensor: Tensor) -> Bool {
        (tensor.storage.borrowedFrom as? MappedRegion)?.file === file
    }
}

/// Rows of a tensor inside a safetensors file (see `SafetensorsFile.matrixRows`): each piece asked for
/// is mapped whole (MAP_POPULATE: one call instead of a fault per page) and unmapped right after.
struct FileMatrixRows: MatrixRows {
    let file: MappedFile
    /// The tensor's first byte in the file.
    let start: Int
    let rowCount: Int
    let columnCount: Int
    let element: SourceElement

    func withRows(_ rows: Range<Int>, _ body: (UnsafeRawPointer) throws -> Void) throws {
        guard !rows.isEmpty, columnCount > 0 else { return }
        let rowBytes = columnCount * element.byteSize
        let region = try file.map((start + rows.lowerBound * rowBytes)..<(start + rows.upperBound * rowBytes), populate: true)
        try withExtendedLifetime(region) { try body(region.base) }
    }
}

private func entryText(_ v: JSONValue) -> String {
    v.numberText ?? v.kindName
}

extension JSONParseOptions {
    /// Safetensors headers, index files and config.json: nesting is shallow in every valid file, so
    /// anything deeper than 64 levels is refused; duplicate keys are errors (a repeated tensor name).
    static let weights = JSONParseOptions(maxDepth: 64)
}
