// Shared helpers of the PaliTasks tests: fixture paths, the goldens of
// Tests/Oracle/make_task_goldens.py, and npz files built in memory (with ZIPFoundation).
import Foundation
import PaliTensor
import Testing
import ZIPFoundation

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func url(_ relative: String) -> URL { root.appendingPathComponent(relative) }
}

/// Tests/Fixtures/tasks/goldens.json.
struct TaskGoldens: Decodable {
    struct ParseObject: Decodable { let label: String; let box: [Int]; let bins: [Int]; let codes: [Int]? }
    struct ParseCase: Decodable {
        let name, text: String
        let width, height: Int
        let hasTaskTokens: Bool
        let objects: [ParseObject]
        let problems: Int
    }
    struct RLECase: Decodable { let height, width: Int; let bits, counts: String }
    struct ResizeCase: Decodable { let input: String; let width, height: Int; let output: String }
    struct PasteCase: Decodable { let width, height: Int; let box: [Int]; let logits, counts: String; let area: Int }
    struct NPZCase: Decodable { let name, dtype: String; let shape: [Int]; let values: String }

    let parse: [ParseCase]
    let rle: [RLECase]
    let resize: [ResizeCase]
    let paste: [PasteCase]
    let npz: [NPZCase]

    static let shared: TaskGoldens = {
        let data = try! Data(contentsOf: Fixtures.url("tasks/goldens.json"))
        return try! JSONDecoder().decode(TaskGoldens.self, from: data)
    }()
}

func base64Bytes(_ s: String) -> [UInt8] { Array(Data(base64Encoded: s)!) }

func base64Floats(_ s: String) -> [Float] {
    let b = base64Bytes(s)
    return (0..<(b.count / 4)).map { i in
        Float(bitPattern: UInt32(b[4 * i]) | UInt32(b[4 * i + 1]) << 8 | UInt32(b[4 * i + 2]) << 16 | UInt32(b[4 * i + 3]) << 24)
    }
}

/// Row-major bits packed MSB first (np.packbits) → one byte (0/1) per pixel.
func unpackBits(_ s: String, count: Int) -> [UInt8] {
    let b = base64Bytes(s)
    return (0..<count).map { i in (b[i / 8] >> (7 - UInt8(i % 8))) & 1 }
}

/// A fresh, empty temporary directory for one test.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("PaliTasksTests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

// MARK: - npz files made in the tests

/// `.npy` bytes: header `{'descr': descr, 'fortran_order': fortran, 'shape': shape, }`, version
/// `major`, then `data` (already in the byte order descr says).
func npyBytes(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false, major: UInt8 = 1,
              headerOverride: String? = nil) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var header = headerOverride ?? "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
    let prefix = major == 1 ? 10 : 12
    while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var out: [UInt8] = [0x93] + Array("NUMPY".utf8) + [major, 0]
    let n = header.utf8.count
    out += major == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
    return out + Array(header.utf8) + data
}

func f32Bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// Writes a ZIP holding `entries` (name → bytes), stored or deflated.
func writeZip(_ entries: [(String, [UInt8])], to url: URL, compressed: Bool = false) throws {
    try? FileManager.default.removeItem(at: url)
    let archive = try Archive(url: url, accessMode: .create)
    for (name, bytes) in entries {
        let data = Data(bytes)
        try archive.addEntry(with: name, type: .file, uncompressedSize: Int64(data.count),
                             compressionMethod: compressed ? .deflate : .none) { position, size in
            data.subdata(in: Int(position)..<Int(position) + size)
        }
    }
}

/// Writes an npz of F32 tensors.
func writeNPZ(_ arrays: [(String, Tensor)], to url: URL, compressed: Bool = false) throws {
    try writeZip(arrays.map { ($0.0 + ".npy", npyBytes(descr: "<f4", shape: $0.1.shape, data: f32Bytes($0.1.scalars))) },
                 to: url, compressed: compressed)
}

/// A tensor of uniform random values in [-scale, scale).
func randomTensor(_ shape: [Int], scale: Float = 1, rng: inout SplitMix64) -> Tensor {
    let n = shape.reduce(1, *)
    return Tensor(shape: shape, values: (0..<n).map { _ in Float.random(in: -scale..<scale, using: &rng) })
}

/// Largest |a − b| over the largest |b|.
func relativeError(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count)
    var maxDiff = 0.0, maxRef = 0.0
    for (x, y) in zip(a, b) {
        maxDiff = max(maxDiff, abs(Double(x) - Double(y)))
        maxRef = max(maxRef, abs(Double(y)))
    }
    return maxDiff / max(maxRef, 1e-30)
}
