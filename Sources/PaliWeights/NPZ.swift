// Reads NumPy `.npz` archives (`np.savez`, stored, or `np.savez_compressed`, deflated) of `.npy`
// arrays, as F32 tensors. Used for big_vision's `vae-oid.npz` (the mask decoder, SPEC §5.2).
//
// An npz is a ZIP (read with ZIPFoundation) whose entries `NAME.npy` each hold one array:
//   "\x93NUMPY", major, minor, header length (u16 LE for v1; u32 LE for v2 and v3),
//   a Python dict literal {'descr': '<f4', 'fortran_order': False, 'shape': (128, 512), }, the data.
// Accepted: descr '<f4' (in place), '<f8' (narrowed, round to nearest even), '<i8' and '<i4'
// (converted to Float, exact up to 2^24), fortran_order False. Anything else (big-endian,
// structured or object dtypes, Fortran order, pickles) is refused with an error naming the file and
// the array. Entries that do not end in ".npy" are not arrays and are skipped; directories too.
// Everything is checked before it is used: sizes are overflow-checked, the data must be exactly
// shape × item size, deflated entries may not inflate past their declared size, CRCs must match.
import Foundation
import PaliTensor
import ZIPFoundation

/// Everything that can go wrong reading an npz; every case names the file, and the array where
/// there is one.
public enum NPZError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file is missing, unreadable, or not a ZIP archive at all.
    case cannotOpen(path: String, reason: String)
    /// The ZIP entry of an array could not be extracted (truncated, bad CRC, bad compression).
    case damagedEntry(path: String, array: String, detail: String)
    /// The `.npy` bytes of an array are malformed (magic, version, header, data size).
    case invalidArray(path: String, array: String, detail: String)
    /// A valid `.npy` array of a kind this reader does not convert (dtype, Fortran order).
    case unsupportedArray(path: String, array: String, detail: String)
    /// Two entries of the archive hold the same array name.
    case duplicateArray(path: String, array: String)
    /// No array of that name in the archive.
    case arrayNotFound(path: String, array: String)
    /// The array exists with another shape than the consumer expects.
    case shapeMismatch(path: String, array: String, expected: [Int], actual: [Int])

    public var path: String {
        switch self {
        case .cannotOpen(let p, _), .damagedEntry(let p, _, _), .invalidArray(let p, _, _),
             .unsupportedArray(let p, _, _), .duplicateArray(let p, _), .arrayNotFound(let p, _),
             .shapeMismatch(let p, _, _, _):
            return p
        }
    }

    /// The array the error is about, when there is one.
    public var array: String? {
        switch self {
        case .cannotOpen: return nil
        case .damagedEntry(_, let a, _), .invalidArray(_, let a, _), .unsupportedArray(_, let a, _),
             .duplicateArray(_, let a), .arrayNotFound(_, let a), .shapeMismatch(_, let a, _, _):
            return a
        }
    }

    public var description: String {
        switch self {
        case .cannotOpen(let path, let reason):
            return "\(path): cannot read as an .npz archive (\(reason)). Check the path, and that the file is a "
                + "complete download of a NumPy .npz (np.savez / np.savez_compressed)."
        case .damagedEntry(let path, let array, let detail):
            return "\(path): array '\(array)' cannot be extracted: \(detail). The archive is damaged or truncated; "
                + "download or copy it again."
        case .invalidArray(let path, let array, let detail):
            return "\(path): array '\(array)' is not a valid .npy array: \(detail). The archive is damaged; "
                + "re-create it with np.savez."
        case .unsupportedArray(let path, let array, let detail):
            return "\(path): array '\(array)': \(detail). Re-save it as a C-ordered little-endian float32 array "
                + "(np.ascontiguousarray(a, dtype='<f4'))."
        case .duplicateArray(let path, let array):
            return "\(path): array '\(array)' appears twice in the archive. Re-create the archive with np.savez."
        case .arrayNotFound(let path, let array):
            return "\(path): no array named '\(array)'. Check that the file is the expected checkpoint "
                + "(e.g. big_vision's vae-oid.npz for the mask decoder)."
        case .shapeMismatch(let path, let array, let expected, let actual):
            return "\(path): array '\(array)' has shape \(actual) but \(expected) is expected. "
                + "Check that the file is the expected checkpoint."
        }
    }
}

/// Element types of `.npy` arrays this reader converts to Float32.
public enum NPYDType: String, Sendable, CaseIterable {
    case f32 = "<f4", f64 = "<f8", i64 = "<i8", i32 = "<i4"

    public var byteSize: Int {
        switch self {
        case .f32, .i32: return 4
        case .f64, .i64: return 8
        }
    }
}

/// One array of an npz: its name (the entry name without ".npy"), the dtype it was stored in,
/// and its values as Float32 (shape as stored; a 0-d array has shape []).
public struct NPZArray: @unchecked Sendable {
    public let name: String
    public let dtype: NPYDType
    public let tensor: Tensor
    public var shape: [Int] { tensor.shape }
}

/// A whole `.npz` read into memory.
public struct NPZFile: @unchecked Sendable {
    /// Largest array accepted (elements), as a guard against absurd declared sizes: 2^31.
    public static let maxElements = 1 << 31

    public let url: URL
    /// Array names in archive order.
    public let names: [String]
    private let arrays: [String: NPZArray]

    public var path: String { url.path }

    /// Reads and converts every `.npy` entry of the archive at `url`.
    public init(contentsOf url: URL) throws {
        self.url = url
        let path = url.path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw NPZError.cannotOpen(path: path, reason: "no such file")
        }
        let archive: Archive
        do {
            archive = try Archive(url: url, accessMode: .read)
        } catch {
            throw NPZError.cannotOpen(path: path, reason: "not a ZIP archive, or its directory is damaged: \(error)")
        }
        var names: [String] = []
        var arrays: [String: NPZArray] = [:]
        for entry in archive where entry.type == .file {
            let entryPath = entry.path
            guard entryPath.hasSuffix(".npy") else { continue }
            let name = String(entryPath.dropLast(4))
            guard arrays[name] == nil else { throw NPZError.duplicateArray(path: path, array: name) }
            let bytes = try Self.extract(entry, from: archive, path: path, name: name)
            let array = try NPYParser.parse(bytes, path: path, name: name)
            arrays[name] = array
            names.append(name)
        }
        self.names = names
        self.arrays = arrays
    }

    /// The array `name` (without ".npy"), or nil when absent.
    public func array(_ name: String) -> NPZArray? { arrays[name] }

    public func contains(_ name: String) -> Bool { arrays[name] != nil }

    /// The array `name` as a Float32 tensor; throws naming the file and array when absent.
    public func tensor(_ name: String) throws -> Tensor {
        guard let a = arrays[name] else { throw NPZError.arrayNotFound(path: path, array: name) }
        return a.tensor
    }

    /// The array `name`, which must have exactly `shape`.
    public func tensor(_ name: String, shape: [Int]) throws -> Tensor {
        let t = try tensor(name)
        guard t.shape == shape else {
            throw NPZError.shapeMismatch(path: path, array: name, expected: shape, actual: t.shape)
        }
        return t
    }

    /// The entry's bytes, refusing entries that inflate past their declared size or fail their CRC.
    private static func extract(_ entry: Entry, from archive: Archive, path: String, name: String) throws -> [UInt8] {
        let declared = entry.uncompressedSize
        // Header (≤ 4 GiB + 10 bytes) plus the largest data accepted.
        guard declared <= UInt64(maxElements) * 8 + (1 << 32) else {
            throw NPZError.damagedEntry(path: path, array: name, detail: "declared size \(declared) bytes is "
                                        + "larger than any array this reader accepts")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(min(declared, 1 << 26)))  // grows past 64 MiB only as data arrives
        let checksum: CRC32
        do {
            checksum = try archive.extract(entry, skipCRC32: false) { chunk in
                guard UInt64(bytes.count + chunk.count) <= declared else {
                    throw NPZError.damagedEntry(path: path, array: name, detail: "the entry inflates past its declared "
                                                + "size of \(declared) bytes")
                }
                bytes.append(contentsOf: chunk)
            }
        } catch let e as NPZError {
            throw e
        } catch {
            throw NPZError.damagedEntry(path: path, array: name, detail: "\(error)")
        }
        guard UInt64(bytes.count) == declared else {
            throw NPZError.damagedEntry(path: path, array: name, detail: "got \(bytes.count) of the \(declared) "
                                        + "bytes the archive declares (truncated?)")
        }
        guard checksum == entry.checksum else {
            throw NPZError.damagedEntry(path: path, array: name, detail: "CRC-32 mismatch")
        }
        return bytes
    }
}

// MARK: - .npy

/// Parses one `.npy` file held in memory.
public enum NPYParser {
    static let magic: [UInt8] = [0x93] + Array("NUMPY".utf8)

    /// Parses `.npy` bytes; `path` and `name` are used in errors.
    public static func parse(_ bytes: [UInt8], path: String, name: String) throws -> NPZArray {
        func invalid(_ detail: String) -> NPZError { .invalidArray(path: path, array: name, detail: detail) }
        guard bytes.count >= 10 else { throw invalid("\(bytes.count) bytes is too short for a .npy header") }
        guard Array(bytes[0..<6]) == magic else { throw invalid("missing the \\x93NUMPY magic") }
        let major = bytes[6], minor = bytes[7]
        let headerLength: Int, headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw invalid("\(bytes.count) bytes is too short for a v\(major) header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw invalid("format version \(major).\(minor) is not 1.0, 2.0 or 3.0")
        }
        guard headerLength <= bytes.count - headerStart else {
            throw invalid("the header length says \(headerLength) bytes but only \(bytes.count - headerStart) follow")
        }
        let headerBytes = bytes[headerStart..<headerStart + headerLength]
        // v1 and v2 headers are latin-1; v3 is UTF-8. Every valid header is ASCII in practice.
        guard let headerText = major == 3 ? String(bytes: headerBytes, encoding: .utf8)
                                          : String(bytes: headerBytes, encoding: .isoLatin1) else {
            throw invalid("the header is not valid text")
        }
        let header: NPYHeader
        do {
            header = try NPYHeader(parsing: headerText)
        } catch let e as NPYHeaderError {
            throw invalid("header \(headerText.trimmingCharacters(in: .whitespacesAndNewlines).debugDescription): \(e.message)")
        }
        guard let dtype = NPYDType(rawValue: header.descr) else {
            let known = NPYDType.allCases.map { "'\($0.rawValue)'" }.joined(separator: ", ")
            throw NPZError.unsupportedArray(path: path, array: name, detail: "dtype '\(header.descr)' is not supported "
                                            + "(supported: \(known))")
        }
        guard !header.fortranOrder else {
            throw NPZError.unsupportedArray(path: path, array: name, detail: "it is stored in Fortran (column-major) "
                                            + "order; only C order is supported")
        }
        var count = 1
        for d in header.shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, p <= NPZFile.maxElements else {
                throw invalid("shape \(header.shape) has more than \(NPZFile.maxElements) elements")
            }
            count = p
        }
        let dataStart = headerStart + headerLength
        let need = count * dtype.byteSize
        let have = bytes.count - dataStart
        guard have == need else {
            throw invalid("shape \(header.shape) of '\(header.descr)' needs \(need) data bytes but the array has "
                          + "\(have)\(have < need ? " (truncated)" : "")")
        }
        let storage = TensorStorage(count: count)
        bytes.withUnsafeBytes { raw in
            let src = raw.baseAddress! + dataStart
            let dst = storage.pointer
            switch dtype {
            case .f32:
                for i in 0..<count { dst[i] = Float(bitPattern: UInt32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .f64:
                for i in 0..<count { dst[i] = Float(Double(bitPattern: UInt64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .i64:
                for i in 0..<count { dst[i] = Float(Int64(littleEndian: src.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            case .i32:
                for i in 0..<count { dst[i] = Float(Int32(littleEndian: src.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            }
        }
        return NPZArray(name: name, dtype: dtype, tensor: Tensor(shape: header.shape, storage: storage))
    }
}

struct NPYHeaderError: Error { let message: String }

/// The dict literal of a `.npy` header: exactly the keys 'descr' (a string), 'fortran_order'
/// (True/False) and 'shape' (a tuple of non-negative ints). A small parser of that Python literal
/// subset; anything else (e.g. a list descr of a structured dtype) is an error.
struct NPYHeader: Equatable {
    var descr: String
    var fortranOrder: Bool
    var shape: [Int]

    private enum Value { case string(String), bool(Bool), int(Int), tuple([Value]), other(String) }

    init(parsing text: String) throws {
        var p = Scanner(Array(text.unicodeScalars))
        var fields: [String: Value] = [:]
        try p.expect("{")
        while true {
            p.skipSpace()
            if p.peek == "}" { p.advance(); break }
            guard case .string(let key) = try p.value() else { throw NPYHeaderError(message: "a key is not a string") }
            try p.expect(":")
            let v = try p.value()
            guard fields[key] == nil else { throw NPYHeaderError(message: "key '\(key)' appears twice") }
            fields[key] = v
            p.skipSpace()
            if p.peek == "," { p.advance(); continue }
            try p.expect("}")
            break
        }
        p.skipSpace()
        guard p.atEnd else { throw NPYHeaderError(message: "text after the closing brace") }
        let unknown = fields.keys.filter { !["descr", "fortran_order", "shape"].contains($0) }.sorted()
        guard unknown.isEmpty else { throw NPYHeaderError(message: "unexpected keys \(unknown)") }
        switch fields["descr"] {
        case .string(let s)?: descr = s
        case nil: throw NPYHeaderError(message: "no 'descr'")
        case .other(let s)?: throw NPYHeaderError(message: "'descr' is \(s), not a simple dtype string (structured dtypes are not supported)")
        default: throw NPYHeaderError(message: "'descr' is not a string")
        }
        guard case .bool(let f)? = fields["fortran_order"] else {
            throw NPYHeaderError(message: "'fortran_order' is missing or not True/False")
        }
        fortranOrder = f
        guard case .tuple(let dims)? = fields["shape"] else { throw NPYHeaderError(message: "'shape' is missing or not a tuple") }
        shape = try dims.map {
            guard case .int(let n) = $0, n >= 0 else { throw NPYHeaderError(message: "'shape' holds something other than non-negative integers") }
            return n
        }
    }

    private struct Scanner {
        let s: [Unicode.Scalar]
        var i = 0
        init(_ s: [Unicode.Scalar]) { self.s = s }
        var atEnd: Bool { i >= s.count }
        var peek: Unicode.Scalar? { i < s.count ? s[i] : nil }
        mutating func advance() { i += 1 }
        mutating func skipSpace() { while let c = peek, c == " " || c == "\n" || c == "\t" || c == "\r" { i += 1 } }
        mutating func expect(_ c: Unicode.Scalar) throws {
            skipSpace()
            guard peek == c else { throw NPYHeaderError(message: "expected '\(c)' at character \(i)") }
            i += 1
        }
        mutating func value(depth: Int = 0) throws -> Value {
            guard depth < 8 else { throw NPYHeaderError(message: "nested too deeply") }
            skipSpace()
            guard let c = peek else { throw NPYHeaderError(message: "unexpected end") }
            switch c {
            case "'", "\"":
                i += 1
                var out = ""
                while let d = peek, d != c {
                    guard d != "\\" else { throw NPYHeaderError(message: "escapes in strings are not supported") }
                    out.unicodeScalars.append(d); i += 1
                }
                guard peek == c else { throw NPYHeaderError(message: "unterminated string") }
                i += 1
                return .string(out)
            case "(", "[":
                let close: Unicode.Scalar = c == "(" ? ")" : "]"
                i += 1
                var items: [Value] = []
                while true {
                    skipSpace()
                    if peek == close { i += 1; break }
                    items.append(try value(depth: depth + 1))
                    skipSpace()
                    if peek == "," { i += 1; continue }
                    guard peek == close else { throw NPYHeaderError(message: "expected ',' or '\(close)' at character \(i)") }
                    i += 1
                    break
                }
                return c == "(" ? .tuple(items) : .other("a list")
            case "0"..."9":
                var n = 0
                while let d = peek, ("0"..."9").contains(d) {
                    let (m, o1) = n.multipliedReportingOverflow(by: 10)
                    let (a, o2) = m.addingReportingOverflow(Int(d.value) - 48)
                    guard !o1 && !o2 else { throw NPYHeaderError(message: "an integer does not fit in 64 bits") }
                    n = a; i += 1
                }
                // Python 2 era headers may write 3L.
                if peek == "L" { i += 1 }
                return .int(n)
            default:
                var word = ""
                while let d = peek, d.properties.isAlphabetic || d == "_" { word.unicodeScalars.append(d); i += 1 }
                switch word {
                case "True": return .bool(true)
                case "False": return .bool(false)
                case "": throw NPYHeaderError(message: "unexpected character '\(c)' at \(i)")
                default: return .other(word)
                }
            }
        }
    }
}
