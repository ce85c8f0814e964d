import Foundation
import PaliTensor
import Testing
@testable import PaliWeights

/// Tests/Fixtures/weights (written by Tests/Oracle/make_weight_goldens.py).
let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/weights")

func fixture(_ relative: String) -> URL { fixtures.appendingPathComponent(relative) }

/// A fresh, empty temporary directory for one test.
func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory
        .appendingPathComponent("PaliWeightsTests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// Writes a safetensors file by hand: 8-byte length (`declaredLength` or the header's), header, data.
@discardableResult
func writeRawFile(_ url: URL, header: String, data: [UInt8] = [], declaredLength: UInt64? = nil) throws -> URL {
    var bytes: [UInt8] = []
    let headerBytes = Array(header.utf8)
    withUnsafeBytes(of: (declaredLength ?? UInt64(headerBytes.count)).littleEndian) { bytes += $0 }
    bytes += headerBytes
    bytes += data
    try Data(bytes).write(to: url)
    return url
}

/// A one-tensor header entry.
func entry(_ name: String, _ dtype: String, _ shape: String, _ begin: Int, _ end: Int) -> String {
    "\"\(name)\": {\"dtype\": \"\(dtype)\", \"shape\": \(shape), \"data_offsets\": [\(begin), \(end)]}"
}

/// Opening must throw a WeightsError (never crash, never succeed); returns it.
@discardableResult
func expectWeightsError(_ url: URL, sourceLocation: SourceLocation = #_sourceLocation,
                        _ body: (URL) throws -> Void = { _ = try SafetensorsFile(contentsOf: $0) }) -> WeightsError? {
    do {
        try body(url)
        Issue.record("expected an error for \(url.lastPathComponent)", sourceLocation: sourceLocation)
        return nil
    } catch let error as WeightsError {
        #expect(error.description.contains(error.path), sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a WeightsError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Float bit patterns equal, except that any NaN matches any NaN.
func sameFloat(_ a: Float, _ b: Float) -> Bool {
    (a.isNaN && b.isNaN) || a.bitPattern == b.bitPattern
}

/// Deterministic generator for test data.
typealias SeededRandom = SplitMix64
