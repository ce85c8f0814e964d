// NPZ reading: files written by NumPy (stored, deflated, .npy v1/v2/v3), and damaged or
// unsupported files, which must throw an NPZError naming the file (and array), never crash.
import Foundation
import PaliTensor
import PaliWeights
import Testing

@Suite struct NPZTests {
    @Test(arguments: ["numpy.npz", "numpy-compressed.npz"])
    func readsWhatNumPyWrites(file: String) throws {
        let npz = try NPZFile(contentsOf: Fixtures.url("tasks/\(file)"))
        let expected = TaskGoldens.shared.npz
        #expect(npz.names == expected.map(\.name))
        for e in expected {
            let a = try #require(npz.array(e.name))
            #expect(a.dtype.rawValue == e.dtype, "\(e.name)")
            #expect(a.shape == e.shape, "\(e.name)")
            let values = base64Floats(e.values)
            #expect(a.tensor.scalars.map(\.bitPattern) == values.map(\.bitPattern), "\(e.name)")
        }
        #expect(try npz.tensor("a", shape: [2, 3]).scalars == [-1, -0.5, 0, 0.5, 1, 1.5])
        #expect(try npz.tensor("scalar").shape == [])
        #expect(try npz.tensor("c").scalars == [1, -2, 3, 16_777_216])
    }

    @Test func npyFormatVersions() throws {
        let npz = try NPZFile(contentsOf: Fixtures.url("tasks/versions.npz"))
        #expect(npz.names == ["v1", "v2", "v3"])   // readme.txt is not an array
        for name in npz.names {
            #expect(try npz.tensor(name, shape: [2, 3]).scalars == [-1, -0.5, 0, 0.5, 1, 1.5])
        }
    }

    @Test func missingArrayAndWrongShapeNameTheArray() throws {
        let url = Fixtures.url("tasks/numpy.npz")
        let npz = try NPZFile(contentsOf: url)
        #expect(throws: NPZError.arrayNotFound(path: url.path, array: "nope")) { try npz.tensor("nope") }
        #expect(throws: NPZError.shapeMismatch(path: url.path, array: "a", expected: [3, 2], actual: [2, 3])) {
            try npz.tensor("a", shape: [3, 2])
        }
    }

    @Test func missingFileDirectoryAndNotAZip() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let missing = dir.appendingPathComponent("missing.npz")
        expectNPZError(missing) { guard case .cannotOpen = $0 else { return false }; return true }
        expectNPZError(dir) { guard case .cannotOpen = $0 else { return false }; return true }
        let text = dir.appendingPathComponent("text.npz")
        try Data("hello, not a zip".utf8).write(to: text)
        expectNPZError(text) { guard case .cannotOpen = $0 else { return false }; return true }
        let empty = dir.appendingPathComponent("empty.npz")
        try Data().write(to: empty)
        expectNPZError(empty) { guard case .cannotOpen = $0 else { return false }; return true }
    }

    /// Unsupported but valid arrays: each error names the array and says what to do.
    @Test(arguments: [
        ("big-endian", npyBytes(descr: ">f4", shape: [2], data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40])),
        ("bool", npyBytes(descr: "|b1", shape: [2], data: [1, 0])),
        ("half", npyBytes(descr: "<f2", shape: [1], data: [0, 0x3C])),
        ("fortran", npyBytes(descr: "<f4", shape: [1, 2], data: f32Bytes([1, 2]), fortran: true)),
    ])
    func unsupportedArrays(name: String, npy: [UInt8]) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x.npz")
        try writeZip([("ok.npy", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]))), ("\(name).npy", npy)], to: url)
        expectNPZError(url) {
            guard case .unsupportedArray(_, let array, _) = $0 else { return false }
            return array == name
        }
    }

    /// Malformed .npy payloads inside a good ZIP.
    @Test(arguments: [
        ("short", Array([0x93] + Array("NUMPY".utf8))),
        ("magic", Array("NOTNUMPY........".utf8)),
        ("version", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), major: 4)),
        ("too-few-bytes", npyBytes(descr: "<f4", shape: [3], data: f32Bytes([1, 2]))),
        ("too-many-bytes", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1, 2]))),
        ("huge-shape", npyBytes(descr: "<f4", shape: [1 << 40, 1 << 40], data: [])),
        ("negative", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")),
        ("no-shape", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': '<f4', 'fortran_order': False, }")),
        ("extra-key", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}")),
        ("not-a-dict", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "['descr']")),
        ("unterminated", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': '<f4")),
        ("structured", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }")),
        ("overflow", npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]), headerOverride: "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }")),
    ])
    func malformedArrays(name: String, npy: [UInt8]) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("x.npz")
        try writeZip([("\(name).npy", npy)], to: url)
        expectNPZError(url) {
            switch $0 {
            case .invalidArray(_, let array, _), .unsupportedArray(_, let array, _): return array == name
            default: return false
            }
        }
    }

    @Test func duplicateArrayNames() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("dup.npz")
        let npy = npyBytes(descr: "<f4", shape: [1], data: f32Bytes([1]))
        try writeZip([("a.npy", npy), ("a.npy", npy)], to: url)
        expectNPZError(url) { $0 == .duplicateArray(path: url.path, array: "a") }
    }

    /// Every truncation of stored and deflated archives throws (the ZIP directory is at the end).
    @Test(arguments: ["numpy.npz", "numpy-compressed.npz", "versions.npz"])
    func truncatedEverywhere(file: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let bytes = Array(try Data(contentsOf: Fixtures.url("tasks/\(file)")))
        let url = dir.appendingPathComponent("cut.npz")
        for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 300)) {
            try Data(bytes[0..<cut]).write(to: url)
            expectNPZError(url) { _ in true }
        }
    }

    /// Flipped bytes anywhere: an NPZError or (for bytes nobody checks, like timestamps) success,
    /// never a crash. Damage to array data is caught by the CRC.
    @Test(arguments: ["numpy.npz", "numpy-compressed.npz"])
    func corruptedBytes(file: String) throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = Array(try Data(contentsOf: Fixtures.url("tasks/\(file)")))
        let url = dir.appendingPathComponent("bad.npz")
        var rng = SplitMix64(seed: 7)
        var errors = 0
        for trial in 0..<400 {
            var bytes = good
            // Mostly single flips; some bursts; some in the last 200 bytes (the ZIP directory).
            let flips = trial % 5 == 0 ? 8 : 1
            for _ in 0..<flips {
                let i = trial % 3 == 0 ? bytes.count - 1 - Int.random(in: 0..<min(200, bytes.count), using: &rng)
                                       : Int.random(in: 0..<bytes.count, using: &rng)
                bytes[i] ^= UInt8.random(in: 1...255, using: &rng)
            }
            try Data(bytes).write(to: url)
            do {
                _ = try NPZFile(contentsOf: url)
            } catch let e as NPZError {
                #expect(e.description.contains(url.path))
                errors += 1
            }
        }
        #expect(errors > 100)
    }

    /// A deflated entry whose directory understates its size must not be inflated past it.
    @Test func understatedSizes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("bomb.npz")
        let zeros = Tensor(zeros: [256, 256])
        try writeNPZ([("zeros", zeros)], to: url, compressed: true)
        var bytes = Array(try Data(contentsOf: url))
        // Patch every uncompressed-size field (local header offset 22, central directory offset 24).
        let size = UInt32(zeros.count * 4 + 128)
        func patch(_ at: Int, _ v: UInt32) { for k in 0..<4 { bytes[at + k] = UInt8((v >> (8 * UInt32(k))) & 0xFF) } }
        for i in 0..<(bytes.count - 4) {
            let sig = UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24
            if sig == 0x0403_4B50, i + 26 <= bytes.count { patch(i + 22, size / 2) }
            if sig == 0x0201_4B50, i + 28 <= bytes.count { patch(i + 24, size / 2) }
        }
        try Data(bytes).write(to: url)
        expectNPZError(url) {
            guard case .damagedEntry(_, let array, _) = $0 else { return false }
            return array == "zeros"
        }
    }
}

/// Reading `url` must throw an NPZError that names the file and satisfies `check`.
func expectNPZError(_ url: URL, sourceLocation: SourceLocation = #_sourceLocation, _ check: (NPZError) -> Bool) {
    do {
        _ = try NPZFile(contentsOf: url)
        Issue.record("expected an error for \(url.lastPathComponent)", sourceLocation: sourceLocation)
    } catch let e as NPZError {
        #expect(e.path == url.path, sourceLocation: sourceLocation)
        #expect(e.description.contains(url.path), sourceLocation: sourceLocation)
        #expect(check(e), "unexpected error: \(e)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("expected an NPZError, got \(error)", sourceLocation: sourceLocation)
    }
}
